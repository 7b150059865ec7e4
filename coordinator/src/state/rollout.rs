//! Rollouts in the state machine: a spec change starts one, the orchestrator's passes record its
//! progress, operators pause, resume or roll it back. Pure, like the rest of `apply`.

use shoal_model::api::EventKind;
use shoal_model::{Service, ServiceSpec, TaskState, UpdateState, UpdateStatus};

use super::{ClusterState, Reconcile, Response};

/// Whether a spec change of this service rolls out in batches (jobs run again at once instead).
fn rolls(spec: &ServiceSpec) -> bool {
    !spec.mode.is_job()
}

impl ClusterState {
    /// Replaces `svc`'s spec with `spec` (which differs), bumps its version and starts a rollout
    /// to it; the spec it replaces is kept for `service rollback`.
    pub(super) fn change_spec(&mut self, now: u64, name: &str, spec: &ServiceSpec) -> u64 {
        let Some(svc) = self.services.get_mut(name) else {
            return 0;
        };
        let old = std::mem::replace(&mut svc.spec, spec.clone());
        let scale_only = ServiceSpec {
            replicas: spec.replicas,
            labels: spec.labels.clone(),
            ..old.clone()
        } == *spec;
        svc.previous_spec = Some(old);
        svc.version += 1;
        svc.updated_at = now;
        let v = svc.version;
        if scale_only {
            // Replicas or service labels only: the running tasks are already right. They are
            // taken over by the new version; slots beyond the count stop, new ones start.
            for t in self.tasks.values_mut() {
                if t.service == name && !t.state.is_terminal() && t.service_version + 1 == v {
                    t.service_version = v;
                }
            }
            if let Some(u) = svc.update.as_mut().filter(|u| u.version + 1 == v) {
                u.version = v;
            }
            self.event(
                now,
                EventKind::Service,
                name,
                "update",
                &format!("version {v} (scaled)"),
            );
            return v;
        }
        if svc.spec.mode.is_job() && svc.spec.run_once {
            // A job that runs once keeps what it did (completed) or does (running): its tasks
            // are taken over by the new version, and it does not run again.
            let mut kept = 0;
            for t in self.tasks.values_mut() {
                let done_or_live = t.state == TaskState::Complete || !t.state.is_terminal();
                if t.service == name && t.service_version + 1 == v && done_or_live {
                    t.service_version = v;
                    kept += 1;
                }
            }
            svc.update = None;
            let msg = format!("version {v} (runs once: {kept} task(s) kept, not run again)");
            self.event(now, EventKind::Service, name, "update", &msg);
            return v;
        }
        let rolling = rolls(&svc.spec);
        svc.update = rolling.then(|| UpdateStatus::new(v, false, now));
        self.event(
            now,
            EventKind::Service,
            name,
            "update",
            &format!("version {v}"),
        );
        if rolling {
            self.event(
                now,
                EventKind::Service,
                name,
                "update_started",
                &format!("rolling to version {v}"),
            );
        }
        v
    }

    /// `service rollback`, or a rollout whose failures call for one: the previous spec
    /// becomes a new version, rolled out with `rollback_config`. Live tasks that already run
    /// that spec are taken over by the new version and not restarted.
    pub(super) fn rollback(&mut self, now: u64, name: &str, why: &str) -> Response {
        let Some(svc) = self.services.get_mut(name) else {
            return Response::refused(format!("service `{name}` not found"));
        };
        let Some(prev) = svc.previous_spec.take() else {
            return Response::refused(format!(
                "service `{name}` has no previous spec to roll back to"
            ));
        };
        let current = std::mem::replace(&mut svc.spec, prev);
        svc.previous_spec = Some(current);
        svc.version += 1;
        svc.updated_at = now;
        let v = svc.version;
        let mut status = UpdateStatus::new(v, true, now);
        status.reason = why.to_string();
        svc.update = rolls(&svc.spec).then_some(status);
        let Service { spec, .. } = svc.clone();
        for t in self.tasks.values_mut() {
            if t.service == name
                && t.desired_state == TaskState::Running
                && !t.state.is_terminal()
                && t.spec == spec.container
                && t.restart_policy == spec.restart_policy
            {
                t.service_version = v;
            }
        }
        self.event(
            now,
            EventKind::Service,
            name,
            "rollback_started",
            &format!("rolling back to the previous spec as version {v}: {why}"),
        );
        Response::version(v)
    }

    /// `service update --pause` / `--resume`.
    pub(super) fn pause_update(&mut self, now: u64, name: &str, paused: bool) -> Response {
        let Some(svc) = self.services.get_mut(name) else {
            return Response::refused(format!("service `{name}` not found"));
        };
        let Some(st) = svc.update.as_mut() else {
            return Response::refused(format!("service `{name}` has no rollout"));
        };
        let (action, msg) = match (paused, st.state) {
            (true, UpdateState::Rolling | UpdateState::RollingBack) => {
                st.state = UpdateState::Paused;
                st.reason = "paused by an operator".into();
                ("update_paused", "paused by an operator".to_string())
            }
            (false, UpdateState::Paused) => {
                st.state = if st.rollback {
                    UpdateState::RollingBack
                } else {
                    UpdateState::Rolling
                };
                // The failures so far were seen; resuming tolerates them.
                st.failed.clear();
                st.reason = String::new();
                ("update_resumed", "resumed by an operator".to_string())
            }
            (_, s) => {
                return Response::refused(format!(
                    "service `{name}`'s rollout is {}: nothing to {}",
                    s.as_str(),
                    if paused { "pause" } else { "resume" }
                ))
            }
        };
        st.updated_at = now;
        let v = svc.version;
        self.event(now, EventKind::Service, name, action, &msg);
        Response::version(v)
    }

    /// The rollout part of an orchestrator pass.
    pub(super) fn record_rollouts(&mut self, now: u64, r: &Reconcile) {
        for (name, status) in &r.updates {
            let Some(svc) = self.services.get_mut(name) else {
                continue;
            };
            if svc.version != status.version || svc.update.as_ref() == Some(status) {
                continue;
            }
            let before = svc.update.replace(status.clone());
            let (old_state, old_reason) = before
                .map(|b| (Some(b.state), b.reason))
                .unwrap_or((None, String::new()));
            if old_state != Some(status.state) {
                let action = match status.state {
                    UpdateState::Rolling => "update_resumed",
                    UpdateState::RollingBack => "rollback_resumed",
                    UpdateState::Paused => "update_paused",
                    UpdateState::Completed => "update_completed",
                    UpdateState::RolledBack => "rollback_completed",
                };
                let msg = if status.reason.is_empty() {
                    format!("version {}", status.version)
                } else {
                    format!("version {}: {}", status.version, status.reason)
                };
                self.event(now, EventKind::Service, name, action, &msg);
            } else if old_reason != status.reason && !status.reason.is_empty() {
                self.event(
                    now,
                    EventKind::Service,
                    name,
                    "update_waiting",
                    &status.reason,
                );
            }
        }
        for (name, version, why) in &r.rollbacks {
            if self.services.get(name).map(|s| s.version) == Some(*version) {
                // The refusal (no previous spec) cannot happen: the rollout came from a change.
                let _ = self.rollback(now, name, why);
            }
        }
    }
}
