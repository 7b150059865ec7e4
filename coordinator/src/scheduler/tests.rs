//! Scheduler tests: one behaviour per test, then properties over random clusters.

use std::collections::BTreeMap;
use std::sync::Arc;

use proptest::prelude::*;
use shoal_model::{NodeAvailability, NodeResources, NodeRole, NodeStatus};

use super::*;

fn node(name: &str, labels: &[(&str, &str)]) -> NodeView {
    NodeView {
        name: name.into(),
        role: NodeRole::Worker,
        labels: labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        availability: NodeAvailability::Active,
        status: NodeStatus::Ready,
        capacity: NodeResources {
            cpu_millis: 4_000,
            memory_bytes: 8 << 30,
        },
        tasks: Vec::new(),
    }
}

fn tasks(service: &str, n: usize, req: Requirements) -> Vec<PendingTask> {
    let req = Arc::new(req);
    (0..n)
        .map(|i| PendingTask {
            id: format!("{service}.{i}"),
            service: service.into(),
            node: None,
            requirements: req.clone(),
        })
        .collect()
}

fn placed(decisions: &[Decision]) -> Vec<&str> {
    decisions.iter().map(|d| d.node().unwrap_or("-")).collect()
}

fn reasons(d: &Decision) -> &[String] {
    match d {
        Decision::Unplaceable { reasons, .. } => reasons,
        Decision::Place { node, .. } => panic!("placed on {node}"),
    }
}

#[test]
fn spreads_replicas_then_breaks_ties_by_name() {
    let view = ClusterView {
        nodes: vec![node("c", &[]), node("a", &[]), node("b", &[])],
    };
    let d = schedule(&view, &tasks("web", 4, Requirements::default()));
    assert_eq!(placed(&d), ["a", "b", "c", "a"]);
}

#[test]
fn fewest_same_service_before_fewest_total() {
    let mut busy = node("a", &[]);
    busy.tasks = (0..5)
        .map(|_| NodeTask {
            service: "other".into(),
            ..Default::default()
        })
        .collect();
    let mut has_web = node("b", &[]);
    has_web.tasks = vec![NodeTask {
        service: "web".into(),
        ..Default::default()
    }];
    let view = ClusterView {
        nodes: vec![busy, has_web, node("c", &[])],
    };
    let d = schedule(&view, &tasks("web", 2, Requirements::default()));
    // c has nothing; then a (0 web, 5 total) beats b (1 web).
    assert_eq!(placed(&d), ["c", "a"]);
}

#[test]
fn constraints_filter_and_explain() {
    let view = ClusterView {
        nodes: vec![
            node("c1", &[("role", "controller")]),
            node("w1", &[("role", "compute")]),
            node("w2", &[("role", "compute")]),
            node("w3", &[]),
        ],
    };
    let req = Requirements {
        constraints: vec!["node.labels.role == controller".into()],
        ..Default::default()
    };
    let d = schedule(&view, &tasks("db", 1, req));
    assert_eq!(placed(&d), ["c1"]);

    let req = Requirements {
        constraints: vec!["node.labels.role == controller".into()],
        host_ports: vec![3306],
        ..Default::default()
    };
    let d = schedule(&view, &tasks("db", 2, req));
    assert_eq!(d[0].node(), Some("c1"));
    assert_eq!(
        reasons(&d[1]),
        [
            "3 nodes filtered by constraint node.labels.role == controller",
            "1 node filtered: port 3306 in use"
        ]
    );
}

#[test]
fn host_ports_never_shared_even_across_services() {
    let mut a = node("a", &[]);
    a.tasks = vec![NodeTask {
        service: "old".into(),
        host_ports: vec![80],
        ..Default::default()
    }];
    let view = ClusterView {
        nodes: vec![a, node("b", &[])],
    };
    let web = Requirements {
        host_ports: vec![80],
        ..Default::default()
    };
    let mut pending = tasks("web", 1, web.clone());
    pending.extend(tasks("horizon", 1, web));
    let d = schedule(&view, &pending);
    assert_eq!(d[0].node(), Some("b"));
    assert_eq!(reasons(&d[1]), ["2 nodes filtered: port 80 in use"]);
}

#[test]
fn max_replicas_per_node() {
    let view = ClusterView {
        nodes: vec![node("a", &[]), node("b", &[])],
    };
    let req = Requirements {
        max_replicas_per_node: Some(1),
        ..Default::default()
    };
    let d = schedule(&view, &tasks("api", 3, req));
    assert_eq!(placed(&d)[..2], ["a", "b"]);
    assert_eq!(
        reasons(&d[2]),
        ["2 nodes filtered: max replicas per node (1) reached"]
    );
}

#[test]
fn resource_reservations() {
    let view = ClusterView {
        nodes: vec![node("a", &[]), node("b", &[])],
    };
    let req = Requirements {
        cpu_millis: 3_000,
        ..Default::default()
    };
    let d = schedule(&view, &tasks("big", 3, req));
    assert_eq!(placed(&d)[..2], ["a", "b"]);
    assert_eq!(reasons(&d[2]), ["2 nodes filtered: insufficient cpu"]);
    let req = Requirements {
        memory_bytes: 9 << 30,
        ..Default::default()
    };
    let d = schedule(&view, &tasks("huge", 1, req));
    assert_eq!(reasons(&d[0]), ["2 nodes filtered: insufficient memory"]);
}

#[test]
fn only_ready_active_nodes() {
    let mut down = node("a", &[]);
    down.status = NodeStatus::Down;
    let mut paused = node("b", &[]);
    paused.availability = NodeAvailability::Pause;
    let mut draining = node("c", &[]);
    draining.availability = NodeAvailability::Drain;
    let view = ClusterView {
        nodes: vec![down, paused, draining.clone()],
    };
    let d = schedule(&view, &tasks("x", 1, Requirements::default()));
    assert_eq!(
        reasons(&d[0]),
        [
            "1 node filtered: node is down",
            "1 node filtered: node is draining",
            "1 node filtered: node is paused"
        ]
    );
    let view = ClusterView {
        nodes: vec![draining, node("d", &[])],
    };
    assert_eq!(
        placed(&schedule(&view, &tasks("x", 2, Requirements::default()))),
        ["d", "d"]
    );
}

#[test]
fn spread_preference_balances_label_values() {
    // Three nodes in zone a, one in zone b: four replicas go 2/2 over zones, not 3/1.
    let view = ClusterView {
        nodes: vec![
            node("a1", &[("zone", "a")]),
            node("a2", &[("zone", "a")]),
            node("a3", &[("zone", "a")]),
            node("b1", &[("zone", "b")]),
        ],
    };
    let req = Requirements {
        spread_labels: vec!["zone".into()],
        ..Default::default()
    };
    let d = schedule(&view, &tasks("api", 4, req));
    let zone_b = placed(&d).iter().filter(|n| n.starts_with('b')).count();
    // Fewest-same-service comes first, so each node gets one before any gets two: a1, b1 (zone b
    // empty), a2, a3.
    assert_eq!(placed(&d), ["a1", "b1", "a2", "a3"]);
    assert_eq!(zone_b, 1);
    let d = schedule(
        &view,
        &tasks(
            "api",
            6,
            Requirements {
                spread_labels: vec!["zone".into()],
                ..Default::default()
            },
        ),
    );
    // The fifth and sixth replicas: every node has one; zone b has fewer, so b1 first.
    assert_eq!(placed(&d)[4], "b1");
}

#[test]
fn pinned_tasks_go_to_their_node_or_say_why() {
    let view = ClusterView {
        nodes: vec![node("a", &[("role", "compute")]), node("b", &[])],
    };
    let req = Arc::new(Requirements {
        constraints: vec!["node.labels.role == compute".into()],
        ..Default::default()
    });
    let pending: Vec<PendingTask> = ["a", "b", "zz"]
        .iter()
        .map(|n| PendingTask {
            id: format!("g.{n}"),
            service: "g".into(),
            node: Some(n.to_string()),
            requirements: req.clone(),
        })
        .collect();
    let d = schedule(&view, &pending);
    assert_eq!(d[0].node(), Some("a"));
    assert_eq!(
        reasons(&d[1]),
        ["1 node filtered by constraint node.labels.role == compute"]
    );
    assert_eq!(reasons(&d[2]), ["node zz is not in the cluster"]);
}

#[test]
fn unparsable_constraint_matches_nothing_and_empty_cluster_is_explained() {
    let view = ClusterView {
        nodes: vec![node("a", &[])],
    };
    let req = Requirements {
        constraints: vec!["node.labels.x = 1".into()],
        ..Default::default()
    };
    let d = schedule(&view, &tasks("x", 1, req));
    assert_eq!(
        reasons(&d[0]),
        ["1 node filtered by constraint node.labels.x = 1"]
    );
    let d = schedule(
        &ClusterView::default(),
        &tasks("x", 1, Requirements::default()),
    );
    assert_eq!(reasons(&d[0]), ["no nodes in the cluster"]);
}

#[test]
fn openstack_example_places_on_controllers_and_computes() {
    let stack = crate::stack::parse_stack(
        "stack.yaml",
        include_str!("../../../examples/openstack/stack.yaml"),
    )
    .expect("example parses");
    let mut nodes: Vec<NodeView> = (1..=3)
        .map(|i| node(&format!("ctl-{i}"), &[("role", "controller")]))
        .collect();
    nodes[0].labels.insert("mariadb".into(), "true".into());
    nodes.extend((1..=2).map(|i| node(&format!("cmp-{i}"), &[("role", "compute")])));
    let view = ClusterView { nodes };
    let mut pending = Vec::new();
    for (name, spec) in &stack.services {
        let req = Arc::new(Requirements::from_spec(spec));
        let pins: Vec<Option<String>> = match spec.mode {
            shoal_model::ServiceMode::Global | shoal_model::ServiceMode::GlobalJob => {
                vec![Some("cmp-1".into()), Some("cmp-2".into())]
            }
            _ => vec![None; spec.replicas as usize],
        };
        for (i, pin) in pins.into_iter().enumerate() {
            pending.push(PendingTask {
                id: format!("{name}.{i}"),
                service: name.clone(),
                node: pin,
                requirements: req.clone(),
            });
        }
    }
    let decisions = schedule(&view, &pending);
    for (task, d) in pending.iter().zip(&decisions) {
        let node = d
            .node()
            .unwrap_or_else(|| panic!("{} unplaceable: {d:?}", task.id));
        let on_compute = task
            .requirements
            .constraints
            .iter()
            .any(|c| c.contains("compute"));
        assert_eq!(node.starts_with("cmp"), on_compute, "{} on {node}", task.id);
    }
    let mariadb = decisions
        .iter()
        .find(|d| d.task_id() == "mariadb.0")
        .and_then(Decision::node);
    assert_eq!(mariadb, Some("ctl-1"));
}

// ---- properties ----

fn arb_node(i: usize) -> impl Strategy<Value = NodeView> {
    (
        prop::sample::select(vec!["controller", "compute", "storage"]),
        prop::option::of(prop::sample::select(vec!["r1", "r2", "r3"])),
        prop::sample::select(vec![
            NodeStatus::Ready,
            NodeStatus::Ready,
            NodeStatus::Ready,
            NodeStatus::Down,
        ]),
        prop::sample::select(vec![
            NodeAvailability::Active,
            NodeAvailability::Active,
            NodeAvailability::Pause,
        ]),
        0u64..4_000,
        prop::collection::vec(
            (
                0usize..3,
                prop::option::of(prop::sample::select(vec![80u16, 443, 5000])),
            ),
            0..3,
        ),
    )
        .prop_map(move |(role, rack, status, availability, cpu, existing)| {
            let mut labels = BTreeMap::new();
            labels.insert("role".to_string(), role.to_string());
            if let Some(r) = rack {
                labels.insert("rack".to_string(), r.to_string());
            }
            NodeView {
                name: format!("n{i:02}"),
                role: NodeRole::Worker,
                labels,
                availability,
                status,
                capacity: NodeResources {
                    cpu_millis: cpu,
                    memory_bytes: 1 << 30,
                },
                tasks: existing
                    .into_iter()
                    .map(|(s, port)| NodeTask {
                        service: format!("s{s}"),
                        cpu_millis: 100,
                        memory_bytes: 0,
                        host_ports: port.into_iter().collect(),
                    })
                    .collect(),
            }
        })
}

fn arb_view() -> impl Strategy<Value = ClusterView> {
    (0usize..12)
        .prop_flat_map(|n| (0..n).map(arb_node).collect::<Vec<_>>())
        .prop_map(|nodes| ClusterView { nodes })
}

fn arb_requirements() -> impl Strategy<Value = Requirements> {
    (
        prop::option::of(prop::sample::select(vec![
            "node.labels.role == controller",
            "node.labels.role != compute",
            "node.labels.rack == r1",
        ])),
        prop::option::of(1u32..3),
        prop::sample::select(vec![0u64, 500, 1500]),
        prop::option::of(prop::sample::select(vec![80u16, 443, 5000])),
        any::<bool>(),
    )
        .prop_map(|(c, max, cpu, port, spread)| Requirements {
            constraints: c.into_iter().map(String::from).collect(),
            spread_labels: if spread { vec!["rack".into()] } else { vec![] },
            max_replicas_per_node: max,
            cpu_millis: cpu,
            memory_bytes: 0,
            host_ports: port.into_iter().collect(),
        })
}

fn arb_pending() -> impl Strategy<Value = Vec<PendingTask>> {
    prop::collection::vec((0usize..3, arb_requirements(), 1usize..8), 1..4).prop_map(|groups| {
        let mut out = Vec::new();
        for (g, (s, req, n)) in groups.into_iter().enumerate() {
            let req = Arc::new(req);
            for i in 0..n {
                out.push(PendingTask {
                    id: format!("g{g}.{i}"),
                    service: format!("s{s}"),
                    node: None,
                    requirements: req.clone(),
                });
            }
        }
        out
    })
}

/// Free cpu, used ports and tasks per service of one node while replaying decisions.
type ReplayLoad = (u64, Vec<u16>, BTreeMap<String, u32>);

/// Replays decisions against the view and checks no filter is violated at the time of placement.
fn check_valid(
    view: &ClusterView,
    pending: &[PendingTask],
    decisions: &[Decision],
) -> Result<(), String> {
    let mut loads: BTreeMap<&str, ReplayLoad> = BTreeMap::new();
    for n in &view.nodes {
        let used: u64 = n.tasks.iter().map(|t| t.cpu_millis).sum();
        let ports = n.tasks.iter().flat_map(|t| t.host_ports.clone()).collect();
        let mut per_service = BTreeMap::new();
        for t in &n.tasks {
            *per_service.entry(t.service.clone()).or_insert(0) += 1;
        }
        loads.insert(
            &n.name,
            (
                n.capacity.cpu_millis.saturating_sub(used),
                ports,
                per_service,
            ),
        );
    }
    if decisions.len() != pending.len() {
        return Err("one decision per task".into());
    }
    for (task, d) in pending.iter().zip(decisions) {
        if d.task_id() != task.id {
            return Err(format!("decision for {} out of order", task.id));
        }
        let Some(name) = d.node() else {
            if let Decision::Unplaceable { reasons, .. } = d {
                if reasons.is_empty() || reasons.iter().any(|r| r.is_empty()) {
                    return Err(format!("{} unplaceable without reasons", task.id));
                }
            }
            continue;
        };
        let node = view
            .nodes
            .iter()
            .find(|n| n.name == name)
            .ok_or("unknown node")?;
        let req = &task.requirements;
        if node.status != NodeStatus::Ready || node.availability != NodeAvailability::Active {
            return Err(format!("{} on unavailable {name}", task.id));
        }
        for c in &req.constraints {
            let c = Constraint::parse(c).map_err(|e| e.to_string())?;
            if !c.matches(&node.name, node.role, &node.labels) {
                return Err(format!("{} on {name} violates {}", task.id, c.text));
            }
        }
        let (free, ports, per_service) = loads.get_mut(name).ok_or("unknown node")?;
        if *free < req.cpu_millis {
            return Err(format!("{} on {name}: over cpu", task.id));
        }
        *free -= req.cpu_millis;
        for p in &req.host_ports {
            if ports.contains(p) {
                return Err(format!("{} on {name}: port {p} taken", task.id));
            }
            ports.push(*p);
        }
        let count = per_service.entry(task.service.clone()).or_insert(0);
        if *count >= req.max_replicas_per_node.unwrap_or(u32::MAX) {
            return Err(format!("{} on {name}: over max per node", task.id));
        }
        *count += 1;
    }
    Ok(())
}

/// The scheduler written the slow, obvious way: every node checked for every task.
fn reference(view: &ClusterView, pending: &[PendingTask]) -> Vec<Option<String>> {
    let mut nodes: Vec<NodeView> = view.nodes.clone();
    nodes.sort_by(|a, b| a.name.cmp(&b.name));
    let mut out = Vec::new();
    for task in pending {
        let req = &task.requirements;
        let count = |n: &NodeView| n.tasks.iter().filter(|t| t.service == task.service).count();
        let mut best: Option<(Vec<usize>, usize)> = None;
        for (i, n) in nodes.iter().enumerate() {
            let used_cpu: u64 = n.tasks.iter().map(|t| t.cpu_millis).sum();
            let used_mem: u64 = n.tasks.iter().map(|t| t.memory_bytes).sum();
            let ok = n.status == NodeStatus::Ready
                && n.availability == NodeAvailability::Active
                && req.constraints.iter().all(|c| {
                    Constraint::parse(c).is_ok_and(|c| c.matches(&n.name, n.role, &n.labels))
                })
                && n.capacity.cpu_millis.saturating_sub(used_cpu) >= req.cpu_millis
                && n.capacity.memory_bytes.saturating_sub(used_mem) >= req.memory_bytes
                && !req
                    .host_ports
                    .iter()
                    .any(|p| n.tasks.iter().any(|t| t.host_ports.contains(p)))
                && (count(n) as u32) < req.max_replicas_per_node.unwrap_or(u32::MAX);
            if !ok {
                continue;
            }
            let mut key = vec![count(n)];
            for label in &req.spread_labels {
                let value = n.labels.get(label);
                key.push(
                    nodes
                        .iter()
                        .filter(|m| m.labels.get(label) == value)
                        .map(count)
                        .sum(),
                );
            }
            key.push(n.tasks.len());
            if best.as_ref().is_none_or(|(k, _)| key < *k) {
                best = Some((key, i));
            }
        }
        out.push(best.map(|(_, i)| {
            nodes[i].tasks.push(NodeTask {
                service: task.service.clone(),
                cpu_millis: req.cpu_millis,
                memory_bytes: req.memory_bytes,
                host_ports: req.host_ports.clone(),
            });
            nodes[i].name.clone()
        }));
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn placements_respect_every_filter(view in arb_view(), pending in arb_pending()) {
        let decisions = schedule(&view, &pending);
        prop_assert_eq!(check_valid(&view, &pending, &decisions), Ok(()));
    }

    #[test]
    fn matches_the_obvious_implementation(view in arb_view(), pending in arb_pending()) {
        let fast: Vec<Option<String>> =
            schedule(&view, &pending).iter().map(|d| d.node().map(String::from)).collect();
        prop_assert_eq!(fast, reference(&view, &pending));
    }

    #[test]
    fn same_input_same_output(view in arb_view(), pending in arb_pending()) {
        let a = schedule(&view, &pending);
        // Fresh Arcs and reversed node order must not change anything either.
        let mut reordered = view.clone();
        reordered.nodes.reverse();
        let copied: Vec<PendingTask> = pending
            .iter()
            .map(|t| PendingTask { requirements: Arc::new((*t.requirements).clone()), ..t.clone() })
            .collect();
        prop_assert_eq!(&a, &schedule(&view, &pending));
        prop_assert_eq!(&a, &schedule(&reordered, &copied));
    }

    #[test]
    fn unplaceable_only_when_no_node_fits(view in arb_view(), pending in arb_pending()) {
        // A task left unplaceable must still be unplaceable if we retry it alone after the others.
        let decisions = schedule(&view, &pending);
        let mut after = view.clone();
        for (task, d) in pending.iter().zip(&decisions) {
            if let Some(name) = d.node() {
                if let Some(n) = after.nodes.iter_mut().find(|n| n.name == name) {
                    n.tasks.push(NodeTask {
                        service: task.service.clone(),
                        cpu_millis: task.requirements.cpu_millis,
                        memory_bytes: task.requirements.memory_bytes,
                        host_ports: task.requirements.host_ports.clone(),
                    });
                }
            }
        }
        for (task, d) in pending.iter().zip(&decisions) {
            if d.node().is_none() {
                let retry = schedule(&after, std::slice::from_ref(task));
                prop_assert!(retry[0].node().is_none(), "{} fits on {:?} after all", task.id, retry[0].node());
            }
        }
    }
}
