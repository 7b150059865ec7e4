//! What one container of a task looks like: the part of a service spec the agent executes.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Everything the agent needs to create and run one container.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ContainerSpec {
    pub image: String,
    /// When the agent resolves the image's tag again (Compose `pull_policy`).
    pub pull_policy: PullPolicy,
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
    /// Host devices given to the container (Compose `devices`).
    pub devices: Vec<Device>,
    /// Namespaced kernel parameters (Compose `sysctls`), set by runc in the container's
    /// namespaces.
    pub sysctls: BTreeMap<String, String>,
    /// Size of the container's `/dev/shm` tmpfs in bytes (Compose `shm_size`); none is 64 MiB.
    pub shm_size: Option<u64>,
    /// Lines added to the container's `/etc/hosts` (Compose `extra_hosts`).
    pub extra_hosts: Vec<ExtraHost>,
    /// The container's hostname (Compose `hostname`); none is the host's name with host
    /// networking, else the container id's first 12 characters.
    pub hostname: Option<String>,
    /// Compose `security_opt`.
    pub security: SecurityOpts,
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
    /// Run inside the container before the stop signal when the task is told to stop
    /// (`x-shoal-pre-stop`, e.g. rabbitmq's `rabbitmq-upgrade drain`).
    pub pre_stop: Option<PreStop>,
    /// Configs mounted as files, read-only (references only; see [`crate::config`]).
    pub configs: Vec<crate::ConfigRef>,
}

/// A command run inside a container before it is stopped, with its own time limit; the stop
/// signal follows whatever it answers, or once the limit passed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PreStop {
    pub command: Vec<String>,
    pub timeout_ms: u64,
}

/// Compose `pull_policy`: when the agent pulls a task's image before creating its container.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PullPolicy {
    /// Only when the node lacks the image (Compose `missing`, `if_not_present`).
    #[default]
    Missing,
    /// Every time a container is created: a re-pushed tag is resolved again.
    Always,
    /// Never: a node without the image rejects the task.
    Never,
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

/// One host device node, as Compose's `HOST:CONTAINER:PERMISSIONS`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Device {
    /// Path of the device node on the host (followed if it is a symlink).
    pub host_path: String,
    /// Where it appears in the container.
    pub container_path: String,
    /// Device cgroup access, a non-empty subset of `rwm`.
    pub permissions: String,
}

/// One `/etc/hosts` entry: `address name`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExtraHost {
    pub name: String,
    pub address: String,
}

/// Compose `security_opt`, as far as Shoal honours it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct SecurityOpts {
    /// `seccomp:unconfined`: no seccomp filter (the default filter otherwise, unless privileged).
    pub seccomp_unconfined: bool,
    /// `no-new-privileges`: the process cannot gain privileges through setuid or file
    /// capabilities.
    pub no_new_privileges: bool,
    /// `apparmor:unconfined`: Shoal loads no AppArmor profile, so this is what every container
    /// gets; kept to show the operator's intent.
    pub apparmor_unconfined: bool,
    /// `label:disable`: Shoal sets no SELinux label, so this is what every container gets.
    pub label_disable: bool,
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
