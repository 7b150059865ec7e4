//! [`Preview`]: what applying a stack does or would do (`shoalctl plan` and `apply`).

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Preview {
    pub stack: String,
    pub services: Vec<ServiceChange>,
    /// The stack's secrets by name (never their values), with the same actions.
    #[serde(default)]
    pub secrets: Vec<ServiceChange>,
    pub tasks: Vec<TaskPreview>,
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
