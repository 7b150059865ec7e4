//! Criterion benchmark of the scheduler: 100,000 tasks placed on 5,000 nodes in one call.
//!
//! The cluster: 5,000 nodes in 50 racks, 10% labelled controller, the rest compute, each with one
//! task already running. The work: 100 services of 1,000 replicas; a fifth constrained to computes,
//! a fifth spread over racks, a fifth binding a host port, a fifth capped at 2 per node, and all
//! reserving CPU and memory. A second case spreads every service over racks.

use std::collections::BTreeMap;
use std::hint::black_box;
use std::sync::Arc;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use shoal_coordinator::scheduler::{
    schedule, ClusterView, NodeTask, NodeView, PendingTask, Requirements,
};
use shoal_model::{NodeAvailability, NodeResources, NodeRole, NodeStatus};

const NODES: usize = 5_000;
const SERVICES: usize = 100;
const REPLICAS: usize = 1_000;

fn cluster() -> ClusterView {
    let nodes = (0..NODES)
        .map(|i| {
            let mut labels = BTreeMap::new();
            let role = if i % 10 == 0 { "controller" } else { "compute" };
            labels.insert("role".to_string(), role.to_string());
            labels.insert("rack".to_string(), format!("r{:02}", i % 50));
            NodeView {
                name: format!("node-{i:05}"),
                role: NodeRole::Worker,
                labels,
                availability: NodeAvailability::Active,
                status: NodeStatus::Ready,
                capacity: NodeResources {
                    cpu_millis: 64_000,
                    memory_bytes: 256 << 30,
                },
                tasks: vec![NodeTask {
                    service: "node-exporter".into(),
                    cpu_millis: 100,
                    memory_bytes: 64 << 20,
                    host_ports: vec![9100],
                }],
            }
        })
        .collect();
    ClusterView { nodes }
}

/// The default mix, or with `spread_all` every service spread over racks (the slow path).
fn pending_with(spread_all: bool) -> Vec<PendingTask> {
    let mut out = Vec::with_capacity(SERVICES * REPLICAS);
    for s in 0..SERVICES {
        let mut req = Requirements {
            cpu_millis: 250,
            memory_bytes: 256 << 20,
            ..Requirements::default()
        };
        if spread_all {
            req.spread_labels = vec!["rack".into()];
        }
        match s % 5 {
            0 => req.constraints = vec!["node.labels.role == compute".into()],
            1 => req.spread_labels = vec!["rack".into()],
            2 => req.host_ports = vec![10_000 + s as u16],
            3 => req.max_replicas_per_node = Some(2),
            _ => {}
        }
        let req = Arc::new(req);
        for r in 0..REPLICAS {
            out.push(PendingTask {
                id: format!("svc-{s:03}.{r}"),
                service: format!("svc-{s:03}"),
                node: None,
                requirements: req.clone(),
            });
        }
    }
    out
}

fn bench(c: &mut Criterion) {
    let view = cluster();
    let tasks = pending_with(false);
    let decisions = schedule(&view, &tasks);
    let placed = decisions.iter().filter(|d| d.node().is_some()).count();
    assert_eq!(placed, tasks.len(), "every task fits in this cluster");

    let mut group = c.benchmark_group("scheduler");
    group.sample_size(10);
    group.throughput(Throughput::Elements(tasks.len() as u64));
    group.bench_function("place_100k_tasks_on_5k_nodes", |b| {
        b.iter(|| schedule(black_box(&view), black_box(&tasks)))
    });
    let spread = pending_with(true);
    group.bench_function("place_100k_tasks_on_5k_nodes_all_spread", |b| {
        b.iter(|| schedule(black_box(&view), black_box(&spread)))
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
