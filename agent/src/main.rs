//! `shoal-agent`: the per-node agent binary. SIGTERM stops the agent, never its containers.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use shoal_agent::api::AgentApi;
use shoal_agent::config::{AgentConfig, Flags};
use shoal_agent::log_rotation::{self, RotationPolicy};
use shoal_agent::metrics::Metrics;
use shoal_agent::node_info::local_node;
use shoal_agent::reporter::Reporter;
use shoal_agent::revocations::Revocations;
use shoal_agent::runtime::{ContainerRuntime, ContainerdConfig, ContainerdRuntime};
use shoal_agent::runtime_metrics::MeteredRuntime;
use shoal_agent::secrets::SecretStore;
use shoal_agent::session::Session;
use shoal_agent::state_db::StateDb;
use shoal_agent::supervisor::{Supervisor, SupervisorConfig};
use shoal_agent::tls::AgentTls;
use shoal_pki::files::TlsDir;
use shoal_proto::agent::agent_server::AgentServer;
use tokio::signal::unix::{signal, SignalKind};
use tracing::{info, warn};

fn init_tracing(json: bool) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    if json {
        builder.json().init();
    } else {
        builder.init();
    }
}

/// Connects to containerd, retrying every second until it answers.
async fn connect_runtime(cfg: &AgentConfig) -> Arc<ContainerdRuntime> {
    let mut cd = ContainerdConfig::new(&cfg.containerd_socket);
    cd.namespace = cfg.namespace.clone();
    cd.volumes_dir = cfg.volumes_dir.clone();
    cd.secrets_dir = cfg.secrets_dir.clone();
    cd.exec_dir = cfg.data_dir.join("exec");
    cd.hosts_dir = cfg.data_dir.join("hosts");
    loop {
        match ContainerdRuntime::connect(cd.clone()).await {
            Ok(rt) => return rt,
            Err(error) => {
                warn!(%error, "cannot reach containerd; retrying in 1 s");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }
}

/// Serves the agent API, once: with TLS, each new connection is handshaken with the
/// certificate in use at that moment, so a renewal needs no restart.
async fn serve_api(
    api: Arc<AgentApi>,
    listener: tokio::net::TcpListener,
    metrics: Metrics,
    tls: Option<Arc<AgentTls>>,
) -> Result<()> {
    let router = tonic::transport::Server::builder()
        .layer(metrics.api().layer())
        .add_service(AgentServer::from_arc(api));
    match tls {
        Some(t) => {
            let incoming =
                shoal_pki::server::incoming_watched(listener, t.server_settings(), "agent-api");
            router.serve_with_incoming(incoming).await
        }
        None => {
            let incoming =
                tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true));
            router.serve_with_incoming(incoming).await
        }
    }
    .context("agent API server")
}

#[tokio::main]
async fn main() -> Result<()> {
    let flags: Flags = shoal_ops::man::parse_or_print_man();
    let cfg = AgentConfig::load(&flags).context("loading the agent configuration")?;
    init_tracing(cfg.log_json);
    shoal_pki::install_crypto();
    info!(node = %cfg.node_name, namespace = %cfg.namespace, coordinators = ?cfg.coordinators, "shoal-agent starting");
    for dir in [&cfg.data_dir, &cfg.log_dir] {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("creating directory `{}`", dir.display()))?;
    }
    let mut sigterm = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    let mut sigint = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;

    let tls = if cfg.insecure {
        let text = "INSECURE MODE: no TLS and no certificates; anyone who can reach this agent's \
                    API can read logs and exec into its containers. Local experiments only.";
        eprintln!("shoal-agent: WARNING: {text}");
        warn!("{text}");
        None
    } else {
        let tls = AgentTls::obtain(
            TlsDir::new(cfg.data_dir.join("tls")),
            &cfg.node_name,
            &cfg.coordinators,
            cfg.join_token.as_deref(),
        )
        .await
        .context("cannot get this agent's certificate")?;
        tokio::spawn(tls.clone().renew_loop(cfg.coordinators.clone()));
        Some(tls)
    };
    let db = StateDb::open(&cfg.data_dir).context("opening the agent's state db")?;
    let listener = tokio::net::TcpListener::bind(&cfg.listen)
        .await
        .with_context(|| format!("binding the agent API to `{}`", cfg.listen))?;
    let reporter = Arc::new(Reporter::new(Some(db.clone())));
    // Loaded before the API serves: revoked certificates stay refused with no coordinator.
    let revocations = Revocations::load(Some(db.clone()));
    let metrics = Metrics::new();
    if let Some(addr) = &cfg.metrics_listen {
        let bound = shoal_ops::metrics_http::spawn(
            addr,
            metrics.render(reporter.clone()),
            std::future::pending(),
        )
        .await
        .with_context(|| format!("binding the metrics endpoint to `{addr}`"))?;
        info!(metrics_listen = %bound, "serving /metrics");
    }
    let containerd: Arc<dyn ContainerRuntime> = connect_runtime(&cfg).await;
    let rt: Arc<dyn ContainerRuntime> = Arc::new(MeteredRuntime::new(containerd, metrics.clone()));
    tokio::spawn(metrics.clone().count_exits(rt.clone()));
    for image in &cfg.import_images {
        let r = rt
            .import_image(image)
            .await
            .with_context(|| format!("importing image `{}`", image.display()))?;
        info!(image = %r.name, digest = %r.digest, "image imported");
    }
    let runtime_version = rt.version().await.unwrap_or_else(|error| {
        warn!(%error, "cannot read containerd's version");
        "unknown".to_owned()
    });
    let (assign_tx, assign_rx) = tokio::sync::mpsc::channel(16);
    let secrets = SecretStore::default();
    let configs = SecretStore::default();
    let templates = shoal_agent::templates::TemplateStore::default();
    let node = local_node(&cfg, &runtime_version);
    let supervisor = Supervisor::new(
        rt.clone(),
        reporter.clone(),
        Some(db),
        SupervisorConfig {
            node: cfg.node_name.clone(),
            log_dir: cfg.log_dir.clone(),
            resync: Duration::from_secs(2),
            registries: cfg.registries.clone(),
            secrets_dir: cfg.secrets_dir.clone(),
            secrets: secrets.clone(),
            configs: configs.clone(),
            templates: templates.clone(),
            template_node: shoal_agent::templates::node_vars(&node),
        },
    );
    tokio::spawn(supervisor.run(assign_rx));
    let session = Session {
        endpoints: cfg.coordinators.clone(),
        node,
        reporter: reporter.clone(),
        assignments: assign_tx,
        prepull: Some(Arc::new(shoal_agent::prepull::Prepuller::new(
            rt.clone(),
            cfg.registries.clone(),
        ))),
        tls: tls.clone(),
        secrets,
        configs,
        templates,
        revocations: revocations.clone(),
    };
    tokio::spawn(session.run());
    tokio::spawn(log_rotation::run(
        cfg.log_dir.clone(),
        RotationPolicy {
            max_bytes: cfg.log_max_bytes,
            keep: cfg.log_keep,
        },
        Duration::from_secs(10),
    ));

    let api = Arc::new(AgentApi::new(
        rt,
        cfg.log_dir.clone(),
        tls.is_some(),
        revocations,
    ));
    let mut server = tokio::spawn(serve_api(api, listener, metrics.clone(), tls));
    info!(listen = %cfg.listen, "agent API listening");
    // containerd answered and the API's socket is bound and accepting: tell systemd.
    shoal_ops::systemd::ready();
    tokio::spawn(shoal_ops::systemd::watchdog(move || {
        let reporter = reporter.clone();
        async move {
            // The runtime schedules tasks and the shared task state is not wedged.
            tokio::task::yield_now().await;
            let _ = reporter.states();
            true
        }
    }));
    let result = tokio::select! {
        r = &mut server => match r {
            Ok(r) => r.context("agent API server"),
            Err(e) => Err(e).context("agent API server task"),
        },
        _ = sigterm.recv() => {
            info!("SIGTERM: stopping the agent; containers keep running");
            Ok(())
        }
        _ = sigint.recv() => {
            info!("SIGINT: stopping the agent; containers keep running");
            Ok(())
        }
    };
    shoal_ops::systemd::stopping();
    result
}
