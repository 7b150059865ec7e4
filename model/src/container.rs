//! What one container of a task looks like: the part of a service spec the agent executes.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Everything the agent needs to create and run one container.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ContainerSpec {
    pub image: String,
    /// Overrides the image's entrypoint when non-empty.
    pub entrypoint: Vec<String>,
    /// Overrides the image's cmd when non-empty.
    pub command: Vec<String>,
    pub env: BTreeMap<String, String>,
    /// `name`, `name:group`, `uid` or `uid:gid`, resolved in the image's `/etc/passwd` and
    /// `/etc/group`; none means the image's `USER`, else root.
    pub user: Option<String>,
    /// Supplementary groups (names in the image's `/etc/group`, or numbers) added to the user's.
    pub group_add: Vec<String>,
    pub working_dir: Option<String>,
    pub network: NetworkMode,
    pub mounts: Vec<Mount>,
    pub privileged: bool,
    pub cap_add: Vec<String>,
    pub cap_drop: Vec<String>,
    pub pid_host: bool,
    pub ipc_host: bool,
    /// Share the host's cgroup namespace (Compose `cgroup: host`).
    pub cgroup_host: bool,
    pub ulimits: Vec<Ulimit>,
    /// Memory limit in bytes.
    pub memory_limit: Option<u64>,
    /// CPU limit in millicores (1000 = one CPU).
    pub cpu_limit_millis: Option<u64>,
    pub stop_signal: Option<String>,
    pub stop_grace_ms: Option<u64>,
    pub labels: BTreeMap<String, String>,
    pub healthcheck: Option<HealthCheck>,
    /// Host ports the container binds (host networking); the scheduler keeps users apart.
    pub host_ports: Vec<u16>,
    /// Secrets mounted as files (references only; values never travel in a spec).
    pub secrets: Vec<crate::SecretRef>,
    /// Configs mounted as files, read-only (references only; see [`crate::config`]).
    pub configs: Vec<crate::ConfigRef>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NetworkMode {
    #[default]
    Host,
    None,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Mount {
    pub kind: MountKind,
    /// Host path for a bind, volume name for a volume, unused for tmpfs.
    pub source: String,
    pub target: String,
    #[serde(default)]
    pub read_only: bool,
    /// `rshared`, `rslave`, `rprivate`... for binds.
    #[serde(default)]
    pub propagation: Option<String>,
    /// For binds: create a missing host directory (Docker's short syntax, Compose's long syntax
    /// `bind.create_host_path`) instead of rejecting the task.
    #[serde(default)]
    pub create_host_path: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MountKind {
    Bind,
    Volume,
    Tmpfs,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ulimit {
    pub name: String,
    pub soft: u64,
    pub hard: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum HealthProbe {
    /// Run a command inside the container; exit 0 is healthy.
    Exec { command: Vec<String> },
    /// HTTP GET; a 2xx or 3xx answer is healthy.
    Http { url: String },
    /// TCP connect to host:port.
    Tcp { address: String },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HealthCheck {
    pub probe: HealthProbe,
    pub interval_ms: u64,
    pub timeout_ms: u64,
    pub retries: u32,
    pub start_period_ms: u64,
}

pub use HealthProbe as Probe;
