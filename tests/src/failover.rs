//! Leader kills under write load, timed: clients that keep writing through every coordinator,
//! and one kill of the leader (restarted after a delay, as systemd's `RestartSec` would) timed to
//! the first acknowledged new write. Used by `failover-bench` and `tests/raft_recovery.rs`.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Result};
use shoal_proto::control::control_client::ControlClient;
use tokio::task::JoinHandle;

use crate::coordinators::{create_service_request, wait_leader, Coord};

/// Creates service `name` through `addr` (insecure), giving up after `ttl`: the log index.
pub async fn apply(addr: &str, request_id: &str, name: &str, ttl: Duration) -> Result<u64> {
    let req = create_service_request(request_id, name);
    let call = async {
        let ch = shoal_pki::tls::endpoint(addr, None)?
            .connect_timeout(Duration::from_millis(300))
            .connect()
            .await?;
        anyhow::Ok(
            ControlClient::new(ch)
                .apply(req)
                .await?
                .into_inner()
                .log_index,
        )
    };
    tokio::time::timeout(ttl, call).await?
}

/// Background clients, each creating services one after another through the coordinators in
/// turn, so that the log keeps growing between kills.
pub struct WriteLoad {
    stop: Arc<AtomicBool>,
    written: Arc<AtomicU64>,
    clients: Vec<JoinHandle<()>>,
}

impl WriteLoad {
    pub fn start(addrs: &[String], clients: usize) -> WriteLoad {
        let stop = Arc::new(AtomicBool::new(false));
        let written = Arc::new(AtomicU64::new(0));
        let clients = (0..clients)
            .map(|n| {
                let (addrs, stop, written) = (addrs.to_vec(), stop.clone(), written.clone());
                tokio::spawn(async move {
                    let mut seq = 0u64;
                    while !stop.load(Ordering::Relaxed) {
                        let name = format!("bg{n}-{seq}");
                        let addr = &addrs[(n + seq as usize) % addrs.len()];
                        if apply(addr, &name, &name, Duration::from_secs(2))
                            .await
                            .is_ok()
                        {
                            written.fetch_add(1, Ordering::Relaxed);
                            seq += 1;
                        } else {
                            tokio::time::sleep(Duration::from_millis(20)).await;
                        }
                    }
                })
            })
            .collect();
        WriteLoad {
            stop,
            written,
            clients,
        }
    }

    /// Writes acknowledged so far.
    pub fn written(&self) -> u64 {
        self.written.load(Ordering::Relaxed)
    }

    /// Stops the clients; the number of acknowledged writes.
    pub async fn stop(self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        for c in self.clients {
            let _ = c.await;
        }
        self.written.load(Ordering::Relaxed)
    }
}

/// Kills the leader, restarts it `restart_after` later, and returns the time from the kill to
/// the first new write acknowledged through a survivor (an error after 60 s). Then waits for
/// the restarted member to serve and catch up, so that kills do not pile up. `probe` numbers
/// the probe writes across calls.
pub async fn time_leader_kill(
    coords: &mut [Coord],
    restart_after: Duration,
    probe: &mut u64,
) -> Result<Duration> {
    let refs: Vec<&Coord> = coords.iter().collect();
    let leader = wait_leader(&refs, Duration::from_secs(30)).await;
    let pos = coords
        .iter()
        .position(|c| c.id == leader)
        .ok_or_else(|| anyhow!("leader {leader} unknown"))?;
    coords[pos].kill();
    let killed = Instant::now();
    let survivors: Vec<String> = coords
        .iter()
        .filter(|c| c.id != leader)
        .map(|c| c.addr.clone())
        .collect();
    let mut restarted = false;
    let mut i = 0usize;
    let took = loop {
        if !restarted && killed.elapsed() >= restart_after {
            coords[pos].start();
            restarted = true;
        }
        *probe += 1;
        let name = format!("probe-{probe}");
        let addr = &survivors[i % survivors.len()];
        i += 1;
        if apply(addr, &name, &name, Duration::from_millis(500))
            .await
            .is_ok()
        {
            break killed.elapsed();
        }
        if killed.elapsed() > Duration::from_secs(60) {
            bail!("no write acknowledged within 60 s of a leader kill");
        }
    };
    if !restarted {
        tokio::time::sleep(restart_after.saturating_sub(killed.elapsed())).await;
        coords[pos].start();
    }
    coords[pos].wait_serving().await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    Ok(took)
}
