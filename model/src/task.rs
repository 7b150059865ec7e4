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

/// Task states in the order a task moves through them; a task never moves backwards.
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

    pub fn as_str(self) -> &'static str {
        match self {
            TaskState::New => "new",
            TaskState::Pending => "pending",
            TaskState::Assigned => "assigned",
            TaskState::Preparing => "preparing",
            TaskState::Starting => "starting",
            TaskState::Running => "running",
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
    }
}
