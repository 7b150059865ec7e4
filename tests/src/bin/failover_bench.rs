//! Benchmark: time from a leader SIGKILL to the first acknowledged new write, with the killed
//! leader restarted after a delay (0.5 s and 2 s by default, as systemd's `RestartSec` would),
//! while clients keep writing (so the log grows between kills and the new leader has a backlog
//! to send the restarted member). Three `--insecure` coordinators on loopback. Prints a
//! Markdown table for BENCHMARKS.md.
//!
//! Run: `cargo build --release -p shoal-coordinator -p shoal-tests --bins &&
//! target/release/failover-bench --kills 20`

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Parser;
use shoal_proto::control::control_client::ControlClient;
use shoal_tests::coordinators::{cluster, create_service_request, wait_leader, Coord};

#[derive(Parser)]
struct Args {
    /// Leader kills per restart delay.
    #[arg(long, default_value_t = 20)]
    kills: usize,
    /// Delays before the killed leader is restarted, in milliseconds.
    #[arg(long, value_delimiter = ',', default_value = "500,2000")]
    restart_after_ms: Vec<u64>,
    /// Background clients writing all along.
    #[arg(long, default_value_t = 8)]
    clients: usize,
    /// A coordinator config file (e.g. `[raft]` tuning) given to every member.
    #[arg(long)]
    coordinator_config: Option<std::path::PathBuf>,
}

async fn apply(addr: &str, request_id: &str, name: &str, ttl: Duration) -> anyhow::Result<u64> {
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

fn pct(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let dir = tempfile::tempdir()?;
    let config_args: Vec<String> = match &args.coordinator_config {
        Some(p) => vec!["--config".into(), p.display().to_string()],
        None => Vec::new(),
    };
    let config_args: Vec<&str> = config_args.iter().map(String::as_str).collect();
    let mut coords = cluster(dir.path(), 3, &config_args).await;
    let addrs: Vec<String> = coords.iter().map(|c| c.addr.clone()).collect();
    let stop = Arc::new(AtomicBool::new(false));
    let written = Arc::new(AtomicU64::new(0));
    let mut load = Vec::new();
    for n in 0..args.clients {
        let (addrs, stop, written) = (addrs.clone(), stop.clone(), written.clone());
        load.push(tokio::spawn(async move {
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
        }));
    }
    tokio::time::sleep(Duration::from_secs(2)).await;

    println!("| leader restarted after | kills | median | p90 | max |");
    println!("|---|---|---|---|---|");
    let mut probe = 0u64;
    for &delay in &args.restart_after_ms {
        let mut times = Vec::new();
        for _ in 0..args.kills {
            let refs: Vec<&Coord> = coords.iter().collect();
            let leader = wait_leader(&refs, Duration::from_secs(30)).await;
            let pos = coords
                .iter()
                .position(|c| c.id == leader)
                .ok_or_else(|| anyhow::anyhow!("leader {leader} unknown"))?;
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
                if !restarted && killed.elapsed() >= Duration::from_millis(delay) {
                    coords[pos].start();
                    restarted = true;
                }
                probe += 1;
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
                    anyhow::bail!("no write acknowledged within 60 s of a leader kill");
                }
            };
            if !restarted {
                let left = Duration::from_millis(delay).saturating_sub(killed.elapsed());
                tokio::time::sleep(left).await;
                coords[pos].start();
            }
            times.push(took);
            eprintln!(
                "restart after {delay} ms: first new write acknowledged {took:?} after the kill"
            );
            // Let the restarted member catch up before the next kill.
            coords[pos].wait_serving().await;
            tokio::time::sleep(Duration::from_secs(2)).await;
        }
        times.sort();
        println!(
            "| {:.1} s | {} | {:.0} ms | {:.0} ms | {:.0} ms |",
            delay as f64 / 1000.0,
            times.len(),
            pct(&times, 0.5).as_secs_f64() * 1000.0,
            pct(&times, 0.9).as_secs_f64() * 1000.0,
            times[times.len() - 1].as_secs_f64() * 1000.0
        );
    }
    stop.store(true, Ordering::Relaxed);
    for t in load {
        let _ = t.await;
    }
    eprintln!(
        "{} background writes acknowledged during the run",
        written.load(Ordering::Relaxed)
    );
    Ok(())
}
