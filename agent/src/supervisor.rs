//! The supervisor: runs the reconciler's actions against a `ContainerRuntime` and keeps the
//! restart and health bookkeeping. Works the same with or without a coordinator.
//!
//! One loop owns all state. Each action that touches a container runs in its own tokio task with
//! the task marked busy, so a long stop never holds up other tasks; the result comes back to the
//! loop. Container exits (runtime events) and a periodic `list()` both trigger a pass, so exits
//! during an event-stream gap are still seen.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use shoal_model::{MountKind, PreStop, PullPolicy, Task, TaskState};
use shoal_proto::convert::StatusUpdate;
use tokio::sync::{broadcast, mpsc};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tracing::{debug, info, warn};

use crate::health::{spawn_monitor, HealthEvent, HealthStatus};
use crate::reconcile::{
    exit_code_i32, reconcile, task_of, Action, Exit, Input, TaskRecord, DEFAULT_STOP_GRACE_MS,
    DEFAULT_STOP_SIGNAL,
};
use crate::reporter::Reporter;
use crate::runtime::registry::auth_for;
use crate::runtime::{
    ContainerConfig, ContainerRuntime, ContainerStatus, Registries, RuntimeError,
};
use crate::secrets::{self, SecretStore, SecretsError};
use crate::state_db::StateDb;
use crate::templates::TemplateStore;
use shoal_model::template::NodeVars;

/// How the supervisor runs.
#[derive(Debug, Clone)]
pub struct SupervisorConfig {
    /// This node's name (a container label).
    pub node: String,
    /// Task `t` logs to `<log_dir>/<t>/stdout.log` and `stderr.log`.
    pub log_dir: PathBuf,
    /// How often the runtime is listed even without events.
    pub resync: Duration,
    /// Registries images are pulled from, by `host[:port]`.
    pub registries: Registries,
    /// The agent's secrets tmpfs (mounted on first use).
    pub secrets_dir: PathBuf,
    /// Secret values from the latest assignment set.
    pub secrets: SecretStore,
    /// Config values from the latest assignment set (their files share the secrets tmpfs).
    pub configs: SecretStore,
    /// Which configs are templates and the members they may name, from the same set.
    pub templates: TemplateStore,
    /// This node as templates see it (name, advertised address, labels, role).
    pub template_node: NodeVars,
}

/// Paths of a task's stdout and stderr files.
pub fn log_paths(log_dir: &Path, task_id: &str) -> (PathBuf, PathBuf) {
    let dir = log_dir.join(task_id);
    (dir.join("stdout.log"), dir.join("stderr.log"))
}

/// How an action ended, as far as the bookkeeping cares.
#[derive(Debug)]
enum Outcome {
    /// The container runs (created, started or restarted).
    Running { restarted: bool },
    /// The container is gone.
    Removed,
    /// Nothing changed that the loop tracks (stopped, failed and reported, or retry later).
    Other,
}

#[derive(Debug)]
struct Done {
    task_id: String,
    outcome: Outcome,
}

/// What the action tasks share.
#[derive(Clone)]
struct Ctx {
    rt: Arc<dyn ContainerRuntime>,
    reporter: Arc<Reporter>,
    cfg: SupervisorConfig,
}

impl Ctx {
    fn report(
        &self,
        task_id: &str,
        state: TaskState,
        message: impl Into<String>,
        code: Option<u32>,
    ) {
        self.reporter.report(StatusUpdate {
            task_id: task_id.to_owned(),
            state,
            message: message.into(),
            exit_code: code.map(exit_code_i32),
            image_digest: None,
        });
    }

    fn container_config(&self, task: &Task) -> ContainerConfig {
        let (stdout_path, stderr_path) = log_paths(&self.cfg.log_dir, &task.id);
        // The container records what a second copy must not share (slot, ports, storage).
        let mut spec = task.spec.clone();
        spec.labels.extend(crate::copies::claim_labels(task));
        ContainerConfig {
            id: task.id.clone(),
            spec,
            task_id: task.id.clone(),
            service: task.service.clone(),
            node: self.cfg.node.clone(),
            stdout_path,
            stderr_path,
        }
    }
}

/// Whether an error is the runtime being unreachable (retry later) rather than bad input.
fn transient(e: &RuntimeError) -> bool {
    matches!(
        e,
        RuntimeError::Connect { .. } | RuntimeError::Containerd { .. }
    )
}

/// The first bind mount whose host source is missing.
/// Creates the missing host directories of `task`'s binds that ask for it (`create_host_path`,
/// Docker's short syntax), returning the ones created; a failure names the path.
fn create_bind_sources(task: &Task) -> Result<Vec<String>, String> {
    let mut created = Vec::new();
    for m in &task.spec.mounts {
        let path = Path::new(&m.source);
        if m.kind != MountKind::Bind || !m.create_host_path || path.exists() {
            continue;
        }
        std::fs::create_dir_all(path)
            .map_err(|e| format!("cannot create bind source `{}`: {e}", m.source))?;
        created.push(m.source.clone());
    }
    Ok(created)
}

/// A shared bind whose source is not on a shared mount, with that mount (nothing made inside
/// would reach the host; Docker refuses it too). Reads `/proc/self/mountinfo` only when a bind
/// asks for shared propagation.
fn unshared_bind_source(task: &Task) -> Option<(String, String)> {
    let shared = |m: &&shoal_model::Mount| {
        m.kind == MountKind::Bind && matches!(m.propagation.as_deref(), Some("shared" | "rshared"))
    };
    if !task.spec.mounts.iter().any(|m| shared(&m)) {
        return None;
    }
    let info = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    task.spec.mounts.iter().filter(shared).find_map(|m| {
        let source = Path::new(&m.source).canonicalize().ok()?;
        let holder = crate::mountinfo::mount_of(&info, &source)?;
        (!holder.shared).then(|| (m.source.clone(), holder.mount_point.display().to_string()))
    })
}

fn missing_bind_source(task: &Task) -> Option<&str> {
    task.spec
        .mounts
        .iter()
        .find(|m| m.kind == MountKind::Bind && !Path::new(&m.source).exists())
        .map(|m| m.source.as_str())
}

/// Writes `task`'s secret and config files on the agent's tmpfs (mounting it on first use).
fn prepare_secrets(ctx: &Ctx, task: &Task) -> Result<(), SecretsError> {
    if task.spec.secrets.is_empty() && task.spec.configs.is_empty() {
        return Ok(());
    }
    secrets::ensure_tmpfs(&ctx.cfg.secrets_dir)?;
    let stores = secrets::Stores {
        secrets: &ctx.cfg.secrets,
        configs: &ctx.cfg.configs,
        templates: &ctx.cfg.templates,
        node: &ctx.cfg.template_node,
    };
    secrets::write_task(&ctx.cfg.secrets_dir, task, stores)
}

/// Makes `task`'s image ready as its `pull_policy` says, reporting the pull on the task; false
/// when the task cannot go on now (rejected, or to be retried on a later pass).
async fn ready_image(ctx: &Ctx, task: &Task) -> bool {
    let id = task.id.as_str();
    let image = &task.spec.image;
    let present = match ctx.rt.ensure_image(image).await {
        Ok(present) => present,
        Err(error) => {
            warn!(task_id = id, %error, "cannot check the image; retrying later");
            return false;
        }
    };
    let pull = match (task.spec.pull_policy, present) {
        (PullPolicy::Never, false) => {
            ctx.report(
                id,
                TaskState::Rejected,
                format!("image `{image}` is not on this node and its pull_policy is never"),
                None,
            );
            return false;
        }
        (PullPolicy::Always, _) | (PullPolicy::Missing, false) => true,
        (PullPolicy::Never | PullPolicy::Missing, true) => false,
    };
    if pull {
        ctx.report(
            id,
            TaskState::Preparing,
            format!("pulling image `{image}`"),
            None,
        );
        let auth = auth_for(&ctx.cfg.registries, image);
        let pull = ctx.rt.pull_image(image, &auth);
        tokio::pin!(pull);
        let mut tick = tokio::time::interval(Duration::from_secs(2));
        tick.tick().await;
        let pulled = loop {
            tokio::select! {
                r = &mut pull => break r,
                _ = tick.tick() => {
                    if let Some((done, total)) = ctx.rt.pull_progress(image) {
                        ctx.report(
                            id,
                            TaskState::Preparing,
                            format!("pulling image `{image}`: {done}/{total} bytes"),
                            None,
                        );
                    }
                }
            }
        };
        match pulled {
            Ok(_) => {}
            Err(error) if transient(&error) => {
                warn!(task_id = id, %error, "cannot pull the image; retrying later");
                return false;
            }
            Err(error) => {
                warn!(task_id = id, %error, "image pull failed");
                ctx.report(id, TaskState::Rejected, error.to_string(), None);
                return false;
            }
        }
    }
    true
}

/// Creates and starts `task`'s container, reporting preparing → starting → running (or why not).
async fn create_start(ctx: Ctx, task: Task) -> Outcome {
    let id = task.id.as_str();
    ctx.report(id, TaskState::Preparing, "preparing", None);
    if !ready_image(&ctx, &task).await {
        return Outcome::Other;
    }
    match create_bind_sources(&task) {
        Ok(created) => {
            for dir in created {
                info!(task_id = id, path = %dir, "created missing bind source directory");
                ctx.report(
                    id,
                    TaskState::Preparing,
                    format!("created bind source directory `{dir}`"),
                    None,
                );
            }
        }
        Err(message) => {
            ctx.report(id, TaskState::Rejected, message, None);
            return Outcome::Other;
        }
    }
    if let Some(source) = missing_bind_source(&task) {
        ctx.report(
            id,
            TaskState::Rejected,
            format!("bind source `{source}` does not exist"),
            None,
        );
        return Outcome::Other;
    }
    if let Some((source, mount_point)) = unshared_bind_source(&task) {
        ctx.report(
            id,
            TaskState::Rejected,
            format!(
                "bind source `{source}` is shared but its mount `{mount_point}` is not \
                 (mount --make-shared {mount_point})"
            ),
            None,
        );
        return Outcome::Other;
    }
    match prepare_secrets(&ctx, &task) {
        Ok(()) => {}
        Err(error @ SecretsError::Missing { .. }) => {
            warn!(task_id = id, %error, "waiting for a secret or config value");
            ctx.report(id, TaskState::Preparing, error.to_string(), None);
            return Outcome::Other;
        }
        Err(error) => {
            ctx.report(id, TaskState::Rejected, error.to_string(), None);
            return Outcome::Other;
        }
    }
    // The task records the image it runs: the digest its tag points at now, as created from.
    let image_digest = match ctx.rt.image_digest(&task.spec.image).await {
        Ok(digest) => digest,
        Err(error) => {
            warn!(task_id = id, %error, "cannot read the image's digest");
            None
        }
    };
    ctx.reporter.report(StatusUpdate {
        task_id: id.to_owned(),
        state: TaskState::Starting,
        message: "creating container".to_owned(),
        exit_code: None,
        image_digest,
    });
    match ctx.rt.create(ctx.container_config(&task)).await {
        Ok(()) | Err(RuntimeError::ContainerExists(_)) => {}
        Err(error) if transient(&error) => {
            warn!(task_id = id, %error, "cannot create the container; retrying later");
            return Outcome::Other;
        }
        Err(error) => {
            ctx.report(id, TaskState::Rejected, error.to_string(), None);
            return Outcome::Other;
        }
    }
    start_existing(ctx, task).await
}

/// Starts `task`'s created container; a container that cannot start is removed.
async fn start_existing(ctx: Ctx, task: Task) -> Outcome {
    let id = task.id.as_str();
    match ctx.rt.start(id).await {
        Ok(pid) => {
            ctx.report(id, TaskState::Running, format!("started (pid {pid})"), None);
            Outcome::Running { restarted: false }
        }
        Err(error) if transient(&error) => {
            warn!(task_id = id, %error, "cannot start the container; retrying later");
            Outcome::Other
        }
        Err(error) => {
            if let Err(e) = ctx.rt.remove(id).await {
                warn!(task_id = id, error = %e, "cannot remove the container that failed to start");
            } else {
                secrets::remove_task(&ctx.cfg.secrets_dir, id);
            }
            ctx.report(id, TaskState::Failed, error.to_string(), None);
            Outcome::Removed
        }
    }
}

fn stop_params(task: &Task) -> (String, Duration) {
    (
        task.spec
            .stop_signal
            .clone()
            .unwrap_or_else(|| DEFAULT_STOP_SIGNAL.to_owned()),
        Duration::from_millis(task.spec.stop_grace_ms.unwrap_or(DEFAULT_STOP_GRACE_MS)),
    )
}

/// Restarts `task`'s container in place (recreating it if it vanished).
async fn restart(ctx: Ctx, task: Task, reason: String, stop_first: bool) -> Outcome {
    let id = task.id.as_str();
    if stop_first {
        let (signal, grace) = stop_params(&task);
        if let Err(error) = ctx.rt.stop(id, &signal, grace).await {
            warn!(task_id = id, %error, "cannot stop the container before restarting it");
            return Outcome::Other;
        }
    }
    info!(task_id = id, reason = %reason, "restarting container");
    let started = match ctx.rt.start(id).await {
        Err(RuntimeError::ContainerNotFound(_)) => {
            if let Err(error) = prepare_secrets(&ctx, &task) {
                warn!(task_id = id, %error, "cannot write the secret files; retrying later");
                return Outcome::Other;
            }
            match ctx.rt.create(ctx.container_config(&task)).await {
                Ok(()) => ctx.rt.start(id).await,
                Err(e) => Err(e),
            }
        }
        other => other,
    };
    match started {
        Ok(pid) => {
            ctx.report(
                id,
                TaskState::Running,
                format!("restarted after {reason} (pid {pid})"),
                None,
            );
            Outcome::Running { restarted: true }
        }
        Err(error) if transient(&error) => {
            warn!(task_id = id, %error, "cannot restart the container; retrying later");
            Outcome::Other
        }
        Err(error) => {
            ctx.report(
                id,
                TaskState::Failed,
                format!("restart failed: {error}"),
                None,
            );
            Outcome::Other
        }
    }
}

/// Runs a task's pre-stop hook inside its container, within the hook's time limit. Whatever
/// it answers (or if it does not answer in time), the stop goes on.
async fn run_pre_stop(ctx: &Ctx, task_id: &str, hook: &PreStop) {
    let limit = Duration::from_millis(hook.timeout_ms);
    match tokio::time::timeout(limit, ctx.rt.exec(task_id, &hook.command)).await {
        Ok(Ok(out)) if out.exit_code == 0 => {
            info!(task_id, command = ?hook.command, "pre-stop hook done");
        }
        Ok(Ok(out)) => warn!(
            task_id,
            command = ?hook.command,
            exit_code = out.exit_code,
            "pre-stop hook failed; stopping anyway"
        ),
        Ok(Err(error)) => {
            warn!(task_id, command = ?hook.command, %error, "pre-stop hook did not run; stopping anyway");
        }
        Err(_) => warn!(
            task_id,
            command = ?hook.command,
            timeout_ms = hook.timeout_ms,
            "pre-stop hook timed out; stopping anyway"
        ),
    }
}

async fn stop(
    ctx: Ctx,
    task_id: String,
    signal: String,
    grace_ms: u64,
    replacement: Option<Task>,
    pre_stop: Option<PreStop>,
) -> Outcome {
    // The task replacing this one on this node gets its image first: the old container serves
    // while the new image downloads (an image that cannot be had does not keep it running).
    if let Some(next) = replacement {
        info!(task_id = %task_id, replacement = %next.id, image = %next.spec.image, "readying the replacement's image before stopping");
        if !ready_image(&ctx, &next).await {
            warn!(task_id = %task_id, replacement = %next.id, "replacement's image not ready; stopping anyway");
        }
    }
    if let Some(hook) = &pre_stop {
        run_pre_stop(&ctx, &task_id, hook).await;
    }
    match ctx
        .rt
        .stop(&task_id, &signal, Duration::from_millis(grace_ms))
        .await
    {
        Ok(()) => {
            let code = ctx
                .rt
                .list()
                .await
                .ok()
                .and_then(|l| l.into_iter().find(|c| c.id == task_id))
                .and_then(|c| c.exit_code);
            ctx.report(&task_id, TaskState::Shutdown, "stopped as desired", code);
        }
        Err(error) => warn!(task_id = %task_id, %error, "cannot stop the container"),
    }
    Outcome::Other
}

/// How long a killed unassigned container is waited for.
const KILL_WAIT: Duration = Duration::from_secs(2);

/// Removes a container no assignment claims. One still running is killed at once: the
/// coordinators gave its task up (its node was declared down, say), so its replacement may
/// already run elsewhere, and this copy must not outlive the agent's next look.
async fn remove(ctx: Ctx, container_id: String, running: bool) -> Outcome {
    if running {
        warn!(container = %container_id, "killing a running container no assignment claims");
        if let Err(error) = ctx.rt.stop(&container_id, "SIGKILL", KILL_WAIT).await {
            warn!(container = %container_id, %error, "cannot stop the unassigned container");
        }
    }
    match ctx.rt.remove(&container_id).await {
        Ok(()) => {
            info!(container = %container_id, "removed unassigned container");
            secrets::remove_task(&ctx.cfg.secrets_dir, &container_id);
            Outcome::Removed
        }
        Err(error) => {
            warn!(container = %container_id, %error, "cannot remove the unassigned container");
            Outcome::Other
        }
    }
}

/// The agent's task supervisor. Build it with [`Supervisor::new`], drive it with [`Supervisor::run`].
pub struct Supervisor {
    ctx: Ctx,
    db: Option<StateDb>,
    desired: Vec<Task>,
    authoritative: bool,
    records: BTreeMap<String, TaskRecord>,
    busy: BTreeSet<String>,
    monitors: BTreeMap<String, (u64, JoinHandle<()>)>,
    next_generation: u64,
    /// The supervisor's clock: wall-clock milliseconds at `epoch`, advanced by the monotonic
    /// clock (a wall-clock step never shortens or stretches a restart delay).
    epoch: Instant,
    epoch_wall_ms: u64,
    wake_at: Option<u64>,
    done_tx: mpsc::UnboundedSender<Done>,
    done_rx: mpsc::UnboundedReceiver<Done>,
    health_tx: mpsc::UnboundedSender<HealthEvent>,
    health_rx: mpsc::UnboundedReceiver<HealthEvent>,
}

impl Supervisor {
    /// A supervisor that starts from the last assignment set in `db` (if any).
    pub fn new(
        rt: Arc<dyn ContainerRuntime>,
        reporter: Arc<Reporter>,
        db: Option<StateDb>,
        cfg: SupervisorConfig,
    ) -> Self {
        let desired = match db.as_ref().map(StateDb::load_assignments) {
            Some(Ok(Some(tasks))) => tasks,
            Some(Err(error)) => {
                warn!(%error, "cannot load the last assignments; starting with none");
                Vec::new()
            }
            _ => Vec::new(),
        };
        info!(
            tasks = desired.len(),
            "supervisor starts from stored assignments"
        );
        let (done_tx, done_rx) = mpsc::unbounded_channel();
        let (health_tx, health_rx) = mpsc::unbounded_channel();
        Self {
            ctx: Ctx { rt, reporter, cfg },
            db,
            desired,
            authoritative: false,
            records: BTreeMap::new(),
            busy: BTreeSet::new(),
            monitors: BTreeMap::new(),
            next_generation: 0,
            epoch: Instant::now(),
            epoch_wall_ms: crate::node_info::now_millis(),
            wake_at: None,
            done_tx,
            done_rx,
            health_tx,
            health_rx,
        }
    }

    /// Milliseconds since the Unix epoch, as the messages show them (`restart 2 in 5000 ms (at
    /// 2026-12-07T19:13:51.811Z)`).
    fn now(&self) -> u64 {
        let elapsed = u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.epoch_wall_ms.saturating_add(elapsed)
    }

    /// Runs forever: reconciles on every assignment set, container exit, finished action, health
    /// change, restart-delay end and resync tick.
    pub async fn run(mut self, mut assignments: mpsc::Receiver<Vec<Task>>) {
        let mut exits = self.ctx.rt.subscribe_exits();
        let mut exits_open = true;
        let mut assignments_open = true;
        let mut resync = tokio::time::interval(self.ctx.cfg.resync);
        resync.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            self.pass().await;
            let wake = self
                .wake_at
                .map(|m| self.epoch + Duration::from_millis(m.saturating_sub(self.epoch_wall_ms)));
            tokio::select! {
                tasks = assignments.recv(), if assignments_open => match tasks {
                    Some(tasks) => self.set_assignments(tasks),
                    None => assignments_open = false,
                },
                ev = exits.recv(), if exits_open => match ev {
                    Ok(ev) => debug!(container = %ev.id, exit_code = ev.exit_code, "exit event"),
                    Err(broadcast::error::RecvError::Lagged(n)) => {
                        warn!(missed = n, "missed exit events; relisting");
                    }
                    Err(broadcast::error::RecvError::Closed) => exits_open = false,
                },
                Some(done) = self.done_rx.recv() => self.finish(done),
                Some(ev) = self.health_rx.recv() => self.on_health(ev),
                _ = resync.tick() => {}
                _ = async { if let Some(w) = wake { tokio::time::sleep_until(w).await } },
                    if wake.is_some() => {
                    self.wake_at = None;
                }
            }
            self.drain_ready(&mut exits);
        }
    }

    /// Takes in everything else already queued, so that the next pass (one listing) covers a
    /// whole burst: removing 2,000 containers makes a few passes, not 2,000.
    fn drain_ready(&mut self, exits: &mut broadcast::Receiver<crate::runtime::ExitEvent>) {
        while let Ok(done) = self.done_rx.try_recv() {
            self.finish(done);
        }
        while let Ok(ev) = self.health_rx.try_recv() {
            self.on_health(ev);
        }
        // The pass relists anyway: exits (and a lag) need no more than being taken off the queue.
        while let Ok(_) | Err(broadcast::error::TryRecvError::Lagged(_)) = exits.try_recv() {}
    }

    /// A full assignment set arrived from a coordinator.
    fn set_assignments(&mut self, mut tasks: Vec<Task>) {
        let node = self.ctx.cfg.node.as_str();
        tasks.retain(|t| match t.node.as_deref() {
            Some(n) if n != node => {
                warn!(task_id = %t.id, task_node = n, "ignoring a task assigned to another node");
                false
            }
            _ => true,
        });
        info!(tasks = tasks.len(), "assignment set received");
        if let Some(db) = &self.db {
            if let Err(error) = db.save_assignments(&tasks) {
                warn!(%error, "cannot store the assignment set");
            }
        }
        let ids: BTreeSet<&str> = tasks.iter().map(|t| t.id.as_str()).collect();
        let gone: Vec<String> = self
            .desired
            .iter()
            .filter(|t| !ids.contains(t.id.as_str()))
            .map(|t| t.id.clone())
            .collect();
        if !gone.is_empty() {
            self.ctx.reporter.forget(&gone);
        }
        self.desired = tasks;
        self.authoritative = true;
    }

    fn finish(&mut self, done: Done) {
        self.busy.remove(&done.task_id);
        let now = self.now();
        match done.outcome {
            Outcome::Running { restarted } => {
                let rec = self.records.entry(done.task_id.clone()).or_default();
                rec.attached = true;
                rec.exited = None;
                rec.health = None;
                if restarted {
                    rec.restarts.push(now);
                }
                self.start_monitor(&done.task_id);
            }
            Outcome::Removed => {
                self.records.remove(&done.task_id);
                self.stop_monitor(&done.task_id);
            }
            Outcome::Other => {}
        }
    }

    fn on_health(&mut self, ev: HealthEvent) {
        if self.monitors.get(&ev.task_id).map(|(g, _)| *g) != Some(ev.generation) {
            return;
        }
        let now = self.now();
        if let Some(rec) = self.records.get_mut(&ev.task_id) {
            rec.health = Some((ev.status, now));
        }
        let message = match ev.status {
            HealthStatus::Starting => "health: starting".to_owned(),
            HealthStatus::Healthy => "healthy".to_owned(),
            HealthStatus::Unhealthy => format!("unhealthy: {}", ev.detail),
        };
        info!(task_id = %ev.task_id, health = ev.status.as_str(), detail = %ev.detail, "health changed");
        self.ctx
            .report(&ev.task_id, TaskState::Running, message, None);
    }

    fn start_monitor(&mut self, task_id: &str) {
        self.stop_monitor(task_id);
        let Some(check) = self
            .desired
            .iter()
            .find(|t| t.id == task_id)
            .and_then(|t| t.spec.healthcheck.clone())
        else {
            return;
        };
        self.next_generation += 1;
        let generation = self.next_generation;
        let handle = spawn_monitor(
            self.ctx.rt.clone(),
            task_id.to_owned(),
            generation,
            check,
            self.health_tx.clone(),
        );
        self.monitors
            .insert(task_id.to_owned(), (generation, handle));
    }

    fn stop_monitor(&mut self, task_id: &str) {
        if let Some((_, h)) = self.monitors.remove(task_id) {
            h.abort();
        }
    }

    /// Lists the runtime, updates the bookkeeping from what it shows, reconciles, and acts.
    async fn pass(&mut self) {
        let observed = match self.ctx.rt.list().await {
            Ok(v) => v,
            Err(error) => {
                warn!(%error, "cannot list containers; retrying on the next tick");
                return;
            }
        };
        let now = self.now();
        let wanted: BTreeSet<String> = self.desired.iter().map(|t| t.id.clone()).collect();
        // Secret files live while their task is assigned or its container exists.
        let mut keep = wanted.clone();
        keep.extend(observed.iter().filter_map(task_of).map(str::to_owned));
        secrets::remove_others(&self.ctx.cfg.secrets_dir, &keep);
        for c in &observed {
            let Some(task_id) = task_of(c) else { continue };
            if self.busy.contains(task_id) || !wanted.contains(task_id) {
                continue;
            }
            if c.status != ContainerStatus::Running {
                self.stop_monitor(task_id);
            }
            let rec = self.records.entry(task_id.to_owned()).or_default();
            if c.status == ContainerStatus::Stopped && rec.exited.is_none() {
                let code = c.exit_code.unwrap_or(255);
                info!(task_id, exit_code = code, "container exited");
                rec.exited = Some(Exit { code, at: now });
                rec.health = None;
            }
        }
        let reported = self.ctx.reporter.states();
        let actions = reconcile(&Input {
            desired: &self.desired,
            authoritative: self.authoritative,
            observed: &observed,
            records: &self.records,
            reported: &reported,
            busy: &self.busy,
            now,
        });
        let held = actions
            .iter()
            .filter(|a| matches!(a, Action::Held { .. }))
            .count();
        self.count_copies(&observed, held);
        for action in actions {
            self.execute(action);
        }
    }

    /// Checks the node's invariant (no more containers than assigned tasks) and publishes the
    /// counts for `/metrics`.
    fn count_copies(&mut self, observed: &[crate::runtime::ContainerInfo], held: usize) {
        use std::sync::atomic::Ordering::Relaxed;
        let guard = crate::copies::Guard::new(&self.desired, observed, &self.busy);
        let present = observed.iter().filter(|c| task_of(c).is_some()).count();
        let running = observed
            .iter()
            .filter(|c| task_of(c).is_some() && c.status == ContainerStatus::Running)
            .count();
        let over = guard.over_assignment();
        let m = &crate::metrics::COPIES;
        if over > 0 && m.over_assignment.load(Relaxed) == 0 {
            warn!(
                containers = present,
                assigned = self.desired.len(),
                over,
                "more containers than assigned tasks"
            );
        }
        m.containers.store(present as u64, Relaxed);
        m.running.store(running as u64, Relaxed);
        m.assigned.store(self.desired.len() as u64, Relaxed);
        m.over_assignment.store(over as u64, Relaxed);
        m.held.store(held as u64, Relaxed);
    }

    fn spawn(
        &mut self,
        task_id: String,
        fut: impl std::future::Future<Output = Outcome> + Send + 'static,
    ) {
        self.busy.insert(task_id.clone());
        let done = self.done_tx.clone();
        tokio::spawn(async move {
            let outcome = fut.await;
            let _ = done.send(Done { task_id, outcome });
        });
    }

    fn execute(&mut self, action: Action) {
        debug!(?action, "action");
        let ctx = self.ctx.clone();
        match action {
            Action::Report(u) => {
                self.ctx.reporter.report(u);
            }
            Action::WakeAt(at) => {
                self.wake_at = Some(self.wake_at.map_or(at, |w| w.min(at)));
            }
            Action::Held { task_id, reason } => {
                debug!(task_id = %task_id, %reason, "start held back");
            }
            Action::Adopt { task, pid } => {
                info!(task_id = %task.id, ?pid, "adopting running container");
                let rec = self.records.entry(task.id.clone()).or_default();
                rec.attached = true;
                rec.exited = None;
                let pid = pid.map_or_else(|| "?".to_owned(), |p| p.to_string());
                self.ctx.report(
                    &task.id,
                    TaskState::Running,
                    format!("adopted running container (pid {pid})"),
                    None,
                );
                self.start_monitor(&task.id);
            }
            Action::CreateStart { task } => {
                self.spawn(task.id.clone(), create_start(ctx, task));
            }
            Action::Start { task } => {
                self.spawn(task.id.clone(), start_existing(ctx, task));
            }
            Action::Restart {
                task,
                reason,
                stop_first,
            } => {
                self.stop_monitor(&task.id);
                self.spawn(task.id.clone(), restart(ctx, task, reason, stop_first));
            }
            Action::Stop {
                task_id,
                signal,
                grace_ms,
                pre_stop,
            } => {
                self.stop_monitor(&task_id);
                let next = crate::reconcile::replacement(&self.desired, &task_id).cloned();
                self.spawn(
                    task_id.clone(),
                    stop(ctx, task_id, signal, grace_ms, next, pre_stop),
                );
            }
            Action::Remove {
                container_id,
                running,
            } => {
                self.stop_monitor(&container_id);
                self.spawn(container_id.clone(), remove(ctx, container_id, running));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::FakeRuntime;
    use shoal_model::container::{HealthCheck, HealthProbe, Mount};
    use shoal_model::{ContainerSpec, RestartPolicy, ServiceMode};

    use crate::runtime::ExecOutput;

    fn task(id: &str) -> Task {
        Task {
            id: id.to_owned(),
            service: format!("svc-{id}"),
            service_version: 1,
            slot: 1,
            node: Some("n1".into()),
            desired_state: TaskState::Running,
            state: TaskState::Assigned,
            message: String::new(),
            exit_code: None,
            spec: ContainerSpec {
                image: "busybox".into(),
                ..Default::default()
            },
            restart_policy: RestartPolicy {
                condition: shoal_model::RestartCondition::Any,
                delay_ms: 100,
                max_attempts: Some(2),
                window_ms: 0,
            },
            mode: ServiceMode::Replicated,
            created_at: 0,
            updated_at: 0,
            image_digest: None,
        }
    }

    struct Env {
        rt: FakeRuntime,
        reporter: Arc<Reporter>,
        tx: mpsc::Sender<Vec<Task>>,
        _sup: JoinHandle<()>,
    }

    fn env() -> Env {
        env_with(FakeRuntime::new(), Default::default())
    }

    fn env_with(rt: FakeRuntime, registries: Registries) -> Env {
        rt.add_image("busybox");
        let reporter = Arc::new(Reporter::new(None));
        let sup = Supervisor::new(
            Arc::new(rt.clone()),
            reporter.clone(),
            None,
            SupervisorConfig {
                registries,
                node: "n1".into(),
                log_dir: "/tmp/shoal-test-logs".into(),
                secrets_dir: "/nonexistent/shoal-test-secrets".into(),
                secrets: Default::default(),
                configs: Default::default(),
                templates: Default::default(),
                template_node: Default::default(),
                resync: Duration::from_secs(1),
            },
        );
        let (tx, rx) = mpsc::channel(8);
        let handle = tokio::spawn(sup.run(rx));
        Env {
            rt,
            reporter,
            tx,
            _sup: handle,
        }
    }

    /// Waits (in paused time) until `id`'s last report satisfies `f`.
    async fn until(env: &Env, id: &str, f: impl Fn(&StatusUpdate) -> bool) -> StatusUpdate {
        for _ in 0..2000 {
            if let Some(u) = env.reporter.last(id) {
                if f(&u) {
                    return u;
                }
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("{id}: last report {:?}", env.reporter.last(id));
    }

    fn history(env: &Env, id: &str) -> Vec<(TaskState, String)> {
        env.reporter
            .pending()
            .into_iter()
            .filter(|(_, u)| u.task_id == id)
            .map(|(_, u)| (u.state, u.message))
            .collect()
    }

    async fn pid(env: &Env, id: &str) -> Option<u32> {
        env.rt
            .list()
            .await
            .unwrap()
            .into_iter()
            .find(|c| c.id == id)
            .and_then(|c| c.pid)
    }

    #[tokio::test(start_paused = true)]
    async fn runs_assigned_tasks_and_reports_each_step() {
        let env = env();
        env.tx.send(vec![task("a")]).await.unwrap();
        until(&env, "a", |u| u.state == TaskState::Running).await;
        let h: Vec<TaskState> = history(&env, "a").into_iter().map(|h| h.0).collect();
        assert_eq!(
            h,
            vec![
                TaskState::Preparing,
                TaskState::Starting,
                TaskState::Running
            ]
        );
        let cfg = env.rt.config("a").unwrap();
        assert_eq!(cfg.node, "n1");
        assert_eq!(
            cfg.stdout_path,
            PathBuf::from("/tmp/shoal-test-logs/a/stdout.log")
        );
    }

    /// The time a waiting restart names is wall-clock time, not time since the agent started
    /// (it said `at 1970-01-01T00:05:51.811Z`).
    #[tokio::test(start_paused = true)]
    async fn a_waiting_restart_names_its_wall_clock_time() {
        let env = env();
        let mut t = task("a");
        t.restart_policy.delay_ms = 60_000;
        env.tx.send(vec![t]).await.unwrap();
        until(&env, "a", |u| u.state == TaskState::Running).await;
        let before = crate::node_info::now_millis();
        env.rt.exit("a", 3);
        let u = until(&env, "a", |u| u.state == TaskState::Restarting).await;
        // Due a minute after the exit: between then and a minute after this test's clock read
        // plus the paused time that passed (none is needed for the report).
        let at = u
            .message
            .split("(at ")
            .nth(1)
            .unwrap_or_default()
            .trim_end_matches(')');
        let earliest = shoal_model::time::rfc3339_utc(before + 60_000);
        let latest = shoal_model::time::rfc3339_utc(crate::node_info::now_millis() + 61_000);
        assert!(
            at >= earliest.as_str() && at <= latest.as_str(),
            "{} not between {earliest} and {latest}",
            u.message
        );
    }

    #[tokio::test(start_paused = true)]
    async fn restart_policy_in_place_then_exhausted() {
        let env = env();
        env.tx.send(vec![task("a")]).await.unwrap();
        until(&env, "a", |u| u.state == TaskState::Running).await;
        let pid1 = pid(&env, "a").await.unwrap();
        env.rt.exit("a", 3);
        until(&env, "a", |u| {
            u.message.starts_with("restarted after exited with code 3")
        })
        .await;
        let pid2 = pid(&env, "a").await.unwrap();
        assert_ne!(pid1, pid2);
        env.rt.exit("a", 4);
        until(&env, "a", |u| {
            u.message.starts_with("restarted after exited with code 4")
        })
        .await;
        env.rt.exit("a", 5);
        let u = until(&env, "a", |u| u.state.is_terminal()).await;
        assert_eq!(u.state, TaskState::Failed);
        assert_eq!(u.exit_code, Some(5));
        assert!(
            u.message.contains("exhausted after 2 restarts"),
            "{}",
            u.message
        );
        // Stays failed: no more restarts.
        tokio::time::sleep(Duration::from_secs(5)).await;
        assert_eq!(pid(&env, "a").await, None);
    }

    #[tokio::test(start_paused = true)]
    async fn tasks_of_other_nodes_are_ignored() {
        let env = env();
        let mut other = task("other");
        other.node = Some("n2".into());
        env.tx.send(vec![other, task("mine")]).await.unwrap();
        until(&env, "mine", |u| u.state == TaskState::Running).await;
        tokio::time::sleep(Duration::from_secs(2)).await;
        assert!(env.reporter.last("other").is_none());
        assert!(env.rt.config("other").is_none());
    }

    #[tokio::test(start_paused = true)]
    async fn jobs_complete_on_exit_zero() {
        let env = env();
        let mut t = task("j");
        t.mode = ServiceMode::ReplicatedJob;
        env.tx.send(vec![t]).await.unwrap();
        until(&env, "j", |u| u.state == TaskState::Running).await;
        env.rt.exit("j", 0);
        let u = until(&env, "j", |u| u.state.is_terminal()).await;
        assert_eq!((u.state, u.exit_code), (TaskState::Complete, Some(0)));
    }

    #[tokio::test(start_paused = true)]
    async fn absent_images_are_pulled_with_the_registry_credentials() {
        let rt = FakeRuntime::new();
        rt.add_registry_image("reg.test:5000/private:1", Some("pw"));
        rt.add_registry_image("other.test/locked:1", Some("pw"));
        let registries = Registries::from([(
            "reg.test:5000".to_owned(),
            crate::runtime::RegistryAuth {
                insecure: true,
                username: Some("u".into()),
                password: Some("pw".into()),
            },
        )]);
        let env = env_with(rt, registries);
        let mut private = task("private");
        private.spec.image = "reg.test:5000/private:1".into();
        let mut locked = task("locked");
        locked.spec.image = "other.test/locked:1".into();
        env.tx.send(vec![private, locked]).await.unwrap();
        until(&env, "private", |u| u.state == TaskState::Running).await;
        assert_eq!(env.rt.pull_count("reg.test:5000/private:1"), 1);
        let u = until(&env, "locked", |u| u.state.is_terminal()).await;
        assert_eq!(
            (u.state, u.message.as_str()),
            (
                TaskState::Rejected,
                "image `other.test/locked:1`: registry `other.test`: unauthorized"
            )
        );
    }

    /// Audit row 19 (image refresh), in part: `pull_policy: always` resolves a tag the node
    /// already has again; `never` rejects a task whose image the node lacks, naming it.
    #[tokio::test(start_paused = true)]
    async fn pull_policy_decides_when_a_tag_is_pulled() {
        let rt = FakeRuntime::new();
        rt.add_registry_image("reg.test/app:1", None);
        rt.add_image("reg.test/app:1");
        let env = env_with(rt, Registries::default());
        let mut always = task("always");
        always.spec.image = "reg.test/app:1".into();
        always.spec.pull_policy = PullPolicy::Always;
        let mut missing = task("missing");
        missing.spec.image = "reg.test/app:1".into();
        let mut never = task("never");
        never.spec.image = "reg.test/absent:1".into();
        never.spec.pull_policy = PullPolicy::Never;
        env.tx.send(vec![always, missing, never]).await.unwrap();
        until(&env, "always", |u| u.state == TaskState::Running).await;
        until(&env, "missing", |u| u.state == TaskState::Running).await;
        // The task records the digest of the image its container was created from.
        let starting = env
            .reporter
            .pending()
            .into_iter()
            .map(|(_, u)| u)
            .find(|u| u.task_id == "always" && u.state == TaskState::Starting)
            .expect("starting report");
        assert_eq!(
            starting.image_digest.as_deref(),
            Some("sha256:fake-reg.test/app:1")
        );
        // Only `always` pulled the tag the node already had.
        assert_eq!(env.rt.pull_count("reg.test/app:1"), 1);
        let u = until(&env, "never", |u| u.state.is_terminal()).await;
        assert_eq!(
            (u.state, u.message.as_str()),
            (
                TaskState::Rejected,
                "image `reg.test/absent:1` is not on this node and its pull_policy is never"
            )
        );
        assert_eq!(env.rt.pull_count("reg.test/absent:1"), 0);
    }

    /// Audit row 19 (image refresh) and kolla's "pull first": the image of the task replacing
    /// a running one is pulled before the old container is stopped.
    #[tokio::test(start_paused = true)]
    async fn the_replacements_image_is_pulled_before_the_old_task_stops() {
        let rt = FakeRuntime::new();
        rt.add_registry_image("reg.test/app:2", None);
        rt.set_pull_delay(Duration::from_secs(5));
        let env = env_with(rt, Registries::default());
        let old = task("old");
        env.tx.send(vec![old.clone()]).await.unwrap();
        until(&env, "old", |u| u.state == TaskState::Running).await;

        let mut stopping = old.clone();
        stopping.desired_state = TaskState::Shutdown;
        let mut new = task("new");
        new.service = old.service.clone();
        new.service_version = 2;
        new.spec.image = "reg.test/app:2".into();
        env.tx.send(vec![stopping, new.clone()]).await.unwrap();
        // Mid-pull: the old container still runs.
        tokio::time::sleep(Duration::from_secs(3)).await;
        assert_eq!(env.rt.pull_count("reg.test/app:2"), 0);
        let running = env
            .rt
            .list()
            .await
            .unwrap()
            .into_iter()
            .any(|c| c.id == "old" && c.status == crate::runtime::ContainerStatus::Running);
        assert!(running, "old stopped before the pull ended");
        let u = until(&env, "old", |u| u.state == TaskState::Shutdown).await;
        assert_eq!(u.state, TaskState::Shutdown);
        assert_eq!(env.rt.pull_count("reg.test/app:2"), 1);
        // The coordinators drop the stopped task; the new one starts.
        env.tx.send(vec![new]).await.unwrap();
        until(&env, "new", |u| u.state == TaskState::Running).await;
        // The image was there when the new task was created: no second pull.
        assert_eq!(env.rt.pull_count("reg.test/app:2"), 1);
    }

    #[test]
    fn a_replacement_is_a_later_version_of_the_same_slot_not_yet_started() {
        let mut old = task("old");
        old.desired_state = TaskState::Shutdown;
        let mut new = task("new");
        new.service = old.service.clone();
        new.service_version = 2;
        let mut other_slot = new.clone();
        other_slot.id = "other".into();
        other_slot.slot = 2;
        let tasks = vec![old.clone(), other_slot.clone(), new.clone()];
        assert_eq!(
            crate::reconcile::replacement(&tasks, "old").map(|t| t.id.as_str()),
            Some("new")
        );
        let mut started = new.clone();
        started.state = TaskState::Running;
        assert!(crate::reconcile::replacement(&[old.clone(), started], "old").is_none());
        assert!(crate::reconcile::replacement(&[old, other_slot], "old").is_none());
    }

    #[tokio::test(start_paused = true)]
    async fn bad_input_is_rejected_with_the_cause() {
        let env = env();
        let mut noimg = task("noimg");
        noimg.spec.image = "absent".into();
        let mut nobind = task("nobind");
        nobind.spec.mounts = vec![Mount {
            kind: MountKind::Bind,
            source: "/nonexistent/shoal/src".into(),
            target: "/x".into(),
            read_only: false,
            propagation: None,
            create_host_path: false,
        }];
        env.tx.send(vec![noimg, nobind]).await.unwrap();
        let u = until(&env, "noimg", |u| u.state.is_terminal()).await;
        assert_eq!(
            (u.state, u.message.as_str()),
            (
                TaskState::Rejected,
                "image `absent`: registry `docker.io`: manifest latest not found"
            )
        );
        let u = until(&env, "nobind", |u| u.state.is_terminal()).await;
        assert_eq!(
            (u.state, u.message.as_str()),
            (
                TaskState::Rejected,
                "bind source `/nonexistent/shoal/src` does not exist"
            )
        );
        assert!(env.rt.list().await.unwrap().is_empty());
    }

    /// Audit row 7 (volumes): a missing bind source asking for it is created and reported.
    #[tokio::test(start_paused = true)]
    async fn missing_bind_sources_are_created_when_asked() {
        let env = env();
        let dir = tempfile::tempdir().unwrap();
        let source = dir.path().join("run/openvswitch").display().to_string();
        let mut t = task("mkbind");
        t.spec.mounts = vec![Mount {
            kind: MountKind::Bind,
            source: source.clone(),
            target: "/run/openvswitch".into(),
            read_only: false,
            propagation: None,
            create_host_path: true,
        }];
        env.tx.send(vec![t]).await.unwrap();
        until(&env, "mkbind", |u| u.state == TaskState::Running).await;
        assert!(Path::new(&source).is_dir());
        assert!(history(&env, "mkbind").contains(&(
            TaskState::Preparing,
            format!("created bind source directory `{source}`")
        )));
    }

    #[tokio::test(start_paused = true)]
    async fn unassigned_containers_go_only_when_a_coordinator_says_so() {
        let env = env();
        env.tx.send(vec![task("a"), task("b")]).await.unwrap();
        until(&env, "b", |u| u.state == TaskState::Running).await;
        env.tx.send(vec![task("a")]).await.unwrap();
        for _ in 0..100 {
            if env.rt.list().await.unwrap().len() == 1 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let ids: Vec<String> = env
            .rt
            .list()
            .await
            .unwrap()
            .into_iter()
            .map(|c| c.id)
            .collect();
        assert_eq!(ids, vec!["a"]);
    }

    #[tokio::test(start_paused = true)]
    async fn without_a_coordinator_found_containers_are_adopted_or_kept() {
        let rt = FakeRuntime::new();
        rt.add_image("busybox");
        let dir = tempfile::tempdir().unwrap();
        let db = StateDb::open(dir.path()).unwrap();
        db.save_assignments(&[task("a")]).unwrap();
        // "a" runs from a previous life; "stray" is unknown to the stored assignments.
        for id in ["a", "stray"] {
            rt.create(ContainerConfig {
                id: id.into(),
                spec: task(id).spec,
                task_id: id.into(),
                service: "svc".into(),
                node: "n1".into(),
                stdout_path: "/dev/null".into(),
                stderr_path: "/dev/null".into(),
            })
            .await
            .unwrap();
        }
        let pid_a = rt.start("a").await.unwrap();
        rt.start("stray").await.unwrap();
        let reporter = Arc::new(Reporter::new(Some(db.clone())));
        let sup = Supervisor::new(
            Arc::new(rt.clone()),
            reporter.clone(),
            Some(db),
            SupervisorConfig {
                registries: Default::default(),
                node: "n1".into(),
                log_dir: dir.path().join("logs"),
                secrets_dir: dir.path().join("secrets"),
                secrets: Default::default(),
                configs: Default::default(),
                templates: Default::default(),
                template_node: Default::default(),
                resync: Duration::from_secs(1),
            },
        );
        let (_tx, rx) = mpsc::channel(1);
        let h = tokio::spawn(sup.run(rx));
        tokio::time::sleep(Duration::from_secs(3)).await;
        let u = reporter.last("a").unwrap();
        assert_eq!(u.state, TaskState::Running);
        assert_eq!(
            u.message,
            format!("adopted running container (pid {pid_a})")
        );
        let list = rt.list().await.unwrap();
        assert_eq!(list.len(), 2);
        assert!(list.iter().all(|c| c.status == ContainerStatus::Running));
        assert_eq!(list.iter().find(|c| c.id == "a").unwrap().pid, Some(pid_a));
        h.abort();
    }

    #[tokio::test(start_paused = true)]
    async fn unhealthy_container_is_restarted() {
        let env = env();
        let mut t = task("h");
        t.restart_policy.max_attempts = None;
        t.spec.healthcheck = Some(HealthCheck {
            probe: HealthProbe::Exec {
                command: vec!["test -f /ok".into()],
            },
            interval_ms: 200,
            timeout_ms: 100,
            retries: 2,
            start_period_ms: 0,
        });
        env.tx.send(vec![t]).await.unwrap();
        until(&env, "h", |u| u.message == "healthy").await;
        let pid1 = pid(&env, "h").await.unwrap();
        env.rt.set_exec_result(
            "h",
            ExecOutput {
                exit_code: 1,
                stdout: vec![],
                stderr: vec![],
            },
        );
        until(&env, "h", |u| u.message.starts_with("unhealthy")).await;
        env.rt.set_exec_result(
            "h",
            ExecOutput {
                exit_code: 0,
                stdout: vec![],
                stderr: vec![],
            },
        );
        until(&env, "h", |u| u.message == "healthy").await;
        assert_ne!(pid(&env, "h").await.unwrap(), pid1);
        let msgs: Vec<String> = history(&env, "h").into_iter().map(|h| h.1).collect();
        let pos = |m: &str| msgs.iter().position(|x| x.starts_with(m)).unwrap();
        let last = |m: &str| msgs.iter().rposition(|x| x.starts_with(m)).unwrap();
        assert!(pos("health: starting") < pos("healthy"));
        assert!(pos("healthy") < pos("unhealthy: exec"));
        assert!(pos("unhealthy: exec") < pos("unhealthy; restart 1 in 100 ms"));
        assert!(pos("unhealthy; restart 1") < pos("restarted after unhealthy"));
        assert!(pos("restarted after unhealthy") < last("healthy"));
        assert_eq!(
            msgs.iter().filter(|m| m.starts_with("restarted")).count(),
            1,
            "{msgs:?}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn desired_shutdown_stops_the_container() {
        let env = env();
        env.tx.send(vec![task("a")]).await.unwrap();
        until(&env, "a", |u| u.state == TaskState::Running).await;
        let mut t = task("a");
        t.desired_state = TaskState::Shutdown;
        env.tx.send(vec![t]).await.unwrap();
        let u = until(&env, "a", |u| u.state.is_terminal()).await;
        assert_eq!(u.state, TaskState::Shutdown);
        assert_eq!(u.exit_code, Some(143));
        tokio::time::sleep(Duration::from_secs(3)).await;
        assert_eq!(pid(&env, "a").await, None);
    }

    #[tokio::test(start_paused = true)]
    async fn the_pre_stop_hook_runs_in_the_running_container_before_the_stop() {
        let env = env();
        let mut t = task("mq");
        t.spec.pre_stop = Some(PreStop {
            command: vec!["rabbitmq-upgrade".into(), "drain".into()],
            timeout_ms: 5_000,
        });
        env.tx.send(vec![t.clone()]).await.unwrap();
        until(&env, "mq", |u| u.state == TaskState::Running).await;
        assert!(env.rt.exec_log().is_empty());
        t.desired_state = TaskState::Shutdown;
        env.tx.send(vec![t]).await.unwrap();
        let u = until(&env, "mq", |u| u.state.is_terminal()).await;
        assert_eq!(u.state, TaskState::Shutdown);
        // The fake runs `exec` only in a running container: the hook ran before the stop.
        assert_eq!(
            env.rt.exec_log(),
            vec![(
                "mq".to_string(),
                vec!["rabbitmq-upgrade".to_string(), "drain".to_string()]
            )]
        );
    }
}
