//! [`Preview`]: what applying a stack does or would do (`shoalctl plan` and `apply`).

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Preview {
    pub stack: String,
    pub services: Vec<ServiceChange>,
    /// The stack's secrets by name (never their values), with the same actions.
    #[serde(default)]
    pub secrets: Vec<ServiceChange>,
    /// The stack's configs by name (never their values), with the same actions.
    #[serde(default)]
    pub configs: Vec<ServiceChange>,
    pub tasks: Vec<TaskPreview>,
    /// Running tasks that would be replaced because a config they use has a new value.
    #[serde(default)]
    pub restarts: Vec<TaskRestart>,
}

/// A running task a config change replaces (stops, then a new task takes its slot).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskRestart {
    pub task: String,
    pub service: String,
    pub slot: u32,
    pub node: Option<String>,
    /// The configs whose new values replace it.
    pub configs: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceChange {
    pub name: String,
    /// `create`, `update`, `remove` or `unchanged`.
    pub action: String,
    /// For an update that replaces tasks: how it rolls (batches, order, monitor).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollout: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskPreview {
    pub service: String,
    pub slot: u32,
    pub node: Option<String>,
    pub state: String,
    pub message: String,
}
