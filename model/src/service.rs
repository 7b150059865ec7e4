//! Services: the desired state an operator declares.

use serde::{Deserialize, Serialize};

use crate::{ContainerSpec, Millis, UpdateConfig, UpdateStatus};

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
    /// The spec before the last change, for `service rollback`.
    #[serde(default)]
    pub previous_spec: Option<ServiceSpec>,
    /// The last rollout (see [`UpdateStatus`]); `None` until the spec first changes.
    #[serde(default)]
    pub update: Option<UpdateStatus>,
    /// A task of the service ran (healthy, with a health check): the cluster it forms exists,
    /// and [`ServiceSpec::first_start`] is never used again.
    #[serde(default)]
    pub formed: bool,
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
    pub depends_on: Vec<(String, DependsCondition)>,
    /// Service labels (`deploy.labels`); container labels live in [`ContainerSpec::labels`].
    pub labels: std::collections::BTreeMap<String, String>,
    /// What happens to the service's tasks on a node that stops answering.
    pub on_node_loss: NodeLoss,
    /// How a spec change rolls out (`deploy.update_config`).
    pub update_config: UpdateConfig,
    /// How a rollback rolls out (`deploy.rollback_config`).
    pub rollback_config: UpdateConfig,
    /// A quorum cluster (`deploy.x-shoal-quorum: true`): a rollout never leaves fewer than a
    /// majority of its tasks running and healthy, whatever `parallelism` says.
    pub quorum: bool,
    /// For jobs: run once for the life of the service (`deploy.x-shoal-run: once`, a bootstrap
    /// that must never run again on live data): a completed job is not run again when its spec
    /// changes. By default (`on-change`) a job runs again when its own spec changes.
    pub run_once: bool,
    /// For a quorum service: what the first member runs on an empty cluster
    /// (`x-shoal-first-start`, e.g. galera's `--wsrep-new-cluster`). Slot 1 starts alone with
    /// it; the other slots start once it ran.
    pub first_start: Option<FirstStart>,
    /// Bumped by `shoalctl service update --force`: a new version with the same containers,
    /// rolled out like any change.
    pub force_update: u64,
}

impl ServiceSpec {
    /// Whether the containers write to storage that outlives them: a writable bind or named
    /// volume. Two copies of such a task must never run at once.
    pub fn has_data(&self) -> bool {
        self.container.mounts.iter().any(|m| {
            matches!(m.kind, crate::MountKind::Bind | crate::MountKind::Volume) && !m.read_only
        })
    }

    /// The node-loss behaviour in force: [`NodeLoss::Auto`] resolved by [`Self::has_data`].
    pub fn node_loss(&self) -> NodeLoss {
        match self.on_node_loss {
            NodeLoss::Auto if self.has_data() => NodeLoss::Wait,
            NodeLoss::Auto => NodeLoss::Replace,
            other => other,
        }
    }
}

/// What the orchestrator does with the tasks of a node declared down (it missed its
/// heartbeats, but may still run them).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NodeLoss {
    /// `Wait` for services with data (see [`ServiceSpec::has_data`]), `Replace` for the others.
    #[default]
    Auto,
    /// Replace the tasks on other nodes once the node is declared down.
    Replace,
    /// Never replace them while the node may still run them: wait until it answers again or
    /// an operator removes it (`shoalctl node rm --force`).
    Wait,
    /// Wait, but replace them once the node has been down this long (milliseconds).
    ReplaceAfter(u64),
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

/// What a `depends_on` entry waits for: Compose's conditions, by Compose's names.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DependsCondition {
    /// A task of the service runs.
    #[default]
    ServiceStarted,
    /// Every current task runs and, with a healthcheck, reports healthy.
    ServiceHealthy,
    /// Every current task of the job completed with exit code 0.
    ServiceCompletedSuccessfully,
}

impl DependsCondition {
    pub fn name(self) -> &'static str {
        match self {
            DependsCondition::ServiceStarted => "service_started",
            DependsCondition::ServiceHealthy => "service_healthy",
            DependsCondition::ServiceCompletedSuccessfully => "service_completed_successfully",
        }
    }
}

impl std::fmt::Display for DependsCondition {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for DependsCondition {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        [
            DependsCondition::ServiceStarted,
            DependsCondition::ServiceHealthy,
            DependsCondition::ServiceCompletedSuccessfully,
        ]
        .into_iter()
        .find(|c| c.name() == s)
        .ok_or_else(|| {
            format!(
                "unknown condition {s:?} (expected service_started, service_healthy or \
                 service_completed_successfully)"
            )
        })
    }
}

/// When the agent restarts a task's container in place: its names are Compose's.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RestartCondition {
    /// `none`: never; the task ends when its container does.
    #[serde(rename = "none")]
    Never,
    /// `on-failure`: after a non-zero exit (or turning unhealthy).
    OnFailure,
    /// `any`: after any exit.
    #[default]
    Any,
}

impl RestartCondition {
    /// Whether a container that exited (`success`: with code 0) is restarted.
    pub fn restarts(self, success: bool) -> bool {
        match self {
            RestartCondition::Never => false,
            RestartCondition::OnFailure => !success,
            RestartCondition::Any => true,
        }
    }
}

impl std::str::FromStr for RestartCondition {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "none" => Ok(RestartCondition::Never),
            "on-failure" => Ok(RestartCondition::OnFailure),
            "any" => Ok(RestartCondition::Any),
            other => Err(format!(
                "unknown condition {other:?} (expected none, on-failure or any)"
            )),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct RestartPolicy {
    pub condition: RestartCondition,
    pub delay_ms: u64,
    pub max_attempts: Option<u32>,
    pub window_ms: u64,
}

impl Default for RestartPolicy {
    fn default() -> Self {
        Self {
            condition: RestartCondition::Any,
            delay_ms: 5_000,
            max_attempts: None,
            window_ms: 0,
        }
    }
}

/// Command or environment that replace the spec's for the first member of a quorum service
/// on an empty cluster.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct FirstStart {
    /// Replaces the command when not empty.
    pub command: Vec<String>,
    /// Added to (and overriding) the environment.
    pub env: std::collections::BTreeMap<String, String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn restart_conditions_keep_composes_names() {
        for (name, c) in [
            ("none", RestartCondition::Never),
            ("on-failure", RestartCondition::OnFailure),
            ("any", RestartCondition::Any),
        ] {
            assert_eq!(name.parse::<RestartCondition>(), Ok(c));
            assert_eq!(
                serde_json::to_string(&c).expect("serializes"),
                format!("\"{name}\"")
            );
        }
        assert_eq!(
            "always".parse::<RestartCondition>(),
            Err("unknown condition \"always\" (expected none, on-failure or any)".into())
        );
        assert!(RestartCondition::OnFailure.restarts(false));
        assert!(!RestartCondition::OnFailure.restarts(true));
        assert!(!RestartCondition::Never.restarts(false));
    }

    #[test]
    fn depends_conditions_keep_composes_names() {
        for c in [
            DependsCondition::ServiceStarted,
            DependsCondition::ServiceHealthy,
            DependsCondition::ServiceCompletedSuccessfully,
        ] {
            assert_eq!(c.name().parse::<DependsCondition>(), Ok(c));
            assert_eq!(
                serde_json::to_string(&c).expect("serializes"),
                format!("\"{c}\"")
            );
        }
        assert!("service_ready".parse::<DependsCondition>().is_err());
    }
}
