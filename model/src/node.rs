//! Worker nodes as the coordinators know them.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::Millis;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Node {
    /// Unique node name (the agent's configured name, usually the hostname).
    pub name: String,
    pub role: NodeRole,
    pub labels: BTreeMap<String, String>,
    pub availability: NodeAvailability,
    pub status: NodeStatus,
    pub resources: NodeResources,
    pub address: String,
    pub agent_version: String,
    pub runtime_version: String,
    pub registered_at: Millis,
    pub last_heartbeat: Millis,
    /// When the leader declared the node down (the proposer's clock); `None` while it answers.
    #[serde(default)]
    pub down_since: Option<Millis>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NodeRole {
    #[default]
    Worker,
    Coordinator,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NodeAvailability {
    #[default]
    Active,
    Pause,
    Drain,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NodeStatus {
    #[default]
    Unknown,
    Ready,
    Down,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeResources {
    /// CPU capacity in millicores.
    pub cpu_millis: u64,
    pub memory_bytes: u64,
}
