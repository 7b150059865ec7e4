//! What applying a stack would do, computed on a copy of the state: `shoalctl plan`.

pub use shoal_model::api::{Preview, ServiceChange, TaskPreview, TaskRestart};
use shoal_model::TaskState;

use std::collections::BTreeMap;

use super::plan;
use crate::state::{ClusterState, Command, Refusal, Request, StackValue, TaskStatusUpdate};

/// Applies `cmd` (an `ApplyStack`) to a copy of `state` and runs the orchestrator to a fixed
/// point from `now`, pretending every started task runs healthy, every job succeeds, every
/// task told to stop on a node that answers stops, and a day passes between two passes (so
/// that every rollout's `monitor` and `delay` run out).
pub(crate) fn preview(
    state: &ClusterState,
    stack: &str,
    cmd: Command,
    now: shoal_model::Millis,
) -> Result<Preview, Refusal> {
    let mut s = state.clone();
    let before = state.clone();
    let r = s.apply(&Request {
        request_id: None,
        now: 0,
        command: cmd,
    });
    if let Some(e) = r.refused_with() {
        return Err(e);
    }
    let mut seq = 0u64;
    for pass in 0..200u64 {
        let now = now.saturating_add(pass * 86_400_000);
        let r = plan(&s, now, &mut |svc: &str, slot: u32| {
            seq += 1;
            format!("{svc}.{slot}.preview{seq}")
        });
        if r.is_empty() {
            break;
        }
        s.apply(&Request {
            request_id: None,
            now: 0,
            command: Command::Reconcile(Box::new(r)),
        });
        // Pretend: assigned tasks start (healthy), jobs succeed, stopped tasks stop.
        let ready = |n: &str| {
            s.nodes
                .get(n)
                .is_some_and(|n| n.status == shoal_model::NodeStatus::Ready)
        };
        let stopped: Vec<(String, String, TaskState)> = s
            .tasks
            .values()
            .filter(|t| t.desired_state == TaskState::Shutdown && !t.state.is_terminal())
            .filter_map(|t| {
                t.node
                    .clone()
                    .map(|n| (t.id.clone(), n, TaskState::Shutdown))
            })
            .filter(|(_, n, _)| ready(n))
            .collect();
        let started: Vec<(String, String, TaskState)> = s
            .tasks
            .values()
            .filter(|t| t.state == TaskState::Assigned && t.desired_state == TaskState::Running)
            .filter_map(|t| {
                let done = if t.mode.is_job() {
                    TaskState::Complete
                } else {
                    TaskState::Running
                };
                t.node.clone().map(|n| (t.id.clone(), n, done))
            })
            .chain(stopped)
            .collect();
        for (id, node, state) in started {
            let exit_code = (state == TaskState::Complete).then_some(0);
            let updates = vec![TaskStatusUpdate {
                task_id: id,
                state,
                message: if state == TaskState::Shutdown {
                    "stopped".into()
                } else {
                    "healthy".into()
                },
                exit_code,
                image_digest: None,
            }];
            s.apply(&Request {
                request_id: None,
                now: 0,
                command: Command::ReportTaskStatus { node, updates },
            });
        }
    }
    let mut services = Vec::new();
    for (name, svc) in &s.services {
        if svc.stack.as_deref() != Some(stack) {
            continue;
        }
        let action = match before.services.get(name) {
            None => "create",
            Some(old) if old.version != svc.version => "update",
            Some(_) => "unchanged",
        };
        let rollout = svc
            .update
            .as_ref()
            .filter(|u| action == "update" && u.started_at == 0 && !u.done.is_empty())
            .map(|u| rollout_text(svc, u));
        services.push(ServiceChange {
            name: name.clone(),
            action: action.into(),
            rollout,
        });
    }
    for (name, svc) in &before.services {
        if svc.stack.as_deref() == Some(stack) && !s.services.contains_key(name) {
            services.push(ServiceChange {
                name: name.clone(),
                action: "remove".into(),
                rollout: None,
            });
        }
    }
    let secrets = value_changes(&before.secrets, &s.secrets, stack);
    let configs = value_changes(&before.configs, &s.configs, stack);
    let restarts = config_restarts(&before, &s);
    let tasks = s
        .tasks
        .values()
        .filter(|t| !before.tasks.contains_key(&t.id))
        .filter(|t| t.desired_state == TaskState::Running || t.state == TaskState::Complete)
        .map(|t| TaskPreview {
            service: t.service.clone(),
            slot: t.slot,
            node: t.node.clone(),
            state: if t.state == TaskState::Pending {
                "pending"
            } else {
                "placed"
            }
            .into(),
            message: if t.state == TaskState::Pending {
                t.message.clone()
            } else {
                String::new()
            },
        })
        .collect();
    Ok(Preview {
        stack: stack.to_string(),
        services,
        secrets,
        configs,
        tasks,
        restarts,
    })
}

/// What happens to each of `stack`'s secrets or configs, by name.
fn value_changes(
    before: &BTreeMap<String, StackValue>,
    after: &BTreeMap<String, StackValue>,
    stack: &str,
) -> Vec<ServiceChange> {
    let mut out = Vec::new();
    for (name, v) in after.iter().filter(|(_, x)| x.stack == stack) {
        let action = match before.get(name) {
            None => "create",
            Some(old) if old.version != v.version => "update",
            Some(_) => "unchanged",
        };
        out.push(ServiceChange {
            name: name.clone(),
            action: action.into(),
            rollout: None,
        });
    }
    for (name, _) in before.iter().filter(|(_, x)| x.stack == stack) {
        if !after.contains_key(name) {
            out.push(ServiceChange {
                name: name.clone(),
                action: "remove".into(),
                rollout: None,
            });
        }
    }
    out
}

/// The tasks running before that are no longer wanted after, with the configs of their spec
/// whose version changed (tasks replaced for other reasons are not listed).
fn config_restarts(before: &ClusterState, after: &ClusterState) -> Vec<TaskRestart> {
    let mut out = Vec::new();
    for t in before.tasks.values() {
        if t.desired_state != TaskState::Running {
            continue;
        }
        let still_wanted = after
            .tasks
            .get(&t.id)
            .is_some_and(|a| a.desired_state == TaskState::Running);
        let Some(svc) = after.services.get(&t.service) else {
            continue;
        };
        let changed: Vec<String> = t
            .spec
            .configs
            .iter()
            .filter(|old| {
                svc.spec
                    .container
                    .configs
                    .iter()
                    .find(|new| new.source == old.source)
                    .is_some_and(|new| new.version != old.version)
            })
            .map(|r| r.source.clone())
            .collect();
        if !still_wanted && !changed.is_empty() {
            out.push(TaskRestart {
                task: t.id.clone(),
                service: t.service.clone(),
                slot: t.slot,
                node: t.node.clone(),
                configs: changed,
            });
        }
    }
    out
}

/// `rolls 3 task(s): 1 at a time, stop-first, monitor 5000 ms` (quorum services say so).
fn rollout_text(svc: &shoal_model::Service, u: &shoal_model::UpdateStatus) -> String {
    let cfg = &svc.spec.update_config;
    let per = if cfg.parallelism == 0 {
        "all at once".to_string()
    } else {
        format!("{} at a time", cfg.parallelism)
    };
    let order = if super::rollout::stop_first(svc, u) {
        "stop-first"
    } else {
        "start-first"
    };
    let quorum = if svc.spec.quorum {
        ", keeping a majority healthy"
    } else {
        ""
    };
    format!(
        "rolls {} task(s): {per}, {order}, monitor {} ms{quorum}",
        u.done.len(),
        cfg.monitor_ms
    )
}
