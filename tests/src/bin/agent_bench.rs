//! Benchmark: time from task assignment to container running through `shoal-agent`, against
//! `ctr run -d` of the same image with the same command on the same containerd, interleaved in one
//! run; and the agent's resident memory idle and with N (default 50) running containers. The image
//! is present (imported) before anything is timed. Prints a Markdown table for BENCHMARKS.md.
//!
//! The agent talks to a fake dispatcher served in this process (no coordinator, no Raft, no
//! scheduling in the path): the clock starts when the new assignment set is handed to the
//! dispatcher's stream and stops when the dispatcher receives the agent's `running` report.
//!
//! With `--deploy N` it measures one deploy instead: N tasks assigned at once, the time until all
//! report `running`, the agent's RSS and PSS idle, with N containers and after they are removed,
//! and the host processes (and their PSS) each container costs besides its own process: the
//! containerd shim and whatever collects its logs.
//!
//! Needs root, containerd, runc and ctr. Run:
//! `cargo build --release --workspace --bins && target/release/agent-bench`
//! or `target/release/agent-bench --deploy 100`

use std::path::Path;
use std::pin::Pin;
use std::process::Command;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::Parser;
use futures::Stream;
use shoal_model::{Task, TaskState};
use shoal_proto::convert::{encode_json, StatusUpdate};
use shoal_proto::dispatcher::dispatcher_server::{Dispatcher, DispatcherServer};
use shoal_proto::dispatcher::{
    AssignmentSet, AssignmentsRequest, HeartbeatReply, HeartbeatRequest, RegisterReply,
    RegisterRequest, StatusReply, StatusReport,
};
use shoal_tests::agents::{self, Agent};
use shoal_tests::containerd::{available, TestContainerd};
use shoal_tests::image::{build_busybox_image, ImageOptions};
use tokio::sync::watch;
use tonic::{Request, Response, Status};

const IMAGE: &str = "shoal.bench/busybox:latest";
const CTR_NAMESPACE: &str = "bench-ctr";
const NODE: &str = "bench";

#[derive(Parser)]
struct Args {
    /// Timed rounds; each starts one container with `ctr` and one through the agent.
    #[arg(long, default_value_t = 20)]
    rounds: usize,
    /// Running containers for the loaded RSS measurement.
    #[arg(long, default_value_t = 50)]
    containers: usize,
    /// Seconds to let the agent settle before reading its RSS.
    #[arg(long, default_value_t = 3)]
    settle_secs: u64,
    /// Measure one deploy of this many tasks (memory and processes per container) instead.
    #[arg(long)]
    deploy: Option<usize>,
}

// ---------------------------------------------------------------------------------------------
// Fake dispatcher (the coordinator side of the agent's session), served in this process.

#[derive(Default)]
struct Seen {
    registrations: usize,
    /// Every status update, with the instant it arrived.
    reports: Vec<(Instant, StatusUpdate)>,
}

struct Shared {
    seen: Mutex<Seen>,
    changed: Condvar,
    assignments: watch::Sender<Vec<Task>>,
}

#[derive(Clone)]
struct Service(Arc<Shared>);

type AssignmentStream = Pin<Box<dyn Stream<Item = Result<AssignmentSet, Status>> + Send>>;

impl Shared {
    fn note(&self, f: impl FnOnce(&mut Seen)) {
        let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        f(&mut seen);
        self.changed.notify_all();
    }

    /// Blocks until `f` returns `Some` or `limit` passes.
    fn wait<T>(&self, limit: Duration, what: &str, f: impl Fn(&Seen) -> Option<T>) -> Result<T> {
        let deadline = Instant::now() + limit;
        let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            if let Some(v) = f(&seen) {
                return Ok(v);
            }
            let now = Instant::now();
            if now >= deadline {
                bail!("{what}: not seen within {limit:?}");
            }
            seen = self
                .changed
                .wait_timeout(seen, deadline - now)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }
}

#[tonic::async_trait]
impl Dispatcher for Service {
    async fn register(
        &self,
        _request: Request<RegisterRequest>,
    ) -> Result<Response<RegisterReply>, Status> {
        self.0.note(|s| s.registrations += 1);
        Ok(Response::new(RegisterReply {
            heartbeat_period_ms: 1000,
        }))
    }

    async fn heartbeat(
        &self,
        _request: Request<HeartbeatRequest>,
    ) -> Result<Response<HeartbeatReply>, Status> {
        Ok(Response::new(HeartbeatReply {
            heartbeat_period_ms: 1000,
        }))
    }

    type AssignmentsStream = AssignmentStream;

    async fn assignments(
        &self,
        _request: Request<AssignmentsRequest>,
    ) -> Result<Response<AssignmentStream>, Status> {
        let mut rx = self.0.assignments.subscribe();
        let (tx, out) = tokio::sync::mpsc::channel(4);
        tokio::spawn(async move {
            let mut index = 0;
            loop {
                let tasks = rx.borrow_and_update().clone();
                index += 1;
                let set = AssignmentSet {
                    tasks_json: encode_json(&tasks),
                    applied_index: index,
                    secrets: Default::default(),
                    configs: Default::default(),
                    members_json: Vec::new(),
                    images_to_ready: Vec::new(),
                    revoked_serials: Vec::new(),
                };
                if tx.send(Ok(set)).await.is_err() || rx.changed().await.is_err() {
                    return;
                }
            }
        });
        Ok(Response::new(Box::pin(
            tokio_stream::wrappers::ReceiverStream::new(out),
        )))
    }

    async fn report_status(
        &self,
        request: Request<StatusReport>,
    ) -> Result<Response<StatusReply>, Status> {
        let at = Instant::now();
        let mut updates = Vec::new();
        for u in &request.into_inner().updates {
            updates.push(
                StatusUpdate::try_from(u).map_err(|e| Status::invalid_argument(e.to_string()))?,
            );
        }
        self.0
            .note(|s| s.reports.extend(updates.into_iter().map(|u| (at, u))));
        Ok(Response::new(StatusReply {}))
    }
}

struct FakeDispatcher {
    addr: String,
    shared: Arc<Shared>,
    rt: Option<tokio::runtime::Runtime>,
}

impl FakeDispatcher {
    fn start() -> Result<Self> {
        let (tx, _) = watch::channel(Vec::new());
        let shared = Arc::new(Shared {
            seen: Mutex::new(Seen::default()),
            changed: Condvar::new(),
            assignments: tx,
        });
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()?;
        let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
        let addr = listener.local_addr()?.to_string();
        listener.set_nonblocking(true)?;
        let service = Service(shared.clone());
        rt.spawn(async move {
            let listener = match tokio::net::TcpListener::from_std(listener) {
                Ok(l) => l,
                Err(e) => {
                    eprintln!("fake dispatcher: {e}");
                    return;
                }
            };
            if let Err(e) = tonic::transport::Server::builder()
                .add_service(DispatcherServer::new(service))
                .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener))
                .await
            {
                eprintln!("fake dispatcher: {e}");
            }
        });
        Ok(Self {
            addr,
            shared,
            rt: Some(rt),
        })
    }

    /// Replaces the assignment set; it goes out at once on the agent's stream.
    fn assign(&self, tasks: Vec<Task>) {
        self.shared.assignments.send_replace(tasks);
    }

    /// Waits until `task_id` is reported running; returns when that report arrived. Fails on
    /// a terminal state.
    fn wait_running(&self, task_id: &str, after: Instant, limit: Duration) -> Result<Instant> {
        let r = self
            .shared
            .wait(limit, &format!("{task_id} running"), |s| {
                s.reports
                    .iter()
                    .filter(|(at, u)| u.task_id == task_id && *at >= after)
                    .find(|(_, u)| u.state == TaskState::Running || u.state.is_terminal())
                    .map(|(at, u)| (*at, u.clone()))
            })?;
        if r.1.state != TaskState::Running {
            bail!("{task_id}: {} ({})", r.1.state.as_str(), r.1.message);
        }
        Ok(r.0)
    }
}

impl Drop for FakeDispatcher {
    fn drop(&mut self) {
        if let Some(rt) = self.rt.take() {
            rt.shutdown_background();
        }
    }
}

fn task(id: &str) -> Task {
    Task {
        id: id.to_owned(),
        service: format!("svc-{id}"),
        service_version: 1,
        slot: 1,
        node: Some(NODE.to_owned()),
        desired_state: TaskState::Running,
        state: TaskState::Assigned,
        message: String::new(),
        exit_code: None,
        spec: shoal_model::ContainerSpec {
            image: IMAGE.to_owned(),
            command: vec!["sleep".into(), "3600".into()],
            // `sleep` as PID 1 ignores SIGTERM; cleanup need not wait for a grace period.
            stop_signal: Some("SIGKILL".into()),
            stop_grace_ms: Some(1000),
            ..Default::default()
        },
        restart_policy: shoal_model::RestartPolicy::default(),
        mode: shoal_model::ServiceMode::Replicated,
        created_at: 0,
        updated_at: 0,
        image_digest: None,
    }
}

// ---------------------------------------------------------------------------------------------
// Measurements.

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// Nearest-rank percentile of sorted samples.
fn pct(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// `VmRSS` and `VmHWM` of `pid`, in KiB.
fn rss_kib(pid: u32) -> Result<(u64, u64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("reading /proc/{pid}/status"))?;
    let field = |name: &str| -> Result<u64> {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .with_context(|| format!("no {name} in /proc/{pid}/status"))
    };
    Ok((field("VmRSS:")?, field("VmHWM:")?))
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

/// `ctr run -d` of the image; returns its wall-clock time (`ctr` returns once the task started).
fn ctr_run(socket: &Path, id: &str) -> Result<Duration> {
    let start = Instant::now();
    let out = Command::new("ctr")
        .arg("--address")
        .arg(socket)
        .args(["-n", CTR_NAMESPACE, "run", "-d", IMAGE, id, "sleep", "3600"])
        .output()
        .context("running ctr")?;
    let took = start.elapsed();
    if !out.status.success() {
        bail!(
            "ctr run {id} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(took)
}

/// Assigns `tasks` (the last of which is new) and returns assignment → `running` report.
fn agent_run(d: &FakeDispatcher, tasks: &[Task]) -> Result<Duration> {
    let id = tasks.last().context("no task")?.id.clone();
    let start = Instant::now();
    d.assign(tasks.to_vec());
    let at = d.wait_running(&id, start, Duration::from_secs(60))?;
    Ok(at.saturating_duration_since(start))
}

fn first_line(cmd: &str, args: &[&str]) -> String {
    Command::new(cmd)
        .args(args)
        .output()
        .ok()
        .map(|o| {
            let s = String::from_utf8_lossy(&o.stdout).into_owned();
            s.lines().next().unwrap_or_default().trim().to_owned()
        })
        .unwrap_or_default()
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

struct Results {
    ctr_ms: Vec<f64>,
    agent_ms: Vec<f64>,
    rss_idle: (u64, u64),
    rss_loaded: (u64, u64),
    loaded: usize,
    burst: Option<(usize, Duration)>,
}

fn main() -> Result<()> {
    let args = Args::parse();
    if !available() {
        bail!("agent-bench needs root, containerd, runc and ctr");
    }
    eprintln!("load average at start: {}", loadavg());
    let load_start = loadavg();
    let cd = TestContainerd::start()?;
    let image = build_busybox_image(cd.dir(), &ImageOptions::new(IMAGE))?;
    let tar = image.path.display().to_string();
    cd.ctr_ok(&["-n", CTR_NAMESPACE, "images", "import", &tar])?;

    let dispatcher = FakeDispatcher::start()?;
    let mut agent = Agent::new(
        cd.dir(),
        NODE,
        &[],
        std::slice::from_ref(&dispatcher.addr),
        cd.socket(),
        &image.path,
    );
    agent.start();
    if let Some(n) = args.deploy {
        let result = deploy(&args, n, &cd, &dispatcher, &agent);
        dispatcher.assign(Vec::new());
        let deadline = Instant::now() + Duration::from_secs(120);
        while !agents::containers(cd.socket(), &agent.namespace).is_empty()
            && Instant::now() < deadline
        {
            std::thread::sleep(Duration::from_millis(200));
        }
        agent.kill();
        remove_all(&cd, &agent.namespace);
        remove_all(&cd, CTR_NAMESPACE);
        let agent_log = agent.log_text();
        drop(dispatcher);
        drop(agent);
        drop(cd);
        match result {
            Ok(d) => report_deploy(&d, &load_start),
            Err(e) => {
                let tail: Vec<&str> = agent_log.lines().rev().take(40).collect();
                let tail: Vec<&str> = tail.into_iter().rev().collect();
                eprintln!("--- agent log (tail) ---\n{}", tail.join("\n"));
                return Err(e);
            }
        }
        return Ok(());
    }
    let result = run(&args, &cd, &dispatcher, &agent);

    // Cleanup: the agent removes its containers when they are no longer assigned.
    dispatcher.assign(Vec::new());
    let deadline = Instant::now() + Duration::from_secs(60);
    while !agents::containers(cd.socket(), &agent.namespace).is_empty() && Instant::now() < deadline
    {
        std::thread::sleep(Duration::from_millis(200));
    }
    let left = agents::containers(cd.socket(), &agent.namespace);
    if !left.is_empty() {
        eprintln!("agent left {} containers; removing them", left.len());
    }
    agent.kill();
    remove_all(&cd, &agent.namespace);
    remove_all(&cd, CTR_NAMESPACE);
    drop(dispatcher);
    let agent_log = agent.log_text();
    drop(agent);
    drop(cd);

    let r = match result {
        Ok(r) => r,
        Err(e) => {
            let tail: Vec<&str> = agent_log.lines().rev().take(40).collect();
            let tail: Vec<&str> = tail.into_iter().rev().collect();
            eprintln!("--- agent log (tail) ---\n{}", tail.join("\n"));
            return Err(e);
        }
    };
    report(&args, &r, &load_start);
    Ok(())
}

/// Kills and removes every task and container in `ns`.
fn remove_all(cd: &TestContainerd, ns: &str) {
    for id in agents::containers(cd.socket(), ns) {
        let _ = cd.ctr(&["-n", ns, "tasks", "kill", "-a", "-s", "SIGKILL", &id]);
        let _ = cd.ctr(&["-n", ns, "tasks", "rm", "-f", &id]);
        let _ = cd.ctr(&["-n", ns, "containers", "rm", &id]);
    }
}

fn run(args: &Args, cd: &TestContainerd, d: &FakeDispatcher, agent: &Agent) -> Result<Results> {
    let pid = agent.pid().context("agent not started")?;
    // Registered, image imported, no tasks.
    d.shared
        .wait(Duration::from_secs(60), "agent registration", |s| {
            (s.registrations > 0).then_some(())
        })?;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let images = agents::ctr(cd.socket(), &agent.namespace, &["images", "ls", "-q"]);
        if images.lines().any(|l| l.trim() == IMAGE) {
            break;
        }
        if Instant::now() > deadline {
            bail!("the agent did not import {IMAGE}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    d.assign(Vec::new());
    std::thread::sleep(Duration::from_secs(args.settle_secs));
    let rss_idle = rss_kib(pid)?;
    eprintln!("agent idle: VmRSS {} KiB", rss_idle.0);

    // Warm-up, not counted: first container in each namespace.
    let mut tasks = vec![task("agent-warmup")];
    ctr_run(cd.socket(), "ctr-warmup")?;
    agent_run(d, &tasks)?;

    let mut ctr_ms = Vec::new();
    let mut agent_ms = Vec::new();
    for i in 0..args.rounds {
        tasks.push(task(&format!("agent-{i}")));
        // Alternate who goes first so that neither always runs right after the other.
        let (c, a) = if i % 2 == 0 {
            let c = ctr_run(cd.socket(), &format!("ctr-{i}"))?;
            (c, agent_run(d, &tasks)?)
        } else {
            let a = agent_run(d, &tasks)?;
            (ctr_run(cd.socket(), &format!("ctr-{i}"))?, a)
        };
        eprintln!(
            "round {i:>3}: ctr {:>7.1} ms   agent {:>7.1} ms",
            ms(c),
            ms(a)
        );
        ctr_ms.push(ms(c));
        agent_ms.push(ms(a));
    }
    // Both really run in containerd.
    let ctr_running = agents::running_tasks(cd.socket(), CTR_NAMESPACE).len();
    let agent_running = agents::running_tasks(cd.socket(), &agent.namespace).len();
    if ctr_running != args.rounds + 1 || agent_running != args.rounds + 1 {
        bail!(
            "expected {} running tasks in each namespace; ctr: {ctr_running}, agent: {agent_running}",
            args.rounds + 1
        );
    }
    // The ctr containers are done with; remove them so the loaded measurement is the agent's.
    remove_all(cd, CTR_NAMESPACE);

    // Loaded: N running containers.
    let mut burst = None;
    if tasks.len() < args.containers {
        let before = tasks.len();
        while tasks.len() < args.containers {
            tasks.push(task(&format!("agent-load-{}", tasks.len())));
        }
        let start = Instant::now();
        d.assign(tasks.clone());
        let mut last = start;
        for t in &tasks[before..] {
            last = last.max(d.wait_running(&t.id, start, Duration::from_secs(120))?);
        }
        burst = Some((tasks.len() - before, last.saturating_duration_since(start)));
    }
    let loaded = agents::running_tasks(cd.socket(), &agent.namespace).len();
    if loaded != tasks.len() {
        bail!("{} assigned, {loaded} running in containerd", tasks.len());
    }
    std::thread::sleep(Duration::from_secs(args.settle_secs));
    let rss_loaded = rss_kib(pid)?;
    eprintln!("agent with {loaded} containers: VmRSS {} KiB", rss_loaded.0);
    ctr_ms.sort_by(f64::total_cmp);
    agent_ms.sort_by(f64::total_cmp);
    Ok(Results {
        ctr_ms,
        agent_ms,
        rss_idle,
        rss_loaded,
        loaded,
        burst,
    })
}

/// `Rss` and `Pss` of `pid` from `/proc/<pid>/smaps_rollup`, in KiB.
fn rss_pss_kib(pid: u32) -> Result<(u64, u64)> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup"))
        .with_context(|| format!("reading /proc/{pid}/smaps_rollup"))?;
    let field = |name: &str| -> Result<u64> {
        text.lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .with_context(|| format!("no {name} in /proc/{pid}/smaps_rollup"))
    };
    Ok((field("Rss:")?, field("Pss:")?))
}

/// One process of the host, as `/proc` shows it.
struct Proc {
    pid: u32,
    ppid: u32,
    comm: String,
    cmdline: String,
}

fn host_processes() -> Vec<Proc> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for e in dir.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        // `pid (comm) state ppid ...`; comm may hold spaces and parentheses.
        let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else {
            continue;
        };
        let comm = stat[open + 1..close].to_owned();
        let ppid = stat[close + 1..]
            .split_whitespace()
            .nth(1)
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline"))
            .map(|b| String::from_utf8_lossy(&b).replace('\0', " "))
            .unwrap_or_default();
        out.push(Proc {
            pid,
            ppid,
            comm,
            cmdline,
        });
    }
    out
}

/// Processes per kind in the process trees of the shims of `namespace`, with their summed PSS
/// (KiB): (shims, workload processes, everything else such as log helpers).
#[derive(Debug, Default, Clone, Copy)]
struct TreeCount {
    shims: (usize, u64),
    workload: (usize, u64),
    helpers: (usize, u64),
}

fn shim_trees(namespace: &str, workload_comm: &str) -> TreeCount {
    let procs = host_processes();
    let ns_arg = format!("-namespace {namespace} ");
    let mut inside: std::collections::BTreeSet<u32> = procs
        .iter()
        .filter(|p| p.comm.starts_with("containerd-shim") && p.cmdline.contains(&ns_arg))
        .map(|p| p.pid)
        .collect();
    // Descendants: repeat until no process is added (trees are shallow).
    loop {
        let before = inside.len();
        for p in &procs {
            if inside.contains(&p.ppid) {
                inside.insert(p.pid);
            }
        }
        if inside.len() == before {
            break;
        }
    }
    let mut c = TreeCount::default();
    for p in procs.iter().filter(|p| inside.contains(&p.pid)) {
        let pss = rss_pss_kib(p.pid).map(|(_, pss)| pss).unwrap_or(0);
        let slot = if p.comm.starts_with("containerd-shim") {
            &mut c.shims
        } else if p.comm == workload_comm {
            &mut c.workload
        } else {
            &mut c.helpers
        };
        slot.0 += 1;
        slot.1 += pss;
    }
    c
}

struct Deploy {
    n: usize,
    took: Duration,
    idle: (u64, u64),
    loaded: (u64, u64),
    after: (u64, u64),
    trees: TreeCount,
}

/// Assigns `n` tasks at once, waits for them all running, measures, then removes them.
fn deploy(
    args: &Args,
    n: usize,
    cd: &TestContainerd,
    d: &FakeDispatcher,
    agent: &Agent,
) -> Result<Deploy> {
    let pid = agent.pid().context("agent not started")?;
    d.shared
        .wait(Duration::from_secs(60), "agent registration", |s| {
            (s.registrations > 0).then_some(())
        })?;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let images = agents::ctr(cd.socket(), &agent.namespace, &["images", "ls", "-q"]);
        if images.lines().any(|l| l.trim() == IMAGE) {
            break;
        }
        if Instant::now() > deadline {
            bail!("the agent did not import {IMAGE}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    d.assign(Vec::new());
    std::thread::sleep(Duration::from_secs(args.settle_secs));
    let idle = rss_pss_kib(pid)?;
    let tasks: Vec<Task> = (0..n).map(|i| task(&format!("deploy-{i}"))).collect();
    let start = Instant::now();
    d.assign(tasks.clone());
    let mut last = start;
    for t in &tasks {
        last = last.max(d.wait_running(&t.id, start, Duration::from_secs(300))?);
    }
    let took = last.saturating_duration_since(start);
    let running = agents::running_tasks(cd.socket(), &agent.namespace).len();
    if running != n {
        bail!("{n} assigned, {running} running in containerd");
    }
    std::thread::sleep(Duration::from_secs(args.settle_secs));
    let loaded = rss_pss_kib(pid)?;
    let trees = shim_trees(&agent.namespace, "sleep");
    eprintln!("agent with {n} containers: Rss/Pss {loaded:?} KiB; shim trees {trees:?}");
    d.assign(Vec::new());
    let deadline = Instant::now() + Duration::from_secs(120);
    while !agents::containers(cd.socket(), &agent.namespace).is_empty() {
        if Instant::now() > deadline {
            bail!("the agent did not remove its containers within 120 s");
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    std::thread::sleep(Duration::from_secs(args.settle_secs));
    let after = rss_pss_kib(pid)?;
    Ok(Deploy {
        n,
        took,
        idle,
        loaded,
        after,
        trees,
    })
}

fn report_deploy(d: &Deploy, load_start: &str) {
    let cpus = std::thread::available_parallelism().map_or(0, usize::from);
    println!(
        "containerd: {} · runc: {} · {cpus} CPUs · load average at start {load_start}, at end {}",
        first_line("containerd", &["--version"]),
        first_line("runc", &["--version"]),
        loadavg(),
    );
    println!();
    println!(
        "Deploy: {} tasks (`sleep 3600` in busybox) assigned at once → all reported `running` in {:.0} ms.",
        d.n,
        ms(d.took)
    );
    println!();
    let per = |kib: u64| kib as f64 / d.n as f64;
    println!("| agent | Rss | Pss |");
    println!("|---|---|---|");
    println!(
        "| idle (registered, image imported, no tasks) | {:.1} MiB | {:.1} MiB |",
        mib(d.idle.0),
        mib(d.idle.1)
    );
    println!(
        "| {} running containers | {:.1} MiB | {:.1} MiB |",
        d.n,
        mib(d.loaded.0),
        mib(d.loaded.1)
    );
    println!(
        "| per container ((loaded − idle) / {}) | {:.0} KiB | {:.0} KiB |",
        d.n,
        per(d.loaded.0.saturating_sub(d.idle.0)),
        per(d.loaded.1.saturating_sub(d.idle.1))
    );
    println!(
        "| after all {} were removed | {:.1} MiB | {:.1} MiB |",
        d.n,
        mib(d.after.0),
        mib(d.after.1)
    );
    println!();
    println!("| host processes per container | count | Pss |");
    println!("|---|---|---|");
    let t = d.trees;
    for (name, (count, pss)) in [
        ("containerd shim", t.shims),
        ("workload (`sleep`)", t.workload),
        ("log helpers and other", t.helpers),
    ] {
        println!(
            "| {name} | {:.2} | {:.0} KiB |",
            count as f64 / d.n as f64,
            per(pss)
        );
    }
    println!(
        "| total | {:.2} | {:.0} KiB |",
        (t.shims.0 + t.workload.0 + t.helpers.0) as f64 / d.n as f64,
        per(t.shims.1 + t.workload.1 + t.helpers.1)
    );
}

fn report(args: &Args, r: &Results, load_start: &str) {
    let cpus = std::thread::available_parallelism().map_or(0, usize::from);
    println!(
        "containerd: {} · runc: {} · {cpus} CPUs · load average at start {load_start}, at end {}",
        first_line("containerd", &["--version"]),
        first_line("runc", &["--version"]),
        loadavg(),
    );
    println!();
    println!(
        "Start latency, image present, `sleep 3600` in busybox, {} interleaved rounds (after one untimed warm-up each):",
        args.rounds
    );
    println!();
    println!("| path | p50 | p95 | min | max |");
    println!("|---|---|---|---|---|");
    let row = |name: &str, v: &[f64]| {
        println!(
            "| {name} | {:.1} ms | {:.1} ms | {:.1} ms | {:.1} ms |",
            pct(v, 0.5),
            pct(v, 0.95),
            v.first().copied().unwrap_or(f64::NAN),
            v.last().copied().unwrap_or(f64::NAN),
        );
    };
    row("`ctr run -d` (process start → exit)", &r.ctr_ms);
    row(
        "agent: assignment sent → `running` report received",
        &r.agent_ms,
    );
    println!(
        "| ratio agent / ctr | {:.2}x | {:.2}x | | |",
        pct(&r.agent_ms, 0.5) / pct(&r.ctr_ms, 0.5),
        pct(&r.agent_ms, 0.95) / pct(&r.ctr_ms, 0.95),
    );
    println!();
    println!("| agent memory | VmRSS | VmHWM (peak so far) |");
    println!("|---|---|---|");
    println!(
        "| idle (registered, image imported, no tasks) | {:.1} MiB | {:.1} MiB |",
        mib(r.rss_idle.0),
        mib(r.rss_idle.1)
    );
    println!(
        "| {} running containers | {:.1} MiB | {:.1} MiB |",
        r.loaded,
        mib(r.rss_loaded.0),
        mib(r.rss_loaded.1)
    );
    if let Some((n, took)) = r.burst {
        println!();
        println!(
            "Burst: {n} tasks assigned at once → all reported `running` in {:.0} ms.",
            ms(took)
        );
    }
}
