//! Start, stop, kill and query `shoal-coordinator` processes.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use shoal_model::api::{Answer, Event, EventKind, Query, UserCommand};
use shoal_model::{ContainerSpec, Node, Service, ServiceSpec, Task};
use shoal_proto::control::control_client::ControlClient;
use shoal_proto::control::{
    ApplyRequest, ClusterAddRequest, ClusterInitRequest, ClusterStatusReply, ClusterStatusRequest,
};
use shoal_proto::control_api;
use tonic::transport::Channel;

use crate::{binary, free_addr};

/// One coordinator process and where it lives.
pub struct Coord {
    pub id: u64,
    pub addr: String,
    pub data_dir: PathBuf,
    pub log: PathBuf,
    pub extra_args: Vec<String>,
    /// Extra environment variables for the process.
    pub env: Vec<(String, String)>,
    /// Run with TLS (a secure cluster); otherwise the process gets `--insecure`.
    pub secure: bool,
    /// The admin certificate the harness calls a secure coordinator with (default: the one a
    /// bootstrapped coordinator writes to `<data dir>/admin`).
    pub client_tls: Option<tonic::transport::ClientTlsConfig>,
    /// A cgroup (v2, see [`crate::partition`]) the process is started in, so that a test can
    /// cut its traffic off.
    pub cgroup: Option<crate::partition::Cgroup>,
    child: Option<Child>,
}

impl Coord {
    /// A coordinator that is not started yet, with a fresh address and data dir under `root`.
    pub fn new(root: &Path, id: u64) -> Coord {
        let data_dir = root.join(format!("c{id}"));
        let log = root.join(format!("c{id}.log"));
        Coord {
            id,
            addr: free_addr(),
            data_dir,
            log,
            extra_args: Vec::new(),
            env: Vec::new(),
            secure: false,
            client_tls: None,
            cgroup: None,
            child: None,
        }
    }

    pub fn command(&self) -> Command {
        let mut cmd = Command::new(binary("shoal-coordinator"));
        cmd.arg("--id")
            .arg(self.id.to_string())
            .arg("--listen")
            .arg(&self.addr)
            .arg("--data-dir")
            .arg(&self.data_dir)
            .args(&self.extra_args)
            .args((!self.secure).then_some("--insecure"))
            .env("RUST_LOG", "info,openraft=warn")
            .envs(self.env.iter().map(|(k, v)| (k, v)));
        cmd
    }

    /// Starts the process, appending its output to its log file.
    pub fn start(&mut self) {
        assert!(
            self.child.is_none(),
            "coordinator {} already running",
            self.id
        );
        if let Some(parent) = self.log.parent() {
            std::fs::create_dir_all(parent).expect("create coordinator log dir");
        }
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("open coordinator log");
        let err = log.try_clone().expect("clone log handle");
        let mut cmd = match &self.cgroup {
            Some(cg) => cg.wrap(&self.command()),
            None => self.command(),
        };
        let child = cmd
            .stdout(Stdio::from(log))
            .stderr(Stdio::from(err))
            .spawn()
            .expect("spawn shoal-coordinator");
        self.child = Some(child);
    }

    pub fn is_running(&mut self) -> bool {
        match &mut self.child {
            Some(c) => c.try_wait().ok().flatten().is_none(),
            None => false,
        }
    }

    /// SIGKILL: the process gets no chance to clean up.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM, then wait for a clean exit; returns the exit status.
    pub fn terminate(&mut self) -> Option<std::process::ExitStatus> {
        let mut c = self.child.take()?;
        let pid = nix::unistd::Pid::from_raw(c.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            if let Ok(Some(s)) = c.try_wait() {
                return Some(s);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = c.kill();
        c.wait().ok()
    }

    /// The process id while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Sends `sig` to the running process (SIGSTOP/SIGCONT for a stalled member).
    pub fn signal(&self, sig: nix::sys::signal::Signal) {
        if let Some(pid) = self.pid() {
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), sig);
        }
    }

    /// Waits up to `within` for the process to exit on its own; its exit status, or `None` if
    /// it is still running (it is left running).
    pub fn wait_exit(&mut self, within: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + within;
        loop {
            let c = self.child.as_mut()?;
            if let Ok(Some(s)) = c.try_wait() {
                self.child = None;
                return Some(s);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Deletes the data dir (the process must be stopped).
    pub fn wipe(&mut self) {
        assert!(self.child.is_none(), "wipe of a running coordinator");
        let _ = std::fs::remove_dir_all(&self.data_dir);
    }

    /// A linearizable read of the service names, and the applied index the reply names.
    pub async fn read_service_names(&self) -> anyhow::Result<(Vec<String>, u64)> {
        let (services, index) = self.services(false).await?;
        Ok((services.into_iter().map(|s| s.name).collect(), index))
    }

    /// How many times each service was created in this member's applied state (its events),
    /// read locally: a write applied twice shows 2.
    pub async fn create_counts(&self) -> anyhow::Result<BTreeMap<String, usize>> {
        let (events, _) = self.events(0, true).await?;
        let mut creates: BTreeMap<String, usize> = BTreeMap::new();
        for e in events {
            if e.kind == EventKind::Service && e.action == "create" {
                *creates.entry(e.object).or_default() += 1;
            }
        }
        Ok(creates)
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// TLS settings for calling this coordinator as an admin (`None`: insecure cluster).
    pub fn admin_tls(&self) -> Option<tonic::transport::ClientTlsConfig> {
        if !self.secure {
            return None;
        }
        self.client_tls.clone().or_else(|| {
            let m = shoal_pki::files::TlsDir::new(self.data_dir.join("admin"))
                .load()
                .ok()?;
            Some(shoal_pki::tls::client_config(
                &m,
                shoal_pki::Role::Coordinator,
            ))
        })
    }

    pub async fn client(&self) -> anyhow::Result<ControlClient<Channel>> {
        let tls = self.admin_tls();
        if self.secure && tls.is_none() {
            anyhow::bail!("no admin certificate for coordinator {} yet", self.id);
        }
        let ch = shoal_pki::tls::endpoint(&self.addr, tls.as_ref())?
            .connect_timeout(Duration::from_millis(500))
            .timeout(Duration::from_secs(30))
            .connect()
            .await?;
        Ok(ControlClient::new(ch))
    }

    pub async fn status(&self) -> anyhow::Result<ClusterStatusReply> {
        Ok(self
            .client()
            .await?
            .cluster_status(ClusterStatusRequest {})
            .await?
            .into_inner())
    }

    /// Waits until the process answers on its API (and, started with `--bootstrap`, until its
    /// new cluster has a leader: a bootstrap first listens for an existing cluster).
    pub async fn wait_serving(&self) {
        let bootstrap = self.extra_args.iter().any(|a| a == "--bootstrap");
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            match self.status().await {
                Ok(s) if !bootstrap || (s.has_leader && !s.cluster_id.is_empty()) => return,
                _ => {}
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!(
            "coordinator {} did not serve in time; log:\n{}",
            self.id,
            self.log_text()
        );
    }

    pub async fn init(&self) -> anyhow::Result<()> {
        self.client()
            .await?
            .cluster_init(ClusterInitRequest {})
            .await?;
        Ok(())
    }

    /// Adds `other` through this coordinator's API.
    pub async fn add(&self, other: &Coord) -> Result<String, tonic::Status> {
        let mut c = self
            .client()
            .await
            .map_err(|e| tonic::Status::unavailable(e.to_string()))?;
        let req = ClusterAddRequest {
            id: other.id,
            addr: other.addr.clone(),
        };
        Ok(c.cluster_add(req).await?.into_inner().message)
    }

    /// Creates service `name` through this coordinator; returns the log index.
    pub async fn create_service(&self, request_id: &str, name: &str) -> Result<u64, tonic::Status> {
        let mut c = self
            .client()
            .await
            .map_err(|e| tonic::Status::unavailable(e.to_string()))?;
        Ok(c.apply(create_service_request(request_id, name))
            .await?
            .into_inner()
            .log_index)
    }

    /// Runs a query; `stale` reads this member's local state. Returns the typed answer and
    /// the applied index of the state it was read from.
    pub async fn query(&self, q: &Query, stale: bool) -> anyhow::Result<(Answer, u64)> {
        let mut c = self.client().await?;
        let r = c
            .query(control_api::query_request(q, stale))
            .await?
            .into_inner();
        Ok((control_api::answer_of(q, &r)?, r.applied_index))
    }

    /// Runs a typed query and gives its answer as JSON, for tests that look at a few fields.
    pub async fn query_json(
        &self,
        q: &Query,
        stale: bool,
    ) -> anyhow::Result<(serde_json::Value, u64)> {
        let (answer, index) = self.query(q, stale).await?;
        Ok((serde_json::to_value(&answer)?, index))
    }

    /// Every service.
    pub async fn services(&self, stale: bool) -> anyhow::Result<(Vec<Service>, u64)> {
        match self.query(&Query::Services, stale).await? {
            (Answer::Services(v), i) => Ok((v, i)),
            (other, _) => anyhow::bail!("services answered with {}", other.kind()),
        }
    }

    /// Tasks, of one service and/or on one node.
    pub async fn tasks(
        &self,
        service: Option<&str>,
        node: Option<&str>,
        stale: bool,
    ) -> anyhow::Result<Vec<Task>> {
        let q = Query::Tasks {
            service: service.map(str::to_string),
            node: node.map(str::to_string),
        };
        match self.query(&q, stale).await? {
            (Answer::Tasks(v), _) => Ok(v),
            (other, _) => anyhow::bail!("tasks answered with {}", other.kind()),
        }
    }

    /// Every node.
    pub async fn nodes(&self, stale: bool) -> anyhow::Result<Vec<Node>> {
        match self.query(&Query::Nodes, stale).await? {
            (Answer::Nodes(v), _) => Ok(v),
            (other, _) => anyhow::bail!("nodes answered with {}", other.kind()),
        }
    }

    /// Events after `after`.
    pub async fn events(&self, after: u64, stale: bool) -> anyhow::Result<(Vec<Event>, u64)> {
        match self.query(&Query::Events { after }, stale).await? {
            (Answer::Events(v), i) => Ok((v, i)),
            (other, _) => anyhow::bail!("events answered with {}", other.kind()),
        }
    }

    /// Names of the services in this member's local state.
    pub async fn local_service_names(&self) -> anyhow::Result<Vec<String>> {
        let (services, _) = self.services(true).await?;
        Ok(services.into_iter().map(|s| s.name).collect())
    }

    /// Waits until this member has applied at least `index`.
    pub async fn wait_applied(&self, index: u64, within: Duration) {
        let deadline = Instant::now() + within;
        loop {
            if let Ok(s) = self.status().await {
                if s.applied_index >= index {
                    return;
                }
            }
            if Instant::now() > deadline {
                panic!(
                    "coordinator {} did not apply index {index} within {within:?}; log:\n{}",
                    self.id,
                    self.log_text()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for Coord {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Waits until some member reports a leader that is one of `candidates`; returns its id.
pub async fn wait_leader(coords: &[&Coord], within: Duration) -> u64 {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        for c in coords {
            if let Ok(s) = c.status().await {
                if s.has_leader && coords.iter().any(|x| x.id == s.leader_id) {
                    return s.leader_id;
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!(
        "no leader among {:?} within {within:?}",
        coords.iter().map(|c| c.id).collect::<Vec<_>>()
    );
}

/// Starts `n` coordinators (ids 1..=n) and forms a cluster through the API: init on the first,
/// then add the others through it.
pub async fn cluster(root: &Path, n: u64, extra_args: &[&str]) -> Vec<Coord> {
    cluster_with(root, n, |root, id| {
        let mut c = Coord::new(root, id);
        c.extra_args = extra_args.iter().map(|s| s.to_string()).collect();
        c
    })
    .await
}

/// [`cluster`] of the coordinators `make` builds (ids 1..=n), before any starts.
pub async fn cluster_with(root: &Path, n: u64, make: impl Fn(&Path, u64) -> Coord) -> Vec<Coord> {
    let mut coords: Vec<Coord> = (1..=n).map(|id| make(root, id)).collect();
    for c in &mut coords {
        c.start();
    }
    for c in &coords {
        c.wait_serving().await;
    }
    coords[0].init().await.expect("cluster init");
    for c in &coords[1..] {
        coords[0].add(c).await.expect("cluster add");
    }
    coords
}

impl Coord {
    /// The current join token of `role` ("agent" or "coordinator"), asked as an admin.
    pub async fn join_token(&self, role: &str) -> anyhow::Result<String> {
        use shoal_proto::certificates::certificates_client::CertificatesClient;
        use shoal_proto::certificates::TokenRequest;
        let tls = self.admin_tls();
        let ch = shoal_pki::tls::endpoint(&self.addr, tls.as_ref())?
            .connect_timeout(Duration::from_millis(500))
            .connect()
            .await?;
        let reply = CertificatesClient::new(ch)
            .show_token(TokenRequest { role: role.into() })
            .await?;
        Ok(reply.into_inner().token)
    }
}

/// A secure cluster of `n` coordinators: member 1 bootstraps the CA (`--bootstrap`), the others
/// join through it with the coordinator token. `configure` may add arguments or environment to
/// each before it starts. Returns the coordinators and the bootstrap's admin TLS directory.
pub async fn secure_cluster(
    root: &Path,
    n: u64,
    configure: impl Fn(&mut Coord),
) -> (Vec<Coord>, PathBuf) {
    let mut first = Coord::new(root, 1);
    first.secure = true;
    configure(&mut first);
    first.extra_args.push("--bootstrap".into());
    first.start();
    first.wait_serving().await;
    let admin_dir = first.data_dir.join("admin");
    let admin = first.admin_tls();
    // The bootstrap first listens for an existing cluster (about 1.5 s): retry until the CA is
    // set up, as an operator (and the quickstart) would.
    let deadline = Instant::now() + Duration::from_secs(20);
    let token = loop {
        match first.join_token("coordinator").await {
            Ok(t) => break t,
            Err(e) if Instant::now() < deadline => {
                tracing::debug!(error = %e, "no join token yet");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => panic!("coordinator join token: {e:#}"),
        }
    };
    let mut coords = vec![first];
    for id in 2..=n {
        let mut c = Coord::new(root, id);
        c.secure = true;
        c.client_tls = admin.clone();
        configure(&mut c);
        c.extra_args
            .extend(["--join".to_string(), coords[0].addr.clone()]);
        c.env.push(("SHOAL_JOIN_TOKEN".into(), token.clone()));
        c.start();
        c.wait_serving().await;
        // One membership change at a time.
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let voters = coords[0]
                .status()
                .await
                .map(|s| s.members.iter().filter(|m| m.role == "voter").count())
                .unwrap_or(0);
            if voters == id as usize {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "coordinator {id} did not become a voter:\n{}",
                c.log_text()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        coords.push(c);
    }
    (coords, admin_dir)
}

/// The `Control.Apply` request that creates a one-replica busybox service `name`.
pub fn create_service_request(request_id: &str, name: &str) -> ApplyRequest {
    control_api::apply_request(request_id, &create_service(name))
}

/// The command that creates a one-replica busybox service `name`.
pub fn create_service(name: &str) -> UserCommand {
    UserCommand::CreateService {
        name: name.to_string(),
        spec: ServiceSpec {
            container: ContainerSpec {
                image: "busybox".into(),
                ..Default::default()
            },
            replicas: 1,
            ..Default::default()
        },
    }
}

/// The names in a `services` query's answer.
pub fn service_names<C: FromIterator<String>>(answer: &Answer) -> C {
    match answer {
        Answer::Services(v) => v.iter().map(|s| s.name.clone()).collect(),
        _ => std::iter::empty().collect(),
    }
}
