//! Operability of the coordinator: its `/metrics` passes `promtool check metrics` and is scraped
//! by a real Prometheus server; the systemd units pass `systemd-analyze verify`; under
//! `NOTIFY_SOCKET` it sends `READY=1` only once its API serves, pings the watchdog when
//! `WATCHDOG_USEC` is set, and sends `STOPPING=1` on SIGTERM.
//!
//! Needs Debian's `prometheus` (prometheus, promtool) and `systemd` (systemd-analyze) packages:
//! `scripts/install-deps.sh` installs them. Everything listens on loopback only.

#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use shoal_tests::coordinators::Coord;
use shoal_tests::probes::{check_exposition, http_get, recv_until};
use shoal_tests::{binary, free_addr};

/// A bootstrapped single coordinator serving `/metrics` at the returned address.
async fn coordinator_with_metrics(root: &Path, extra_args: &[&str]) -> (Coord, String) {
    let metrics = free_addr();
    let mut c = Coord::new(root, 1);
    c.extra_args = vec![
        "--bootstrap".into(),
        "--metrics-listen".into(),
        metrics.clone(),
    ];
    c.extra_args
        .extend(extra_args.iter().map(|s| s.to_string()));
    c.start();
    c.wait_serving().await;
    let deadline = Instant::now() + Duration::from_secs(20);
    while !c.status().await.is_ok_and(|s| s.has_leader) {
        assert!(
            Instant::now() < deadline,
            "no leader; log:\n{}",
            c.log_text()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Some traffic, so that API, proposal and task metrics have samples.
    c.create_service("svc-1", "web").await.unwrap();
    (c, metrics)
}

/// The value of the unlabelled sample `name` in Prometheus text.
fn sample(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshot_metrics_follow_raft() {
    let dir = tempfile::tempdir().unwrap();
    let (c, metrics) = coordinator_with_metrics(dir.path(), &["--snapshot-logs", "5"]).await;
    for n in 0..8 {
        c.create_service(&format!("snap-{n}"), &format!("s{n}"))
            .await
            .unwrap();
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (_, text) = http_get(&metrics, "/metrics", None).unwrap();
        let snapshots = sample(&text, "shoal_raft_snapshots_total").unwrap();
        let builds = sample(&text, "shoal_raft_snapshot_build_duration_seconds_count").unwrap();
        let index = sample(&text, "shoal_raft_snapshot_index").unwrap();
        let bytes = sample(&text, "shoal_raft_snapshot_size_bytes").unwrap();
        if snapshots >= 1.0 && builds >= 1.0 && index >= 5.0 && bytes > 0.0 {
            // `web` from the harness and the eight above.
            assert_eq!(sample(&text, "shoal_services"), Some(9.0), "{text}");
            assert!(sample(&text, "shoal_raft_proposals_total").unwrap() >= 9.0);
            assert!(sample(&text, "shoal_raft_leader_changes_total").unwrap() >= 1.0);
            // Every committed entry was appended with a durable flush, and so was the snapshot.
            let syncs = sample(&text, "shoal_raft_disk_sync_duration_seconds_count").unwrap();
            assert!(
                syncs >= 10.0,
                "{syncs} durable flushes for 9 writes and a snapshot"
            );
            break;
        }
        assert!(Instant::now() < deadline, "no snapshot in metrics:\n{text}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Kills a helper process (Prometheus) when the test ends, however it ends.
struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn promtool_finds_nothing_to_complain_about() {
    let dir = tempfile::tempdir().unwrap();
    let (c, metrics) = coordinator_with_metrics(dir.path(), &[]).await;
    // A refused request, so that the error family has a sample too.
    let mut client = c.client().await.unwrap();
    let bad = shoal_proto::control::ApplyRequest {
        request_id: String::new(),
        command_json: b"not json".to_vec(),
        api_version: shoal_model::api::CONTROL_API_VERSION,
    };
    let err = client.apply(bad).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument);
    // The orchestrator makes the service's task shortly after the write: wait for it.
    let deadline = Instant::now() + Duration::from_secs(10);
    let (status, text) = loop {
        let (status, text) = http_get(&metrics, "/metrics", None).unwrap();
        if text.contains("shoal_tasks{state=\"pending\"} 1") || Instant::now() > deadline {
            break (status, text);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(status.contains("200"), "{status}\n{text}");
    for name in [
        "shoal_raft_is_leader 1",
        "shoal_raft_term ",
        "shoal_raft_last_log_index ",
        "shoal_raft_committed_index ",
        "shoal_raft_applied_index ",
        "shoal_raft_proposals_total ",
        "shoal_raft_snapshots_total ",
        "shoal_services 1",
        "shoal_tasks{state=\"pending\"} 1",
        "shoal_pending_tasks 1",
        "shoal_service_rollouts{state=\"rolling\"} 0",
        "shoal_service_rollouts{state=\"paused\"} 0",
        "shoal_service_rollout_slots_in_flight 0",
        "shoal_service_rollout_failed_tasks 0",
        "shoal_nodes{state=\"ready\"} 0",
        "shoal_orchestrator_pass_duration_seconds_bucket",
        "shoal_scheduler_placement_failures_total ",
        "shoal_dispatcher_agent_sessions 0",
        "shoal_api_requests_total{method=\"/shoal.control.v1.Control/ClusterStatus\"}",
        "shoal_api_request_duration_seconds_count{method=",
        "shoal_api_errors_total{method=\"/shoal.control.v1.Control/Apply\",code=\"3\"} 1",
    ] {
        assert!(
            text.contains(name),
            "`{name}` missing from /metrics:\n{text}"
        );
    }

    // `promtool check metrics` accepts the text format; OpenMetrics ends with `# EOF`.
    check_exposition(&metrics, &text);
    drop(c);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_scrapes_the_coordinator() {
    let dir = tempfile::tempdir().unwrap();
    let (c, metrics) = coordinator_with_metrics(dir.path(), &[]).await;
    let config = dir.path().join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n\
             scrape_configs:\n  - job_name: shoal-coordinator\n    static_configs:\n      \
             - targets: ['{metrics}']\n"
        ),
    )
    .unwrap();
    let web = free_addr();
    let log = std::fs::File::create(dir.path().join("prometheus.log")).unwrap();
    let child = Command::new("prometheus")
        .arg(format!("--config.file={}", config.display()))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.path().join("tsdb").display()
        ))
        .arg(format!("--web.listen-address={web}"))
        .stdout(Stdio::from(log.try_clone().unwrap()))
        .stderr(Stdio::from(log))
        .spawn()
        .expect("prometheus (Debian package `prometheus`) must be installed");
    let _prometheus = KillOnDrop(child);

    let deadline = Instant::now() + Duration::from_secs(60);
    let mut last = String::new();
    loop {
        if let Ok((_, body)) = http_get(&web, "/api/v1/query?query=shoal_raft_term", None) {
            if let Ok(v) = serde_json::from_str::<serde_json::Value>(&body) {
                let result = &v["data"]["result"];
                if v["status"] == "success" && result.as_array().is_some_and(|r| !r.is_empty()) {
                    let sample = &result[0];
                    assert_eq!(sample["metric"]["job"], "shoal-coordinator", "{body}");
                    let term: f64 = sample["value"][1].as_str().unwrap().parse().unwrap();
                    assert!(term >= 1.0, "{body}");
                    break;
                }
            }
            last = body;
        }
        assert!(
            Instant::now() < deadline,
            "Prometheus never returned shoal_raft_term; last answer: {last}\nprometheus log:\n{}",
            std::fs::read_to_string(dir.path().join("prometheus.log")).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    // The scrape used OpenMetrics and the target is healthy.
    let (_, targets) = http_get(&web, "/api/v1/targets", None).unwrap();
    assert!(targets.contains("\"health\":\"up\""), "{targets}");
    drop(c);
}

/// The unit files under `systemd/`, copied to `dir` with `ExecStart=/usr/local/bin/<binary>`
/// pointing at the binaries this build made (`systemd-analyze verify` checks they exist).
fn units_for_verify(dir: &Path) -> Vec<PathBuf> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("../systemd");
    ["shoal-coordinator", "shoal-agent"]
        .iter()
        .map(|name| {
            let text = std::fs::read_to_string(src.join(format!("{name}.service"))).unwrap();
            let installed = format!("ExecStart=/usr/local/bin/{name} ");
            assert!(
                text.contains(&installed),
                "{name}.service: no `{installed}`"
            );
            let built = format!("ExecStart={} ", binary(name).display());
            let path = dir.join(format!("{name}.service"));
            std::fs::write(&path, text.replace(&installed, &built)).unwrap();
            path
        })
        .collect()
}

#[test]
fn systemd_units_verify() {
    let dir = tempfile::tempdir().unwrap();
    let units = units_for_verify(dir.path());
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .args(&units)
        .output()
        .expect("systemd-analyze (Debian package `systemd`) must be installed");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "systemd-analyze verify failed:\n{text}"
    );
    let ours: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("shoal-coordinator.service") || l.contains("shoal-agent.service"))
        .collect();
    assert!(
        ours.is_empty(),
        "systemd-analyze verify complained:\n{text}"
    );

    let agent = std::fs::read_to_string(&units[1]).unwrap();
    for line in [
        "Type=notify",
        "KillMode=process",
        "After=network-online.target containerd.service",
        "Wants=network-online.target containerd.service",
        "Restart=always",
        "WatchdogSec=",
    ] {
        assert!(agent.contains(line), "shoal-agent.service: no `{line}`");
    }
    let coordinator = std::fs::read_to_string(&units[0]).unwrap();
    for line in [
        "Type=notify",
        "Restart=always",
        "WatchdogSec=",
        "ReadWritePaths=/var/lib/shoal",
    ] {
        assert!(
            coordinator.contains(line),
            "shoal-coordinator.service: no `{line}`"
        );
    }
}

/// The example coordinator config is one the coordinator starts with (it refuses unknown keys).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn example_coordinator_config_starts_a_coordinator() {
    let dir = tempfile::tempdir().unwrap();
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("../systemd/coordinator.toml.example");
    let mut config: toml::Table = toml::from_str(&std::fs::read_to_string(&example).unwrap())
        .unwrap_or_else(|e| panic!("{}: {e}", example.display()));
    for key in [
        "id",
        "listen",
        "metrics_listen",
        "data_dir",
        "raft",
        "agents",
    ] {
        assert!(
            config.contains_key(key),
            "{}: no `{key}`",
            example.display()
        );
    }
    // Loopback ports of our own; `--listen` and `--data-dir` come from the harness.
    let metrics = free_addr();
    config.insert("metrics_listen".into(), metrics.clone().into());
    let path = dir.path().join("coordinator.toml");
    std::fs::write(&path, toml::to_string(&config).unwrap()).unwrap();
    let mut c = Coord::new(dir.path(), 1);
    c.extra_args = vec!["--config".into(), path.display().to_string()];
    c.start();
    c.wait_serving().await;
    let (status, _) = http_get(&metrics, "/metrics", None).unwrap();
    assert!(status.contains("200"), "{status}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notifies_ready_only_when_serving_and_pings_the_watchdog() {
    let dir = tempfile::tempdir().unwrap();
    let sock_path = dir.path().join("notify.sock");
    let sock = tokio::net::UnixDatagram::bind(&sock_path).unwrap();
    let mut c = Coord::new(dir.path(), 1);
    c.extra_args = vec!["--bootstrap".into()];
    c.env = vec![
        ("NOTIFY_SOCKET".into(), sock_path.display().to_string()),
        ("WATCHDOG_USEC".into(), "500000".into()),
    ];
    c.start();

    let mut seen = Vec::new();
    assert!(
        recv_until(&sock, "READY=1", Duration::from_secs(30), &mut seen).await,
        "no READY=1; got {seen:?}; log:\n{}",
        c.log_text()
    );
    // By the time READY arrives, the API is bound and answers, and the member leads its
    // bootstrapped cluster.
    let status = c.status().await.unwrap_or_else(|e| {
        panic!(
            "READY=1 arrived but the API does not answer: {e}; log:\n{}",
            c.log_text()
        )
    });
    assert!(status.has_leader, "{status:?}");
    assert_eq!(
        seen.iter()
            .filter(|(_, m)| m.lines().any(|l| l == "READY=1"))
            .count(),
        1
    );

    // Watchdog pings at half of 500 ms: expect several within 2 s.
    let start = Instant::now();
    let mut pings = 0;
    let mut more = Vec::new();
    while start.elapsed() < Duration::from_secs(2) {
        if recv_until(&sock, "WATCHDOG=1", Duration::from_secs(1), &mut more).await {
            pings += 1;
        }
    }
    assert!(pings >= 4, "only {pings} WATCHDOG=1 in 2 s: {more:?}");

    // SIGTERM: STOPPING=1, then a clean exit.
    let stop = tokio::task::spawn_blocking(move || {
        let status = c.terminate();
        (c, status)
    });
    let mut last = Vec::new();
    let stopping = recv_until(&sock, "STOPPING=1", Duration::from_secs(15), &mut last).await;
    let (c, exit) = stop.await.unwrap();
    assert!(stopping, "no STOPPING=1: {last:?}; log:\n{}", c.log_text());
    assert!(exit.is_some_and(|s| s.success()), "exit {exit:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_ready_before_the_member_has_joined() {
    // A fresh member told to join an unreachable cluster answers on its API but is not ready:
    // it keeps trying for 15 s, then exits with an error, never having sent READY=1.
    let dir = tempfile::tempdir().unwrap();
    let sock_path = dir.path().join("notify.sock");
    let sock = tokio::net::UnixDatagram::bind(&sock_path).unwrap();
    let mut c = Coord::new(dir.path(), 2);
    c.extra_args = vec!["--join".into(), free_addr()];
    c.env = vec![("NOTIFY_SOCKET".into(), sock_path.display().to_string())];
    c.start();
    c.wait_serving().await;
    let mut seen = Vec::new();
    let ready = recv_until(&sock, "READY=1", Duration::from_secs(3), &mut seen).await;
    assert!(!ready, "READY=1 before the member joined: {seen:?}");
}
