//! Rolling updates: how a service rolls to a new spec ([`UpdateConfig`], Swarm's
//! `update_config`/`rollback_config`) and how far a rollout got ([`UpdateStatus`], replicated).

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use crate::Millis;

/// The pace of an update or a rollback. Defaults are Swarm's: one task at a time, no delay,
/// pause on failure, 5 s of monitoring, no failure tolerated, stop-first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct UpdateConfig {
    /// Tasks (or global nodes) replaced per batch; 0 means all at once.
    pub parallelism: u32,
    /// Wait after a batch settled before the next one starts.
    pub delay_ms: u64,
    pub failure_action: FailureAction,
    /// How long the new tasks of a batch must stay running (and healthy, with a health check)
    /// before the batch counts as done; a failure within it counts towards the ratio.
    pub monitor_ms: u64,
    /// Failures tolerated, as a fraction of the service's tasks, in millionths (Swarm's
    /// `max_failure_ratio` is a float; the state machine keeps integers so it stays `Eq`).
    pub max_failure_ratio_ppm: u32,
    pub order: UpdateOrder,
}

impl Default for UpdateConfig {
    fn default() -> Self {
        Self {
            parallelism: 1,
            delay_ms: 0,
            failure_action: FailureAction::Pause,
            monitor_ms: 5_000,
            max_failure_ratio_ppm: 0,
            order: UpdateOrder::StopFirst,
        }
    }
}

/// What happens when more tasks failed than `max_failure_ratio` allows.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FailureAction {
    #[default]
    Pause,
    Continue,
    Rollback,
}

/// Whether a slot's old task stops before its new one starts, or after the new one runs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum UpdateOrder {
    #[default]
    StopFirst,
    StartFirst,
}

/// Where a rollout stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UpdateState {
    /// Replacing batches with `update_config`'s pace.
    Rolling,
    /// Stopped: too many failures, or an operator's `--pause`. Nothing more is replaced until
    /// `--resume` or a rollback; tasks already replaced stay.
    Paused,
    /// Back to the previous spec with `rollback_config`'s pace.
    RollingBack,
    /// Every task runs the target version.
    Completed,
    /// A rollback finished.
    RolledBack,
}

impl UpdateState {
    /// Whether batches are still being replaced.
    pub fn is_active(self) -> bool {
        matches!(self, UpdateState::Rolling | UpdateState::RollingBack)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            UpdateState::Rolling => "rolling",
            UpdateState::Paused => "paused",
            UpdateState::RollingBack => "rolling_back",
            UpdateState::Completed => "completed",
            UpdateState::RolledBack => "rolled_back",
        }
    }
}

/// The progress of one rollout to `version`, kept in the replicated state so that a new leader
/// continues where the old one was. A slot is `"N"` for replicated services and the node's name
/// for global ones.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UpdateStatus {
    pub state: UpdateState,
    /// The service version the rollout brings every task to.
    pub version: u64,
    /// Whether this rollout is a rollback (its pace is `rollback_config`'s).
    pub rollback: bool,
    pub started_at: Millis,
    pub updated_at: Millis,
    /// Slots of the batch in flight: their new task is not yet settled.
    pub in_flight: BTreeSet<String>,
    /// Slots whose new task settled.
    pub done: BTreeSet<String>,
    /// New tasks that failed during the rollout (ids), counted towards `max_failure_ratio`.
    pub failed: BTreeSet<String>,
    /// When the last batch settled (the next waits `delay` after it).
    pub batch_done_at: Option<Millis>,
    /// Why the rollout is paused, waits or rolled back; empty when nothing is in the way.
    pub reason: String,
}

impl UpdateStatus {
    pub fn new(version: u64, rollback: bool, now: Millis) -> Self {
        Self {
            state: if rollback {
                UpdateState::RollingBack
            } else {
                UpdateState::Rolling
            },
            version,
            rollback,
            started_at: now,
            updated_at: now,
            in_flight: BTreeSet::new(),
            done: BTreeSet::new(),
            failed: BTreeSet::new(),
            batch_done_at: None,
            reason: String::new(),
        }
    }
}
