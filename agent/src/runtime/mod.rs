//! The agent's container runtime layer: one trait, a containerd implementation and an in-memory fake.

pub mod containerd;
mod containerd_image;
pub mod fake;
pub mod registry;
pub mod rootfs_files;
pub mod seccomp;
pub mod spec;
pub mod users;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use async_trait::async_trait;
use shoal_model::container::ContainerSpec;
use tokio::sync::broadcast;

pub use containerd::{ContainerdConfig, ContainerdRuntime};
pub use fake::FakeRuntime;
pub use registry::{Registries, RegistryAuth};

/// Label keys the agent puts on every container it creates.
pub mod labels {
    /// The task this container runs.
    pub const TASK_ID: &str = "io.shoal.task-id";
    /// The service the task belongs to.
    pub const SERVICE: &str = "io.shoal.service";
    /// The node the agent runs on.
    pub const NODE: &str = "io.shoal.node";
    /// Where the task's stdout goes.
    pub const STDOUT_PATH: &str = "io.shoal.stdout-path";
    /// Where the task's stderr goes.
    pub const STDERR_PATH: &str = "io.shoal.stderr-path";
    /// The task's replica slot (0 for a global service's task).
    pub const SLOT: &str = "io.shoal.slot";
    /// The host ports the task binds, comma-separated.
    pub const HOST_PORTS: &str = "io.shoal.host-ports";
    /// The storage the task writes to (`volume:NAME`, `bind:PATH`), comma-separated.
    pub const DATA: &str = "io.shoal.data";
}

/// An image the runtime has imported and unpacked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageRef {
    /// Full image name, e.g. `docker.io/library/busybox:latest`.
    pub name: String,
    /// Digest of the image's manifest.
    pub digest: String,
}

/// Everything needed to create one container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerConfig {
    /// Container id, unique within the runtime's namespace.
    pub id: String,
    pub spec: ContainerSpec,
    /// The task this container runs.
    pub task_id: String,
    pub service: String,
    pub node: String,
    /// Files the task's stdout and stderr are appended to.
    pub stdout_path: PathBuf,
    pub stderr_path: PathBuf,
}

impl ContainerConfig {
    /// The labels the container carries: the spec's own, then the agent's (which win).
    pub fn labels(&self) -> BTreeMap<String, String> {
        let mut labels = self.spec.labels.clone();
        labels.insert(labels::TASK_ID.to_owned(), self.task_id.clone());
        labels.insert(labels::SERVICE.to_owned(), self.service.clone());
        labels.insert(labels::NODE.to_owned(), self.node.clone());
        labels.insert(
            labels::STDOUT_PATH.to_owned(),
            self.stdout_path.display().to_string(),
        );
        labels.insert(
            labels::STDERR_PATH.to_owned(),
            self.stderr_path.display().to_string(),
        );
        labels
    }
}

/// Where a container is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ContainerStatus {
    /// Created, no process started yet (or its task was deleted).
    Created,
    Running,
    /// The process exited; `exit_code` says how.
    Stopped,
}

/// What the runtime knows about one container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerInfo {
    pub id: String,
    pub labels: BTreeMap<String, String>,
    /// Host pid of the container's init process, when it has one.
    pub pid: Option<u32>,
    pub status: ContainerStatus,
    /// Exit code, when stopped.
    pub exit_code: Option<u32>,
}

/// A container's main process exited.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExitEvent {
    pub id: String,
    pub exit_code: u32,
}

/// Output of a command run inside a container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecOutput {
    pub exit_code: u32,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
}

/// Everything that can go wrong in the runtime layer.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error("cannot connect to containerd at `{socket}`: {source}")]
    Connect {
        socket: PathBuf,
        #[source]
        source: tonic::transport::Error,
    },
    #[error("containerd: {op}: {status}")]
    Containerd {
        op: String,
        #[source]
        status: tonic::Status,
    },
    #[error("image `{0}` not found")]
    ImageNotFound(String),
    #[error("container `{0}` not found")]
    ContainerNotFound(String),
    #[error("container `{0}` already exists")]
    ContainerExists(String),
    #[error("image `{image}`: registry `{registry}`: unauthorized")]
    RegistryUnauthorized { image: String, registry: String },
    #[error("image `{image}`: registry `{registry}`: {what} not found")]
    RegistryNotFound {
        image: String,
        registry: String,
        what: String,
    },
    #[error("image `{image}`: registry `{registry}`: {message}")]
    Registry {
        image: String,
        registry: String,
        message: String,
    },
    #[error("image archive `{path}`: {message}")]
    BadArchive { path: PathBuf, message: String },
    #[error("image `{image}`: blob {digest}: digest mismatch, content has {actual}")]
    DigestMismatch {
        image: String,
        digest: String,
        actual: String,
    },
    #[error("image `{image}`: layer {digest}: unpacked to {actual}, config says {expected}")]
    DiffIdMismatch {
        image: String,
        digest: String,
        expected: String,
        actual: String,
    },
    #[error("image `{image}`: bad image metadata: {message}")]
    BadImage { image: String, message: String },
    #[error("container `{id}`: {source}")]
    Spec {
        id: String,
        #[source]
        source: spec::SpecError,
    },
    #[error("container `{id}`: cannot start: {message}")]
    Start { id: String, message: String },
    #[error("container `{id}`: exec {command:?}: {message}")]
    Exec {
        id: String,
        command: Vec<String>,
        message: String,
    },
    #[error("unknown signal `{0}`")]
    UnknownSignal(String),
    #[error("{what} `{path}`: {source}")]
    Io {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// The runtime's result type.
pub type Result<T, E = RuntimeError> = std::result::Result<T, E>;

/// What the agent needs from a container runtime.
#[async_trait]
pub trait ContainerRuntime: Send + Sync {
    /// Imports an OCI image-layout tar (as `docker save`/`ctr export` write it) and unpacks it.
    async fn import_image(&self, tar_path: &std::path::Path) -> Result<ImageRef>;
    /// Pulls `name` (`host[:port]/repository[:tag|@digest]`) from its registry and unpacks it;
    /// concurrent pulls of one image make one download. On failure nothing of it is left.
    async fn pull_image(&self, name: &str, auth: &RegistryAuth) -> Result<ImageRef>;
    /// Bytes of layers written so far and in total of a pull of `name` under way.
    fn pull_progress(&self, _name: &str) -> Option<(u64, u64)> {
        None
    }
    /// Whether `name` is present and unpacked, ready for `create`.
    async fn ensure_image(&self, name: &str) -> Result<bool>;
    /// The manifest digest `name` points at on this node, if it is present.
    async fn image_digest(&self, name: &str) -> Result<Option<String>>;
    /// Creates the container (root filesystem and spec) without starting it.
    async fn create(&self, config: ContainerConfig) -> Result<()>;
    /// Starts the container's main process and returns its host pid.
    async fn start(&self, id: &str) -> Result<u32>;
    /// Sends `signal`, waits up to `grace` for the exit, then kills it with SIGKILL.
    async fn stop(&self, id: &str, signal: &str, grace: Duration) -> Result<()>;
    /// Removes the task, the container and its snapshot. Removing an absent container is fine.
    async fn remove(&self, id: &str) -> Result<()>;
    /// Every container of this runtime's namespace that carries a task label (the others are
    /// never the agent's to touch). Must work with thousands of containers.
    async fn list(&self) -> Result<Vec<ContainerInfo>>;
    /// Runs `command` inside the running container and waits for it.
    async fn exec(&self, id: &str, command: &[String]) -> Result<ExecOutput>;
    /// Exits of containers' main processes, as they happen.
    fn subscribe_exits(&self) -> broadcast::Receiver<ExitEvent>;
    /// The runtime's version, e.g. `containerd 1.6.20`.
    async fn version(&self) -> Result<String>;
}

/// Signal number for a name like `SIGTERM`, `TERM` or `15`.
pub fn signal_number(name: &str) -> Result<i32> {
    if let Ok(n) = name.parse::<i32>() {
        return Ok(n);
    }
    let upper = name.to_ascii_uppercase();
    let full = if upper.starts_with("SIG") {
        upper
    } else {
        format!("SIG{upper}")
    };
    full.parse::<nix::sys::signal::Signal>()
        .map(|s| s as i32)
        .map_err(|_| RuntimeError::UnknownSignal(name.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signal_names() {
        assert_eq!(signal_number("SIGTERM").unwrap(), 15);
        assert_eq!(signal_number("term").unwrap(), 15);
        assert_eq!(signal_number("9").unwrap(), 9);
        assert!(signal_number("SIGNOPE").is_err());
    }
}
