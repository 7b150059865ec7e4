//! Task status reports: forward-only, deduplicated, kept (on disk) until a coordinator acknowledges.

use std::collections::BTreeMap;
use std::sync::{Mutex, MutexGuard};

use shoal_model::TaskState;
use shoal_proto::convert::StatusUpdate;
use tokio::sync::Notify;
use tracing::{info, warn};

use crate::state_db::StateDb;

#[derive(Debug, Default)]
struct Inner {
    /// The last accepted update per task.
    last: BTreeMap<String, StatusUpdate>,
    /// Updates not yet acknowledged, by sequence number.
    pending: BTreeMap<u64, StatusUpdate>,
    next_seq: u64,
}

/// The agent's outbox of task status updates.
pub struct Reporter {
    inner: Mutex<Inner>,
    db: Option<StateDb>,
    /// Woken when a new update is queued.
    pub queued: Notify,
}

/// Whether `u` is news after `last`: a later state, the other state of the same step (running ↔
/// restarting), or a new message or exit code in a non-terminal state. States never move
/// backwards (see `TaskState::progress`).
fn is_news(last: Option<&StatusUpdate>, u: &StatusUpdate) -> bool {
    match last {
        None => true,
        Some(l) if u.state.progress() > l.state.progress() => true,
        Some(l) if u.state.progress() == l.state.progress() => {
            !u.state.is_terminal()
                && (u.state != l.state || u.message != l.message || u.exit_code != l.exit_code)
        }
        Some(_) => false,
    }
}

impl Reporter {
    /// A reporter that starts from what `db` remembers (or from nothing).
    pub fn new(db: Option<StateDb>) -> Self {
        let mut inner = Inner::default();
        if let Some(db) = &db {
            match db.load_states() {
                Ok(states) => inner.last = states,
                Err(error) => warn!(%error, "cannot load task states"),
            }
            match db.load_reports() {
                Ok(pending) => inner.pending = pending.into_iter().collect(),
                Err(error) => warn!(%error, "cannot load pending reports"),
            }
        }
        inner.next_seq = inner.pending.keys().next_back().map_or(1, |s| s + 1);
        Self {
            inner: Mutex::new(inner),
            db,
            queued: Notify::new(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // Poisoned only if a holder panicked; the data is still consistent (plain inserts).
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queues `u` if it is news; returns whether it was.
    pub fn report(&self, u: StatusUpdate) -> bool {
        {
            let mut inner = self.lock();
            if !is_news(inner.last.get(&u.task_id), &u) {
                return false;
            }
            let seq = inner.next_seq;
            inner.next_seq += 1;
            if let Some(db) = &self.db {
                if let Err(error) = db.push_report(seq, &u) {
                    warn!(%error, task_id = %u.task_id, "cannot persist status report");
                }
            }
            info!(task_id = %u.task_id, state = %u.state, message = %u.message, exit_code = ?u.exit_code, "task status");
            inner.last.insert(u.task_id.clone(), u.clone());
            inner.pending.insert(seq, u);
        }
        self.queued.notify_one();
        true
    }

    /// The last reported state of every task.
    pub fn states(&self) -> BTreeMap<String, TaskState> {
        self.lock()
            .last
            .iter()
            .map(|(k, v)| (k.clone(), v.state))
            .collect()
    }

    /// The last accepted update of `task_id`.
    pub fn last(&self, task_id: &str) -> Option<StatusUpdate> {
        self.lock().last.get(task_id).cloned()
    }

    /// Unacknowledged updates, oldest first.
    pub fn pending(&self) -> Vec<(u64, StatusUpdate)> {
        self.lock()
            .pending
            .iter()
            .map(|(s, u)| (*s, u.clone()))
            .collect()
    }

    /// A coordinator acknowledged these updates.
    pub fn ack(&self, seqs: &[u64]) {
        let mut inner = self.lock();
        for s in seqs {
            inner.pending.remove(s);
        }
        if let Some(db) = &self.db {
            if let Err(error) = db.ack_reports(seqs) {
                warn!(%error, "cannot forget acknowledged reports");
            }
        }
    }

    /// Forgets the states of tasks no longer assigned (their reports still go out).
    pub fn forget(&self, task_ids: &[String]) {
        let mut inner = self.lock();
        for id in task_ids {
            inner.last.remove(id);
        }
        if let Some(db) = &self.db {
            if let Err(error) = db.forget_states(task_ids) {
                warn!(%error, "cannot forget task states");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn u(state: TaskState, msg: &str) -> StatusUpdate {
        StatusUpdate {
            task_id: "t".into(),
            state,
            message: msg.into(),
            exit_code: None,
            image_digest: None,
        }
    }

    #[test]
    fn forward_only_and_deduplicated() {
        let r = Reporter::new(None);
        assert!(r.report(u(TaskState::Starting, "")));
        assert!(r.report(u(TaskState::Running, "started")));
        assert!(!r.report(u(TaskState::Running, "started")));
        assert!(!r.report(u(TaskState::Preparing, "")));
        assert!(r.report(u(TaskState::Running, "healthy")));
        assert!(r.report(u(TaskState::Failed, "exited with code 1")));
        assert!(!r.report(u(TaskState::Failed, "again")));
        assert!(!r.report(u(TaskState::Running, "late")));
        let p = r.pending();
        assert_eq!(p.len(), 4);
        r.ack(&[p[0].0, p[1].0]);
        assert_eq!(r.pending().len(), 2);
        assert_eq!(r.states()["t"], TaskState::Failed);
    }

    #[test]
    fn running_and_restarting_alternate_until_terminal() {
        let r = Reporter::new(None);
        assert!(r.report(u(TaskState::Running, "started")));
        let wait = "exited with code 137; restart 1 in 5000 ms";
        assert!(r.report(u(TaskState::Restarting, wait)));
        assert!(!r.report(u(TaskState::Restarting, wait)));
        assert!(!r.report(u(TaskState::Starting, "")));
        assert!(r.report(u(
            TaskState::Running,
            "restarted after exited with code 137"
        )));
        assert!(r.report(u(TaskState::Restarting, "exited with code 1; restart 2")));
        assert!(r.report(u(TaskState::Failed, "restart policy exhausted")));
        assert!(!r.report(u(TaskState::Restarting, "late")));
        assert!(!r.report(u(TaskState::Running, "late")));
        let states: Vec<TaskState> = r.pending().into_iter().map(|(_, u)| u.state).collect();
        assert_eq!(
            states,
            [
                TaskState::Running,
                TaskState::Restarting,
                TaskState::Running,
                TaskState::Restarting,
                TaskState::Failed
            ]
        );
    }

    #[test]
    fn pending_reports_survive_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        {
            let r = Reporter::new(Some(StateDb::open(dir.path()).unwrap()));
            r.report(u(TaskState::Running, "a"));
            r.report(u(TaskState::Complete, "b"));
            let first = r.pending()[0].0;
            r.ack(&[first]);
        }
        let r = Reporter::new(Some(StateDb::open(dir.path()).unwrap()));
        let p = r.pending();
        assert_eq!(p.len(), 1);
        assert_eq!(p[0].1.state, TaskState::Complete);
        assert!(!r.report(u(TaskState::Running, "old")));
        r.report(u(TaskState::Orphaned, ""));
        assert!(r.pending()[1].0 > p[0].0);
    }
}
