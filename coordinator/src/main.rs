//! `shoal-coordinator`: one member of the replicated control plane.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::Parser;
use shoal_coordinator::api::certificates::CertificatesService;
use shoal_coordinator::api::control::ControlService;
use shoal_coordinator::api::dispatcher::DispatcherService;
use shoal_coordinator::api::raft_service::RaftService;
use shoal_coordinator::batcher::Batcher;
use shoal_coordinator::cert_renewal::Renewal;
use shoal_coordinator::config::Config;
use shoal_coordinator::coordinator::Coordinator;
use shoal_coordinator::identity_file;
use shoal_coordinator::metrics::Metrics;
use shoal_coordinator::orchestrator::{self, liveness::Liveness};
use shoal_coordinator::raft::identity::ClusterTag;
use shoal_coordinator::raft::network::{Channels, NetworkFactory};
use shoal_coordinator::raft::types::Raft;
use shoal_coordinator::raft::Store;
use shoal_coordinator::security::Security;
use shoal_pki::files::TlsMaterial;
use shoal_pki::Role;
use shoal_proto::certificates::certificates_server::CertificatesServer;
use shoal_proto::control::control_client::ControlClient;
use shoal_proto::control::control_server::ControlServer;
use shoal_proto::control::{ClusterAddRequest, ClusterStatusRequest};
use shoal_proto::dispatcher::dispatcher_server::DispatcherServer;
use shoal_proto::raft::raft_server::RaftServer;
use tokio::net::TcpListener;
use tokio::signal::unix::{signal, SignalKind};
use tonic::transport::ClientTlsConfig;

mod tls_setup;

const DEFAULT_CONFIG: &str = "/etc/shoal/coordinator.toml";

/// One Shoal coordinator. Flags override the config file.
#[derive(Parser, Debug)]
#[command(name = "shoal-coordinator", version)]
struct Args {
    /// TOML config file.
    #[arg(long, short, env = "SHOAL_COORDINATOR_CONFIG")]
    config: Option<PathBuf>,
    /// Raft member id (positive, unique, never reused).
    #[arg(long)]
    id: Option<u64>,
    #[arg(long)]
    name: Option<String>,
    /// Control and peer API listen address (ip:port).
    #[arg(long)]
    listen: Option<String>,
    /// Address peers and clients reach this coordinator at.
    #[arg(long)]
    advertise: Option<String>,
    /// Dispatcher API (agents) listen address.
    #[arg(long)]
    agent_listen: Option<String>,
    /// Prometheus `/metrics` listen address.
    #[arg(long)]
    metrics_listen: Option<String>,
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Initialize a new cluster with this coordinator as its first member.
    #[arg(long)]
    bootstrap: bool,
    /// Join an existing cluster through this member (repeatable).
    #[arg(long)]
    join: Vec<String>,
    /// Build a snapshot after this many log entries.
    #[arg(long)]
    snapshot_logs: Option<u64>,
    /// Log entries kept behind a snapshot.
    #[arg(long)]
    keep_logs: Option<u64>,
    /// Log as JSON lines.
    #[arg(long)]
    log_json: bool,
    /// No TLS, no certificates, no authorization: local experiments only (warns at every start).
    #[arg(long)]
    insecure: bool,
    /// Coordinator join token, used when the data dir has no certificate yet.
    #[arg(long, env = "SHOAL_JOIN_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// File holding the coordinator join token.
    #[arg(long)]
    token_file: Option<PathBuf>,
    /// Lifetime of the node certificates this coordinator signs, in seconds.
    #[arg(long)]
    cert_ttl_secs: Option<u64>,
    /// Lifetime of coordinator certificates (its own at bootstrap, and those it signs), in
    /// seconds; coordinators renew theirs two thirds in.
    #[arg(long)]
    coordinator_cert_ttl_secs: Option<u64>,
}

impl Args {
    fn config(&self) -> anyhow::Result<Config> {
        let (path, must_exist) = match &self.config {
            Some(p) => (p.clone(), true),
            None => (PathBuf::from(DEFAULT_CONFIG), false),
        };
        let mut c = Config::load(&path, must_exist)?;
        if let Some(v) = self.id {
            c.id = v;
        }
        if let Some(v) = &self.name {
            c.name = v.clone();
        }
        if let Some(v) = &self.listen {
            c.listen = v.clone();
        }
        if let Some(v) = &self.advertise {
            c.advertise = Some(v.clone());
        }
        if let Some(v) = &self.agent_listen {
            c.agent_listen = Some(v.clone());
        }
        if let Some(v) = &self.metrics_listen {
            c.metrics_listen = Some(v.clone());
        }
        if let Some(v) = &self.data_dir {
            c.data_dir = v.clone();
        }
        c.bootstrap |= self.bootstrap;
        if !self.join.is_empty() {
            c.join = self.join.clone();
        }
        if let Some(v) = self.snapshot_logs {
            c.raft.snapshot_logs = v;
        }
        if let Some(v) = self.keep_logs {
            c.raft.keep_logs_after_snapshot = v;
        }
        c.tls.insecure |= self.insecure;
        if let Some(v) = self.cert_ttl_secs {
            c.tls.cert_ttl_secs = v;
        }
        if let Some(v) = self.coordinator_cert_ttl_secs {
            c.tls.coordinator_cert_ttl_secs = v;
        }
        if let Some(p) = &self.token_file {
            let t = std::fs::read_to_string(p)
                .with_context(|| format!("cannot read the join token file {}", p.display()))?;
            c.tls.join_token = Some(t.trim().to_string());
        } else if let Some(t) = &self.token {
            c.tls.join_token = Some(t.clone());
        }
        if c.name.is_empty() {
            c.name = format!("coordinator-{}", c.id);
        }
        c.validate()?;
        Ok(c)
    }
}

fn init_tracing(json: bool) {
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    use tracing_subscriber::Layer;
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,openraft=warn"));
    // openraft's routine per-RPC ERROR lines are dropped (`log_filter`).
    let routine = tracing_subscriber::filter::filter_fn(shoal_coordinator::log_filter::keep);
    let fmt = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    let fmt = if json {
        fmt.json().with_filter(routine).boxed()
    } else {
        fmt.with_filter(routine).boxed()
    };
    tracing_subscriber::registry().with(filter).with(fmt).init();
}

fn main() -> std::process::ExitCode {
    let args: Args = shoal_ops::man::parse_or_print_man();
    init_tracing(args.log_json);
    shoal_pki::install_crypto();
    let rt = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("shoal-coordinator: cannot start the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let result = rt.block_on(run(args));
    // Dropping the runtime would wait for every blocking task without end: one stuck on a full
    // disk kept a coordinator whose Raft core had stopped alive (seen in CI). Give them a moment.
    let (code, grace) = match result {
        Ok(()) => (std::process::ExitCode::SUCCESS, 5),
        Err(e) => {
            eprintln!("shoal-coordinator: error: {e:#}");
            (std::process::ExitCode::FAILURE, 1)
        }
    };
    rt.shutdown_timeout(Duration::from_secs(grace));
    code
}

async fn run(args: Args) -> anyhow::Result<()> {
    let cfg = args.config()?;
    let addr = cfg.advertise_addr();
    let fresh_dir = !dir_has_entries(&cfg.data_dir);
    std::fs::create_dir_all(&cfg.data_dir)
        .with_context(|| format!("cannot create data dir {}", cfg.data_dir.display()))?;
    // Refuse a data dir that belongs to another member before opening (and so touching) it.
    let identity = identity_file::read(&cfg.data_dir)?;
    if let Some(found) = &identity {
        if found.node_id != cfg.id {
            bail!(
                "data dir {} belongs to member {}{}, but this coordinator is configured as \
                 member {}; refusing to start (nothing was changed)",
                cfg.data_dir.display(),
                found.node_id,
                found
                    .cluster_id
                    .as_deref()
                    .map(|c| format!(" of cluster {c}"))
                    .unwrap_or_default(),
                cfg.id
            );
        }
    }
    let material = if cfg.tls.insecure {
        tls_setup::warn_insecure();
        None
    } else {
        match tls_setup::prepare(&cfg).await {
            Ok(m) => Some(Arc::new(m)),
            Err(e) => {
                if fresh_dir {
                    let _ = std::fs::remove_dir_all(&cfg.data_dir);
                }
                return Err(e);
            }
        }
    };
    let client_tls = material
        .as_deref()
        .map(|m| shoal_pki::tls::client_config(m, Role::Coordinator));
    // The servers' TLS settings, replaced when the certificate is renewed.
    let server_tls = match material.as_deref() {
        Some(m) => Some(tokio::sync::watch::channel(
            shoal_pki::server::server_config(m, false)
                .context("invalid TLS settings for the servers")?,
        )),
        None => None,
    };
    let store =
        Arc::new(Store::open(&cfg.data_dir).with_context(|| {
            format!("refusing to start on data dir {}", cfg.data_dir.display())
        })?);
    let store_empty = store
        .is_empty()
        .with_context(|| format!("cannot read the raft store in {}", cfg.data_dir.display()))?;
    if let Some(cluster) = identity.as_ref().and_then(|i| i.cluster_id.as_deref()) {
        if store_empty {
            bail!(
                "data dir {} says this is member {} of cluster {cluster}, but its Raft store is \
                 empty: the data dir lost its Raft state (its log and the votes it cast). Taking \
                 part under id {} could break Raft's safety, so it will not start. Replace this \
                 coordinator as README.md says (\"Replacing a lost coordinator\"): `shoalctl \
                 cluster remove {}`, then start it on an empty data dir with a new --id and \
                 --join; nothing was changed",
                cfg.data_dir.display(),
                cfg.id,
                cfg.id,
                cfg.id
            );
        }
    }
    if identity.is_none() {
        let id = identity_file::Identity {
            node_id: cfg.id,
            cluster_id: None,
        };
        identity_file::write(&cfg.data_dir, &id)?;
    }
    if store_empty && !cfg.bootstrap && cfg.join.is_empty() {
        tracing::warn!(node_id = cfg.id, data_dir = %cfg.data_dir.display(),
            "empty data dir and neither --bootstrap nor --join: this coordinator takes no part \
             in Raft (and refuses Raft traffic) until `shoalctl cluster init` is run on it or a \
             leader adds it (`shoalctl cluster add`)");
    }
    // A restarted leader must win a new election before it serves anything (see the method).
    if let Some(vote) = store
        .step_down_if_leader(cfg.id)
        .context("cannot step down from the stored leadership")?
    {
        tracing::info!(%vote, "was the leader before this start: stepping down to a new election, \
            so that reads are linearizable from the first one");
    }
    let tag = ClusterTag::new(identity.and_then(|i| i.cluster_id));

    let raft_config = openraft::Config {
        cluster_name: "shoal".into(),
        heartbeat_interval: cfg.raft.heartbeat_ms,
        election_timeout_min: cfg.raft.election_timeout_min_ms,
        election_timeout_max: cfg.raft.election_timeout_max_ms,
        snapshot_policy: openraft::SnapshotPolicy::LogsSinceLast(cfg.raft.snapshot_logs),
        max_in_snapshot_log_to_keep: cfg.raft.keep_logs_after_snapshot,
        install_snapshot_timeout: 2_000,
        // Each entry is a batch of up to 256 requests, and openraft gives an AppendEntries only
        // the heartbeat interval: a few entries per payload (and a byte cap in the log store's
        // `limited_get_log_entries`) so that catching up never means resending one payload
        // that cannot finish in time.
        max_payload_entries: cfg.raft.max_payload_entries,
        ..Default::default()
    }
    .validate()
    .context("invalid raft settings")?;
    let channels = Channels::new(client_tls.clone());
    let metrics = Metrics::for_store(store.disk_sync_durations());
    let network = NetworkFactory {
        channels: channels.clone(),
        tag: tag.clone(),
        metrics: metrics.clone(),
    };
    let sm = store.state_machine();
    let raft = Raft::new(
        cfg.id,
        Arc::new(raft_config),
        network,
        store.log_store(),
        sm.clone(),
    )
    .await
    .context("cannot start raft")?;
    // Liveness for systemd's watchdog: the Raft core answers a call on its state.
    let probe_raft = raft.clone();
    tokio::spawn(shoal_ops::systemd::watchdog(move || {
        let raft = probe_raft.clone();
        async move { raft.with_raft_state(|_| ()).await.is_ok() }
    }));
    let coord = Coordinator {
        id: cfg.id,
        addr: addr.clone(),
        raft: raft.clone(),
        store: store.clone(),
        sm,
        channels,
        tag,
        metrics,
        security: Security {
            secure: material.is_some(),
            cert_ttl: Duration::from_secs(cfg.tls.cert_ttl_secs),
            coordinator_cert_ttl: Duration::from_secs(cfg.tls.coordinator_cert_ttl_secs),
        },
        batcher: Batcher::start(raft.clone()),
        contacts: Default::default(),
    };
    // A store with Raft state but an identity file without the cluster id (lost, or from
    // before the id was recorded there): the replicated state names the cluster.
    if coord.tag.get().is_none() && !store_empty {
        if let Some(cluster_id) = coord.sm.read(|s| s.cluster_id.clone()) {
            coord.record_cluster_id(&cluster_id)?;
            tracing::info!(%cluster_id, "cluster id restored from the replicated state");
        }
    }
    tokio::spawn(coord.metrics.watch_raft(&coord));

    let liveness = Liveness::new(orchestrator::liveness::Timing {
        period: Duration::from_millis(cfg.agents.heartbeat_ms),
        grace: Duration::from_millis(cfg.agents.grace_ms),
        max_grace: Duration::from_millis(cfg.agents.max_grace_ms),
    });
    let dispatcher = || {
        DispatcherServer::new(DispatcherService {
            coord: coord.clone(),
            liveness: liveness.clone(),
        })
    };
    let listener = TcpListener::bind(&cfg.listen)
        .await
        .with_context(|| format!("cannot listen on {}", cfg.listen))?;
    let api_addr = listener
        .local_addr()
        .context("cannot read the API listener's address")?;
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let certificates = || {
        CertificatesServer::new(CertificatesService {
            coord: coord.clone(),
        })
    };
    let router = tonic::transport::Server::builder()
        .layer(coord.metrics.api().layer())
        .add_service(
            RaftServer::new(RaftService {
                coord: coord.clone(),
            })
            .max_decoding_message_size(256 << 20),
        )
        .add_service(ControlServer::new(ControlService {
            coord: coord.clone(),
        }))
        .add_service(dispatcher())
        .add_service(certificates());
    let stop = async {
        let _ = stop_rx.await;
    };
    // Clients that refused this coordinator's certificate: during a bootstrap, the sign that
    // an existing cluster (with another CA) still counts this address as its member.
    let refused_by: Arc<std::sync::Mutex<Vec<std::net::SocketAddr>>> = Arc::default();
    let on_refused: shoal_pki::server::OnCertRefused = {
        let refused_by = refused_by.clone();
        Arc::new(move |peer| {
            refused_by
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(peer)
        })
    };
    let server = match &server_tls {
        Some((_, tls)) => tokio::spawn(router.serve_with_incoming_shutdown(
            shoal_pki::server::incoming_observed(listener, tls.clone(), "api", Some(on_refused)),
            stop,
        )),
        None => tokio::spawn(router.serve_with_incoming_shutdown(plain_incoming(listener), stop)),
    };
    let (halt_tx, halt_rx) = tokio::sync::watch::channel(false);
    if let Some(agent_listen) = &cfg.agent_listen {
        let l = TcpListener::bind(agent_listen)
            .await
            .with_context(|| format!("cannot listen on {agent_listen}"))?;
        let mut halt = halt_rx.clone();
        let router = tonic::transport::Server::builder()
            .layer(coord.metrics.api().layer())
            .add_service(dispatcher())
            .add_service(certificates());
        let stop = async move {
            let _ = halt.changed().await;
        };
        match &server_tls {
            Some((_, tls)) => tokio::spawn(router.serve_with_incoming_shutdown(
                shoal_pki::server::incoming_watched(l, tls.clone(), "agents"),
                stop,
            )),
            None => tokio::spawn(router.serve_with_incoming_shutdown(plain_incoming(l), stop)),
        };
    }
    if let Some(metrics_listen) = &cfg.metrics_listen {
        let c = coord.clone();
        let render: shoal_ops::metrics_http::Render = std::sync::Arc::new(move || {
            let c = c.clone();
            Box::pin(async move { c.metrics.render(&c).await })
        });
        let mut halt = halt_rx.clone();
        let stop = async move {
            let _ = halt.changed().await;
        };
        let bound = shoal_ops::metrics_http::spawn(metrics_listen, render, stop)
            .await
            .with_context(|| format!("cannot listen on {metrics_listen} for /metrics"))?;
        tracing::info!(listen = %bound, "serving /metrics");
    }
    tokio::spawn(liveness.clone().observe(halt_rx.clone()));
    tokio::spawn(orchestrator::runner::run(
        coord.clone(),
        liveness.clone(),
        halt_rx,
    ));
    tracing::info!(node_id = cfg.id, name = %cfg.name, listen = %cfg.listen, advertise = %addr,
        data_dir = %cfg.data_dir.display(), "coordinator serving");

    let initialized = raft.is_initialized().await?;
    if !initialized && cfg.bootstrap {
        // Listen before creating a cluster: members of an existing cluster that still count
        // this address as theirs send it heartbeats or vote requests within an election
        // timeout or two, and then `init_cluster` refuses.
        let listen =
            Duration::from_millis(4 * cfg.raft.election_timeout_max_ms).max(BOOTSTRAP_LISTEN);
        tokio::time::sleep(listen).await;
        // A secure cluster's members cannot get Raft traffic through to a new CA: their TLS
        // clients refuse its certificate instead, which is as telling.
        let refused: Vec<std::net::SocketAddr> =
            refused_by.lock().unwrap_or_else(|p| p.into_inner()).clone();
        if !refused.is_empty() {
            let _ = stop_tx.send(());
            let _ = raft.shutdown().await;
            drop(coord);
            drop(store);
            if fresh_dir {
                let _ = std::fs::remove_dir_all(&cfg.data_dir);
            }
            bail!(
                "refusing to bootstrap a new cluster: while this coordinator listened first, \
                 {} connection(s) (from {}) refused its new CA, so nodes of an existing secure \
                 cluster still count {} as theirs. If this member's data dir was lost, do not \
                 bootstrap: remove its old id from the cluster (`shoalctl cluster remove ID`) and \
                 start it with a new `--id` and `--join` (README: \"replacing a member\")",
                refused.len(),
                refused[0],
                cfg.listen
            );
        }
        let id = coord
            .init_cluster()
            .await
            .context("cannot bootstrap the cluster")?;
        tracing::info!(cluster_id = %id, "bootstrapped a new cluster");
    } else if !initialized && !cfg.join.is_empty() {
        if let Err(e) = join(&cfg, &addr, client_tls.as_ref()).await {
            let _ = stop_tx.send(());
            let _ = raft.shutdown().await;
            drop(coord);
            drop(store);
            if fresh_dir {
                let _ = std::fs::remove_dir_all(&cfg.data_dir);
            }
            return Err(e);
        }
    }

    if let (Some(m), Some((server_tls, _))) = (&material, server_tls) {
        tokio::spawn(tls_setup::publish_pending_ca(
            coord.clone(),
            cfg.data_dir.clone(),
        ));
        let renewal = Renewal {
            dir: tls_setup::tls_dir(&cfg.data_dir),
            material: TlsMaterial::clone(m),
            api_addr: loopback(api_addr).to_string(),
            channels: coord.channels.clone(),
            server_tls,
            metrics: coord.metrics.clone(),
        };
        tokio::spawn(renewal.run());
    }

    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    // Raft is loaded and, once our own API answers, this coordinator serves: tell systemd.
    let probe_tls = client_tls.clone();
    let ready = tokio::spawn(async move {
        wait_api_serving(api_addr, probe_tls).await;
        shoal_ops::systemd::ready();
    });
    let core_stopped = raft_core_stopped(raft.clone());
    let fatal = tokio::select! {
        _ = term.recv() => { tracing::info!("SIGTERM: shutting down"); None }
        _ = int.recv() => { tracing::info!("SIGINT: shutting down"); None }
        reason = core_stopped => Some(reason),
    };
    if let Some(reason) = fatal {
        // Exit non-zero at once (systemd restarts the unit); never serve without a Raft core.
        tracing::error!(%reason, "the raft core stopped; exiting");
        let _ = stop_tx.send(());
        let _ = halt_tx.send(true);
        bail!("the raft core stopped: {reason}");
    }
    ready.abort();
    shoal_ops::systemd::stopping();
    let _ = stop_tx.send(());
    let _ = halt_tx.send(true);
    // In-flight requests finish; new connections are refused.
    let _ = tokio::time::timeout(Duration::from_secs(10), server).await;
    let _ = raft.shutdown().await;
    tracing::info!("stopped");
    Ok(())
}

/// The least time a bootstrapping coordinator listens for an existing cluster first.
const BOOTSTRAP_LISTEN: Duration = Duration::from_millis(1500);

/// Resolves when the Raft core is gone (openraft `Fatal`, a panic in the core, or its task
/// ending), with the reason.
async fn raft_core_stopped(raft: Raft) -> String {
    let mut rx = raft.metrics();
    loop {
        if let Err(fatal) = &rx.borrow_and_update().running_state {
            return fatal.to_string();
        }
        if rx.changed().await.is_err() {
            return "the raft core task ended (a panic in openraft?)".into();
        }
    }
}

/// Plaintext connections (`--insecure`), with Nagle off like the TLS accept loop's.
fn plain_incoming(listener: TcpListener) -> tonic::transport::server::TcpIncoming {
    tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true))
}

/// Where this process reaches a listener bound to `addr` (loopback for an unspecified address).
fn loopback(mut addr: std::net::SocketAddr) -> std::net::SocketAddr {
    if addr.ip().is_unspecified() {
        addr.set_ip(if addr.is_ipv4() {
            std::net::Ipv4Addr::LOCALHOST.into()
        } else {
            std::net::Ipv6Addr::LOCALHOST.into()
        });
    }
    addr
}

/// Calls this coordinator's own control API until it answers, warning every 10 s it does not.
async fn wait_api_serving(addr: std::net::SocketAddr, tls: Option<ClientTlsConfig>) {
    let addr = loopback(addr);
    let mut warn_at = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let call = async {
            let channel = shoal_pki::tls::endpoint(&addr.to_string(), tls.as_ref())?
                .connect_timeout(Duration::from_secs(1))
                .timeout(Duration::from_secs(2))
                .connect()
                .await?;
            ControlClient::new(channel)
                .cluster_status(ClusterStatusRequest {})
                .await?;
            anyhow::Ok(())
        };
        match call.await {
            Ok(()) => return,
            Err(e) if tokio::time::Instant::now() >= warn_at => {
                tracing::warn!(error = %format!("{e:#}"), %addr,
                    "the control API does not answer yet; not telling systemd READY");
                warn_at += Duration::from_secs(10);
            }
            Err(_) => {}
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn dir_has_entries(p: &std::path::Path) -> bool {
    std::fs::read_dir(p)
        .map(|mut d| d.next().is_some())
        .unwrap_or(false)
}

/// Asks the members named in `join` to add this coordinator, until one accepts or 15 s pass.
async fn join(cfg: &Config, addr: &str, tls: Option<&ClientTlsConfig>) -> anyhow::Result<()> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    let mut last_err = String::new();
    while tokio::time::Instant::now() < deadline {
        for peer in &cfg.join {
            let endpoint =
                shoal_pki::tls::endpoint(peer, tls)?.connect_timeout(Duration::from_secs(1));
            let channel = match endpoint.connect().await {
                Ok(c) => c,
                Err(e) => {
                    last_err = format!("{peer}: unreachable: {e}");
                    continue;
                }
            };
            let req = ClusterAddRequest {
                id: cfg.id,
                addr: addr.to_string(),
            };
            match ControlClient::new(channel).cluster_add(req).await {
                Ok(r) => {
                    tracing::info!(via = %peer, message = %r.into_inner().message, "joined");
                    return Ok(());
                }
                Err(s) if s.code() == tonic::Code::FailedPrecondition => {
                    bail!("joining through {peer} was refused: {}", s.message())
                }
                Err(s) => last_err = format!("{peer}: {}", s.message()),
            }
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    bail!(
        "cannot join the cluster through {}: {last_err}",
        cfg.join.join(", ")
    )
}
