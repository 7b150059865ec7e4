//! Services: the desired state an operator declares.

use serde::{Deserialize, Serialize};

use crate::{ContainerSpec, Millis};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Service {
    pub name: String,
    /// Stack the service belongs to, if it came from a stack file.
    pub stack: Option<String>,
    pub spec: ServiceSpec,
    /// Bumped on every spec change.
    pub version: u64,
    pub created_at: Millis,
    pub updated_at: Millis,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ServiceSpec {
    pub container: ContainerSpec,
    pub mode: ServiceMode,
    pub replicas: u32,
    pub constraints: Vec<String>,
    pub spread_labels: Vec<String>,
    pub max_replicas_per_node: Option<u32>,
    pub cpu_reservation_millis: u64,
    pub memory_reservation_bytes: u64,
    pub restart_policy: RestartPolicy,
    /// `(service, condition)` pairs that must hold before this service's tasks start.
    pub depends_on: Vec<(String, String)>,
    /// Service labels (`deploy.labels`); container labels live in [`ContainerSpec::labels`].
    pub labels: std::collections::BTreeMap<String, String>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ServiceMode {
    #[default]
    Replicated,
    Global,
    ReplicatedJob,
    GlobalJob,
}

impl ServiceMode {
    /// Jobs run to completion once per spec version.
    pub fn is_job(self) -> bool {
        matches!(self, ServiceMode::ReplicatedJob | ServiceMode::GlobalJob)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct RestartPolicy {
    /// `none`, `on-failure` or `any`.
    pub condition: String,
    pub delay_ms: u64,
    pub max_attempts: Option<u32>,
    pub window_ms: u64,
}

impl Default for RestartPolicy {
    fn default() -> Self {
        Self {
            condition: "any".into(),
            delay_ms: 5_000,
            max_attempts: None,
            window_ms: 0,
        }
    }
}
