//! The filters a node must pass for a task, and the reasons recorded when it does not.
//!
//! Static filters (readiness, availability, constraints) depend only on the node; dynamic ones
//! (resources, ports, max per node) on what is already placed. Within one scheduling pass a node
//! only ever fills up, so a node that fails a dynamic filter for a task fails it for every later
//! task with the same requirements.

use std::collections::BTreeMap;

use shoal_model::{NodeAvailability, NodeStatus};

use super::constraint::Constraint;
use super::view::{NodeView, Requirements};

/// [`Requirements`] with the constraints parsed once.
#[derive(Debug)]
pub(crate) struct Compiled {
    pub constraints: Vec<Constraint>,
    /// Constraints that do not parse: they match no node.
    pub invalid: Vec<String>,
    pub max_per_node: u32,
    pub cpu_millis: u64,
    pub memory_bytes: u64,
    pub host_ports: Vec<u16>,
}

impl Compiled {
    pub fn new(req: &Requirements) -> Self {
        let mut constraints = Vec::with_capacity(req.constraints.len());
        let mut invalid = Vec::new();
        for text in &req.constraints {
            match Constraint::parse(text) {
                Ok(c) => constraints.push(c),
                Err(_) => invalid.push(text.clone()),
            }
        }
        Self {
            constraints,
            invalid,
            max_per_node: req.max_replicas_per_node.unwrap_or(u32::MAX),
            cpu_millis: req.cpu_millis,
            memory_bytes: req.memory_bytes,
            host_ports: req.host_ports.clone(),
        }
    }
}

/// What changes on a node as tasks are placed.
#[derive(Debug, Clone)]
pub(crate) struct NodeLoad {
    pub free_cpu: u64,
    pub free_memory: u64,
    pub total_tasks: u32,
    pub ports: Vec<u16>,
}

impl NodeLoad {
    pub fn new(node: &NodeView) -> Self {
        let mut load = Self {
            free_cpu: node.capacity.cpu_millis,
            free_memory: node.capacity.memory_bytes,
            total_tasks: 0,
            ports: Vec::new(),
        };
        for t in &node.tasks {
            load.add(t.cpu_millis, t.memory_bytes, &t.host_ports);
        }
        load
    }

    pub fn add(&mut self, cpu: u64, memory: u64, ports: &[u16]) {
        self.free_cpu = self.free_cpu.saturating_sub(cpu);
        self.free_memory = self.free_memory.saturating_sub(memory);
        self.total_tasks += 1;
        self.ports.extend_from_slice(ports);
    }
}

/// Why a node was filtered out, in the order filters run.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Filtered {
    /// Node status other than ready (`down`, `not ready (status unknown)`).
    NotReady(&'static str),
    /// Availability other than active (`paused`, `draining`).
    Unavailable(&'static str),
    Constraint(String),
    Cpu,
    Memory,
    Port(u16),
    MaxPerNode(u32),
}

impl Filtered {
    fn describe(&self, nodes: usize) -> String {
        let n = if nodes == 1 {
            "1 node".to_string()
        } else {
            format!("{nodes} nodes")
        };
        match self {
            Filtered::Constraint(c) => format!("{n} filtered by constraint {c}"),
            Filtered::NotReady(s) | Filtered::Unavailable(s) => {
                format!("{n} filtered: node is {s}")
            }
            Filtered::Cpu => format!("{n} filtered: insufficient cpu"),
            Filtered::Memory => format!("{n} filtered: insufficient memory"),
            Filtered::Port(p) => format!("{n} filtered: port {p} in use"),
            Filtered::MaxPerNode(m) => format!("{n} filtered: max replicas per node ({m}) reached"),
        }
    }
}

fn status_name(s: NodeStatus) -> &'static str {
    match s {
        NodeStatus::Ready => "ready",
        NodeStatus::Down => "down",
        NodeStatus::Unknown => "not ready (status unknown)",
    }
}

/// Readiness, availability and constraints.
pub(crate) fn static_filter(node: &NodeView, req: &Compiled) -> Option<Filtered> {
    if node.status != NodeStatus::Ready {
        return Some(Filtered::NotReady(status_name(node.status)));
    }
    if node.availability != NodeAvailability::Active {
        return Some(Filtered::Unavailable(match node.availability {
            NodeAvailability::Pause => "paused",
            NodeAvailability::Drain => "draining",
            NodeAvailability::Active => "active",
        }));
    }
    if let Some(text) = req.invalid.first() {
        return Some(Filtered::Constraint(text.clone()));
    }
    req.constraints
        .iter()
        .find(|c| !c.matches(&node.name, node.role, &node.labels))
        .map(|c| Filtered::Constraint(c.text.clone()))
}

/// Resources, ports and max replicas per node; `same_service` counts the task's service on the node.
#[inline]
pub(crate) fn dynamic_ok(load: &NodeLoad, req: &Compiled, same_service: u32) -> bool {
    load.free_cpu >= req.cpu_millis
        && load.free_memory >= req.memory_bytes
        && same_service < req.max_per_node
        && !req.host_ports.iter().any(|p| load.ports.contains(p))
}

pub(crate) fn dynamic_filter(
    load: &NodeLoad,
    req: &Compiled,
    same_service: u32,
) -> Option<Filtered> {
    if load.free_cpu < req.cpu_millis {
        return Some(Filtered::Cpu);
    }
    if load.free_memory < req.memory_bytes {
        return Some(Filtered::Memory);
    }
    if let Some(p) = req.host_ports.iter().find(|p| load.ports.contains(p)) {
        return Some(Filtered::Port(*p));
    }
    if same_service >= req.max_per_node {
        return Some(Filtered::MaxPerNode(req.max_per_node));
    }
    None
}

/// Counts filter reasons over nodes and renders them, most frequent filters first in filter order.
#[derive(Debug, Default)]
pub(crate) struct Reasons {
    counts: BTreeMap<Filtered, usize>,
}

impl Reasons {
    pub fn add(&mut self, f: Filtered) {
        *self.counts.entry(f).or_default() += 1;
    }

    pub fn render(self, nodes_in_cluster: usize) -> Vec<String> {
        if nodes_in_cluster == 0 {
            return vec!["no nodes in the cluster".to_string()];
        }
        let mut out: Vec<String> = self.counts.iter().map(|(f, n)| f.describe(*n)).collect();
        if out.is_empty() {
            out.push("no node passed the filters".to_string());
        }
        out
    }
}
