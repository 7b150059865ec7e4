//! `ContainerdRuntime`: the `ContainerRuntime` over containerd's gRPC API on its unix socket.
//!
//! Facts this relies on (containerd 1.6 with the runc v2 shim):
//! - stdio of a task or exec is a FIFO path, or a `file://` / `binary://` URI. A plain path that
//!   names a *regular file* (not a FIFO) makes the runc v2 shim open it `O_WRONLY|O_APPEND` and copy
//!   the process's pipe into it from its own goroutines: no extra process, no reader needed, and
//!   stdout and stderr stay apart (`file://` would merge them; `binary://` costs a logging process
//!   per container; a FIFO blocks the container once nobody reads it). So the runtime creates both
//!   log files before Tasks.Create and passes their paths. The shim holds them open, so output keeps
//!   flowing while the agent is down or restarting; rotation truncates them in place.
//! - Containers.List answers in one message, which grows with every container's OCI spec (about
//!   3 KiB each): `list` uses Containers.ListStream (one message per container), filtered to the
//!   containers that carry the agent's task label, and every client decodes up to
//!   [`DECODE_LIMIT_BYTES`]; the largest message of each listing is published as a metric and
//!   logged once it passes half the limit.
//! - Events.Subscribe answers only when the first event arrives, so the subscriber runs in its own
//!   task, and `connect` publishes a marker event until the subscription is seen live.
//! - TaskExit's `type_url` has no leading slash: the event's bytes are decoded directly.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use containerd_client::events::TaskExit;
use containerd_client::services::v1::container::Runtime;
use containerd_client::services::v1::snapshots::{
    snapshots_client::SnapshotsClient, MountsRequest, PrepareSnapshotRequest, RemoveSnapshotRequest,
};
use containerd_client::services::v1::{
    containers_client::ContainersClient, events_client::EventsClient, leases_client::LeasesClient,
    tasks_client::TasksClient, version_client::VersionClient, Container, CreateContainerRequest,
    CreateRequest as CreateLeaseRequest, CreateTaskRequest, DeleteContainerRequest,
    DeleteProcessRequest, DeleteRequest as DeleteLeaseRequest, DeleteTaskRequest,
    ExecProcessRequest, GetContainerRequest, GetRequest, KillRequest, ListContainersRequest,
    ListTasksRequest, PublishRequest, StartRequest, SubscribeRequest, WaitRequest,
};
use containerd_client::types::v1::Status as TaskStatus;
use containerd_client::types::Mount as CdMount;
use prost::Message;
use tokio::sync::{broadcast, oneshot};
use tokio::task::JoinHandle;
use tonic::transport::Channel;
use tonic::{Code, Request, Status};
use tracing::{debug, info, warn};

use shoal_model::container::{ContainerSpec, NetworkMode};

use crate::metrics;

use super::spec::{
    build_spec, effective_user, hosts_file_text, parse_cap_bounding, volume_dirs, ImageConfig,
    SpecContext, LOOPBACK_HOSTS,
};
use super::{
    labels, signal_number, ContainerConfig, ContainerInfo, ContainerRuntime, ContainerStatus,
    ExecOutput, ExitEvent, ImageRef, RegistryAuth, Result, RuntimeError,
};
use super::{rootfs_files, users};

const SPEC_TYPE_URL: &str = "types.containerd.io/opencontainers/runtime-spec/1/Spec";
const PROCESS_TYPE_URL: &str = "types.containerd.io/opencontainers/runtime-spec/1/Process";
const NAMESPACE_HEADER: &str = "containerd-namespace";
const LEASE_HEADER: &str = "containerd-lease";
/// Topic of the marker event `connect` publishes to learn that its subscription is live.
const MARKER_TOPIC: &str = "/shoal/subscribed";
/// The largest gRPC message the runtime's containerd clients decode (tonic's default is 4 MiB).
pub const DECODE_LIMIT_BYTES: usize = 64 * 1024 * 1024;
/// The containerd filter for the containers `list` returns: those carrying a task label.
const LIST_FILTER: &str = "labels.\"io.shoal.task-id\"";
/// How long `stop` waits for the exit after SIGKILL.
const KILL_WAIT: Duration = Duration::from_secs(10);
const SIGKILL: u32 = 9;

/// How to reach containerd and where the runtime keeps its own files.
#[derive(Debug, Clone)]
pub struct ContainerdConfig {
    /// containerd's gRPC unix socket.
    pub socket: PathBuf,
    /// containerd namespace all of this runtime's objects live in.
    pub namespace: String,
    /// Named volume `x` is the directory `<volumes_dir>/x`.
    pub volumes_dir: PathBuf,
    /// The agent's secrets tmpfs (see `crate::secrets`).
    pub secrets_dir: PathBuf,
    /// Scratch files for the output of `exec`.
    pub exec_dir: PathBuf,
    /// Per-container `/etc/hosts` files (containers with `extra_hosts`): `<hosts_dir>/<id>`.
    pub hosts_dir: PathBuf,
    pub snapshotter: String,
    /// containerd runtime (shim) name.
    pub runtime: String,
    /// Parent cgroup of the containers (cgroupfs style).
    pub cgroup_parent: String,
}

impl ContainerdConfig {
    /// Defaults: namespace `shoal`, overlayfs, runc v2, volumes in `/var/lib/shoal/volumes`.
    pub fn new(socket: impl Into<PathBuf>) -> Self {
        Self {
            socket: socket.into(),
            namespace: "shoal".to_owned(),
            volumes_dir: PathBuf::from("/var/lib/shoal/volumes"),
            secrets_dir: PathBuf::from("/var/lib/shoal/agent/secrets"),
            exec_dir: PathBuf::from("/run/shoal/exec"),
            hosts_dir: PathBuf::from("/run/shoal/hosts"),
            snapshotter: "overlayfs".to_owned(),
            runtime: "io.containerd.runc.v2".to_owned(),
            cgroup_parent: "/shoal".to_owned(),
        }
    }
}

/// The containerd-backed runtime. Cheap to share behind an `Arc`; the exit subscriber stops on drop.
pub struct ContainerdRuntime {
    pub(super) channel: Channel,
    pub(super) cfg: ContainerdConfig,
    exits: broadcast::Sender<ExitEvent>,
    events_task: JoinHandle<()>,
    exec_counter: AtomicU64,
    /// One lock per image being pulled, holding the last pull's result: one download per image.
    pulls: std::sync::Mutex<HashMap<String, PullSlot>>,
    /// Layer bytes written and in total, per image being pulled.
    pub(super) progress: std::sync::Mutex<HashMap<String, (u64, u64)>>,
    /// Largest message size last warned about (0: never).
    list_warned_at: AtomicU64,
}

/// The last pull of one name: its result and when it finished.
type PullSlot = Arc<tokio::sync::Mutex<Option<(ImageRef, std::time::Instant)>>>;

impl Drop for ContainerdRuntime {
    fn drop(&mut self) {
        self.events_task.abort();
    }
}

/// Maps a gRPC failure to the runtime error for `op`.
pub(super) fn grpc(op: impl Into<String>) -> impl FnOnce(Status) -> RuntimeError {
    let op = op.into();
    move |status| RuntimeError::Containerd { op, status }
}

/// `Ok(None)` for NotFound, the value otherwise.
fn found<T>(r: std::result::Result<T, Status>) -> std::result::Result<Option<T>, Status> {
    match r {
        Ok(v) => Ok(Some(v)),
        Err(s) if s.code() == Code::NotFound => Ok(None),
        Err(s) => Err(s),
    }
}

/// Creates `path` (and its directory) as an empty regular file unless it exists: the shim
/// appends a process's output to a regular file it finds at a stdio path.
async fn ensure_log_file(path: &Path) -> Result<()> {
    if let Some(parent) = path.parent() {
        create_dir(parent, "log directory").await?;
    }
    tokio::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .await
        .map(drop)
        .map_err(|source| RuntimeError::Io {
            what: "log file",
            path: path.to_path_buf(),
            source,
        })
}

impl ContainerdRuntime {
    /// Connects to containerd and starts following task exits.
    pub async fn connect(cfg: ContainerdConfig) -> Result<Arc<Self>> {
        let channel = containerd_client::connect(&cfg.socket)
            .await
            .map_err(|source| RuntimeError::Connect {
                socket: cfg.socket.clone(),
                source,
            })?;
        let (exits, _) = broadcast::channel(1024);
        let (live_tx, live_rx) = oneshot::channel();
        let events_task = tokio::spawn(follow_exits(
            channel.clone(),
            cfg.namespace.clone(),
            exits.clone(),
            live_tx,
        ));
        let rt = Arc::new(Self {
            channel,
            cfg,
            exits,
            events_task,
            exec_counter: AtomicU64::new(0),
            pulls: Default::default(),
            progress: Default::default(),
            list_warned_at: AtomicU64::new(0),
        });
        rt.wait_subscribed(live_rx).await;
        Ok(rt)
    }

    /// Publishes marker events until the exit subscriber has seen one (or 5 s passed).
    async fn wait_subscribed(&self, mut live: oneshot::Receiver<()>) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while tokio::time::Instant::now() < deadline {
            let marker = PublishRequest {
                topic: MARKER_TOPIC.to_owned(),
                event: Some(prost_types::Any {
                    type_url: "shoal.subscribed".to_owned(),
                    value: Vec::new(),
                }),
            };
            if let Err(status) = EventsClient::new(self.channel.clone())
                .max_decoding_message_size(DECODE_LIMIT_BYTES)
                .publish(self.req(marker))
                .await
            {
                warn!(%status, "cannot publish the subscription marker");
            }
            if tokio::time::timeout(Duration::from_millis(100), &mut live)
                .await
                .is_ok()
            {
                return;
            }
        }
        warn!("exit subscription not confirmed live after 5 s");
    }

    /// Publishes a listing's size (metrics `shoal_agent_containerd_listed_containers` and
    /// `shoal_agent_containerd_list_largest_message_bytes`); warns once its largest message passes half
    /// of [`DECODE_LIMIT_BYTES`], and again whenever it grows past the last warning by half.
    fn note_listing(&self, containers: usize, largest: usize) {
        let largest_bytes = largest as u64;
        metrics::CONTAINERD_LISTED_CONTAINERS.store(containers as u64, Ordering::Relaxed);
        metrics::CONTAINERD_LIST_LARGEST_MESSAGE_BYTES.store(largest_bytes, Ordering::Relaxed);
        let warned = self.list_warned_at.load(Ordering::Relaxed);
        let half = (DECODE_LIMIT_BYTES / 2) as u64;
        if largest_bytes > half.max(warned + warned / 2) {
            self.list_warned_at.store(largest_bytes, Ordering::Relaxed);
            warn!(
                containers,
                largest_message_bytes = largest,
                limit_bytes = DECODE_LIMIT_BYTES,
                "containerd listing is near the gRPC message limit"
            );
        }
    }

    /// A request in this runtime's namespace.
    pub(super) fn req<T>(&self, msg: T) -> Request<T> {
        namespaced(msg, &self.cfg.namespace)
    }

    /// A request in this runtime's namespace, under `lease`.
    pub(super) fn leased<T>(&self, msg: T, lease: &str) -> Request<T> {
        let mut r = self.req(msg);
        if let Ok(v) = lease.parse() {
            r.metadata_mut().insert(LEASE_HEADER, v);
        }
        r
    }

    pub(super) fn snapshots(&self) -> SnapshotsClient<Channel> {
        SnapshotsClient::new(self.channel.clone()).max_decoding_message_size(DECODE_LIMIT_BYTES)
    }

    fn tasks(&self) -> TasksClient<Channel> {
        TasksClient::new(self.channel.clone()).max_decoding_message_size(DECODE_LIMIT_BYTES)
    }

    fn containers(&self) -> ContainersClient<Channel> {
        ContainersClient::new(self.channel.clone()).max_decoding_message_size(DECODE_LIMIT_BYTES)
    }

    /// Creates a lease that containerd drops by itself after `expire` if we never delete it.
    pub(super) async fn create_lease(&self, purpose: &str, expire: Duration) -> Result<String> {
        let id = format!(
            "shoal-{purpose}-{}-{}",
            std::process::id(),
            self.exec_counter.fetch_add(1, Ordering::Relaxed)
        );
        let mut lease_labels = std::collections::HashMap::new();
        lease_labels.insert("containerd.io/gc.expire".to_owned(), rfc3339_after(expire));
        LeasesClient::new(self.channel.clone())
            .max_decoding_message_size(DECODE_LIMIT_BYTES)
            .create(self.req(CreateLeaseRequest {
                id: id.clone(),
                labels: lease_labels,
            }))
            .await
            .map_err(grpc(format!("create lease `{id}`")))?;
        Ok(id)
    }

    /// Deletes a lease; with `sync`, containerd collects what only it held before answering.
    pub(super) async fn delete_lease(&self, id: &str, sync: bool) {
        let r = LeasesClient::new(self.channel.clone())
            .max_decoding_message_size(DECODE_LIMIT_BYTES)
            .delete(self.req(DeleteLeaseRequest {
                id: id.to_owned(),
                sync,
            }))
            .await;
        if let Err(status) = r {
            warn!(lease = id, %status, "cannot delete lease");
        }
    }

    async fn get_container(&self, id: &str) -> Result<Container> {
        let resp = self
            .containers()
            .get(self.req(GetContainerRequest { id: id.to_owned() }))
            .await;
        match found(resp).map_err(grpc(format!("get container `{id}`")))? {
            Some(r) => r
                .into_inner()
                .container
                .ok_or_else(|| RuntimeError::ContainerNotFound(id.to_owned())),
            None => Err(RuntimeError::ContainerNotFound(id.to_owned())),
        }
    }

    /// The task of container `id`, if it has one.
    async fn get_task(&self, id: &str) -> Result<Option<containerd_client::types::v1::Process>> {
        let resp = self
            .tasks()
            .get(self.req(GetRequest {
                container_id: id.to_owned(),
                exec_id: String::new(),
            }))
            .await;
        Ok(found(resp)
            .map_err(grpc(format!("get task `{id}`")))?
            .and_then(|r| r.into_inner().process))
    }

    async fn kill(&self, id: &str, signal: u32, all: bool) -> Result<()> {
        let r = self
            .tasks()
            .kill(self.req(KillRequest {
                container_id: id.to_owned(),
                exec_id: String::new(),
                signal,
                all,
            }))
            .await;
        match r {
            Ok(_) => Ok(()),
            // Already gone or already stopped.
            Err(s) if matches!(s.code(), Code::NotFound | Code::FailedPrecondition) => Ok(()),
            Err(s) => Err(grpc(format!("kill `{id}` with signal {signal}"))(s)),
        }
    }

    /// Waits for the task's exit, up to `limit`; `Ok(true)` if it exited.
    async fn wait_exit(&self, id: &str, limit: Duration) -> Result<bool> {
        let mut tasks = self.tasks();
        let wait = tasks.wait(self.req(WaitRequest {
            container_id: id.to_owned(),
            exec_id: String::new(),
        }));
        match tokio::time::timeout(limit, wait).await {
            Err(_) => Ok(false),
            Ok(Ok(_)) => Ok(true),
            Ok(Err(s)) if s.code() == Code::NotFound => Ok(true),
            Ok(Err(s)) => Err(grpc(format!("wait for `{id}`"))(s)),
        }
    }

    async fn delete_task(&self, id: &str) -> Result<()> {
        let r = self
            .tasks()
            .delete(self.req(DeleteTaskRequest {
                container_id: id.to_owned(),
            }))
            .await;
        found(r).map_err(grpc(format!("delete task `{id}`")))?;
        Ok(())
    }

    async fn create_inner(&self, config: &ContainerConfig, lease: &str) -> Result<()> {
        let id = &config.id;
        let image = self.read_image(&config.spec.image).await?;
        let image_config = ImageConfig::from_image_json(&image.config_json).map_err(|e| {
            RuntimeError::BadImage {
                image: config.spec.image.clone(),
                message: e.to_string(),
            }
        })?;
        let hostname = nix::unistd::gethostname()
            .map(|h| h.to_string_lossy().into_owned())
            .unwrap_or_else(|_| "localhost".to_owned());
        let host_caps = tokio::fs::read_to_string("/proc/self/status")
            .await
            .ok()
            .and_then(|s| parse_cap_bounding(&s));
        let spec_err = |source| RuntimeError::Spec {
            id: id.clone(),
            source,
        };
        let parent = image.chain_ids.last().cloned().unwrap_or_default();
        self.snapshots()
            .prepare(self.leased(
                PrepareSnapshotRequest {
                    snapshotter: self.cfg.snapshotter.clone(),
                    key: id.clone(),
                    parent,
                    labels: Default::default(),
                },
                lease,
            ))
            .await
            .map_err(|s| {
                if s.code() == Code::AlreadyExists {
                    RuntimeError::ContainerExists(id.clone())
                } else {
                    grpc(format!("prepare snapshot for `{id}`"))(s)
                }
            })?;
        let built = async {
            let (passwd, group) = if users::needs_lookup(
                effective_user(&config.spec, &image_config),
                &config.spec.group_add,
            ) {
                self.read_user_files(id).await?
            } else {
                (None, None)
            };
            let host_devices = if config.spec.privileged {
                tokio::task::spawn_blocking(rootfs_files::host_devices)
                    .await
                    .unwrap_or_default()
            } else {
                Vec::new()
            };
            let devices = config
                .spec
                .devices
                .iter()
                .map(|d| {
                    rootfs_files::host_device(Path::new(&d.host_path), &d.container_path).map_err(
                        |source| RuntimeError::Io {
                            what: "device",
                            path: PathBuf::from(&d.host_path),
                            source,
                        },
                    )
                })
                .collect::<Result<Vec<_>>>()?;
            let hosts_file = if config.spec.extra_hosts.is_empty() {
                None
            } else {
                Some(self.write_hosts_file(id, &config.spec).await?)
            };
            let ctx = SpecContext {
                id,
                cgroup_parent: &self.cfg.cgroup_parent,
                volumes_dir: &self.cfg.volumes_dir,
                secrets_dir: &self.cfg.secrets_dir,
                host_hostname: &hostname,
                host_caps,
                passwd: passwd.as_deref(),
                group: group.as_deref(),
                host_devices: &host_devices,
                devices: &devices,
                hosts_file: hosts_file.as_deref(),
            };
            let oci = build_spec(&config.spec, &image_config, &ctx).map_err(spec_err)?;
            for dir in volume_dirs(&config.spec, &self.cfg.volumes_dir).map_err(spec_err)? {
                create_dir(&dir, "volume directory").await?;
            }
            for log in [&config.stdout_path, &config.stderr_path] {
                if let Some(parent) = log.parent() {
                    create_dir(parent, "log directory").await?;
                }
            }
            serde_json::to_vec(&oci).map_err(|e| RuntimeError::Spec {
                id: id.clone(),
                source: e.into(),
            })
        }
        .await;
        let spec_json = match built {
            Ok(json) => json,
            Err(error) => {
                self.remove_snapshot(id).await;
                self.remove_hosts_file(id).await;
                return Err(error);
            }
        };

        let container = Container {
            id: id.clone(),
            labels: config.labels().into_iter().collect(),
            image: config.spec.image.clone(),
            runtime: Some(Runtime {
                name: self.cfg.runtime.clone(),
                options: None,
            }),
            spec: Some(prost_types::Any {
                type_url: SPEC_TYPE_URL.to_owned(),
                value: spec_json,
            }),
            snapshotter: self.cfg.snapshotter.clone(),
            snapshot_key: id.clone(),
            ..Default::default()
        };
        let created = self
            .containers()
            .create(self.leased(
                CreateContainerRequest {
                    container: Some(container),
                },
                lease,
            ))
            .await;
        if let Err(s) = created {
            self.remove_snapshot(id).await;
            return Err(if s.code() == Code::AlreadyExists {
                RuntimeError::ContainerExists(id.clone())
            } else {
                // The hosts file is this container's alone only when no other holds the id.
                self.remove_hosts_file(id).await;
                grpc(format!("create container `{id}`"))(s)
            });
        }
        Ok(())
    }

    /// The image's `/etc/passwd` and `/etc/group`, read from the prepared snapshot `key`.
    async fn read_user_files(&self, key: &str) -> Result<(Option<String>, Option<String>)> {
        let mounts: Vec<CdMount> = self
            .snapshots()
            .mounts(self.req(MountsRequest {
                snapshotter: self.cfg.snapshotter.clone(),
                key: key.to_owned(),
            }))
            .await
            .map_err(grpc(format!("mounts of the snapshot of `{key}`")))?
            .into_inner()
            .mounts;
        let scratch = self.cfg.exec_dir.clone();
        create_dir(&scratch, "exec directory").await?;
        let read = tokio::task::spawn_blocking(move || {
            rootfs_files::read_files(&mounts, &scratch, &["/etc/passwd", "/etc/group"])
        })
        .await
        .map_err(|e| RuntimeError::Io {
            what: "reading the image's users",
            path: PathBuf::from("/etc/passwd"),
            source: std::io::Error::other(e),
        })?
        .map_err(|source| RuntimeError::Io {
            what: "reading the image's users",
            path: PathBuf::from("/etc/passwd"),
            source,
        })?;
        let mut read = read.into_iter();
        Ok((read.next().flatten(), read.next().flatten()))
    }

    /// Writes the container's own hosts file: the host's `/etc/hosts` with host networking (a
    /// loopback-only file otherwise), then the spec's `extra_hosts`.
    async fn write_hosts_file(&self, id: &str, spec: &ContainerSpec) -> Result<PathBuf> {
        let base = match spec.network {
            NetworkMode::Host => {
                tokio::fs::read_to_string("/etc/hosts")
                    .await
                    .map_err(|source| RuntimeError::Io {
                        what: "host file",
                        path: PathBuf::from("/etc/hosts"),
                        source,
                    })?
            }
            NetworkMode::None => LOOPBACK_HOSTS.to_owned(),
        };
        create_dir(&self.cfg.hosts_dir, "hosts file directory").await?;
        let path = self.cfg.hosts_dir.join(id);
        tokio::fs::write(&path, hosts_file_text(&base, spec))
            .await
            .map_err(|source| RuntimeError::Io {
                what: "hosts file",
                path: path.clone(),
                source,
            })?;
        Ok(path)
    }

    async fn remove_hosts_file(&self, id: &str) {
        let path = self.cfg.hosts_dir.join(id);
        if let Err(e) = tokio::fs::remove_file(&path).await {
            if e.kind() != std::io::ErrorKind::NotFound {
                warn!(path = %path.display(), error = %e, "cannot remove hosts file");
            }
        }
    }

    async fn remove_snapshot(&self, key: &str) {
        let r = self
            .snapshots()
            .remove(self.req(RemoveSnapshotRequest {
                snapshotter: self.cfg.snapshotter.clone(),
                key: key.to_owned(),
            }))
            .await;
        if let Err(status) = found(r) {
            warn!(snapshot = key, %status, "cannot remove snapshot");
        }
    }

    async fn exec_inner(
        &self,
        id: &str,
        exec_id: &str,
        command: &[String],
        out: &Path,
        err: &Path,
    ) -> Result<u32> {
        let exec_err = |message: String| RuntimeError::Exec {
            id: id.to_owned(),
            command: command.to_vec(),
            message,
        };
        let container = self.get_container(id).await?;
        let spec_json = container
            .spec
            .map(|a| a.value)
            .ok_or_else(|| exec_err("container has no spec".to_owned()))?;
        let spec: oci_spec::runtime::Spec =
            serde_json::from_slice(&spec_json).map_err(|e| exec_err(e.to_string()))?;
        let mut process = spec.process().clone().unwrap_or_default();
        process.set_args(Some(command.to_vec()));
        process.set_terminal(Some(false));
        let process_json = serde_json::to_vec(&process).map_err(|e| exec_err(e.to_string()))?;

        self.tasks()
            .exec(self.req(ExecProcessRequest {
                container_id: id.to_owned(),
                stdin: String::new(),
                stdout: out.display().to_string(),
                stderr: err.display().to_string(),
                terminal: false,
                spec: Some(prost_types::Any {
                    type_url: PROCESS_TYPE_URL.to_owned(),
                    value: process_json,
                }),
                exec_id: exec_id.to_owned(),
            }))
            .await
            .map_err(|s| exec_err(s.message().to_owned()))?;
        let started = self
            .tasks()
            .start(self.req(StartRequest {
                container_id: id.to_owned(),
                exec_id: exec_id.to_owned(),
            }))
            .await;
        let result = match started {
            Err(s) => Err(exec_err(s.message().to_owned())),
            Ok(_) => self
                .tasks()
                .wait(self.req(WaitRequest {
                    container_id: id.to_owned(),
                    exec_id: exec_id.to_owned(),
                }))
                .await
                .map(|r| r.into_inner().exit_status)
                .map_err(|s| exec_err(s.message().to_owned())),
        };
        // Deleting the process also waits for the shim to finish copying its output.
        let deleted = self
            .tasks()
            .delete_process(self.req(DeleteProcessRequest {
                container_id: id.to_owned(),
                exec_id: exec_id.to_owned(),
            }))
            .await;
        if let Err(status) = deleted {
            warn!(container = id, exec_id, %status, "cannot delete exec process");
        }
        result
    }
}

fn namespaced<T>(msg: T, namespace: &str) -> Request<T> {
    let mut r = Request::new(msg);
    if let Ok(v) = namespace.parse() {
        r.metadata_mut().insert(NAMESPACE_HEADER, v);
    }
    r
}

async fn create_dir(dir: &Path, what: &'static str) -> Result<()> {
    tokio::fs::create_dir_all(dir)
        .await
        .map_err(|source| RuntimeError::Io {
            what,
            path: dir.to_path_buf(),
            source,
        })
}

/// Follows containerd's task-exit events of `namespace` and forwards init-process exits.
async fn follow_exits(
    channel: Channel,
    namespace: String,
    exits: broadcast::Sender<ExitEvent>,
    live: oneshot::Sender<()>,
) {
    let mut live = Some(live);
    let filter = format!("namespace==\"{namespace}\",topic==\"/tasks/exit\"",);
    let marker = format!("namespace==\"{namespace}\",topic==\"{MARKER_TOPIC}\"");
    loop {
        let mut client =
            EventsClient::new(channel.clone()).max_decoding_message_size(DECODE_LIMIT_BYTES);
        let request = Request::new(SubscribeRequest {
            filters: vec![filter.clone(), marker.clone()],
        });
        match client.subscribe(request).await {
            Ok(stream) => {
                if let Some(tx) = live.take() {
                    let _ = tx.send(());
                }
                let mut stream = stream.into_inner();
                loop {
                    match stream.message().await {
                        Ok(Some(envelope)) => {
                            if envelope.topic != "/tasks/exit" {
                                continue;
                            }
                            let Some(any) = envelope.event else { continue };
                            match TaskExit::decode(any.value.as_slice()) {
                                // Exits of exec'd processes carry the exec id in `id`.
                                Ok(exit) if exit.id == exit.container_id => {
                                    debug!(container = %exit.container_id, exit_code = exit.exit_status, "task exited");
                                    let _ = exits.send(ExitEvent {
                                        id: exit.container_id,
                                        exit_code: exit.exit_status,
                                    });
                                }
                                Ok(_) => {}
                                Err(error) => warn!(%error, "undecodable TaskExit event"),
                            }
                        }
                        Ok(None) => {
                            warn!("containerd event stream ended; resubscribing");
                            break;
                        }
                        Err(status) => {
                            warn!(%status, "containerd event stream failed; resubscribing");
                            break;
                        }
                    }
                }
            }
            Err(status) => warn!(%status, "cannot subscribe to containerd events"),
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// RFC 3339 UTC time `after` from now, as containerd's `gc.expire` label wants it.
fn rfc3339_after(after: Duration) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let ms = (now + after).as_millis();
    shoal_model::time::rfc3339_utc(u64::try_from(ms).unwrap_or(u64::MAX))
}

fn status_of(p: &containerd_client::types::v1::Process) -> ContainerStatus {
    match TaskStatus::try_from(p.status) {
        Ok(TaskStatus::Running | TaskStatus::Paused | TaskStatus::Pausing) => {
            ContainerStatus::Running
        }
        Ok(TaskStatus::Stopped) => ContainerStatus::Stopped,
        _ => ContainerStatus::Created,
    }
}

#[async_trait]
impl ContainerRuntime for ContainerdRuntime {
    async fn import_image(&self, tar_path: &Path) -> Result<ImageRef> {
        self.import(tar_path).await
    }

    async fn pull_image(&self, name: &str, auth: &RegistryAuth) -> Result<ImageRef> {
        let slot = {
            let mut pulls = self
                .pulls
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            pulls.entry(name.to_owned()).or_default().clone()
        };
        let asked = std::time::Instant::now();
        let mut done = slot.lock().await;
        if let Some((image, finished)) = done.as_ref() {
            // Someone pulled it while we waited for the lock: that answer is as fresh as ours
            // would be. An older one is not (the tag may have moved since).
            if *finished >= asked && self.ensure_unpacked(name).await? {
                return Ok(image.clone());
            }
        }
        let image = self.pull(name, auth).await?;
        *done = Some((image.clone(), std::time::Instant::now()));
        Ok(image)
    }

    fn pull_progress(&self, name: &str) -> Option<(u64, u64)> {
        self.progress
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(name)
            .copied()
    }

    async fn ensure_image(&self, name: &str) -> Result<bool> {
        self.ensure_unpacked(name).await
    }

    async fn image_digest(&self, name: &str) -> Result<Option<String>> {
        self.image_target_digest(name).await
    }

    #[tracing::instrument(skip_all, fields(container = %config.id, task_id = %config.task_id, service = %config.service, image = %config.spec.image))]
    async fn create(&self, config: ContainerConfig) -> Result<()> {
        let lease = self
            .create_lease("create", Duration::from_secs(600))
            .await?;
        let r = self.create_inner(&config, &lease).await;
        self.delete_lease(&lease, false).await;
        if r.is_ok() {
            info!("container created");
        }
        r
    }

    #[tracing::instrument(skip(self))]
    async fn start(&self, id: &str) -> Result<u32> {
        let container = self.get_container(id).await?;
        if let Some(task) = self.get_task(id).await? {
            if status_of(&task) == ContainerStatus::Running {
                return Err(RuntimeError::Start {
                    id: id.to_owned(),
                    message: "already running".to_owned(),
                });
            }
            self.delete_task(id).await?;
        }
        let log_path = |key: &str| {
            container
                .labels
                .get(key)
                .map(PathBuf::from)
                .unwrap_or_else(|| PathBuf::from("/dev/null"))
        };
        let (stdout, stderr) = (log_path(labels::STDOUT_PATH), log_path(labels::STDERR_PATH));
        for path in [&stdout, &stderr] {
            ensure_log_file(path).await?;
        }
        let mounts: Vec<CdMount> = self
            .snapshots()
            .mounts(self.req(MountsRequest {
                snapshotter: container.snapshotter.clone(),
                key: container.snapshot_key.clone(),
            }))
            .await
            .map_err(grpc(format!("mounts of the snapshot of `{id}`")))?
            .into_inner()
            .mounts;
        self.tasks()
            .create(self.req(CreateTaskRequest {
                container_id: id.to_owned(),
                rootfs: mounts,
                stdout: stdout.display().to_string(),
                stderr: stderr.display().to_string(),
                ..Default::default()
            }))
            .await
            .map_err(|s| RuntimeError::Start {
                id: id.to_owned(),
                message: s.message().to_owned(),
            })?;
        let started = self
            .tasks()
            .start(self.req(StartRequest {
                container_id: id.to_owned(),
                exec_id: String::new(),
            }))
            .await;
        match started {
            Ok(r) => {
                let pid = r.into_inner().pid;
                info!(pid, "container started");
                Ok(pid)
            }
            Err(s) => {
                if let Err(error) = self.delete_task(id).await {
                    warn!(%error, "cannot delete the task that failed to start");
                }
                Err(RuntimeError::Start {
                    id: id.to_owned(),
                    message: s.message().to_owned(),
                })
            }
        }
    }

    #[tracing::instrument(skip(self))]
    async fn stop(&self, id: &str, signal: &str, grace: Duration) -> Result<()> {
        let sig = u32::try_from(signal_number(signal)?)
            .map_err(|_| RuntimeError::UnknownSignal(signal.to_owned()))?;
        match self.get_task(id).await? {
            Some(task) if status_of(&task) == ContainerStatus::Running => {}
            Some(_) => return Ok(()),
            None => {
                // No task: fine if the container exists, an error if it does not.
                self.get_container(id).await?;
                return Ok(());
            }
        }
        self.kill(id, sig, false).await?;
        if self.wait_exit(id, grace).await? {
            info!("container stopped");
            return Ok(());
        }
        warn!(
            grace_ms = grace.as_millis() as u64,
            "no exit within grace; SIGKILL"
        );
        self.kill(id, SIGKILL, true).await?;
        if !self.wait_exit(id, KILL_WAIT).await? {
            return Err(RuntimeError::Containerd {
                op: format!("stop `{id}`"),
                status: Status::deadline_exceeded("no exit 10 s after SIGKILL"),
            });
        }
        Ok(())
    }

    #[tracing::instrument(skip(self))]
    async fn remove(&self, id: &str) -> Result<()> {
        if let Some(task) = self.get_task(id).await? {
            if status_of(&task) == ContainerStatus::Running {
                self.kill(id, SIGKILL, true).await?;
                self.wait_exit(id, KILL_WAIT).await?;
            }
            self.delete_task(id).await?;
        }
        let r = self
            .containers()
            .delete(self.req(DeleteContainerRequest { id: id.to_owned() }))
            .await;
        found(r).map_err(grpc(format!("delete container `{id}`")))?;
        self.remove_snapshot(id).await;
        self.remove_hosts_file(id).await;
        info!("container removed");
        Ok(())
    }

    async fn list(&self) -> Result<Vec<ContainerInfo>> {
        // One message per container: no single answer grows with the number of containers.
        let mut stream = self
            .containers()
            .list_stream(self.req(ListContainersRequest {
                filters: vec![LIST_FILTER.to_owned()],
            }))
            .await
            .map_err(grpc("list containers"))?
            .into_inner();
        let mut containers = Vec::new();
        let mut largest = 0usize;
        while let Some(msg) = stream.message().await.map_err(grpc("list containers"))? {
            largest = largest.max(msg.encoded_len());
            containers.extend(msg.container);
        }
        let tasks = self
            .tasks()
            .list(self.req(ListTasksRequest {
                filter: String::new(),
            }))
            .await
            .map_err(grpc("list tasks"))?
            .into_inner();
        largest = largest.max(tasks.encoded_len());
        self.note_listing(containers.len(), largest);
        let tasks: BTreeMap<String, containerd_client::types::v1::Process> = tasks
            .tasks
            .into_iter()
            // containerd 1.6 leaves `container_id` empty in listed tasks; `id` names the container.
            .map(|t| {
                let key = if t.container_id.is_empty() {
                    t.id.clone()
                } else {
                    t.container_id.clone()
                };
                (key, t)
            })
            .collect();
        Ok(containers
            .into_iter()
            .map(|c| {
                let task = tasks.get(&c.id);
                let status = task.map(status_of).unwrap_or(ContainerStatus::Created);
                ContainerInfo {
                    labels: c.labels.into_iter().collect(),
                    pid: task
                        .filter(|_| status == ContainerStatus::Running)
                        .map(|t| t.pid),
                    exit_code: task
                        .filter(|_| status == ContainerStatus::Stopped)
                        .map(|t| t.exit_status),
                    status,
                    id: c.id,
                }
            })
            .collect())
    }

    #[tracing::instrument(skip(self))]
    async fn exec(&self, id: &str, command: &[String]) -> Result<ExecOutput> {
        let n = self.exec_counter.fetch_add(1, Ordering::Relaxed);
        let exec_id = format!("exec-{}-{n}", std::process::id());
        create_dir(&self.cfg.exec_dir, "exec output directory").await?;
        let out = self.cfg.exec_dir.join(format!("{id}-{exec_id}.out"));
        let err = self.cfg.exec_dir.join(format!("{id}-{exec_id}.err"));
        for path in [&out, &err] {
            ensure_log_file(path).await?;
        }
        // Tasks.DeleteProcess (in `exec_inner`) returns once the shim has copied the output.
        let result = self.exec_inner(id, &exec_id, command, &out, &err).await;
        let stdout = tokio::fs::read(&out).await.unwrap_or_default();
        let stderr = tokio::fs::read(&err).await.unwrap_or_default();
        let _ = tokio::fs::remove_file(&out).await;
        let _ = tokio::fs::remove_file(&err).await;
        Ok(ExecOutput {
            exit_code: result?,
            stdout,
            stderr,
        })
    }

    fn subscribe_exits(&self) -> broadcast::Receiver<ExitEvent> {
        self.exits.subscribe()
    }

    async fn version(&self) -> Result<String> {
        let v = VersionClient::new(self.channel.clone())
            .max_decoding_message_size(DECODE_LIMIT_BYTES)
            .version(Request::new(()))
            .await
            .map_err(grpc("version"))?
            .into_inner();
        Ok(format!("containerd {} ({})", v.version, v.revision))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_looks_right() {
        let s = rfc3339_after(Duration::ZERO);
        assert_eq!(s.len(), 24, "{s}");
        assert!(s.ends_with('Z'));
        assert_eq!(&s[4..5], "-");
        assert_eq!(&s[10..11], "T");
    }
}
