//! Rollouts through the real state machine and `plan`, with a simulated agent: batches,
//! health gating, pause and rollback, global services node by node, and the quorum property.

use std::collections::BTreeSet;

use proptest::prelude::*;
use shoal_model::container::HealthProbe;
use shoal_model::{
    FailureAction, HealthCheck, Millis, Mount, MountKind, Node, NodeAvailability, NodeResources,
    NodeRole, NodeStatus, ServiceMode, ServiceSpec, TaskState, UpdateConfig, UpdateState,
};

use super::plan;
use crate::state::{ClusterState, Command, Reconcile, Request, TaskStatusUpdate};

/// The image whose health check never passes.
const BAD: &str = "img:bad";

struct Sim {
    s: ClusterState,
    now: Millis,
    ids: usize,
}

impl Sim {
    fn new(nodes: usize) -> Sim {
        let mut sim = Sim {
            s: ClusterState::default(),
            now: 1_000,
            ids: 0,
        };
        for i in 0..nodes {
            let node = Node {
                name: format!("n{i}"),
                role: NodeRole::Worker,
                labels: Default::default(),
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
            };
            sim.cmd(Command::RegisterNode { node });
        }
        sim
    }

    fn cmd(&mut self, command: Command) -> Option<String> {
        self.s
            .apply(&Request {
                request_id: None,
                now: self.now,
                command,
            })
            .error
    }

    /// One orchestrator pass, applied; returns what it decided.
    fn pass(&mut self) -> Reconcile {
        let ids = &mut self.ids;
        let r = plan(&self.s, self.now, &mut |svc: &str, slot: u32| {
            *ids += 1;
            format!("{svc}.{slot}.{ids}")
        });
        if !r.is_empty() {
            self.cmd(Command::Reconcile(Box::new(r.clone())));
        }
        r
    }

    /// The agents of the nodes that are up: stop what is told to stop, run what is assigned
    /// (healthy, except [`BAD`] images, whose check fails).
    fn agents(&mut self) {
        let mut by_node: std::collections::BTreeMap<String, Vec<TaskStatusUpdate>> =
            Default::default();
        for t in self.s.tasks.values().filter(|t| !t.state.is_terminal()) {
            let Some(node) = &t.node else { continue };
            if self.s.nodes.get(node).map(|n| n.status) != Some(NodeStatus::Ready) {
                continue;
            }
            let has_check = t.spec.healthcheck.is_some();
            let (state, message) = if t.desired_state == TaskState::Shutdown {
                (TaskState::Shutdown, "stopped".to_string())
            } else if t.state == TaskState::Assigned {
                let msg = match (has_check, t.spec.image == BAD) {
                    (false, _) => "started",
                    (true, false) => "healthy",
                    (true, true) => "unhealthy: exec exited 1",
                };
                (TaskState::Running, msg.to_string())
            } else {
                continue;
            };
            by_node
                .entry(node.clone())
                .or_default()
                .push(TaskStatusUpdate {
                    task_id: t.id.clone(),
                    state,
                    message,
                    exit_code: None,
                    image_digest: None,
                });
        }
        for (node, updates) in by_node {
            self.cmd(Command::ReportTaskStatus { node, updates });
        }
    }

    /// Passes and agent rounds, `step` ms apart, until `done` holds (at most `max` rounds).
    fn run_until(&mut self, max: usize, step: Millis, done: impl Fn(&ClusterState) -> bool) {
        for _ in 0..max {
            if done(&self.s) {
                return;
            }
            self.now += step;
            self.pass();
            self.agents();
        }
        assert!(done(&self.s), "not done after {max} rounds");
    }

    fn update(&mut self, name: &str, f: impl FnOnce(&mut ServiceSpec)) {
        let mut spec = self.s.services[name].spec.clone();
        f(&mut spec);
        assert_eq!(
            self.cmd(Command::UpdateService {
                name: name.into(),
                spec
            }),
            None
        );
    }

    fn status(&self, name: &str) -> shoal_model::UpdateStatus {
        self.s.services[name].update.clone().expect("a rollout")
    }
}

fn checked(replicas: u32, cfg: UpdateConfig) -> ServiceSpec {
    let mut spec = ServiceSpec {
        replicas,
        update_config: cfg.clone(),
        rollback_config: cfg,
        ..Default::default()
    };
    spec.container.image = "img:1".into();
    spec.container.healthcheck = Some(HealthCheck {
        probe: HealthProbe::Exec {
            command: vec!["true".into()],
        },
        interval_ms: 1000,
        timeout_ms: 1000,
        retries: 1,
        start_period_ms: 0,
    });
    spec
}

/// Live tasks that run and pass their check on a node that is up, by slot key.
fn healthy_slots(s: &ClusterState, svc: &str) -> BTreeSet<String> {
    s.tasks
        .values()
        .filter(|t| t.service == svc && t.desired_state == TaskState::Running)
        .filter(|t| t.state == TaskState::Running && t.message == "healthy")
        .filter(|t| {
            t.node
                .as_ref()
                .and_then(|n| s.nodes.get(n))
                .is_some_and(|n| n.status == NodeStatus::Ready)
        })
        .map(super::rollout::slot_key)
        .collect()
}

fn all_at(s: &ClusterState, svc: &str, image: &str) -> bool {
    let v = s.services[svc].version;
    let live: Vec<_> = s
        .tasks
        .values()
        .filter(|t| t.service == svc && !t.state.is_terminal())
        .collect();
    !live.is_empty()
        && live.iter().all(|t| {
            t.service_version == v && t.spec.image == image && t.state == TaskState::Running
        })
}

fn deployed(nodes: usize, name: &str, spec: ServiceSpec) -> Sim {
    let mut sim = Sim::new(nodes);
    sim.cmd(Command::CreateService {
        name: name.into(),
        spec,
    });
    let image = sim.s.services[name].spec.container.image.clone();
    sim.run_until(20, 500, |s| all_at(s, name, &image));
    sim
}

#[test]
fn batches_wait_for_monitor_and_never_exceed_parallelism() {
    let cfg = UpdateConfig {
        parallelism: 2,
        monitor_ms: 3_000,
        ..Default::default()
    };
    let mut sim = deployed(5, "api", checked(5, cfg));
    sim.update("api", |s| s.container.image = "img:2".into());
    let mut max_in_flight = 0;
    let mut batch_starts = Vec::new();
    for _ in 0..200 {
        sim.now += 500;
        let r = sim.pass();
        let stopped = r
            .shutdown
            .iter()
            .filter(|(_, why)| why.starts_with("replaced"))
            .count();
        if stopped > 0 {
            batch_starts.push((sim.now, stopped));
        }
        max_in_flight = max_in_flight.max(sim.status("api").in_flight.len());
        sim.agents();
        if sim.status("api").state == UpdateState::Completed {
            break;
        }
    }
    assert_eq!(sim.status("api").state, UpdateState::Completed);
    assert!(all_at(&sim.s, "api", "img:2"));
    assert_eq!(max_in_flight, 2);
    // Three batches (2 + 2 + 1), each at least `monitor` after the one before.
    let sizes: Vec<usize> = batch_starts.iter().map(|b| b.1).collect();
    assert_eq!(sizes, vec![2, 2, 1]);
    for w in batch_starts.windows(2) {
        assert!(w[1].0 - w[0].0 >= 3_000, "{batch_starts:?}");
    }
    let events: Vec<&str> = sim.s.events.iter().map(|e| e.action.as_str()).collect();
    assert!(events.contains(&"update_started") && events.contains(&"update_completed"));
}

#[test]
fn a_failing_health_check_pauses_after_the_first_batch_and_rollback_restores() {
    let cfg = UpdateConfig {
        parallelism: 1,
        monitor_ms: 1_000,
        ..Default::default()
    };
    let mut sim = deployed(3, "api", checked(3, cfg));
    let first: BTreeSet<String> = sim.s.tasks.keys().cloned().collect();
    sim.update("api", |s| s.container.image = BAD.into());
    sim.run_until(40, 500, |s| {
        s.services["api"].update.as_ref().unwrap().state == UpdateState::Paused
    });
    // Paused: only the first slot was touched; it stays paused.
    for _ in 0..10 {
        sim.now += 500;
        sim.pass();
        sim.agents();
    }
    let st = sim.status("api");
    assert_eq!(st.state, UpdateState::Paused);
    assert!(
        st.reason.contains("failed") && st.reason.contains("unhealthy"),
        "{}",
        st.reason
    );
    let bad: Vec<_> = sim
        .s
        .tasks
        .values()
        .filter(|t| !t.state.is_terminal() && t.spec.image == BAD)
        .collect();
    assert_eq!(bad.len(), 1);
    assert_eq!(healthy_slots(&sim.s, "api").len(), 2);
    assert!(sim
        .s
        .events
        .iter()
        .any(|e| e.action == "update_paused" && e.message.contains("unhealthy")));

    assert_eq!(
        sim.cmd(Command::RollbackService { name: "api".into() }),
        None
    );
    sim.run_until(40, 500, |s| {
        s.services["api"].update.as_ref().unwrap().state == UpdateState::RolledBack
    });
    assert!(all_at(&sim.s, "api", "img:1"));
    // The two slots that never changed kept their tasks (taken over, not restarted).
    assert_eq!(
        sim.s
            .tasks
            .values()
            .filter(|t| t.spec.image == "img:1" && first.contains(&t.id))
            .filter(|t| !t.state.is_terminal())
            .count(),
        2
    );
}

#[test]
fn failure_action_rollback_rolls_back_on_its_own() {
    let cfg = UpdateConfig {
        monitor_ms: 1_000,
        failure_action: FailureAction::Rollback,
        ..Default::default()
    };
    let mut sim = deployed(3, "api", checked(3, cfg));
    sim.update("api", |s| s.container.image = BAD.into());
    sim.run_until(60, 500, |s| {
        s.services["api"]
            .update
            .as_ref()
            .is_some_and(|u| u.state == UpdateState::RolledBack)
    });
    assert!(all_at(&sim.s, "api", "img:1"));
    assert!(sim.s.events.iter().any(|e| e.action == "rollback_started"));
}

#[test]
fn pause_and_resume_by_an_operator() {
    let cfg = UpdateConfig {
        monitor_ms: 1_000,
        ..Default::default()
    };
    let mut sim = deployed(3, "api", checked(3, cfg));
    sim.update("api", |s| s.container.image = "img:2".into());
    let pause = |paused| Command::PauseUpdate {
        name: "api".into(),
        paused,
    };
    assert_eq!(sim.cmd(pause(true)), None);
    assert!(sim.cmd(pause(true)).unwrap().contains("nothing to pause"));
    for _ in 0..20 {
        sim.now += 500;
        sim.pass();
        sim.agents();
    }
    assert_eq!(sim.status("api").state, UpdateState::Paused);
    assert_eq!(sim.cmd(pause(false)), None);
    sim.run_until(60, 500, |s| all_at(s, "api", "img:2"));
}

#[test]
fn a_global_service_restarts_node_by_node_on_force() {
    let mut spec = checked(
        0,
        UpdateConfig {
            monitor_ms: 1_000,
            ..Default::default()
        },
    );
    spec.mode = ServiceMode::Global;
    let mut sim = deployed(4, "compute", spec);
    let before: BTreeSet<String> = sim.s.tasks.keys().cloned().collect();
    sim.update("compute", |s| s.force_update += 1);
    let mut min_healthy = usize::MAX;
    for _ in 0..100 {
        sim.now += 500;
        sim.pass();
        min_healthy = min_healthy.min(healthy_slots(&sim.s, "compute").len());
        sim.agents();
        if sim.status("compute").state == UpdateState::Completed {
            break;
        }
    }
    assert_eq!(sim.status("compute").state, UpdateState::Completed);
    assert_eq!(min_healthy, 3, "one node at a time");
    let live: Vec<_> = sim
        .s
        .tasks
        .values()
        .filter(|t| !t.state.is_terminal())
        .collect();
    assert_eq!(live.len(), 4);
    assert!(
        live.iter().all(|t| !before.contains(&t.id)),
        "every task restarted"
    );
}

#[test]
fn a_quorum_service_caps_its_batches_and_waits_for_a_majority() {
    let cfg = UpdateConfig {
        parallelism: 3,
        monitor_ms: 1_000,
        // Room to turn the updated member unhealthy before the next batch.
        delay_ms: 5_000,
        max_failure_ratio_ppm: 1_000_000,
        failure_action: FailureAction::Continue,
        ..Default::default()
    };
    let mut spec = checked(3, cfg);
    spec.quorum = true;
    let mut sim = deployed(3, "db", spec);
    sim.update("db", |s| s.container.image = "img:2".into());
    // Parallelism 3, but 3 members keep a majority of 2 only with one down at a time.
    sim.run_until(20, 500, |s| {
        let st = s.services["db"].update.as_ref().unwrap();
        assert!(st.in_flight.len() <= 1, "{st:?}");
        st.done.len() == 1
    });
    // The updated member turns unhealthy: two healthy members left, none may go.
    let sick = sim
        .s
        .tasks
        .values()
        .find(|t| t.spec.image == "img:2" && !t.state.is_terminal())
        .unwrap()
        .clone();
    sim.cmd(Command::ReportTaskStatus {
        node: sick.node.clone().unwrap(),
        updates: vec![TaskStatusUpdate {
            task_id: sick.id.clone(),
            state: TaskState::Running,
            message: "unhealthy: no answer".into(),
            exit_code: None,
            image_digest: None,
        }],
    });
    for _ in 0..20 {
        sim.now += 500;
        sim.pass();
        assert_eq!(healthy_slots(&sim.s, "db").len(), 2);
        sim.agents();
    }
    let st = sim.status("db");
    assert_eq!(st.state, UpdateState::Rolling);
    assert_eq!(
        st.reason,
        "waiting for quorum: 2 of 3 members running and healthy, a majority is 2"
    );
    assert!(sim
        .s
        .events
        .iter()
        .any(|e| e.action == "update_waiting" && e.message.starts_with("waiting for quorum")));
}

fn with_data(mut spec: ServiceSpec) -> ServiceSpec {
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

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    /// Whatever the size, parallelism, failures and nodes already down: the orchestrator never
    /// takes a quorum service below a majority of running, healthy members (nor lowers it when
    /// it is already below), never has more slots down than `parallelism`, and finishes when
    /// nothing fails.
    #[test]
    fn rollouts_keep_quorum_and_parallelism(
        replicas in 1u32..=7,
        parallelism in 0u32..=3,
        quorum in any::<bool>(),
        data in any::<bool>(),
        down in 0usize..=2,
        bad in any::<bool>(),
        extra_nodes in 0usize..=2,
    ) {
        let cfg = UpdateConfig { parallelism, monitor_ms: 1_000, ..Default::default() };
        let mut spec = checked(replicas, cfg);
        spec.quorum = quorum;
        spec.max_replicas_per_node = Some(1);
        if data {
            spec = with_data(spec);
        }
        let nodes = replicas as usize + extra_nodes;
        let mut sim = deployed(nodes, "q", spec);
        let down = down.min(nodes);
        for i in 0..down {
            sim.cmd(Command::MarkNodeDown { name: format!("n{i}") });
        }
        let at_start = healthy_slots(&sim.s, "q");
        let majority = replicas as usize / 2 + 1;
        sim.update("q", |s| s.container.image = if bad { BAD.into() } else { "img:2".into() });
        for _ in 0..150 {
            sim.now += 500;
            let before = healthy_slots(&sim.s, "q").len();
            sim.pass();
            let after = healthy_slots(&sim.s, "q");
            if quorum && replicas >= 3 {
                prop_assert!(after.len() >= before.min(majority), "{} -> {} healthy", before, after.len());
            }
            let taken = at_start.difference(&after).count();
            if quorum && replicas < 3 {
                prop_assert!(taken <= 1, "{taken} members down");
            }
            if parallelism > 0 {
                prop_assert!(taken <= parallelism as usize, "{taken} slots down");
                prop_assert!(sim.status("q").in_flight.len() <= parallelism as usize);
            }
            sim.agents();
        }
        let st = sim.status("q");
        if bad && !at_start.is_empty() {
            // A healthy old member had to go first, and its replacement never passes.
            prop_assert_ne!(st.state, UpdateState::Completed);
        }
        if !bad && down == 0 {
            prop_assert_eq!(st.state, UpdateState::Completed);
            prop_assert!(all_at(&sim.s, "q", "img:2"));
        }
    }
}

#[test]
fn scaling_keeps_the_running_tasks() {
    let mut sim = deployed(4, "api", checked(2, UpdateConfig::default()));
    let first: BTreeSet<String> = sim.s.tasks.keys().cloned().collect();
    sim.update("api", |s| s.replicas = 4);
    sim.run_until(20, 500, |s| all_at(s, "api", "img:1") && s.tasks.len() == 4);
    sim.update("api", |s| s.replicas = 1);
    sim.run_until(20, 500, |s| {
        s.tasks.values().filter(|t| !t.state.is_terminal()).count() == 1
    });
    let left: Vec<_> = sim
        .s
        .tasks
        .values()
        .filter(|t| !t.state.is_terminal())
        .collect();
    assert!(
        first.contains(&left[0].id),
        "a first-deployed task still runs"
    );
    assert!(sim
        .s
        .tasks
        .values()
        .all(|t| t.message != "replaced by version 2"));
}

#[test]
fn plan_preview_says_how_an_update_rolls() {
    let mut sim = Sim::new(3);
    let stack = |image: &str| {
        let mut spec = checked(2, UpdateConfig::default());
        spec.container.image = image.into();
        spec.quorum = true;
        Command::ApplyStack {
            stack: "cloud".into(),
            services: vec![("db".into(), spec)],
            secrets: vec![],
            configs: vec![],
        }
    };
    sim.cmd(stack("img:1"));
    sim.run_until(20, 500, |s| all_at(s, "db", "img:1"));
    let p = super::preview::preview(&sim.s, "cloud", stack("img:2"), sim.now).unwrap();
    assert_eq!(p.services.len(), 1);
    assert_eq!(p.services[0].action, "update");
    assert_eq!(
        p.services[0].rollout.as_deref(),
        Some(
            "rolls 2 task(s): 1 at a time, stop-first, monitor 5000 ms, keeping a majority healthy"
        )
    );
    let same = super::preview::preview(&sim.s, "cloud", stack("img:1"), sim.now).unwrap();
    assert_eq!(same.services[0].action, "unchanged");
    assert_eq!(same.services[0].rollout, None);
}

/// Completed tasks of `svc`, any version.
fn completed(s: &ClusterState, svc: &str) -> usize {
    s.tasks
        .values()
        .filter(|t| t.service == svc && t.state == TaskState::Complete)
        .count()
}

#[test]
fn a_run_once_job_never_runs_again_and_an_on_change_job_does() {
    let mut sim = Sim::new(1);
    for (name, once) in [("bootstrap", true), ("db-sync", false)] {
        let mut spec = ServiceSpec {
            mode: ServiceMode::ReplicatedJob,
            replicas: 1,
            run_once: once,
            ..Default::default()
        };
        spec.container.image = "img:1".into();
        sim.cmd(Command::CreateService {
            name: name.into(),
            spec,
        });
    }
    let finish = |sim: &mut Sim| {
        for _ in 0..5 {
            sim.now += 500;
            sim.pass();
            let running: Vec<(String, String)> = sim
                .s
                .tasks
                .values()
                .filter(|t| t.state == TaskState::Assigned)
                .map(|t| (t.id.clone(), t.node.clone().unwrap()))
                .collect();
            for (id, node) in running {
                sim.cmd(Command::ReportTaskStatus {
                    node,
                    updates: vec![TaskStatusUpdate {
                        task_id: id,
                        state: TaskState::Complete,
                        message: "exited 0".into(),
                        exit_code: Some(0),
                        image_digest: None,
                    }],
                });
            }
        }
    };
    finish(&mut sim);
    assert_eq!(completed(&sim.s, "bootstrap"), 1);
    assert_eq!(completed(&sim.s, "db-sync"), 1);
    // Both get a new image: the bootstrap keeps its one run, the db sync runs again.
    sim.update("bootstrap", |s| s.container.image = "img:2".into());
    sim.update("db-sync", |s| s.container.image = "img:2".into());
    finish(&mut sim);
    assert_eq!(completed(&sim.s, "bootstrap"), 1);
    assert_eq!(completed(&sim.s, "db-sync"), 2);
}

#[test]
fn a_job_running_again_gates_the_rollout_of_a_service_that_depends_on_it() {
    let mut sim = Sim::new(2);
    let mut job = ServiceSpec {
        mode: ServiceMode::ReplicatedJob,
        replicas: 1,
        ..Default::default()
    };
    job.container.image = "img:1".into();
    sim.cmd(Command::CreateService {
        name: "db-sync".into(),
        spec: job,
    });
    let mut api = checked(
        2,
        UpdateConfig {
            monitor_ms: 1_000,
            ..Default::default()
        },
    );
    api.depends_on = vec![(
        "db-sync".into(),
        shoal_model::DependsCondition::ServiceCompletedSuccessfully,
    )];
    sim.cmd(Command::CreateService {
        name: "api".into(),
        spec: api,
    });
    let complete_jobs = |sim: &mut Sim| {
        let done: Vec<(String, String)> = sim
            .s
            .tasks
            .values()
            .filter(|t| t.service == "db-sync")
            .filter(|t| matches!(t.state, TaskState::Assigned | TaskState::Running))
            .map(|t| (t.id.clone(), t.node.clone().unwrap()))
            .collect();
        for (id, node) in done {
            sim.cmd(Command::ReportTaskStatus {
                node,
                updates: vec![TaskStatusUpdate {
                    task_id: id,
                    state: TaskState::Complete,
                    message: "exited 0".into(),
                    exit_code: Some(0),
                    image_digest: None,
                }],
            });
        }
    };
    for _ in 0..10 {
        sim.now += 500;
        sim.pass();
        complete_jobs(&mut sim);
        sim.agents();
    }
    assert!(all_at(&sim.s, "api", "img:1"));
    // The job and the service get a new image together: the job runs again first, and not
    // one api task stops before it completed.
    sim.update("db-sync", |s| s.container.image = "img:2".into());
    sim.update("api", |s| s.container.image = "img:2".into());
    for _ in 0..6 {
        sim.now += 500;
        sim.pass();
        sim.agents();
    }
    assert_eq!(healthy_slots(&sim.s, "api").len(), 2);
    assert!(
        sim.status("api").reason.contains("db-sync"),
        "{:?}",
        sim.status("api")
    );
    complete_jobs(&mut sim);
    sim.run_until(40, 500, |s| all_at(s, "api", "img:2"));
}

#[test]
fn the_first_member_of_a_new_quorum_cluster_starts_alone_with_its_first_start() {
    let mut spec = checked(3, UpdateConfig::default());
    spec.quorum = true;
    spec.container.command = vec!["mysqld".into()];
    spec.first_start = Some(shoal_model::FirstStart {
        command: vec!["mysqld".into(), "--wsrep-new-cluster".into()],
        env: [("BOOTSTRAP".to_string(), "1".to_string())].into(),
    });
    let mut sim = Sim::new(3);
    sim.cmd(Command::CreateService {
        name: "galera".into(),
        spec,
    });
    sim.now += 500;
    sim.pass();
    let first: Vec<_> = sim.s.tasks.values().collect();
    assert_eq!(first.len(), 1, "slot 1 alone first");
    assert_eq!(first[0].slot, 1);
    assert_eq!(first[0].spec.command, vec!["mysqld", "--wsrep-new-cluster"]);
    assert_eq!(
        first[0].spec.env.get("BOOTSTRAP").map(String::as_str),
        Some("1")
    );
    sim.run_until(20, 500, |s| {
        all_at(s, "galera", "img:1") && s.tasks.len() == 3
    });
    assert!(sim.s.services["galera"].formed);
    let others: Vec<_> = sim.s.tasks.values().filter(|t| t.slot != 1).collect();
    assert!(others
        .iter()
        .all(|t| t.spec.command == vec!["mysqld"] && t.spec.env.is_empty()));
    // Formed: a rollout replaces the first member with the plain command.
    sim.update("galera", |s| s.container.image = "img:2".into());
    sim.run_until(80, 500, |s| all_at(s, "galera", "img:2"));
    assert!(sim
        .s
        .tasks
        .values()
        .filter(|t| !t.state.is_terminal())
        .all(|t| t.spec.command == vec!["mysqld"]));
}
