//! Tasks: one scheduled instance of a service, moving forward through [`TaskState`].

use serde::{Deserialize, Serialize};

use crate::{ContainerSpec, Millis, RestartPolicy, ServiceMode};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Task {
    pub id: String,
    pub service: String,
    pub service_version: u64,
    /// Replica slot for replicated services; 0 for global ones (the node identifies them).
    pub slot: u32,
    pub node: Option<String>,
    pub desired_state: TaskState,
    pub state: TaskState,
    pub message: String,
    pub exit_code: Option<i32>,
    /// Digest of the image manifest the task's container was created from, as its agent
    /// reported it (none before the container exists).
    #[serde(default)]
    pub image_digest: Option<String>,
    pub spec: ContainerSpec,
    /// How the agent restarts the container in place when it exits or turns unhealthy.
    #[serde(default)]
    pub restart_policy: RestartPolicy,
    /// Jobs run to completion; services run until told to stop.
    #[serde(default)]
    pub mode: ServiceMode,
    pub created_at: Millis,
    pub updated_at: Millis,
}

/// Task states in the order a task moves through them; a task never moves backwards
/// ([`TaskState::progress`]). `Running` and `Restarting` are one step: a task whose container
/// exited (or turned unhealthy) and waits for its in-place restart is `Restarting`, and `Running`
/// again once restarted; it keeps its slot and its id all along.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum TaskState {
    #[default]
    New,
    Pending,
    Assigned,
    Preparing,
    Starting,
    Running,
    /// The container exited or turned unhealthy; the agent restarts it in place after the restart
    /// policy's delay (the message says why, with the exit code and when the next attempt is).
    Restarting,
    Complete,
    Shutdown,
    Failed,
    Rejected,
    Orphaned,
}

impl TaskState {
    /// Terminal states: the task will never run again.
    pub fn is_terminal(self) -> bool {
        self >= TaskState::Complete
    }

    /// How far along a task is: a report with a lower value than the task's is stale. Equal for
    /// `Running` and `Restarting`, which alternate.
    pub fn progress(self) -> u8 {
        match self {
            TaskState::New => 0,
            TaskState::Pending => 1,
            TaskState::Assigned => 2,
            TaskState::Preparing => 3,
            TaskState::Starting => 4,
            TaskState::Running | TaskState::Restarting => 5,
            TaskState::Complete => 6,
            TaskState::Shutdown => 7,
            TaskState::Failed => 8,
            TaskState::Rejected => 9,
            TaskState::Orphaned => 10,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            TaskState::New => "new",
            TaskState::Pending => "pending",
            TaskState::Assigned => "assigned",
            TaskState::Preparing => "preparing",
            TaskState::Starting => "starting",
            TaskState::Running => "running",
            TaskState::Restarting => "restarting",
            TaskState::Complete => "complete",
            TaskState::Shutdown => "shutdown",
            TaskState::Failed => "failed",
            TaskState::Rejected => "rejected",
            TaskState::Orphaned => "orphaned",
        }
    }
}

impl std::fmt::Display for TaskState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn terminal_states_come_after_running() {
        assert!(!TaskState::Running.is_terminal());
        assert!(TaskState::Complete.is_terminal());
        assert!(TaskState::Orphaned.is_terminal());
        assert!(TaskState::Pending < TaskState::Assigned);
        assert!(!TaskState::Restarting.is_terminal());
    }

    #[test]
    fn running_and_restarting_are_one_step() {
        use TaskState::*;
        assert_eq!(Running.progress(), Restarting.progress());
        assert!(Starting.progress() < Restarting.progress());
        assert!(Restarting.progress() < Failed.progress());
        // Progress agrees with the declaration order everywhere else.
        let all = [
            New, Pending, Assigned, Preparing, Starting, Running, Restarting, Complete, Shutdown,
            Failed, Rejected, Orphaned,
        ];
        for w in all.windows(2) {
            assert!(w[0] < w[1]);
            assert!(w[0].progress() <= w[1].progress());
        }
        let json = serde_json::to_string(&Restarting).unwrap();
        assert_eq!(json, "\"restarting\"");
        assert_eq!(Restarting.as_str(), "restarting");
    }
}
