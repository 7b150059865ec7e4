//! One orchestrator pass of a service's rollout: which old tasks stop now, which slots may get
//! their new task, and the rollout's new [`UpdateStatus`]. Pure: the clock is `now`, passed in.
//!
//! Rules:
//! - a slot (`"N"`, or a global service's node) is replaced in batches of at most
//!   `parallelism` slots (0: all); the next batch starts once every slot of the previous one
//!   has its new task running (and healthy, with a health check) for `monitor`, then `delay`;
//! - a new task that fails, restarts or turns unhealthy during the rollout counts towards
//!   `max_failure_ratio` (of the service's slots); past it, `failure_action` applies;
//! - `stop-first`: the old task of a slot stops, and the new one is created once the old one is
//!   reported stopped. `start-first` (replicated services only): the new task starts beside the
//!   old one, which stops once the new one runs, or at once if both landed on the same node
//!   (the agent never runs two copies of a slot on one node);
//! - no batch starts while the service's `depends_on` do not hold (a job it depends on that
//!   runs again for its own new version gates the rollout);
//! - a quorum service never stops a running, healthy member when that would leave fewer than a
//!   majority of its slots running and healthy (members already down count as down); members
//!   that are not healthy are replaced first, since that costs nothing. A quorum service of one
//!   or two members tolerates no loss at all; it rolls one member at a time.

use std::collections::{BTreeMap, BTreeSet};

use shoal_model::{
    FailureAction, Node, NodeStatus, Service, ServiceMode, Task, TaskState, UpdateConfig,
    UpdateOrder, UpdateState, UpdateStatus,
};

/// What a pass does for one service's rollout.
#[derive(Debug, Default)]
pub(super) struct Step {
    /// Old tasks to stop now, with the reason.
    pub shutdown: Vec<(String, String)>,
    /// Slots whose old task the rollout released: they may get a new task.
    pub open: BTreeSet<String>,
    /// The new status, when it changed.
    pub status: Option<UpdateStatus>,
    /// Why the rollout must be rolled back (`failure_action: rollback`).
    pub rollback: Option<String>,
}

/// A task's slot key: its slot number, or its node for a global service.
pub(super) fn slot_key(t: &Task) -> String {
    if t.slot == 0 {
        t.node.clone().unwrap_or_default()
    } else {
        t.slot.to_string()
    }
}

/// Whether `svc` has a rollout that holds its old tasks (rolling, rolling back or paused).
pub(super) fn holds_old_tasks(svc: &Service) -> bool {
    !svc.spec.mode.is_job()
        && svc.update.as_ref().is_some_and(|u| {
            u.version == svc.version && (u.state.is_active() || u.state == UpdateState::Paused)
        })
}

/// The pace in force for `status`.
pub(super) fn config<'a>(svc: &'a Service, status: &UpdateStatus) -> &'a UpdateConfig {
    if status.rollback {
        &svc.spec.rollback_config
    } else {
        &svc.spec.update_config
    }
}

/// Whether the rollout's slots stop before they start (always so for global services and for
/// services that keep data).
pub(super) fn stop_first(svc: &Service, status: &UpdateStatus) -> bool {
    config(svc, status).order == UpdateOrder::StopFirst
        || svc.spec.mode != ServiceMode::Replicated
        || svc.spec.has_data()
}

/// One pass of `svc`'s rollout over its tasks (`tasks`: all of them, any version; `gone`: those
/// this pass already ends; `blocked`: why its `depends_on` do not hold, if so: no batch starts
/// then, e.g. while a job it depends on runs again for its own new version).
pub(super) fn step(
    svc: &Service,
    tasks: &[&Task],
    gone: &BTreeSet<String>,
    nodes: &BTreeMap<String, Node>,
    blocked: Option<&str>,
    now: u64,
) -> Step {
    let mut out = Step::default();
    let Some(before) = svc.update.as_ref().filter(|_| holds_old_tasks(svc)) else {
        return out;
    };
    let mut st = before.clone();
    let cfg = config(svc, &st);
    let has_check = svc.spec.container.healthcheck.is_some();
    let node_ready = |t: &Task| {
        t.node
            .as_ref()
            .and_then(|n| nodes.get(n))
            .is_some_and(|n| n.status == NodeStatus::Ready)
    };
    let healthy = |t: &Task| {
        t.state == TaskState::Running && (!has_check || t.message == "healthy") && node_ready(t)
    };
    let live = |t: &Task| {
        t.desired_state == TaskState::Running && !t.state.is_terminal() && !gone.contains(&t.id)
    };
    let in_range =
        |t: &Task| svc.spec.mode != ServiceMode::Replicated || t.slot <= svc.spec.replicas;
    let mut old: BTreeMap<String, Vec<&Task>> = BTreeMap::new();
    let mut new: BTreeMap<String, Vec<&Task>> = BTreeMap::new();
    for t in tasks.iter().copied().filter(|t| live(t) && in_range(t)) {
        let side = if t.service_version == svc.version {
            &mut new
        } else {
            &mut old
        };
        side.entry(slot_key(t)).or_default().push(t);
    }

    // Failures of new tasks since the rollout began.
    let mut last_failure: Option<&Task> = None;
    for t in tasks.iter().copied() {
        if t.service_version != svc.version || (t.created_at < st.started_at && !live(t)) {
            continue;
        }
        let failing =
            matches!(
                t.state,
                TaskState::Failed | TaskState::Rejected | TaskState::Restarting
            ) || (t.state == TaskState::Running && has_check && t.message.starts_with("unhealthy"));
        if failing && st.failed.insert(t.id.clone()) {
            last_failure = Some(t);
        }
    }

    // The batch in flight: release the old copy (start-first), settle the slots that ran long enough.
    let stop_first = stop_first(svc, &st);
    let version = svc.version;
    let mut settled_any = false;
    for key in st.in_flight.clone() {
        let fresh = new
            .get(&key)
            .and_then(|ts| ts.iter().max_by_key(|t| (t.created_at, t.id.clone())));
        let olds = old.get(&key).cloned().unwrap_or_default();
        if !stop_first {
            if let Some(n) = fresh {
                let same_node = olds.iter().any(|o| o.node.is_some() && o.node == n.node);
                if n.state == TaskState::Running || same_node {
                    for o in &olds {
                        out.shutdown
                            .push((o.id.clone(), format!("replaced by version {version}")));
                    }
                }
            }
        }
        let member = match svc.spec.mode {
            ServiceMode::Replicated => key.parse::<u32>().is_ok_and(|s| s <= svc.spec.replicas),
            _ => nodes.contains_key(&key),
        };
        if !member {
            st.in_flight.remove(&key);
            continue;
        }
        if let Some(n) = fresh {
            if healthy(n) && now >= n.updated_at.saturating_add(cfg.monitor_ms) && olds.is_empty() {
                st.in_flight.remove(&key);
                st.done.insert(key);
                settled_any = true;
            }
        }
    }
    if settled_any && st.in_flight.is_empty() {
        st.batch_done_at = Some(now);
    }

    // The slots of the service: one per replica, or the nodes it runs on.
    let members: BTreeSet<String> = match svc.spec.mode {
        ServiceMode::Replicated => (1..=svc.spec.replicas).map(|s| s.to_string()).collect(),
        // Every node that ran a task of the service and is still in the cluster: a member
        // whose task died counts as down.
        _ => tasks
            .iter()
            .filter_map(|t| t.node.clone())
            .filter(|n| nodes.contains_key(n))
            .collect(),
    };
    let total = members.len().max(1) as u64;

    if st.state.is_active()
        && st.failed.len() as u64 * 1_000_000 > u64::from(cfg.max_failure_ratio_ppm) * total
    {
        let why = match last_failure {
            Some(t) => format!(
                "{} of {total} task(s) failed; last: {} {}: {}",
                st.failed.len(),
                t.id,
                t.state.as_str(),
                t.message
            ),
            None => format!("{} of {total} task(s) failed", st.failed.len()),
        };
        match cfg.failure_action {
            FailureAction::Continue => {}
            FailureAction::Rollback if !st.rollback => {
                out.rollback = Some(why);
                return out;
            }
            FailureAction::Pause | FailureAction::Rollback => {
                st.state = UpdateState::Paused;
                st.reason = format!("paused: {why}");
            }
        }
    }

    if st.state.is_active() && st.in_flight.is_empty() {
        let mut remaining: Vec<(&String, bool)> = old
            .iter()
            .filter(|(k, _)| !st.done.contains(*k))
            .map(|(k, ts)| (k, ts.iter().any(|t| healthy(t))))
            .collect();
        if remaining.is_empty() {
            st.state = if st.rollback {
                UpdateState::RolledBack
            } else {
                UpdateState::Completed
            };
            st.reason = String::new();
        } else if st
            .batch_done_at
            .is_some_and(|at| now < at.saturating_add(cfg.delay_ms))
        {
            // Waiting out `delay`: nothing to record.
        } else if let Some(why) = blocked {
            st.reason = why.to_string();
        } else {
            // Slots whose old task is not healthy first: replacing them costs nothing.
            remaining.sort_by_key(|(k, up)| (*up, (*k).clone()));
            let want = if cfg.parallelism == 0 {
                remaining.len()
            } else {
                cfg.parallelism as usize
            };
            let mut budget = usize::MAX;
            let majority = (total / 2 + 1) as usize;
            let up = members
                .iter()
                .filter(|k| {
                    old.get(*k)
                        .into_iter()
                        .chain(new.get(*k))
                        .flatten()
                        .any(|t| healthy(t))
                })
                .count();
            if svc.spec.quorum && total >= 3 {
                budget = up.saturating_sub(majority);
            } else if svc.spec.quorum {
                // One or two members tolerate no loss at all: there is no majority to keep
                // through a restart, so they roll one member at a time.
                budget = 1;
            }
            let mut picked = Vec::new();
            for (k, is_up) in remaining {
                if picked.len() == want {
                    break;
                }
                if is_up {
                    if budget == 0 {
                        continue;
                    }
                    budget -= 1;
                }
                picked.push(k.clone());
            }
            if picked.is_empty() {
                st.reason = format!(
                    "waiting for quorum: {up} of {total} members running and healthy, a majority is {majority}"
                );
            } else {
                st.reason = String::new();
                for k in picked {
                    if stop_first {
                        for o in old.get(&k).into_iter().flatten() {
                            out.shutdown
                                .push((o.id.clone(), format!("replaced by version {version}")));
                        }
                    }
                    st.in_flight.insert(k);
                }
            }
        }
    }
    out.open = st.in_flight.clone();
    if st != *before {
        st.updated_at = now;
        out.status = Some(st);
    }
    out
}
