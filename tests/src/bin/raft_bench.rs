//! Benchmark: committed writes/s and commit latency of three coordinators on loopback (fsync on)
//! at 1, 16 and 256 concurrent clients, the same workload against a three-member etcd cluster
//! started on loopback, and leader failover time. Prints a Markdown table for BENCHMARKS.md.
//!
//! Run: `cargo build --release --workspace --bins && target/release/raft-bench`

use std::io::Write;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::Parser;
use shoal_model::api::UserCommand;
use shoal_model::ServiceSpec;
use shoal_proto::control::control_client::ControlClient;
use shoal_proto::control_api;
use shoal_tests::coordinators::{cluster, wait_leader, Coord};
use shoal_tests::free_addr;
use tonic::transport::Channel;

#[derive(Parser)]
struct Args {
    /// Concurrent clients per run.
    #[arg(long, value_delimiter = ',', default_value = "1,16,256")]
    clients: Vec<usize>,
    /// Seconds each run lasts.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// Leader kills for the failover measurement.
    #[arg(long, default_value_t = 5)]
    failovers: usize,
    /// Skip etcd.
    #[arg(long)]
    no_etcd: bool,
    /// Size of each written value in bytes (etcd); Shoal writes a service spec of similar size.
    #[arg(long, default_value_t = 700)]
    value_bytes: usize,
    /// Run Shoal as deployed: a secure cluster (mutual TLS on every RPC, clients with the admin
    /// certificate). Default: `--insecure`, plaintext like the etcd members.
    #[arg(long)]
    secure: bool,
}

#[derive(Default)]
struct Run {
    ops: u64,
    errors: u64,
    secs: f64,
    lat_us: Vec<u64>,
}

impl Run {
    fn pct(&self, p: f64) -> f64 {
        if self.lat_us.is_empty() {
            return f64::NAN;
        }
        let i = ((self.lat_us.len() as f64 - 1.0) * p).round() as usize;
        self.lat_us[i] as f64 / 1000.0
    }
    fn rate(&self) -> f64 {
        self.ops as f64 / self.secs
    }
}

/// Runs `clients` concurrent loops of `op` for `secs`; each loop is bounded by the deadline.
async fn drive<F, Fut>(clients: usize, secs: u64, op: F) -> Run
where
    F: Fn(usize, u64) -> Fut + Send + Sync + Clone + 'static,
    Fut: std::future::Future<Output = bool> + Send,
{
    let seq = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let deadline = start + Duration::from_secs(secs);
    let mut tasks = Vec::new();
    for c in 0..clients {
        let op = op.clone();
        let seq = seq.clone();
        tasks.push(tokio::spawn(async move {
            let (mut lat, mut errs) = (Vec::new(), 0u64);
            while Instant::now() < deadline {
                let n = seq.fetch_add(1, Ordering::Relaxed);
                let t = Instant::now();
                if op(c, n).await {
                    lat.push(t.elapsed().as_micros() as u64);
                } else {
                    errs += 1;
                }
            }
            (lat, errs)
        }));
    }
    let mut run = Run::default();
    for t in tasks {
        if let Ok((lat, errs)) = t.await {
            run.lat_us.extend(lat);
            run.errors += errs;
        }
    }
    run.secs = start.elapsed().as_secs_f64();
    run.ops = run.lat_us.len() as u64;
    run.lat_us.sort_unstable();
    run
}

async fn connect(
    addr: &str,
    tls: Option<&tonic::transport::ClientTlsConfig>,
) -> anyhow::Result<ControlClient<Channel>> {
    let ch = shoal_pki::tls::endpoint(addr, tls)?
        .tcp_nodelay(true)
        .connect()
        .await?;
    Ok(ControlClient::new(ch))
}

/// Three coordinators: plaintext and formed through the API, or a secure cluster (bootstrap and
/// join tokens).
async fn bench_cluster(secure: bool, root: &std::path::Path) -> Vec<Coord> {
    if secure {
        shoal_tests::coordinators::secure_cluster(root, 3, |_| {})
            .await
            .0
    } else {
        cluster(root, 3, &[]).await
    }
}

async fn shoal_runs(args: &Args, root: &std::path::Path) -> anyhow::Result<Vec<(usize, Run)>> {
    let coords = bench_cluster(args.secure, root).await;
    let tls = coords[0].admin_tls();
    let refs: Vec<&Coord> = coords.iter().collect();
    let leader = wait_leader(&refs, Duration::from_secs(10)).await;
    let addr = coords
        .iter()
        .find(|c| c.id == leader)
        .map(|c| c.addr.clone())
        .context("leader")?;
    // A few connections shared by the clients, as a real client pool would.
    let mut pool = Vec::new();
    for _ in 0..8 {
        pool.push(connect(&addr, tls.as_ref()).await?);
    }
    let mut out = Vec::new();
    for &n in &args.clients {
        let pool = pool.clone();
        let run = drive(n, args.seconds, move |c, seq| {
            let mut client = pool[c % pool.len()].clone();
            async move {
                let req = control_api::apply_request(
                    &format!("bench-{n}-{seq}"),
                    &keystone_like(format!("b{n}-{seq}")),
                );
                client.apply(req).await.is_ok()
            }
        })
        .await;
        eprintln!(
            "shoal  clients={n:<4} {:>9.0} writes/s  p50 {:.2} ms  p99 {:.2} ms  errors {}",
            run.rate(),
            run.pct(0.5),
            run.pct(0.99),
            run.errors
        );
        out.push((n, run));
    }
    Ok(out)
}

/// Kills the leader `times` times (restarting it each time) and measures the time from SIGKILL
/// to the first write acknowledged through a survivor.
async fn failovers(
    times: usize,
    secure: bool,
    root: &std::path::Path,
) -> anyhow::Result<Vec<Duration>> {
    let mut coords = bench_cluster(secure, root).await;
    let tls = coords[0].admin_tls();
    let mut out = Vec::new();
    for round in 0..times {
        let refs: Vec<&Coord> = coords.iter().collect();
        let leader = wait_leader(&refs, Duration::from_secs(10)).await;
        // Let every member be caught up and the restarted one be a healthy follower.
        tokio::time::sleep(Duration::from_millis(500)).await;
        let pos = coords
            .iter()
            .position(|c| c.id == leader)
            .context("leader")?;
        let survivors: Vec<String> = coords
            .iter()
            .filter(|c| c.id != leader)
            .map(|c| c.addr.clone())
            .collect();
        let mut clients = Vec::new();
        for a in &survivors {
            clients.push(connect(a, tls.as_ref()).await?);
        }
        coords[pos].kill();
        let killed = Instant::now();
        let mut i = 0usize;
        loop {
            let mut c = clients[i % clients.len()].clone();
            let cmd = UserCommand::CreateService {
                name: format!("f{round}-{i}"),
                spec: ServiceSpec::default(),
            };
            let req = control_api::apply_request(&format!("f{round}"), &cmd);
            if c.apply(req).await.is_ok() {
                break;
            }
            if killed.elapsed() > Duration::from_secs(30) {
                bail!("no write acknowledged within 30 s of killing the leader");
            }
            i += 1;
        }
        let took = killed.elapsed();
        eprintln!("failover {round}: {took:?}");
        out.push(took);
        coords[pos].start();
        coords[pos].wait_serving().await;
    }
    Ok(out)
}

struct Etcd {
    children: Vec<Child>,
    clients: Vec<String>,
}

impl Drop for Etcd {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn start_etcd(root: &std::path::Path) -> anyhow::Result<Etcd> {
    let members: Vec<(String, String, String)> = (1..=3)
        .map(|i| (format!("e{i}"), free_addr(), free_addr()))
        .collect();
    let initial: Vec<String> = members
        .iter()
        .map(|(n, peer, _)| format!("{n}=http://{peer}"))
        .collect();
    let mut children = Vec::new();
    for (name, peer, client) in &members {
        let log = std::fs::File::create(root.join(format!("{name}.log")))?;
        let child = Command::new("etcd")
            .args(["--name", name])
            .arg("--data-dir")
            .arg(root.join(name))
            .args(["--listen-peer-urls", &format!("http://{peer}")])
            .args(["--initial-advertise-peer-urls", &format!("http://{peer}")])
            .args(["--listen-client-urls", &format!("http://{client}")])
            .args(["--advertise-client-urls", &format!("http://{client}")])
            .args(["--initial-cluster", &initial.join(",")])
            .args([
                "--initial-cluster-state",
                "new",
                "--initial-cluster-token",
                "bench",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::from(log))
            .spawn()
            .context("start etcd (Debian package etcd-server)")?;
        children.push(child);
    }
    Ok(Etcd {
        children,
        clients: members.into_iter().map(|(_, _, c)| c).collect(),
    })
}

async fn etcd_runs(args: &Args, root: &std::path::Path) -> anyhow::Result<Vec<(usize, Run)>> {
    let etcd = start_etcd(root)?;
    let deadline = Instant::now() + Duration::from_secs(30);
    let client = loop {
        if let Ok(mut c) = etcd_client::Client::connect(etcd.clients.clone(), None).await {
            if c.put("ready", "1", None).await.is_ok() {
                break c;
            }
        }
        if Instant::now() > deadline {
            bail!("etcd did not come up within 30 s");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let mut pool = vec![client.clone()];
    for _ in 1..8 {
        pool.push(etcd_client::Client::connect(etcd.clients.clone(), None).await?);
    }
    let value = "x".repeat(args.value_bytes);
    let mut out = Vec::new();
    for &n in &args.clients {
        let pool = pool.clone();
        let value = value.clone();
        let run = drive(n, args.seconds, move |c, seq| {
            let mut kv = pool[c % pool.len()].kv_client();
            let value = value.clone();
            async move { kv.put(format!("b{n}-{seq}"), value, None).await.is_ok() }
        })
        .await;
        eprintln!(
            "etcd   clients={n:<4} {:>9.0} writes/s  p50 {:.2} ms  p99 {:.2} ms  errors {}",
            run.rate(),
            run.pct(0.5),
            run.pct(0.99),
            run.errors
        );
        out.push((n, run));
    }
    drop(etcd);
    Ok(out)
}

/// One 4 KiB write + fdatasync in the benchmark's temp dir, median of 200.
fn fsync_baseline(root: &std::path::Path) -> anyhow::Result<f64> {
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .open(root.join("fsync"))?;
    let buf = vec![7u8; 4096];
    let mut lat = Vec::new();
    for _ in 0..200 {
        let t = Instant::now();
        f.write_all(&buf)?;
        f.sync_data()?;
        lat.push(t.elapsed().as_micros() as u64);
    }
    lat.sort_unstable();
    Ok(lat[lat.len() / 2] as f64 / 1000.0)
}

/// Loopback TCP round trip (1-byte ping-pong), median of 2000.
fn rtt_baseline() -> anyhow::Result<f64> {
    use std::io::Read;
    let l = std::net::TcpListener::bind("127.0.0.1:0")?;
    let addr = l.local_addr()?;
    let server = std::thread::spawn(move || -> std::io::Result<()> {
        let (mut s, _) = l.accept()?;
        s.set_nodelay(true)?;
        let mut b = [0u8; 1];
        for _ in 0..2000 {
            s.read_exact(&mut b)?;
            s.write_all(&b)?;
        }
        Ok(())
    });
    let mut c = std::net::TcpStream::connect(addr)?;
    c.set_nodelay(true)?;
    let mut lat = Vec::new();
    let mut b = [1u8; 1];
    for _ in 0..2000 {
        let t = Instant::now();
        c.write_all(&b)?;
        c.read_exact(&mut b)?;
        lat.push(t.elapsed().as_nanos() as u64);
    }
    let _ = server.join();
    lat.sort_unstable();
    Ok(lat[lat.len() / 2] as f64 / 1e6)
}

/// A service spec the size of a kolla service's (no replicas: the benchmark measures writes).
fn keystone_like(name: String) -> UserCommand {
    let mut spec = ServiceSpec::default();
    spec.container.image = "quay.io/openstack.kolla/keystone:2024.1".into();
    spec.container.command = vec!["kolla_start".into()];
    spec.container
        .env
        .insert("KOLLA_CONFIG_STRATEGY".into(), "COPY_ALWAYS".into());
    spec.replicas = 0;
    UserCommand::CreateService { name, spec }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    shoal_pki::install_crypto();
    let root = tempfile::tempdir()?;
    let fsync = fsync_baseline(root.path())?;
    let rtt = rtt_baseline()?;
    eprintln!("baseline: fsync {fsync:.3} ms, loopback rtt {rtt:.3} ms");
    let shoal = shoal_runs(&args, &root.path().join("shoal")).await?;
    let etcd = if args.no_etcd {
        Vec::new()
    } else {
        etcd_runs(&args, root.path()).await?
    };
    let fo = failovers(args.failovers, args.secure, &root.path().join("failover")).await?;

    println!("| clients | Shoal writes/s | Shoal p50 ms | Shoal p99 ms | etcd writes/s | etcd p50 ms | etcd p99 ms | Shoal/etcd |");
    println!("|---|---|---|---|---|---|---|---|");
    for (n, s) in &shoal {
        let e = etcd.iter().find(|(m, _)| m == n).map(|(_, r)| r);
        let (er, e50, e99, ratio) = match e {
            Some(e) => (
                format!("{:.0}", e.rate()),
                format!("{:.2}", e.pct(0.5)),
                format!("{:.2}", e.pct(0.99)),
                format!("{:.2}", s.rate() / e.rate()),
            ),
            None => ("-".into(), "-".into(), "-".into(), "-".into()),
        };
        println!(
            "| {n} | {:.0} | {:.2} | {:.2} | {er} | {e50} | {e99} | {ratio} |",
            s.rate(),
            s.pct(0.5),
            s.pct(0.99)
        );
    }
    println!();
    println!("baseline: one fsync (4 KiB, fdatasync) {fsync:.3} ms; loopback round trip {rtt:.3} ms; sum {:.3} ms", fsync + rtt);
    let mut ms: Vec<f64> = fo.iter().map(|d| d.as_secs_f64() * 1000.0).collect();
    ms.sort_by(|a, b| a.total_cmp(b));
    if !ms.is_empty() {
        println!(
            "failover (SIGKILL leader -> first acknowledged write through a survivor), {} runs: min {:.0} ms, median {:.0} ms, max {:.0} ms",
            ms.len(), ms[0], ms[ms.len() / 2], ms[ms.len() - 1]
        );
    }
    Ok(())
}
