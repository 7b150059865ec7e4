//! What the scheduler sees: the nodes, what already runs on them, and the tasks to place.

use std::collections::BTreeMap;
use std::sync::Arc;

use shoal_model::{Node, NodeAvailability, NodeResources, NodeRole, NodeStatus, ServiceSpec};

/// A snapshot of the cluster for one scheduling pass.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClusterView {
    pub nodes: Vec<NodeView>,
}

/// One node and the tasks already running on or assigned to it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NodeView {
    pub name: String,
    pub role: NodeRole,
    pub labels: BTreeMap<String, String>,
    pub availability: NodeAvailability,
    pub status: NodeStatus,
    pub capacity: NodeResources,
    pub tasks: Vec<NodeTask>,
}

impl NodeView {
    /// The scheduler's view of a registered node with its current tasks.
    pub fn from_node(node: &Node, tasks: Vec<NodeTask>) -> Self {
        Self {
            name: node.name.clone(),
            role: node.role,
            labels: node.labels.clone(),
            availability: node.availability,
            status: node.status,
            capacity: node.resources,
            tasks,
        }
    }
}

/// A task that holds resources and ports on a node (running or assigned).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NodeTask {
    pub service: String,
    pub cpu_millis: u64,
    pub memory_bytes: u64,
    pub host_ports: Vec<u16>,
}

/// A task waiting for a node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingTask {
    pub id: String,
    pub service: String,
    /// Set for global-mode tasks: the one node this task is for.
    pub node: Option<String>,
    /// Shared by all tasks of one service version; the scheduler compiles each distinct one once.
    pub requirements: Arc<Requirements>,
}

/// What a task needs from a node.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Requirements {
    /// Constraint expressions (`node.labels.role == controller`); unparsable ones match no node.
    pub constraints: Vec<String>,
    /// Label keys to spread over (`node.labels.KEY` without the prefix), most important first.
    pub spread_labels: Vec<String>,
    pub max_replicas_per_node: Option<u32>,
    pub cpu_millis: u64,
    pub memory_bytes: u64,
    pub host_ports: Vec<u16>,
}

impl Requirements {
    pub fn from_spec(spec: &ServiceSpec) -> Self {
        Self {
            constraints: spec.constraints.clone(),
            spread_labels: spec.spread_labels.clone(),
            max_replicas_per_node: spec.max_replicas_per_node,
            cpu_millis: spec.cpu_reservation_millis,
            memory_bytes: spec.memory_reservation_bytes,
            host_ports: spec.container.host_ports.clone(),
        }
    }
}

/// The scheduler's answer for one pending task, in the order the tasks were given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    Place {
        task_id: String,
        node: String,
    },
    /// No node passed the filters; `reasons` says how many nodes each filter removed,
    /// e.g. `3 nodes filtered by constraint node.labels.role == controller`.
    Unplaceable {
        task_id: String,
        reasons: Vec<String>,
    },
}

impl Decision {
    pub fn task_id(&self) -> &str {
        match self {
            Decision::Place { task_id, .. } | Decision::Unplaceable { task_id, .. } => task_id,
        }
    }

    /// The chosen node, if placed.
    pub fn node(&self) -> Option<&str> {
        match self {
            Decision::Place { node, .. } => Some(node),
            Decision::Unplaceable { .. } => None,
        }
    }
}
