//! Shoal's domain types, shared by the coordinator, the agent and `shoalctl`.
//!
//! Nothing here does I/O or knows protobuf; `shoal-proto` converts at the edge.

pub mod config;
pub mod container;
pub mod node;
pub mod secret;
pub mod service;
pub mod task;
pub mod template;
pub mod time;

pub use config::ConfigRef;
pub use container::{ContainerSpec, HealthCheck, Mount, MountKind, NetworkMode, Ulimit};
pub use node::{Node, NodeAvailability, NodeResources, NodeRole, NodeStatus};
pub use secret::{SecretRef, SecretValue};
pub use service::{NodeLoss, RestartPolicy, Service, ServiceMode, ServiceSpec};
pub use task::{Task, TaskState};

/// Milliseconds since the Unix epoch. Time enters the state machine only inside commands.
pub type Millis = u64;
