//! Orchestrator plans over hand-built cluster states, applied through the real state machine.

use shoal_model::{
    Millis, Mount, MountKind, Node, NodeAvailability, NodeLoss, NodeResources, NodeRole,
    NodeStatus, ServiceMode, ServiceSpec, TaskState, UpdateConfig, UpdateOrder,
};

use super::plan;
use crate::state::apply_ok as apply;
use crate::state::{ClusterState, Command, TaskStatusUpdate};

fn node(name: &str, role: &str) -> Node {
    Node {
        name: name.into(),
        role: NodeRole::Worker,
        labels: [("role".to_string(), role.to_string())].into(),
        availability: NodeAvailability::Active,
        status: NodeStatus::Ready,
        resources: NodeResources {
            cpu_millis: 4000,
            memory_bytes: 8 << 30,
        },
        address: String::new(),
        agent_version: String::new(),
        runtime_version: String::new(),
        registered_at: 0,
        last_heartbeat: 0,
        down_since: None,
    }
}

/// Runs plan + apply until nothing changes (at most 10 passes).
fn converge(s: &mut ClusterState) {
    converge_at(s, 1);
}

/// [`converge`] with the proposer's clock at `now`.
fn converge_at(s: &mut ClusterState, now: Millis) {
    let mut n = s.tasks.len();
    for _ in 0..10 {
        let r = plan(s, now, &mut |svc: &str, slot: u32| {
            n += 1;
            format!("{svc}.{slot}.{n}")
        });
        if r.is_empty() {
            return;
        }
        at(s, now, Command::Reconcile(Box::new(r)));
    }
    panic!("did not converge in 10 passes");
}

/// Applies `command` with the proposer's clock at `now`; returns the refusal, if any.
fn at(s: &mut ClusterState, now: Millis, command: Command) -> Option<String> {
    s.apply(&crate::state::Request {
        request_id: None,
        now,
        command,
    })
    .error
}

fn cluster(nodes: &[(&str, &str)]) -> ClusterState {
    let mut s = ClusterState::default();
    for (n, role) in nodes {
        apply(
            &mut s,
            Command::RegisterNode {
                node: node(n, role),
            },
        );
    }
    s
}

fn service(s: &mut ClusterState, name: &str, spec: ServiceSpec) {
    apply(
        s,
        Command::CreateService {
            name: name.into(),
            spec,
        },
    );
}

fn live(s: &ClusterState, svc: &str) -> Vec<(u32, Option<String>, TaskState)> {
    s.tasks
        .values()
        .filter(|t| {
            t.service == svc && t.desired_state == TaskState::Running && !t.state.is_terminal()
        })
        .map(|t| (t.slot, t.node.clone(), t.state))
        .collect()
}

fn report(
    s: &mut ClusterState,
    svc: &str,
    state: TaskState,
    exit_code: Option<i32>,
    message: &str,
) {
    let tasks: Vec<_> = s
        .tasks
        .values()
        .filter(|t| t.service == svc && !t.state.is_terminal())
        .map(|t| (t.id.clone(), t.node.clone().unwrap()))
        .collect();
    for (id, node) in tasks {
        let updates = vec![TaskStatusUpdate {
            task_id: id,
            state,
            message: message.into(),
            exit_code,
            image_digest: None,
        }];
        apply(s, Command::ReportTaskStatus { node, updates });
    }
}

#[test]
fn replicas_spread_over_nodes() {
    let mut s = cluster(&[
        ("a", "controller"),
        ("b", "controller"),
        ("c", "controller"),
    ]);
    service(
        &mut s,
        "api",
        ServiceSpec {
            replicas: 3,
            ..Default::default()
        },
    );
    converge(&mut s);
    let mut nodes: Vec<_> = live(&s, "api")
        .into_iter()
        .map(|(_, n, _)| n.unwrap())
        .collect();
    nodes.sort();
    assert_eq!(nodes, ["a", "b", "c"]);
}

#[test]
fn constraint_keeps_tasks_on_matching_nodes_and_explains_failures() {
    let mut s = cluster(&[("c1", "controller"), ("w1", "compute")]);
    let spec = ServiceSpec {
        replicas: 2,
        constraints: vec!["node.labels.role == compute".into()],
        max_replicas_per_node: Some(1),
        ..Default::default()
    };
    service(&mut s, "nova", spec);
    converge(&mut s);
    let tasks = live(&s, "nova");
    assert_eq!(tasks.len(), 2);
    let placed: Vec<_> = tasks.iter().filter(|t| t.1.is_some()).collect();
    assert_eq!(placed.len(), 1);
    assert_eq!(placed[0].1.as_deref(), Some("w1"));
    let pending = s
        .tasks
        .values()
        .find(|t| t.state == TaskState::Pending)
        .unwrap();
    assert!(
        pending.message.contains("constraint"),
        "{}",
        pending.message
    );
}

#[test]
fn dependencies_gate_task_creation() {
    let mut s = cluster(&[("a", "x")]);
    service(
        &mut s,
        "db-init",
        ServiceSpec {
            replicas: 1,
            mode: ServiceMode::ReplicatedJob,
            ..Default::default()
        },
    );
    let api = ServiceSpec {
        replicas: 1,
        depends_on: vec![(
            "db-init".into(),
            shoal_model::DependsCondition::ServiceCompletedSuccessfully,
        )],
        ..Default::default()
    };
    service(&mut s, "api", api);
    converge(&mut s);
    assert!(
        live(&s, "api").is_empty(),
        "api started before its job completed"
    );
    report(&mut s, "db-init", TaskState::Running, None, "");
    converge(&mut s);
    assert!(live(&s, "api").is_empty());
    report(&mut s, "db-init", TaskState::Complete, Some(0), "exited 0");
    converge(&mut s);
    assert_eq!(live(&s, "api").len(), 1);
    // The job ran exactly once.
    assert_eq!(
        s.tasks.values().filter(|t| t.service == "db-init").count(),
        1
    );
}

#[test]
fn down_node_tasks_are_orphaned_and_replaced() {
    let mut s = cluster(&[("a", "x"), ("b", "x")]);
    service(
        &mut s,
        "mq",
        ServiceSpec {
            replicas: 2,
            ..Default::default()
        },
    );
    converge(&mut s);
    apply(&mut s, Command::MarkNodeDown { name: "a".into() });
    converge(&mut s);
    let tasks = live(&s, "mq");
    assert_eq!(tasks.len(), 2);
    assert!(
        tasks.iter().all(|t| t.1.as_deref() == Some("b")),
        "{tasks:?}"
    );
    assert!(s.tasks.values().any(|t| t.state == TaskState::Orphaned));
}

#[test]
fn drain_moves_replicated_and_stops_global() {
    let mut s = cluster(&[("a", "x"), ("b", "x")]);
    service(
        &mut s,
        "api",
        ServiceSpec {
            replicas: 2,
            ..Default::default()
        },
    );
    service(
        &mut s,
        "ovs",
        ServiceSpec {
            mode: ServiceMode::Global,
            ..Default::default()
        },
    );
    converge(&mut s);
    assert_eq!(live(&s, "ovs").len(), 2);
    let update = Command::UpdateNode {
        name: "a".into(),
        availability: Some(NodeAvailability::Drain),
        add_labels: vec![],
        remove_labels: vec![],
    };
    apply(&mut s, update);
    converge(&mut s);
    assert!(live(&s, "api").iter().all(|t| t.1.as_deref() == Some("b")));
    assert_eq!(live(&s, "api").len(), 2);
    assert_eq!(live(&s, "ovs").len(), 1);
}

#[test]
fn scale_down_and_host_ports_never_share_a_node() {
    let mut s = cluster(&[("a", "x"), ("b", "x"), ("c", "x")]);
    let mut web = ServiceSpec {
        replicas: 3,
        ..Default::default()
    };
    web.container.host_ports = vec![80];
    // Replaced start-first: the new replica is created while the old one still runs.
    web.update_config.order = UpdateOrder::StartFirst;
    service(&mut s, "web", web.clone());
    let mut other = ServiceSpec {
        replicas: 1,
        ..Default::default()
    };
    other.container.host_ports = vec![80];
    service(&mut s, "other", other);
    converge(&mut s);
    // Four users of port 80, three nodes: three placed, never two on one node.
    let mut users: Vec<String> = ["web", "other"]
        .iter()
        .flat_map(|svc| live(&s, svc))
        .filter_map(|t| t.1)
        .collect();
    assert_eq!(users.len(), 3);
    users.sort();
    users.dedup();
    assert_eq!(users.len(), 3, "two users of port 80 share a node");
    let waiting = s
        .tasks
        .values()
        .find(|t| t.state == TaskState::Pending)
        .unwrap();
    assert!(waiting.message.contains("port 80"), "{}", waiting.message);
    web.replicas = 1;
    apply(
        &mut s,
        Command::UpdateService {
            name: "web".into(),
            spec: web,
        },
    );
    converge(&mut s);
    // Version changed: old tasks stop, one new replica runs; `other` gets a free node.
    report(&mut s, "web", TaskState::Running, None, "");
    converge(&mut s);
    assert_eq!(live(&s, "web").len(), 1);
    // With web scaled down, the waiting user of port 80 found a node.
    assert!(live(&s, "other").iter().all(|t| t.1.is_some()));
}

#[test]
fn plan_is_deterministic() {
    let mut a = cluster(&[("a", "x"), ("b", "x"), ("c", "y")]);
    service(
        &mut a,
        "s1",
        ServiceSpec {
            replicas: 5,
            ..Default::default()
        },
    );
    service(
        &mut a,
        "g",
        ServiceSpec {
            mode: ServiceMode::Global,
            ..Default::default()
        },
    );
    let b = a.clone();
    let ids = |svc: &str, slot: u32| format!("{svc}-{slot}");
    assert_eq!(plan(&a, 1, &mut ids.clone()), plan(&b, 1, &mut ids.clone()));
    converge(&mut a);
    assert_eq!(
        plan(&a, 1, &mut ids.clone()),
        crate::state::Reconcile::default()
    );
}

/// A service whose containers write to a named volume.
fn with_volume(replicas: u32) -> ServiceSpec {
    let mut spec = ServiceSpec {
        replicas,
        ..Default::default()
    };
    spec.container.mounts.push(Mount {
        kind: MountKind::Volume,
        source: "data".into(),
        target: "/data".into(),
        read_only: false,
        propagation: None,
        create_host_path: false,
    });
    spec
}

/// Every task of `svc` that is not finished, whatever its desired state: (id, node, state).
fn copies(s: &ClusterState, svc: &str) -> Vec<(String, Option<String>, TaskState)> {
    s.tasks
        .values()
        .filter(|t| t.service == svc && !t.state.is_terminal())
        .map(|t| (t.id.clone(), t.node.clone(), t.state))
        .collect()
}

#[test]
fn data_service_waits_for_a_down_node_until_it_is_removed_by_force() {
    let mut s = cluster(&[("a", "x"), ("b", "x")]);
    service(&mut s, "db", with_volume(1));
    service(
        &mut s,
        "api",
        ServiceSpec {
            replicas: 2,
            ..Default::default()
        },
    );
    converge(&mut s);
    report(&mut s, "db", TaskState::Running, None, "");
    report(&mut s, "api", TaskState::Running, None, "");
    let db = copies(&s, "db");
    assert_eq!(db.len(), 1);
    let lost = db[0].1.clone().unwrap();
    let other = if lost == "a" { "b" } else { "a" };
    at(&mut s, 1_000, Command::MarkNodeDown { name: lost.clone() });
    assert_eq!(s.nodes[&lost].down_since, Some(1_000));
    // Long after: the stateless replicas moved, the database still waits for its node.
    converge_at(&mut s, 10_000_000);
    assert!(live(&s, "api")
        .iter()
        .all(|t| t.1.as_deref() == Some(other)));
    assert_eq!(live(&s, "api").len(), 2);
    assert_eq!(
        copies(&s, "db"),
        db,
        "the data service must wait for its node"
    );
    // Removing the node is refused without --force, and names the task.
    let refused = at(
        &mut s,
        2_000,
        Command::RemoveNode {
            name: lost.clone(),
            force: false,
        },
    )
    .expect("refused without force");
    assert!(
        refused.contains(&db[0].0) && refused.contains("--force"),
        "{refused}"
    );
    // The node answers again: its copy just continues, nothing is created.
    at(&mut s, 3_000, Command::NodeHeartbeat { name: lost.clone() });
    assert_eq!(s.nodes[&lost].down_since, None);
    converge_at(&mut s, 10_000_000);
    assert_eq!(copies(&s, "db"), db);
    // Down again, then the operator says it is gone: now the database moves.
    at(&mut s, 4_000, Command::MarkNodeDown { name: lost.clone() });
    assert_eq!(
        at(
            &mut s,
            5_000,
            Command::RemoveNode {
                name: lost.clone(),
                force: true
            }
        ),
        None
    );
    converge_at(&mut s, 6_000);
    let moved = live(&s, "db");
    assert_eq!(moved.len(), 1);
    assert_eq!(moved[0].1.as_deref(), Some(other));
    assert_eq!(s.tasks[&db[0].0].state, TaskState::Orphaned);
}

#[test]
fn down_node_without_waiting_tasks_is_removed_without_force() {
    let mut s = cluster(&[("a", "x"), ("b", "x")]);
    service(
        &mut s,
        "api",
        ServiceSpec {
            replicas: 2,
            ..Default::default()
        },
    );
    converge(&mut s);
    at(&mut s, 1_000, Command::MarkNodeDown { name: "a".into() });
    assert_eq!(
        at(
            &mut s,
            2_000,
            Command::RemoveNode {
                name: "a".into(),
                force: false
            }
        ),
        None
    );
}

#[test]
fn a_node_loss_deadline_replaces_only_once_it_passed() {
    let mut s = cluster(&[("a", "x"), ("b", "x")]);
    let mut spec = with_volume(1);
    spec.on_node_loss = NodeLoss::ReplaceAfter(60_000);
    service(&mut s, "galera", spec);
    converge(&mut s);
    report(&mut s, "galera", TaskState::Running, None, "");
    let before = copies(&s, "galera");
    let lost = before[0].1.clone().unwrap();
    at(
        &mut s,
        100_000,
        Command::MarkNodeDown { name: lost.clone() },
    );
    converge_at(&mut s, 159_999);
    assert_eq!(copies(&s, "galera"), before);
    converge_at(&mut s, 160_000);
    let after = live(&s, "galera");
    assert_eq!(after.len(), 1);
    assert_ne!(after[0].1.as_deref(), Some(lost.as_str()));
    let old = &s.tasks[&before[0].0];
    assert_eq!(old.state, TaskState::Orphaned);
    assert!(old.message.contains("60000 ms"), "{}", old.message);
}

#[test]
fn explicit_policies_override_what_the_mounts_say() {
    let mut s = cluster(&[("a", "x")]);
    let mut cache = with_volume(1);
    cache.on_node_loss = NodeLoss::Replace;
    service(&mut s, "cache", cache);
    let quorum = ServiceSpec {
        replicas: 1,
        on_node_loss: NodeLoss::Wait,
        ..Default::default()
    };
    service(&mut s, "rabbit", quorum);
    converge(&mut s);
    apply(
        &mut s,
        Command::RegisterNode {
            node: node("b", "x"),
        },
    );
    at(&mut s, 1_000, Command::MarkNodeDown { name: "a".into() });
    converge_at(&mut s, 10_000_000);
    // The cache (a volume, but declared replaceable) moved; the quorum member (no volume, but
    // declared waiting) kept its one copy on the lost node.
    assert_eq!(live(&s, "cache")[0].1.as_deref(), Some("b"));
    let rabbit = copies(&s, "rabbit");
    assert_eq!(rabbit.len(), 1);
    assert_eq!(rabbit[0].1.as_deref(), Some("a"));
}

#[test]
fn data_service_update_stops_the_old_copy_before_the_new_one_is_created() {
    let mut s = cluster(&[("a", "x")]);
    let spec = with_volume(1);
    service(&mut s, "db", spec.clone());
    service(
        &mut s,
        "web",
        ServiceSpec {
            replicas: 1,
            ..Default::default()
        },
    );
    converge(&mut s);
    report(&mut s, "db", TaskState::Running, None, "");
    report(&mut s, "web", TaskState::Running, None, "");
    let mut v2 = spec;
    v2.container.image = "db:2".into();
    apply(
        &mut s,
        Command::UpdateService {
            name: "db".into(),
            spec: v2,
        },
    );
    apply(
        &mut s,
        Command::UpdateService {
            name: "web".into(),
            spec: ServiceSpec {
                replicas: 1,
                cpu_reservation_millis: 1,
                update_config: UpdateConfig {
                    order: UpdateOrder::StartFirst,
                    ..Default::default()
                },
                ..Default::default()
            },
        },
    );
    converge(&mut s);
    // Stateless and start-first: the new copy is created at once (the agent starts it once the
    // old one is gone). With data: stop-first whatever the order says.
    assert_eq!(live(&s, "web").len(), 1);
    // With data: nothing new while the old copy may still run.
    assert_eq!(copies(&s, "db").len(), 1);
    assert!(live(&s, "db").is_empty());
    let old = copies(&s, "db")[0].0.clone();
    let updates = vec![TaskStatusUpdate {
        task_id: old.clone(),
        state: TaskState::Shutdown,
        message: "stopped".into(),
        exit_code: None,
        image_digest: None,
    }];
    apply(
        &mut s,
        Command::ReportTaskStatus {
            node: "a".into(),
            updates,
        },
    );
    converge(&mut s);
    let new = live(&s, "db");
    assert_eq!(new.len(), 1);
    assert_eq!(copies(&s, "db").len(), 1);
    assert!(!copies(&s, "db").iter().any(|t| t.0 == old));
}

#[test]
fn restarting_task_keeps_its_slot_and_is_not_replaced() {
    let mut s = cluster(&[("a", "x"), ("b", "x")]);
    service(
        &mut s,
        "api",
        ServiceSpec {
            replicas: 2,
            ..Default::default()
        },
    );
    converge(&mut s);
    report(&mut s, "api", TaskState::Running, None, "started");
    let before: Vec<String> = s.tasks.keys().cloned().collect();
    let wait = "exited with code 137; restart 1 in 5000 ms";
    report(&mut s, "api", TaskState::Restarting, Some(137), wait);
    converge(&mut s);
    // Same tasks, same slots: no replacement is created for a task waiting to restart.
    assert_eq!(s.tasks.keys().cloned().collect::<Vec<_>>(), before);
    let states: Vec<TaskState> = live(&s, "api").into_iter().map(|l| l.2).collect();
    assert_eq!(states, [TaskState::Restarting, TaskState::Restarting]);
    assert!(s
        .tasks
        .values()
        .all(|t| t.exit_code == Some(137) && t.message == wait));
    // Restarted: running again (running and restarting alternate); a stale starting is ignored.
    report(&mut s, "api", TaskState::Running, None, "restarted");
    report(&mut s, "api", TaskState::Starting, None, "late");
    let states: Vec<TaskState> = live(&s, "api").into_iter().map(|l| l.2).collect();
    assert_eq!(states, [TaskState::Running, TaskState::Running]);
    // Failed for good: now the orchestrator replaces them.
    report(&mut s, "api", TaskState::Failed, Some(1), "exhausted");
    converge(&mut s);
    assert_eq!(live(&s, "api").len(), 2);
    assert_eq!(s.tasks.len(), 4);
}

/// Audit row 19: a task records the image digest its agent reported; later reports without
/// one keep it.
#[test]
fn tasks_record_the_image_digest_their_agent_reports() {
    let mut s = cluster(&[("a", "controller")]);
    service(
        &mut s,
        "api",
        ServiceSpec {
            replicas: 1,
            ..Default::default()
        },
    );
    converge(&mut s);
    let (id, node) = s
        .tasks
        .values()
        .map(|t| (t.id.clone(), t.node.clone().unwrap()))
        .next()
        .unwrap();
    let report = |state, digest: Option<&str>| Command::ReportTaskStatus {
        node: node.clone(),
        updates: vec![TaskStatusUpdate {
            task_id: id.clone(),
            state,
            message: format!("{state:?}"),
            exit_code: None,
            image_digest: digest.map(str::to_owned),
        }],
    };
    assert_eq!(s.tasks[&id].image_digest, None);
    apply(&mut s, report(TaskState::Starting, Some("sha256:abc")));
    apply(&mut s, report(TaskState::Running, None));
    let t = &s.tasks[&id];
    assert_eq!(
        (t.state, t.image_digest.as_deref()),
        (TaskState::Running, Some("sha256:abc"))
    );
}
