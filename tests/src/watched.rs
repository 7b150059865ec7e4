//! A secure cluster in which every process logs at debug and serves `/metrics`, with agents on
//! one containerd: for the tests that search everything a cluster prints, keeps or serves for
//! values that must never appear there (secrets, sensitive configs).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::agents::Agent;
use crate::coordinators::{secure_cluster, wait_leader, Coord};
use crate::free_addr;
use crate::leaks::Unmount;

/// Everything at debug, except the transport crates (which never see values in clear text
/// anyway: they carry protobuf bytes).
pub const DEBUG_LOG: &str =
    "debug,h2=info,hyper=info,hyper_util=info,tower=info,tonic=info,sled=info";

pub struct Watched {
    pub coords: Vec<Coord>,
    pub endpoints: Vec<String>,
    /// Each coordinator's `/metrics` address.
    pub coord_metrics: Vec<String>,
    pub agents: Vec<Agent>,
    /// Each agent's `/metrics` address.
    pub agent_metrics: Vec<String>,
    /// Each agent's secrets tmpfs (unmounted when this is dropped).
    pub secrets_dirs: Vec<PathBuf>,
    _unmount: Unmount,
}

/// Starts `coordinators` secure coordinators and one agent per `(name, labels)` of `nodes`, and
/// waits until every node is ready. Every `shoalctl` the test runs afterwards presents the
/// admin certificate (`SHOAL_TLS_DIR` is set for the test process).
pub async fn watched_cluster(
    root: &Path,
    coordinators: u64,
    nodes: &[(&str, &[(&str, &str)])],
    containerd_socket: &Path,
    image_tar: &Path,
) -> Watched {
    let coord_metrics: Vec<String> = (0..coordinators).map(|_| free_addr()).collect();
    let (coords, admin_dir) = secure_cluster(root, coordinators, |c| {
        let m = coord_metrics[(c.id - 1) as usize].clone();
        c.extra_args = vec!["--metrics-listen".into(), m];
        c.env = vec![("RUST_LOG".into(), DEBUG_LOG.into())];
    })
    .await;
    std::env::set_var("SHOAL_TLS_DIR", &admin_dir);
    std::env::remove_var("SHOAL_INSECURE");
    let agent_token = coords[0]
        .join_token("agent")
        .await
        .expect("an agent join token");
    let refs: Vec<&Coord> = coords.iter().collect();
    wait_leader(&refs, Duration::from_secs(10)).await;
    let endpoints: Vec<String> = coords.iter().map(|c| c.addr.clone()).collect();

    let mut agents = Vec::new();
    let mut agent_metrics = Vec::new();
    for (name, labels) in nodes {
        let mut a = Agent::new(root, name, labels, &endpoints, containerd_socket, image_tar);
        agent_metrics.push(a.serve_metrics());
        a.env = vec![("RUST_LOG".into(), DEBUG_LOG.into())];
        a.secure(&agent_token);
        a.start();
        agents.push(a);
    }
    let secrets_dirs: Vec<PathBuf> = agents.iter().map(|a| a.root.join("data/secrets")).collect();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let ready = match coords[0].nodes(false).await {
            Ok(v) => v
                .iter()
                .filter(|n| n.status == shoal_model::NodeStatus::Ready)
                .count(),
            Err(_) => 0,
        };
        if ready == nodes.len() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{} of {} nodes ready",
            ready,
            nodes.len()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    Watched {
        coords,
        endpoints,
        coord_metrics,
        agents,
        agent_metrics,
        _unmount: Unmount(secrets_dirs.clone()),
        secrets_dirs,
    }
}
