//! `shoalctl plan` and `apply` against a real coordinator whose nodes are registered through
//! the dispatcher API without agents (fake nodes: they never run anything).

#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::process::Command;
use std::time::Duration;

use shoal_model::{Node, NodeAvailability, NodeResources, NodeRole, NodeStatus};
use shoal_proto::dispatcher::dispatcher_client::DispatcherClient;
use shoal_proto::dispatcher::RegisterRequest;
use shoal_tests::binary;
use shoal_tests::coordinators::{wait_leader, Coord};

fn repo_file(rel: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join(rel)
}

fn shoalctl(c: &Coord, args: &[&str]) -> (bool, String, String) {
    let out = Command::new(binary("shoalctl"))
        .env("SHOAL_INSECURE", "true")
        .arg("--coordinators")
        .arg(&c.addr)
        .args(args)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into(),
        String::from_utf8_lossy(&out.stderr).into(),
    )
}

async fn register(c: &Coord, name: &str, labels: &[(&str, &str)]) {
    let node = Node {
        name: name.into(),
        role: NodeRole::Worker,
        labels: labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        availability: NodeAvailability::Active,
        status: NodeStatus::Ready,
        resources: NodeResources {
            cpu_millis: 16_000,
            memory_bytes: 64 << 30,
        },
        address: String::new(),
        agent_version: "test".into(),
        runtime_version: "none".into(),
        registered_at: 0,
        last_heartbeat: 0,
        down_since: None,
    };
    let ch = tonic::transport::Endpoint::from_shared(format!("http://{}", c.addr))
        .unwrap()
        .connect()
        .await
        .unwrap();
    DispatcherClient::new(ch)
        .register(RegisterRequest {
            node_json: serde_json::to_vec(&node).unwrap(),
        })
        .await
        .unwrap();
}

async fn coordinator_with_fake_nodes(dir: &std::path::Path) -> Coord {
    let mut c = Coord::new(dir, 1);
    // Fake nodes never heartbeat: give them a grace longer than the test.
    let cfg = dir.join("c.toml");
    std::fs::write(&cfg, "[agents]\nheartbeat_ms = 1000\ngrace_ms = 600000\n").unwrap();
    c.extra_args = vec![
        "--bootstrap".into(),
        "--config".into(),
        cfg.display().to_string(),
    ];
    c.start();
    c.wait_serving().await;
    wait_leader(&[&c], Duration::from_secs(10)).await;
    for (name, labels) in [
        ("ctl-1", vec![("role", "controller"), ("mariadb", "true")]),
        ("ctl-2", vec![("role", "controller")]),
        ("ctl-3", vec![("role", "controller")]),
        ("cmp-1", vec![("role", "compute")]),
        ("cmp-2", vec![("role", "compute")]),
    ] {
        register(&c, name, &labels).await;
    }
    c
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plan_of_the_openstack_example_honours_controllers_and_computes() {
    let dir = tempfile::tempdir().unwrap();
    let c = coordinator_with_fake_nodes(dir.path()).await;
    let file = repo_file("examples/openstack/stack.yaml");
    let (ok, out, err) = shoalctl(&c, &["-o", "json", "plan", "-f", file.to_str().unwrap()]);
    assert!(ok, "plan failed: {err}");
    let plan: serde_json::Value = serde_json::from_str(&out).unwrap();
    let tasks = plan["tasks"].as_array().unwrap();
    let mut by_service: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for t in tasks {
        let node = t["node"].as_str().unwrap_or("-").to_string();
        by_service
            .entry(t["service"].as_str().unwrap().to_string())
            .or_default()
            .push(node);
    }
    // Neutron's agents run on the computes, which double as network nodes in the example.
    let compute = [
        "nova-compute",
        "nova-libvirt",
        "openvswitch",
        "neutron-openvswitch-agent",
        "neutron-dhcp-agent",
        "neutron-l3-agent",
        "neutron-metadata-agent",
    ];
    for (svc, nodes) in &by_service {
        for n in nodes {
            if compute.iter().any(|c| svc.starts_with(c)) {
                assert!(n.starts_with("cmp-"), "{svc} planned on {n}");
            } else {
                assert!(n.starts_with("ctl-"), "{svc} planned on {n}: {plan:#}");
            }
        }
    }
    for svc in ["keystone", "nova-api", "horizon", "mariadb", "rabbitmq"] {
        assert!(
            by_service.contains_key(svc),
            "{svc} missing from the plan: {by_service:?}"
        );
    }
    assert_eq!(by_service["mariadb"], vec!["ctl-1".to_string()]);
    for prefix in compute {
        let matching: Vec<_> = by_service
            .iter()
            .filter(|(s, _)| s.starts_with(prefix))
            .collect();
        assert!(
            !matching.is_empty(),
            "no {prefix}* service in the plan: {by_service:?}"
        );
        for (svc, nodes) in matching {
            let mut nodes = nodes.clone();
            nodes.sort();
            assert_eq!(
                nodes,
                vec!["cmp-1".to_string(), "cmp-2".to_string()],
                "{svc}"
            );
        }
    }
    // The table form names the nodes too; plan changed nothing.
    let (ok, out, _) = shoalctl(&c, &["plan", "-f", file.to_str().unwrap()]);
    assert!(
        ok && out.contains("ctl-1") && out.contains("cmp-2"),
        "{out}"
    );
    let (_, services, _) = shoalctl(&c, &["-o", "json", "service", "ls"]);
    assert_eq!(services.trim(), "[]");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_stack_files_are_refused_with_file_line_and_key() {
    let dir = tempfile::tempdir().unwrap();
    let c = coordinator_with_fake_nodes(dir.path()).await;
    let cases = [
        (
            "services:\n  api:\n    image: x\n    deploy:\n      replicas: -1\n",
            "bad.yaml:5",
            "replicas",
        ),
        (
            "services:\n  api:\n    image: x\n    colour: blue\n",
            "bad.yaml:4",
            "colour",
        ),
        (
            "services:\n  api:\n    image: x\n    depends_on: [db]\n",
            "bad.yaml:4",
            "depends_on",
        ),
        ("services:\n  api:\n    image: [x\n", "bad.yaml:", ""),
    ];
    for (i, (yaml, at, key)) in cases.iter().enumerate() {
        let path = dir.path().join("bad.yaml");
        std::fs::write(&path, yaml).unwrap();
        let (ok, _, err) = shoalctl(&c, &["apply", "-f", path.to_str().unwrap(), "--stack", "s"]);
        assert!(!ok, "case {i} applied");
        assert!(err.contains(at) && err.contains(key), "case {i}: {err}");
    }
    let (_, services, _) = shoalctl(&c, &["-o", "json", "service", "ls"]);
    assert_eq!(services.trim(), "[]", "a refused stack changed state");
}
