//! The agent's reconciler: desired tasks vs observed containers -> actions. Pure: no I/O, no clock.
//!
//! Invariant: a container is removed only when the agent has received a full assignment set from
//! a coordinator in this session (`authoritative`) and that set omits the container's task. With
//! no word from a coordinator, everything found is kept.
//!
//! Invariant: nothing is started while another copy could run beside it (same slot, or a leaving
//! container's host port or storage), and no container is created while the node holds as many
//! as it has assigned tasks ([`crate::copies::Guard`]); such starts become [`Action::Held`].

use std::collections::{BTreeMap, BTreeSet};

use shoal_model::{Millis, PreStop, ServiceMode, Task, TaskState};
use shoal_proto::convert::StatusUpdate;

use crate::copies::Guard;
use crate::health::HealthStatus;
use crate::runtime::{labels, ContainerInfo, ContainerStatus};

/// Default stop signal and grace period when the spec names none.
pub const DEFAULT_STOP_SIGNAL: &str = "SIGTERM";
pub const DEFAULT_STOP_GRACE_MS: u64 = 10_000;

/// An exit the agent has observed and not yet acted on with a restart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Exit {
    pub code: u32,
    /// When the agent noticed it.
    pub at: Millis,
}

/// What the agent remembers about one task between passes (its restart bookkeeping).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TaskRecord {
    /// The container was started or adopted by this agent process.
    pub attached: bool,
    /// The last exit, until the container is restarted.
    pub exited: Option<Exit>,
    /// When each in-place restart happened.
    pub restarts: Vec<Millis>,
    /// Health as the checker last saw it, and since when.
    pub health: Option<(HealthStatus, Millis)>,
}

/// Everything one reconcile pass looks at.
#[derive(Debug, Clone, Copy)]
pub struct Input<'a> {
    /// The tasks of the last assignment set (from a coordinator or the local db).
    pub desired: &'a [Task],
    /// A full assignment set came from a coordinator in this session.
    pub authoritative: bool,
    /// Containers the runtime lists.
    pub observed: &'a [ContainerInfo],
    /// Restart and health bookkeeping per task.
    pub records: &'a BTreeMap<String, TaskRecord>,
    /// The last state the agent reported per task.
    pub reported: &'a BTreeMap<String, TaskState>,
    /// Tasks with an action in flight: left alone this pass.
    pub busy: &'a BTreeSet<String>,
    pub now: Millis,
}

/// One thing the supervisor should do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Create the task's container and start it (reports preparing, starting, running).
    CreateStart {
        task: Task,
    },
    /// Start the task's existing container, which was created but never started.
    Start {
        task: Task,
    },
    /// Restart the task's container in place; counts as a restart attempt.
    Restart {
        task: Task,
        /// Why: shown in the task's message.
        reason: String,
        /// The container is still running (unhealthy) and must be stopped first.
        stop_first: bool,
    },
    /// Take over a running container found in the runtime without touching it.
    Adopt {
        task: Task,
        pid: Option<u32>,
    },
    /// Stop the task's container because its desired state is past running (after its
    /// pre-stop hook, if it has one).
    Stop {
        task_id: String,
        signal: String,
        grace_ms: u64,
        pre_stop: Option<PreStop>,
    },
    /// Stop (if running) and remove a container no assignment claims.
    Remove {
        container_id: String,
        running: bool,
    },
    Report(StatusUpdate),
    /// Run another pass at this time (a restart delay ends).
    WakeAt(Millis),
    /// A start held back this pass: another copy could run beside it (see [`Guard`]).
    Held {
        task_id: String,
        reason: String,
    },
}

fn report(task_id: &str, state: TaskState, message: String, code: Option<u32>) -> Action {
    Action::Report(StatusUpdate {
        task_id: task_id.to_owned(),
        state,
        message,
        exit_code: code.map(exit_code_i32),
        image_digest: None,
    })
}

/// The task that replaces `stopping` on this node, if one waits to start: same service and
/// slot (global services use slot 0 and one node), a later version, desired running, not yet
/// started. Its image is readied before `stopping` is stopped.
pub fn replacement<'a>(desired: &'a [Task], stopping: &str) -> Option<&'a Task> {
    let old = desired.iter().find(|t| t.id == stopping)?;
    desired.iter().find(|t| {
        t.id != old.id
            && t.service == old.service
            && t.slot == old.slot
            && t.service_version > old.service_version
            && t.desired_state == TaskState::Running
            && t.state < TaskState::Starting
    })
}

/// Exit codes are small; anything that does not fit is shown as -1.
pub fn exit_code_i32(code: u32) -> i32 {
    i32::try_from(code).unwrap_or(-1)
}

/// The task a container belongs to: its task-id label.
pub fn task_of(c: &ContainerInfo) -> Option<&str> {
    c.labels.get(labels::TASK_ID).map(String::as_str)
}

fn is_job(mode: ServiceMode) -> bool {
    matches!(mode, ServiceMode::ReplicatedJob | ServiceMode::GlobalJob)
}

/// Restarts counted against `max_attempts`: those inside the window (all when the window is 0).
fn restarts_in_window(rec: &TaskRecord, window_ms: u64, now: Millis) -> u32 {
    let n = rec
        .restarts
        .iter()
        .filter(|&&at| window_ms == 0 || at.saturating_add(window_ms) > now)
        .count();
    u32::try_from(n).unwrap_or(u32::MAX)
}

/// What to do after the container of `task` stopped (`code`) or turned unhealthy (`code` None).
fn after_failure(
    task: &Task,
    rec: &TaskRecord,
    code: Option<u32>,
    since: Millis,
    now: Millis,
    out: &mut Vec<Action>,
) {
    let id = task.id.as_str();
    let success = code == Some(0);
    let what = match code {
        Some(c) => format!("exited with code {c}"),
        None => "unhealthy".to_owned(),
    };
    if success && is_job(task.mode) {
        out.push(report(id, TaskState::Complete, what, code));
        return;
    }
    let policy = &task.restart_policy;
    let restart = policy.condition.restarts(success);
    let final_state = if success {
        TaskState::Complete
    } else {
        TaskState::Failed
    };
    if !restart {
        out.push(report(id, final_state, what, code));
        return;
    }
    let attempts = restarts_in_window(rec, policy.window_ms, now);
    if let Some(max) = policy.max_attempts {
        if attempts >= max {
            out.push(report(
                id,
                final_state,
                format!("{what}; restart policy exhausted after {attempts} restarts"),
                code,
            ));
            return;
        }
    }
    let due = since.saturating_add(policy.delay_ms);
    if now < due {
        // Never `running` while it waits: the next attempt's time is fixed by the exit, so the
        // message does not change from pass to pass.
        out.push(report(
            id,
            TaskState::Restarting,
            format!(
                "{what}; restart {} in {} ms (at {})",
                attempts + 1,
                policy.delay_ms,
                shoal_model::time::rfc3339_utc(due)
            ),
            code,
        ));
        out.push(Action::WakeAt(due));
    } else {
        out.push(Action::Restart {
            task: task.clone(),
            reason: what,
            stop_first: code.is_none(),
        });
    }
}

/// One pass: what the supervisor should do now. Deterministic: tasks and containers by id.
pub fn reconcile(input: &Input<'_>) -> Vec<Action> {
    let mut out = Vec::new();
    let mut by_task: BTreeMap<&str, &ContainerInfo> = BTreeMap::new();
    for c in input.observed {
        if let Some(t) = task_of(c) {
            by_task.insert(t, c);
        }
    }
    let mut desired: Vec<&Task> = input.desired.iter().collect();
    desired.sort_by(|a, b| a.id.cmp(&b.id));
    let default_rec = TaskRecord::default();

    for task in &desired {
        let id = task.id.as_str();
        if input.busy.contains(id) {
            continue;
        }
        let rec = input.records.get(id).unwrap_or(&default_rec);
        let state = input
            .reported
            .get(id)
            .copied()
            .unwrap_or_default()
            .max(task.state);
        let container = by_task.get(id).copied();

        if task.desired_state > TaskState::Running {
            match container {
                Some(c) if c.status == ContainerStatus::Running => out.push(Action::Stop {
                    task_id: id.to_owned(),
                    signal: task
                        .spec
                        .stop_signal
                        .clone()
                        .unwrap_or_else(|| DEFAULT_STOP_SIGNAL.to_owned()),
                    grace_ms: task.spec.stop_grace_ms.unwrap_or(DEFAULT_STOP_GRACE_MS),
                    pre_stop: task.spec.pre_stop.clone(),
                }),
                c if !state.is_terminal() => out.push(report(
                    id,
                    TaskState::Shutdown,
                    "stopped as desired".to_owned(),
                    c.and_then(|c| c.exit_code),
                )),
                _ => {}
            }
            continue;
        }
        if state.is_terminal() {
            continue;
        }
        match container {
            None => out.push(Action::CreateStart {
                task: (*task).clone(),
            }),
            Some(c) => match c.status {
                ContainerStatus::Created => out.push(Action::Start {
                    task: (*task).clone(),
                }),
                ContainerStatus::Running if !rec.attached => out.push(Action::Adopt {
                    task: (*task).clone(),
                    pid: c.pid,
                }),
                ContainerStatus::Running => {
                    if let Some((HealthStatus::Unhealthy, since)) = rec.health {
                        after_failure(task, rec, None, since, input.now, &mut out);
                    }
                }
                ContainerStatus::Stopped => {
                    let exit = rec.exited.unwrap_or(Exit {
                        code: c.exit_code.unwrap_or(255),
                        at: input.now,
                    });
                    after_failure(task, rec, Some(exit.code), exit.at, input.now, &mut out);
                }
            },
        }
    }

    if input.authoritative {
        let wanted: BTreeSet<&str> = input.desired.iter().map(|t| t.id.as_str()).collect();
        let mut observed: Vec<&ContainerInfo> = input.observed.iter().collect();
        observed.sort_by(|a, b| a.id.cmp(&b.id));
        for c in observed {
            // A container without our task label cannot be attributed: never touch it.
            let Some(task_id) = task_of(c) else { continue };
            if wanted.contains(task_id) || input.busy.contains(task_id) {
                continue;
            }
            out.push(Action::Remove {
                container_id: c.id.clone(),
                running: c.status == ContainerStatus::Running,
            });
        }
    }
    guard_starts(input, out)
}

/// Holds back the starts that would put a second copy beside another (in order: an earlier
/// start in the same pass claims first).
fn guard_starts(input: &Input<'_>, actions: Vec<Action>) -> Vec<Action> {
    let mut guard = Guard::new(input.desired, input.observed, input.busy);
    let mut out = Vec::with_capacity(actions.len());
    for a in actions {
        let (task, creates) = match &a {
            Action::CreateStart { task } => (task, true),
            Action::Start { task } | Action::Restart { task, .. } => (task, false),
            _ => {
                out.push(a);
                continue;
            }
        };
        match guard.blocker(task, creates) {
            None => {
                guard.started(task, creates);
                out.push(a);
            }
            Some(reason) => {
                let state = input
                    .reported
                    .get(&task.id)
                    .copied()
                    .unwrap_or_default()
                    .max(task.state);
                if state <= TaskState::Preparing {
                    out.push(report(&task.id, TaskState::Preparing, reason.clone(), None));
                }
                out.push(Action::Held {
                    task_id: task.id.clone(),
                    reason,
                });
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use shoal_model::{ContainerSpec, RestartPolicy};

    fn task(id: &str) -> Task {
        Task {
            id: id.to_owned(),
            service: format!("svc-{id}"),
            service_version: 1,
            slot: 1,
            node: Some("n1".into()),
            desired_state: TaskState::Running,
            state: TaskState::Assigned,
            message: String::new(),
            exit_code: None,
            spec: ContainerSpec {
                image: "busybox".into(),
                ..Default::default()
            },
            restart_policy: RestartPolicy {
                condition: shoal_model::RestartCondition::Any,
                delay_ms: 100,
                max_attempts: Some(3),
                window_ms: 0,
            },
            mode: ServiceMode::Replicated,
            created_at: 0,
            updated_at: 0,
            image_digest: None,
        }
    }

    fn container(task_id: &str, status: ContainerStatus, exit: Option<u32>) -> ContainerInfo {
        ContainerInfo {
            id: task_id.to_owned(),
            labels: [(labels::TASK_ID.to_owned(), task_id.to_owned())].into(),
            pid: (status == ContainerStatus::Running).then_some(4242),
            status,
            exit_code: exit,
        }
    }

    /// The inputs of one test, with defaults; `run` reconciles them.
    #[derive(Default)]
    struct Case {
        desired: Vec<Task>,
        authoritative: bool,
        observed: Vec<ContainerInfo>,
        records: BTreeMap<String, TaskRecord>,
        reported: BTreeMap<String, TaskState>,
        busy: BTreeSet<String>,
        now: Millis,
    }

    impl Case {
        fn run(&self) -> Vec<Action> {
            reconcile(&Input {
                desired: &self.desired,
                authoritative: self.authoritative,
                observed: &self.observed,
                records: &self.records,
                reported: &self.reported,
                busy: &self.busy,
                now: self.now,
            })
        }
        fn attached(mut self, id: &str) -> Self {
            self.records.entry(id.into()).or_default().attached = true;
            self
        }
    }

    fn states(actions: &[Action]) -> Vec<(String, TaskState, String)> {
        actions
            .iter()
            .filter_map(|a| match a {
                Action::Report(u) => Some((u.task_id.clone(), u.state, u.message.clone())),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn new_task_is_created_and_started() {
        let c = Case {
            desired: vec![task("a")],
            ..Default::default()
        };
        assert_eq!(c.run(), vec![Action::CreateStart { task: task("a") }]);
    }

    #[test]
    fn running_attached_container_needs_nothing() {
        let c = Case {
            desired: vec![task("a")],
            observed: vec![container("a", ContainerStatus::Running, None)],
            reported: [("a".into(), TaskState::Running)].into(),
            ..Default::default()
        }
        .attached("a");
        assert_eq!(c.run(), vec![]);
    }

    #[test]
    fn running_container_found_after_restart_is_adopted_not_restarted() {
        let c = Case {
            desired: vec![task("a")],
            observed: vec![container("a", ContainerStatus::Running, None)],
            reported: [("a".into(), TaskState::Running)].into(),
            ..Default::default()
        };
        assert_eq!(
            c.run(),
            vec![Action::Adopt {
                task: task("a"),
                pid: Some(4242)
            }]
        );
    }

    #[test]
    fn created_but_never_started_container_is_started() {
        let c = Case {
            desired: vec![task("a")],
            observed: vec![container("a", ContainerStatus::Created, None)],
            ..Default::default()
        };
        assert_eq!(c.run(), vec![Action::Start { task: task("a") }]);
    }

    #[test]
    fn a_replacement_starts_only_once_the_old_copy_of_its_slot_is_gone() {
        let mut old = container("old", ContainerStatus::Running, None);
        old.labels
            .insert(labels::SERVICE.into(), task("new").service);
        old.labels.insert(labels::SLOT.into(), "1".into());
        let c = Case {
            desired: vec![task("new")],
            observed: vec![old],
            authoritative: true,
            ..Default::default()
        };
        let acts = c.run();
        assert!(acts.contains(&Action::Remove {
            container_id: "old".into(),
            running: true
        }));
        assert!(
            acts.iter().any(|a| matches!(a, Action::Held { task_id, reason } if task_id == "new" && reason.contains("task old"))),
            "{acts:?}"
        );
        assert!(!acts.iter().any(|a| matches!(a, Action::CreateStart { .. })));
        assert_eq!(
            states(&acts),
            vec![(
                "new".into(),
                TaskState::Preparing,
                "waiting for task old to stop (the other copy of svc-new slot 1)".into()
            )]
        );
        // Gone: the replacement starts.
        let c = Case {
            desired: vec![task("new")],
            authoritative: true,
            ..Default::default()
        };
        assert_eq!(c.run(), vec![Action::CreateStart { task: task("new") }]);
    }

    #[test]
    fn busy_tasks_are_left_alone() {
        let c = Case {
            desired: vec![task("a")],
            busy: ["a".to_owned()].into(),
            authoritative: true,
            ..Default::default()
        };
        assert_eq!(c.run(), vec![]);
    }

    #[test]
    fn unassigned_containers_are_kept_without_a_coordinator() {
        let c = Case {
            observed: vec![
                container("old", ContainerStatus::Running, None),
                container("old2", ContainerStatus::Stopped, Some(0)),
            ],
            authoritative: false,
            ..Default::default()
        };
        assert_eq!(c.run(), vec![]);
    }

    #[test]
    fn unassigned_containers_are_removed_once_a_coordinator_spoke() {
        let mut unlabelled = container("foreign", ContainerStatus::Running, None);
        unlabelled.labels.clear();
        let c = Case {
            desired: vec![task("a")],
            observed: vec![
                container("a", ContainerStatus::Running, None),
                container("old", ContainerStatus::Running, None),
                container("old2", ContainerStatus::Stopped, Some(0)),
                unlabelled,
            ],
            reported: [("a".into(), TaskState::Running)].into(),
            authoritative: true,
            ..Default::default()
        }
        .attached("a");
        assert_eq!(
            c.run(),
            vec![
                Action::Remove {
                    container_id: "old".into(),
                    running: true
                },
                Action::Remove {
                    container_id: "old2".into(),
                    running: false
                },
            ]
        );
    }

    #[test]
    fn desired_shutdown_stops_then_reports() {
        let mut t = task("a");
        t.desired_state = TaskState::Shutdown;
        t.spec.stop_signal = Some("SIGQUIT".into());
        t.spec.stop_grace_ms = Some(500);
        let c = Case {
            desired: vec![t.clone()],
            observed: vec![container("a", ContainerStatus::Running, None)],
            reported: [("a".into(), TaskState::Running)].into(),
            ..Default::default()
        }
        .attached("a");
        assert_eq!(
            c.run(),
            vec![Action::Stop {
                task_id: "a".into(),
                signal: "SIGQUIT".into(),
                grace_ms: 500,
                pre_stop: None,
            }]
        );
        let c = Case {
            desired: vec![t.clone()],
            observed: vec![container("a", ContainerStatus::Stopped, Some(131))],
            reported: [("a".into(), TaskState::Running)].into(),
            ..Default::default()
        };
        assert_eq!(
            states(&c.run()),
            vec![("a".into(), TaskState::Shutdown, "stopped as desired".into())]
        );
        // Once reported, nothing more; an unstarted task is just marked shut down.
        let c = Case {
            desired: vec![t.clone()],
            reported: [("a".into(), TaskState::Shutdown)].into(),
            ..Default::default()
        };
        assert_eq!(c.run(), vec![]);
    }

    #[test]
    fn terminal_tasks_are_never_restarted() {
        for state in [TaskState::Complete, TaskState::Failed, TaskState::Rejected] {
            let c = Case {
                desired: vec![task("a")],
                observed: vec![container("a", ContainerStatus::Stopped, Some(1))],
                reported: [("a".into(), state)].into(),
                ..Default::default()
            };
            assert_eq!(c.run(), vec![], "{state}");
            // The coordinator's view counts too (e.g. after a restart with no local record).
            let mut t = task("a");
            t.state = state;
            let c = Case {
                desired: vec![t],
                ..Default::default()
            };
            assert_eq!(c.run(), vec![], "{state}");
        }
    }

    fn exited(code: u32, at: Millis) -> TaskRecord {
        TaskRecord {
            attached: true,
            exited: Some(Exit { code, at }),
            ..Default::default()
        }
    }

    fn after_exit(t: Task, rec: TaskRecord, code: u32, now: Millis) -> Vec<Action> {
        Case {
            desired: vec![t],
            observed: vec![container("a", ContainerStatus::Stopped, Some(code))],
            records: [("a".into(), rec)].into(),
            reported: [("a".into(), TaskState::Running)].into(),
            now,
            ..Default::default()
        }
        .run()
    }

    #[test]
    fn exit_waits_for_the_restart_delay_then_restarts() {
        let acts = after_exit(task("a"), exited(3, 1000), 3, 1050);
        assert_eq!(
            states(&acts),
            vec![(
                "a".into(),
                TaskState::Restarting,
                "exited with code 3; restart 1 in 100 ms (at 1970-01-01T00:00:01.100Z)".into()
            )]
        );
        assert_eq!(acts.last(), Some(&Action::WakeAt(1100)));
        let acts = after_exit(task("a"), exited(3, 1000), 3, 1100);
        assert_eq!(
            acts,
            vec![Action::Restart {
                task: task("a"),
                reason: "exited with code 3".into(),
                stop_first: false
            }]
        );
    }

    #[test]
    fn task_waiting_to_restart_is_restarting_never_running() {
        let mut t = task("a");
        t.restart_policy.delay_ms = 5000;
        t.restart_policy.max_attempts = Some(2);
        // Killed (137): restarting with the exit code and the next attempt's time.
        let exit_at = 1_796_000_000_000;
        let acts = after_exit(t.clone(), exited(137, exit_at), 137, exit_at + 1);
        let wait = Action::Report(StatusUpdate {
            task_id: "a".into(),
            state: TaskState::Restarting,
            message: "exited with code 137; restart 1 in 5000 ms (at 2026-11-30T00:53:25.000Z)"
                .into(),
            exit_code: Some(137),
            image_digest: None,
        });
        assert_eq!(acts, vec![wait.clone(), Action::WakeAt(exit_at + 5000)]);
        // A later pass in the delay, with `restarting` reported, says the same (deduplicated by
        // the reporter) and is not mistaken for a finished task.
        let again = Case {
            desired: vec![t.clone()],
            observed: vec![container("a", ContainerStatus::Stopped, Some(137))],
            records: [("a".into(), exited(137, exit_at))].into(),
            reported: [("a".into(), TaskState::Restarting)].into(),
            now: exit_at + 4000,
            ..Default::default()
        };
        assert_eq!(again.run(), vec![wait, Action::WakeAt(exit_at + 5000)]);
        // Due: restarted in place.
        let due = Case {
            now: exit_at + 5000,
            ..again
        };
        assert!(matches!(due.run().as_slice(), [Action::Restart { .. }]));
        // Attempts exhausted: failed, with the exit code, never restarting or running.
        let mut rec = exited(137, exit_at);
        rec.restarts = vec![1, 2];
        let acts = after_exit(t, rec, 137, exit_at + 1);
        assert_eq!(
            acts,
            vec![Action::Report(StatusUpdate {
                task_id: "a".into(),
                state: TaskState::Failed,
                message: "exited with code 137; restart policy exhausted after 2 restarts".into(),
                exit_code: Some(137),
                image_digest: None,
            })]
        );
    }

    #[test]
    fn exit_seen_only_in_the_listing_counts_from_now() {
        let rec = TaskRecord {
            attached: true,
            ..Default::default()
        };
        let acts = after_exit(task("a"), rec, 2, 5000);
        assert_eq!(acts.last(), Some(&Action::WakeAt(5100)));
    }

    #[test]
    fn restart_conditions() {
        let with = |cond: &str, mode: ServiceMode| {
            let mut t = task("a");
            t.restart_policy.condition = cond.parse().unwrap();
            t.restart_policy.delay_ms = 0;
            t.mode = mode;
            t
        };
        let restarts = |acts: &[Action]| acts.iter().any(|a| matches!(a, Action::Restart { .. }));
        use ServiceMode::*;
        // (condition, mode, exit code) -> restart, or the final state.
        let cases: &[(&str, ServiceMode, u32, Option<TaskState>)] = &[
            ("any", Replicated, 0, None),
            ("any", Replicated, 1, None),
            ("on-failure", Replicated, 0, Some(TaskState::Complete)),
            ("on-failure", Replicated, 1, None),
            ("none", Replicated, 0, Some(TaskState::Complete)),
            ("none", Global, 1, Some(TaskState::Failed)),
            ("any", ReplicatedJob, 0, Some(TaskState::Complete)),
            ("any", GlobalJob, 0, Some(TaskState::Complete)),
            ("any", ReplicatedJob, 1, None),
            ("on-failure", GlobalJob, 2, None),
            ("none", ReplicatedJob, 2, Some(TaskState::Failed)),
        ];
        for &(cond, mode, code, expect) in cases {
            let acts = after_exit(with(cond, mode), exited(code, 0), code, 0);
            match expect {
                None => assert!(restarts(&acts), "{cond} {mode:?} {code}: {acts:?}"),
                Some(state) => {
                    let s = states(&acts);
                    assert_eq!(s.len(), 1, "{cond} {mode:?} {code}: {acts:?}");
                    assert_eq!(s[0].1, state, "{cond} {mode:?} {code}");
                    assert_eq!(s[0].2, format!("exited with code {code}"));
                }
            }
        }
    }

    #[test]
    fn max_attempts_within_the_window() {
        let mut t = task("a");
        t.restart_policy.delay_ms = 0;
        t.restart_policy.window_ms = 1000;
        let mut rec = exited(1, 5000);
        rec.restarts = vec![3000, 4500, 4800];
        // Two restarts in the window (4500, 4800) of max 3: restart again.
        let acts = after_exit(t.clone(), rec.clone(), 1, 5000);
        assert!(matches!(acts[0], Action::Restart { .. }), "{acts:?}");
        // Three in the window: exhausted.
        rec.restarts.push(4900);
        let acts = after_exit(t.clone(), rec.clone(), 1, 5000);
        assert_eq!(
            states(&acts),
            vec![(
                "a".into(),
                TaskState::Failed,
                "exited with code 1; restart policy exhausted after 3 restarts".into()
            )]
        );
        // Window 0 counts every restart.
        t.restart_policy.window_ms = 0;
        rec.restarts = vec![1, 2, 3];
        let acts = after_exit(t.clone(), rec.clone(), 1, 5000);
        assert_eq!(states(&acts)[0].1, TaskState::Failed);
        // No maximum: always restart.
        t.restart_policy.max_attempts = None;
        let acts = after_exit(t, rec, 1, 5000);
        assert!(matches!(acts[0], Action::Restart { .. }), "{acts:?}");
    }

    #[test]
    fn unhealthy_running_container_is_restarted_under_policy() {
        let rec = TaskRecord {
            attached: true,
            health: Some((HealthStatus::Unhealthy, 1000)),
            ..Default::default()
        };
        let mut c = Case {
            desired: vec![task("a")],
            observed: vec![container("a", ContainerStatus::Running, None)],
            records: [("a".into(), rec)].into(),
            reported: [("a".into(), TaskState::Running)].into(),
            now: 1000,
            ..Default::default()
        };
        assert_eq!(c.run().last(), Some(&Action::WakeAt(1100)));
        c.now = 1100;
        assert_eq!(
            c.run(),
            vec![Action::Restart {
                task: task("a"),
                reason: "unhealthy".into(),
                stop_first: true
            }]
        );
        // Healthy or starting: nothing.
        for h in [HealthStatus::Healthy, HealthStatus::Starting] {
            c.records.get_mut("a").unwrap().health = Some((h, 0));
            assert_eq!(c.run(), vec![]);
        }
        // With restarts disabled, unhealthy fails the task.
        c.desired[0].restart_policy.condition = shoal_model::RestartCondition::Never;
        c.records.get_mut("a").unwrap().health = Some((HealthStatus::Unhealthy, 0));
        assert_eq!(
            states(&c.run()),
            vec![("a".into(), TaskState::Failed, "unhealthy".into())]
        );
    }

    #[test]
    fn vanished_container_of_a_running_task_is_recreated() {
        let c = Case {
            desired: vec![task("a")],
            reported: [("a".into(), TaskState::Running)].into(),
            ..Default::default()
        }
        .attached("a");
        assert_eq!(c.run(), vec![Action::CreateStart { task: task("a") }]);
    }

    #[test]
    fn output_is_sorted_by_task_id() {
        let c = Case {
            desired: vec![task("c"), task("a"), task("b")],
            ..Default::default()
        };
        let ids: Vec<String> = c
            .run()
            .into_iter()
            .map(|a| match a {
                Action::CreateStart { task } => task.id,
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(ids, vec!["a", "b", "c"]);
    }

    /// Every combination of task state, desired state, container status, bookkeeping, busy and
    /// authority: the invariants hold in all of them.
    #[test]
    fn invariants_hold_in_every_combination() {
        use TaskState::*;
        let states = [
            Assigned, Preparing, Starting, Running, Complete, Shutdown, Failed, Rejected,
        ];
        let statuses = [
            None,
            Some(ContainerStatus::Created),
            Some(ContainerStatus::Running),
            Some(ContainerStatus::Stopped),
        ];
        let healths = [
            None,
            Some(HealthStatus::Healthy),
            Some(HealthStatus::Unhealthy),
        ];
        let mut checked = 0;
        for &reported in &states {
            for desired_state in [Running, Shutdown] {
                for &status in &statuses {
                    for &health in &healths {
                        for attached in [false, true] {
                            for busy in [false, true] {
                                for authoritative in [false, true] {
                                    for assigned in [false, true] {
                                        let mut t = task("a");
                                        t.desired_state = desired_state;
                                        let mut observed: Vec<ContainerInfo> = status
                                            .map(|s| container("a", s, Some(1)))
                                            .into_iter()
                                            .collect();
                                        observed.push(container(
                                            "x",
                                            ContainerStatus::Running,
                                            None,
                                        ));
                                        let c = Case {
                                            desired: if assigned { vec![t] } else { vec![] },
                                            authoritative,
                                            observed,
                                            records: [(
                                                "a".into(),
                                                TaskRecord {
                                                    attached,
                                                    health: health.map(|h| (h, 0)),
                                                    ..Default::default()
                                                },
                                            )]
                                            .into(),
                                            reported: [("a".into(), reported)].into(),
                                            busy: if busy {
                                                ["a".to_owned()].into()
                                            } else {
                                                BTreeSet::new()
                                            },
                                            now: 10_000,
                                        };
                                        let acts = c.run();
                                        check_invariants(&c, &acts);
                                        checked += 1;
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
        assert_eq!(checked, 8 * 2 * 4 * 3 * 2 * 2 * 2 * 2);
    }

    fn check_invariants(c: &Case, acts: &[Action]) {
        let assigned: BTreeSet<&str> = c.desired.iter().map(|t| t.id.as_str()).collect();
        for a in acts {
            let ctx = || {
                format!(
                    "{a:?} from {:?} {:?} {:?}",
                    c.reported, c.records, c.observed
                )
            };
            // Removal only with the coordinator's word, and never of an assigned task.
            if let Action::Remove { container_id, .. } = a {
                assert!(c.authoritative, "{}", ctx());
                assert!(!assigned.contains(container_id.as_str()), "{}", ctx());
            }
            let touched = match a {
                Action::CreateStart { task }
                | Action::Start { task }
                | Action::Adopt { task, .. }
                | Action::Restart { task, .. } => Some(task.id.as_str()),
                Action::Stop { task_id, .. } => Some(task_id.as_str()),
                Action::Remove { container_id, .. } => Some(container_id.as_str()),
                Action::Report(u) => Some(u.task_id.as_str()),
                Action::Held { task_id, .. } => Some(task_id.as_str()),
                Action::WakeAt(_) => None,
            };
            // Busy tasks are left alone.
            if let Some(id) = touched {
                assert!(!c.busy.contains(id), "{}", ctx());
            }
            // Reports never move a task backwards; terminal tasks are never (re)started.
            let reported = c.reported.get("a").copied().unwrap_or_default();
            match a {
                Action::Report(u) => {
                    assert!(u.state >= reported || !reported.is_terminal(), "{}", ctx())
                }
                Action::CreateStart { .. } | Action::Start { .. } | Action::Restart { .. } => {
                    assert!(!reported.is_terminal(), "{}", ctx());
                    assert_eq!(c.desired[0].desired_state, TaskState::Running, "{}", ctx());
                }
                _ => {}
            }
        }
        // Never more containers than assigned tasks because of a creation.
        let creates = acts
            .iter()
            .filter(|a| matches!(a, Action::CreateStart { .. }))
            .count();
        let in_flight = c
            .busy
            .iter()
            .filter(|b| !c.observed.iter().any(|o| &o.id == *b))
            .count();
        if creates > 0 {
            assert!(
                c.observed.len() + in_flight + creates <= c.desired.len(),
                "{acts:?} from {:?}",
                c.observed
            );
        }
        // The unassigned container "x" goes exactly when a coordinator has spoken.
        let removes_x = acts
            .iter()
            .any(|a| matches!(a, Action::Remove { container_id, .. } if container_id == "x"));
        assert_eq!(removes_x, c.authoritative);
    }
}
