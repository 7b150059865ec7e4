//! Benchmark: time from a leader SIGKILL to the first acknowledged new write, with the killed
//! leader restarted after a delay (0.5 s and 2 s by default, as systemd's `RestartSec` would),
//! while clients keep writing (so the log grows between kills and the new leader has a backlog
//! to send the restarted member). Three `--insecure` coordinators on loopback. Prints a
//! Markdown table for BENCHMARKS.md.
//!
//! Run: `cargo build --release -p shoal-coordinator -p shoal-tests --bins &&
//! target/release/failover-bench --kills 20`

use std::time::Duration;

use clap::Parser;
use shoal_tests::coordinators::cluster;
use shoal_tests::failover::{time_leader_kill, WriteLoad};

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
    let load = WriteLoad::start(&addrs, args.clients);
    tokio::time::sleep(Duration::from_secs(2)).await;

    println!("| leader restarted after | kills | median | p90 | max |");
    println!("|---|---|---|---|---|");
    let mut probe = 0u64;
    for &delay in &args.restart_after_ms {
        let mut times = Vec::new();
        for _ in 0..args.kills {
            let took =
                time_leader_kill(&mut coords, Duration::from_millis(delay), &mut probe).await?;
            times.push(took);
            eprintln!(
                "restart after {delay} ms: first new write acknowledged {took:?} after the kill"
            );
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
    let written = load.stop().await;
    eprintln!("{written} background writes acknowledged during the run");
    Ok(())
}
