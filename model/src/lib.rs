//! Shoal's domain types, shared by the coordinator, the agent and `shoalctl`.
//!
//! Nothing here does I/O or knows protobuf; `shoal-proto` converts at the edge.

pub mod api;
pub mod config;
pub mod container;
pub mod name;
pub mod node;
pub mod secret;
pub mod service;
pub mod task;
pub mod template;
pub mod time;
pub mod update;

pub use config::ConfigRef;
pub use container::{
    ContainerSpec, Device, ExtraHost, HealthCheck, Mount, MountKind, NetworkMode, PreStop,
    PullPolicy, SecurityOpts, Ulimit,
};
pub use name::{check_name, NameError};
pub use node::{Node, NodeAvailability, NodeResources, NodeRole, NodeStatus};
pub use secret::{SecretRef, SecretValue};
pub use service::{
    DependsCondition, FirstStart, NodeLoss, RestartCondition, RestartPolicy, Service, ServiceMode,
    ServiceSpec,
};
pub use task::{Task, TaskState};
pub use update::{FailureAction, UpdateConfig, UpdateOrder, UpdateState, UpdateStatus};

/// Milliseconds since the Unix epoch. Time enters the state machine only inside commands.
pub type Millis = u64;
