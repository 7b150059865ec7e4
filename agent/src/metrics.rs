//! The agent's Prometheus metrics: one [`Metrics`] registry, shared by handle.
//!
//! Counters and histograms are updated where things happen: every runtime (containerd) call
//! through [`crate::runtime_metrics::MeteredRuntime`], container exits by [`Metrics::count_exits`].
//! Gauges (tasks by state, session state, revoked serials, certificate expiry, per-task CPU and
//! memory) and the counters kept by modules that do not hold a handle (health probes, in
//! [`HEALTH_PROBES_PASSED`] and [`HEALTH_PROBES_FAILED`]; failed certificate renewals, in
//! [`CERTIFICATE_RENEWAL_FAILURES`]) are read at scrape time by [`Metrics::render`].
//!
//! Names: `shoal_` prefix, base units, `_total` on counters (prometheus-client appends it),
//! `_seconds` on latency histograms.

use shoal_ops::grpc_metrics::seconds_histogram;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use shoal_model::TaskState;
use shoal_ops::grpc_metrics::GrpcMetrics;

use crate::reporter::Reporter;
use crate::runtime::ContainerRuntime;

/// Health probes that passed, since the process started (set by [`crate::health`]).
pub static HEALTH_PROBES_PASSED: AtomicU64 = AtomicU64::new(0);
/// Health probes that failed or timed out, since the process started.
pub static HEALTH_PROBES_FAILED: AtomicU64 = AtomicU64::new(0);
/// Whether the agent holds an assignment stream from a coordinator (set by [`crate::session`]).
pub static SESSION_CONNECTED: AtomicBool = AtomicBool::new(false);
/// How many revoked certificate serials the agent API refuses (set by [`crate::revocations`]).
pub static REVOKED_SERIALS: AtomicU64 = AtomicU64::new(0);
/// When the certificate the agent presents expires, Unix seconds; 0 with no certificate (an
/// insecure agent), when the metric is not shown (set by [`crate::tls`]).
pub static CERTIFICATE_EXPIRY: AtomicI64 = AtomicI64::new(0);
/// Failed attempts to renew the agent's certificate (set by [`crate::tls`]).
pub static CERTIFICATE_RENEWAL_FAILURES: AtomicU64 = AtomicU64::new(0);

/// Containers the last containerd listing returned (set by [`crate::runtime::containerd`]).
pub static CONTAINERD_LISTED_CONTAINERS: AtomicU64 = AtomicU64::new(0);
/// The largest gRPC message of the last containerd listing, bytes (set by
/// [`crate::runtime::containerd`]); compare with `shoal_agent_containerd_decode_limit_bytes`.
pub static CONTAINERD_LIST_LARGEST_MESSAGE_BYTES: AtomicU64 = AtomicU64::new(0);

/// Containers against assigned tasks, as of the supervisor's last pass (set by
/// [`crate::supervisor`]).
pub struct CopyCounts {
    /// Containers of tasks in the runtime, any status.
    pub containers: AtomicU64,
    pub running: AtomicU64,
    /// Tasks in the assignment set.
    pub assigned: AtomicU64,
    /// Containers (and creations in flight) beyond the assigned tasks.
    pub over_assignment: AtomicU64,
    /// Starts held back because another copy could run beside them.
    pub held: AtomicU64,
}

pub static COPIES: CopyCounts = CopyCounts {
    containers: AtomicU64::new(0),
    running: AtomicU64::new(0),
    assigned: AtomicU64::new(0),
    over_assignment: AtomicU64::new(0),
    held: AtomicU64::new(0),
};

/// Every task state, for `shoal_agent_tasks{state}` (a state with no task reads 0).
const TASK_STATES: [TaskState; 12] = [
    TaskState::New,
    TaskState::Pending,
    TaskState::Assigned,
    TaskState::Preparing,
    TaskState::Starting,
    TaskState::Running,
    TaskState::Restarting,
    TaskState::Complete,
    TaskState::Shutdown,
    TaskState::Failed,
    TaskState::Rejected,
    TaskState::Orphaned,
];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StateLabel {
    state: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabel {
    result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OpLabel {
    op: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TaskLabel {
    task_id: String,
}

/// Handle on the agent's metrics; cheap to clone.
#[derive(Clone)]
pub struct Metrics {
    inner: Arc<Inner>,
}

struct Inner {
    registry: Registry,
    // Refreshed at scrape time.
    tasks: Family<StateLabel, Gauge>,
    session_connected: Gauge,
    revoked_serials: Gauge,
    containerd_listed_containers: Gauge,
    containerd_list_largest_message_bytes: Gauge,
    /// One unlabelled series while the agent has a certificate, none when insecure.
    certificate_expiry: Family<Vec<(String, String)>, Gauge>,
    certificate_renewal_failures: Counter,
    health_checks: Family<ResultLabel, Counter>,
    task_cpu_seconds: Family<TaskLabel, Gauge<f64, std::sync::atomic::AtomicU64>>,
    task_memory_bytes: Family<TaskLabel, Gauge>,
    containers: Gauge,
    containers_running: Gauge,
    assigned_tasks: Gauge,
    containers_over_assignment: Gauge,
    starts_held: Gauge,
    heartbeats: Counter,
    heartbeat_rtt_seconds: Gauge<f64, AtomicU64>,
    // Counted as it happens.
    container_starts: Counter,
    container_restarts: Counter,
    container_exits: Counter,
    image_imports: Counter,
    image_import_bytes: Counter,
    image_import_seconds: Histogram,
    image_pulls: Counter,
    image_pull_bytes: Counter,
    image_pull_seconds: Histogram,
    runtime_calls: Family<OpLabel, Counter>,
    runtime_errors: Family<OpLabel, Counter>,
    runtime_call_seconds: Family<OpLabel, Histogram, fn() -> Histogram>,
    api: GrpcMetrics,
    cgroup_root: PathBuf,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Metrics reading per-task cgroups under `/sys/fs/cgroup` (parent `shoal`).
    pub fn new() -> Self {
        Self::with_cgroup_root(Path::new("/sys/fs/cgroup"))
    }

    /// Metrics reading per-task cgroups under `cgroup_root` (tests point it at a fake tree).
    pub fn with_cgroup_root(cgroup_root: &Path) -> Self {
        let mut root = Registry::default();
        let r = root.sub_registry_with_prefix("shoal");
        let api = GrpcMetrics::register(r);
        let tasks = Family::<StateLabel, Gauge>::default();
        r.register(
            "agent_tasks",
            "Tasks this agent runs, by last reported state",
            tasks.clone(),
        );
        let session_connected = Gauge::default();
        r.register(
            "agent_coordinator_session",
            "1 while the agent holds an assignment stream from a coordinator",
            session_connected.clone(),
        );
        let revoked_serials = Gauge::default();
        r.register(
            "agent_revoked_serials",
            "Revoked certificate serials the agent API refuses, as last sent by a coordinator",
            revoked_serials.clone(),
        );
        let containerd_listed_containers = Gauge::default();
        r.register(
            "agent_containerd_listed_containers",
            "Containers (with a task label) the agent's last containerd listing returned",
            containerd_listed_containers.clone(),
        );
        let containerd_list_largest_message_bytes = Gauge::default();
        r.register(
            "agent_containerd_list_largest_message_bytes",
            "Largest gRPC message of the agent's last containerd listing, bytes (the agent \
             warns once it passes half of shoal_agent_containerd_decode_limit_bytes)",
            containerd_list_largest_message_bytes.clone(),
        );
        let decode_limit = Gauge::<i64>::default();
        decode_limit
            .set(i64::try_from(crate::runtime::containerd::DECODE_LIMIT_BYTES).unwrap_or(i64::MAX));
        r.register(
            "agent_containerd_decode_limit_bytes",
            "Largest gRPC message the agent decodes from containerd, bytes",
            decode_limit,
        );
        let certificate_expiry = Family::<Vec<(String, String)>, Gauge>::default();
        r.register(
            "agent_tls_certificate_expiry_timestamp_seconds",
            "When the certificate this agent presents expires (Unix time; renewed at two thirds \
             of its lifetime); absent on an insecure agent",
            certificate_expiry.clone(),
        );
        let certificate_renewal_failures = Counter::default();
        r.register(
            "agent_tls_certificate_renewal_failures",
            "Failed attempts to renew this agent's certificate since it started",
            certificate_renewal_failures.clone(),
        );
        let health_checks = Family::<ResultLabel, Counter>::default();
        r.register(
            "agent_health_checks",
            "Health probes run, by result (passed, failed)",
            health_checks.clone(),
        );
        let task_cpu_seconds = Family::default();
        r.register(
            "agent_task_cpu_seconds",
            "CPU time used by a task's container (cgroup cpuacct), seconds",
            Family::clone(&task_cpu_seconds),
        );
        let task_memory_bytes = Family::<TaskLabel, Gauge>::default();
        r.register(
            "agent_task_memory_bytes",
            "Memory used by a task's container (cgroup), bytes",
            task_memory_bytes.clone(),
        );
        let containers = Gauge::default();
        r.register(
            "agent_containers",
            "Containers of tasks in this agent's containerd namespace, any status",
            containers.clone(),
        );
        let containers_running = Gauge::default();
        r.register(
            "agent_containers_running",
            "Containers of tasks whose process runs",
            containers_running.clone(),
        );
        let assigned_tasks = Gauge::default();
        r.register(
            "agent_assigned_tasks",
            "Tasks in the last assignment set",
            assigned_tasks.clone(),
        );
        let containers_over_assignment = Gauge::default();
        r.register(
            "agent_containers_over_assignment",
            "Containers beyond the assigned tasks (0 unless unassigned ones are being removed); \
             the agent never creates one while this is above 0",
            containers_over_assignment.clone(),
        );
        let starts_held = Gauge::default();
        r.register(
            "agent_starts_held",
            "Task starts held back in the last pass: another copy (same slot, or a leaving \
             container's host port or storage) still exists",
            starts_held.clone(),
        );
        let heartbeats = Counter::default();
        r.register(
            "agent_heartbeats",
            "Heartbeats a coordinator answered",
            heartbeats.clone(),
        );
        let heartbeat_rtt_seconds = Gauge::<f64, AtomicU64>::default();
        r.register(
            "agent_heartbeat_rtt_seconds",
            "Round trip of the last answered heartbeat",
            heartbeat_rtt_seconds.clone(),
        );
        let container_starts = Counter::default();
        r.register(
            "agent_container_starts",
            "Container processes started (restarts included)",
            container_starts.clone(),
        );
        let container_restarts = Counter::default();
        r.register(
            "agent_container_restarts",
            "Starts of a container this agent had already started",
            container_restarts.clone(),
        );
        let container_exits = Counter::default();
        r.register(
            "agent_container_exits",
            "Exits of containers' main processes",
            container_exits.clone(),
        );
        let image_imports = Counter::default();
        r.register(
            "agent_image_imports",
            "Image archives imported",
            image_imports.clone(),
        );
        let image_import_bytes = Counter::default();
        r.register(
            "agent_image_import_bytes",
            "Bytes of image archives imported",
            image_import_bytes.clone(),
        );
        let image_import_seconds = seconds_histogram();
        r.register(
            "agent_image_import_duration_seconds",
            "Time to import and unpack one image archive",
            image_import_seconds.clone(),
        );
        let image_pulls = Counter::default();
        r.register(
            "agent_image_pulls",
            "Images pulled from registries",
            image_pulls.clone(),
        );
        let image_pull_bytes = Counter::default();
        r.register(
            "agent_image_pull_bytes",
            "Bytes of image blobs pulled from registries",
            image_pull_bytes.clone(),
        );
        let image_pull_seconds = seconds_histogram();
        r.register(
            "agent_image_pull_duration_seconds",
            "Time to pull and unpack one image",
            image_pull_seconds.clone(),
        );
        let runtime_calls = Family::<OpLabel, Counter>::default();
        r.register(
            "agent_runtime_calls",
            "Container runtime (containerd) calls, by operation",
            runtime_calls.clone(),
        );
        let runtime_errors = Family::<OpLabel, Counter>::default();
        r.register(
            "agent_runtime_errors",
            "Container runtime (containerd) calls that failed, by operation",
            runtime_errors.clone(),
        );
        let runtime_call_seconds: Family<OpLabel, Histogram, fn() -> Histogram> =
            Family::new_with_constructor(seconds_histogram);
        r.register(
            "agent_runtime_call_duration_seconds",
            "Container runtime (containerd) call latency, by operation",
            runtime_call_seconds.clone(),
        );
        Self {
            inner: Arc::new(Inner {
                registry: root,
                tasks,
                session_connected,
                revoked_serials,
                containerd_listed_containers,
                containerd_list_largest_message_bytes,
                certificate_expiry,
                certificate_renewal_failures,
                health_checks,
                task_cpu_seconds,
                task_memory_bytes,
                containers,
                containers_running,
                assigned_tasks,
                containers_over_assignment,
                starts_held,
                heartbeats,
                heartbeat_rtt_seconds,
                container_starts,
                container_restarts,
                container_exits,
                image_imports,
                image_import_bytes,
                image_import_seconds,
                image_pulls,
                image_pull_bytes,
                image_pull_seconds,
                runtime_calls,
                runtime_errors,
                runtime_call_seconds,
                api,
                cgroup_root: cgroup_root.to_path_buf(),
            }),
        }
    }

    /// gRPC metrics of the agent API (`shoal_api_*`).
    pub fn api(&self) -> &GrpcMetrics {
        &self.inner.api
    }

    /// One runtime call of `op` took `seconds` and succeeded or not.
    pub fn runtime_call(&self, op: &str, seconds: f64, ok: bool) {
        let label = OpLabel { op: op.to_owned() };
        self.inner.runtime_calls.get_or_create(&label).inc();
        if !ok {
            self.inner.runtime_errors.get_or_create(&label).inc();
        }
        self.inner
            .runtime_call_seconds
            .get_or_create(&label)
            .observe(seconds);
    }

    /// A container process started; `restart` when this agent had started it before.
    pub fn container_started(&self, restart: bool) {
        self.inner.container_starts.inc();
        if restart {
            self.inner.container_restarts.inc();
        }
    }

    /// One image archive of `bytes` bytes imported in `seconds`.
    pub fn image_imported(&self, bytes: u64, seconds: f64) {
        self.inner.image_imports.inc();
        self.inner.image_import_bytes.inc_by(bytes);
        self.inner.image_import_seconds.observe(seconds);
    }

    /// One image of `bytes` bytes pulled from a registry in `seconds`.
    pub fn image_pulled(&self, bytes: u64, seconds: f64) {
        self.inner.image_pulls.inc();
        self.inner.image_pull_bytes.inc_by(bytes);
        self.inner.image_pull_seconds.observe(seconds);
    }

    /// Counts container exits as `rt` reports them, until its exit stream closes.
    pub async fn count_exits(self, rt: Arc<dyn ContainerRuntime>) {
        let mut exits = rt.subscribe_exits();
        loop {
            match exits.recv().await {
                Ok(_) => {
                    self.inner.container_exits.inc();
                }
                Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                    self.inner.container_exits.inc_by(n);
                }
                Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
            }
        }
    }

    /// Refreshes the scrape-time values from `reporter` (tasks by state, per-task cgroups).
    pub fn refresh(&self, reporter: &Reporter) {
        let i = &self.inner;
        let states = reporter.states();
        for s in TASK_STATES {
            let n = states.values().filter(|v| **v == s).count();
            i.tasks
                .get_or_create(&StateLabel {
                    state: s.to_string(),
                })
                .set(n as i64);
        }
        i.session_connected
            .set(i64::from(SESSION_CONNECTED.load(Ordering::Relaxed)));
        i.revoked_serials
            .set(i64::try_from(REVOKED_SERIALS.load(Ordering::Relaxed)).unwrap_or(i64::MAX));
        let gauge = |v: &AtomicU64| i64::try_from(v.load(Ordering::Relaxed)).unwrap_or(i64::MAX);
        i.containerd_listed_containers
            .set(gauge(&CONTAINERD_LISTED_CONTAINERS));
        i.containerd_list_largest_message_bytes
            .set(gauge(&CONTAINERD_LIST_LARGEST_MESSAGE_BYTES));
        match CERTIFICATE_EXPIRY.load(Ordering::Relaxed) {
            0 => i.certificate_expiry.clear(),
            not_after => {
                i.certificate_expiry
                    .get_or_create(&Vec::new())
                    .set(not_after);
            }
        }
        let gauge = |v: &AtomicU64| i64::try_from(v.load(Ordering::Relaxed)).unwrap_or(i64::MAX);
        i.containers.set(gauge(&COPIES.containers));
        i.containers_running.set(gauge(&COPIES.running));
        i.assigned_tasks.set(gauge(&COPIES.assigned));
        i.containers_over_assignment
            .set(gauge(&COPIES.over_assignment));
        i.starts_held.set(gauge(&COPIES.held));
        i.heartbeats.inner().store(
            crate::heartbeat::HEARTBEATS_ANSWERED.load(Ordering::Relaxed),
            Ordering::Relaxed,
        );
        i.heartbeat_rtt_seconds
            .set(crate::heartbeat::HEARTBEAT_RTT_MICROS.load(Ordering::Relaxed) as f64 / 1e6);
        i.certificate_renewal_failures.inner().store(
            CERTIFICATE_RENEWAL_FAILURES.load(Ordering::Relaxed),
            Ordering::Relaxed,
        );
        for (result, v) in [
            ("passed", &HEALTH_PROBES_PASSED),
            ("failed", &HEALTH_PROBES_FAILED),
        ] {
            i.health_checks
                .get_or_create(&ResultLabel {
                    result: result.to_owned(),
                })
                .inner()
                .store(v.load(Ordering::Relaxed), Ordering::Relaxed);
        }
        // Per-task usage: only running tasks, so a finished task's series goes away.
        i.task_cpu_seconds.clear();
        i.task_memory_bytes.clear();
        for (task_id, state) in &states {
            if *state != TaskState::Running {
                continue;
            }
            let label = TaskLabel {
                task_id: task_id.clone(),
            };
            let usage = cgroup_usage(&i.cgroup_root, "shoal", task_id);
            if let Some(cpu) = usage.cpu_seconds {
                i.task_cpu_seconds.get_or_create(&label).set(cpu);
            }
            if let Some(mem) = usage.memory_bytes {
                i.task_memory_bytes.get_or_create(&label).set(mem as i64);
            }
        }
    }

    /// The OpenMetrics text of every metric.
    pub fn encode(&self) -> Result<String, std::fmt::Error> {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.inner.registry)?;
        Ok(out)
    }

    /// What `shoal_ops::metrics_http` serves: refresh from `reporter`, then encode.
    pub fn render(&self, reporter: Arc<Reporter>) -> shoal_ops::metrics_http::Render {
        let metrics = self.clone();
        Arc::new(move || {
            let metrics = metrics.clone();
            let reporter = reporter.clone();
            Box::pin(async move {
                metrics.refresh(&reporter);
                metrics.encode()
            })
        })
    }
}

/// CPU and memory use of one container's cgroup, where readable.
#[derive(Debug, Default, Clone, Copy, PartialEq)]
pub struct CgroupUsage {
    pub cpu_seconds: Option<f64>,
    pub memory_bytes: Option<u64>,
}

fn read_u64(path: &Path) -> Option<u64> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// Reads container `id`'s usage under cgroup `parent`: cgroup v1 (`cpuacct/…/cpuacct.usage`,
/// `memory/…/memory.usage_in_bytes`), else cgroup v2 (`…/cpu.stat` `usage_usec`,
/// `…/memory.current`).
pub fn cgroup_usage(root: &Path, parent: &str, id: &str) -> CgroupUsage {
    let v1_cpu = root
        .join("cpuacct")
        .join(parent)
        .join(id)
        .join("cpuacct.usage");
    let v1_mem = root
        .join("memory")
        .join(parent)
        .join(id)
        .join("memory.usage_in_bytes");
    let v2 = root.join(parent).join(id);
    let cpu_seconds = read_u64(&v1_cpu).map(|ns| ns as f64 / 1e9).or_else(|| {
        let stat = std::fs::read_to_string(v2.join("cpu.stat")).ok()?;
        stat.lines()
            .find_map(|l| l.strip_prefix("usage_usec "))
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(|us| us as f64 / 1e6)
    });
    let memory_bytes = read_u64(&v1_mem).or_else(|| read_u64(&v2.join("memory.current")));
    CgroupUsage {
        cpu_seconds,
        memory_bytes,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use shoal_proto::convert::StatusUpdate;

    #[test]
    fn cgroup_v1_and_v2_are_read() {
        let dir = tempfile::tempdir().unwrap();
        let r = dir.path();
        std::fs::create_dir_all(r.join("cpuacct/shoal/a")).unwrap();
        std::fs::create_dir_all(r.join("memory/shoal/a")).unwrap();
        std::fs::write(r.join("cpuacct/shoal/a/cpuacct.usage"), "2500000000\n").unwrap();
        std::fs::write(r.join("memory/shoal/a/memory.usage_in_bytes"), "4096\n").unwrap();
        std::fs::create_dir_all(r.join("shoal/b")).unwrap();
        std::fs::write(
            r.join("shoal/b/cpu.stat"),
            "usage_usec 1500000\nuser_usec 1\n",
        )
        .unwrap();
        std::fs::write(r.join("shoal/b/memory.current"), "8192\n").unwrap();
        assert_eq!(
            cgroup_usage(r, "shoal", "a"),
            CgroupUsage {
                cpu_seconds: Some(2.5),
                memory_bytes: Some(4096)
            }
        );
        assert_eq!(
            cgroup_usage(r, "shoal", "b"),
            CgroupUsage {
                cpu_seconds: Some(1.5),
                memory_bytes: Some(8192)
            }
        );
        assert_eq!(cgroup_usage(r, "shoal", "c"), CgroupUsage::default());
    }

    #[test]
    fn scrape_shows_tasks_by_state_counters_and_usage() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("memory/shoal/t1")).unwrap();
        std::fs::write(
            dir.path().join("memory/shoal/t1/memory.usage_in_bytes"),
            "1024",
        )
        .unwrap();
        let m = Metrics::with_cgroup_root(dir.path());
        let reporter = Reporter::new(None);
        for (id, state) in [("t1", TaskState::Running), ("t2", TaskState::Failed)] {
            reporter.report(StatusUpdate {
                task_id: id.into(),
                state,
                message: String::new(),
                exit_code: None,
                image_digest: None,
            });
        }
        m.container_started(false);
        m.container_started(true);
        m.image_imported(100, 0.25);
        m.runtime_call("create", 0.01, true);
        m.runtime_call("start", 0.02, false);
        m.refresh(&reporter);
        let text = m.encode().unwrap();
        for want in [
            "shoal_agent_tasks{state=\"running\"} 1",
            "shoal_agent_tasks{state=\"failed\"} 1",
            "shoal_agent_tasks{state=\"pending\"} 0",
            "shoal_agent_container_starts_total 2",
            "shoal_agent_container_restarts_total 1",
            "shoal_agent_image_import_bytes_total 100",
            "shoal_agent_runtime_errors_total{op=\"start\"} 1",
            "shoal_agent_runtime_calls_total{op=\"create\"} 1",
            "shoal_agent_task_memory_bytes{task_id=\"t1\"} 1024",
            "shoal_agent_coordinator_session 0",
            "shoal_agent_revoked_serials ",
            "shoal_agent_health_checks_total{result=\"passed\"}",
        ] {
            assert!(text.contains(want), "missing {want} in\n{text}");
        }
        assert!(!text.contains("task_id=\"t2\""), "{text}");
    }

    /// The statics are shared by every test in this binary, so one test walks through both
    /// cases: no certificate (insecure) shows no expiry series, then a certificate does.
    #[test]
    fn certificate_expiry_is_shown_only_with_a_certificate() {
        let m = Metrics::with_cgroup_root(Path::new("/nonexistent"));
        let reporter = Reporter::new(None);
        CERTIFICATE_EXPIRY.store(0, Ordering::Relaxed);
        m.refresh(&reporter);
        let text = m.encode().unwrap();
        assert!(
            !text.contains("shoal_agent_tls_certificate_expiry_timestamp_seconds "),
            "{text}"
        );
        assert!(
            text.contains("shoal_agent_tls_certificate_renewal_failures_total "),
            "{text}"
        );
        CERTIFICATE_EXPIRY.store(1_900_000_000, Ordering::Relaxed);
        CERTIFICATE_RENEWAL_FAILURES.fetch_add(2, Ordering::Relaxed);
        m.refresh(&reporter);
        let text = m.encode().unwrap();
        assert!(
            text.contains("\nshoal_agent_tls_certificate_expiry_timestamp_seconds 1900000000\n"),
            "{text}"
        );
        let failures = text
            .lines()
            .find_map(|l| l.strip_prefix("shoal_agent_tls_certificate_renewal_failures_total "))
            .and_then(|v| v.trim().parse::<u64>().ok());
        assert!(failures.is_some_and(|f| f >= 2), "{text}");
        CERTIFICATE_EXPIRY.store(0, Ordering::Relaxed);
        m.refresh(&reporter);
        let text = m.encode().unwrap();
        assert!(
            !text.contains("expiry_timestamp_seconds 1900000000"),
            "{text}"
        );
    }
}
