//! Operability of the agent: started from `systemd/agent.toml.example` (paths overridden by
//! flags), its `/metrics` passes `promtool check metrics`, one real Prometheus server scrapes it
//! together with a coordinator, and under `NOTIFY_SOCKET` it sends `READY=1` only once its API
//! serves, pings the watchdog when `WATCHDOG_USEC` is set, and sends `STOPPING=1` on SIGTERM.
//!
//! Needs root, containerd, runc and ctr (or `SHOAL_SKIP_CONTAINERD_TESTS=1`), and Debian's
//! `prometheus` package. Everything listens on loopback only.

#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use shoal_proto::agent::agent_client::AgentClient;
use shoal_proto::agent::ExecRequest;
use shoal_tests::agents::Agent;
use shoal_tests::containerd::{available_or_skip, TestContainerd};
use shoal_tests::coordinators::Coord;
use shoal_tests::free_addr;
use shoal_tests::image::{build_busybox_image, ImageOptions};
use shoal_tests::probes::{check_exposition, http_get, recv_until};

const IMAGE: &str = "docker.io/library/shoal-ops-test:latest";

fn example_config() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../systemd/agent.toml.example")
}

/// A bootstrapped coordinator (with `/metrics` at the returned address) that has a leader.
async fn coordinator(root: &Path) -> (Coord, String) {
    let metrics = free_addr();
    let mut c = Coord::new(root, 1);
    c.extra_args = vec![
        "--bootstrap".into(),
        "--metrics-listen".into(),
        metrics.clone(),
    ];
    c.start();
    c.wait_serving().await;
    let deadline = Instant::now() + Duration::from_secs(20);
    while !c.status().await.is_ok_and(|s| s.has_leader) {
        assert!(Instant::now() < deadline, "no leader:\n{}", c.log_text());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    (c, metrics)
}

/// An agent configured by the example file, every path and address overridden by flags, with
/// `/metrics` on the returned address. Not started.
fn agent(root: &Path, cd: &TestContainerd, image: &Path, coord: &Coord) -> (Agent, String) {
    let metrics = free_addr();
    let mut a = Agent::new(
        root,
        "ops-node",
        &[],
        std::slice::from_ref(&coord.addr),
        cd.socket(),
        image,
    );
    a.args.extend([
        "--config".into(),
        example_config().display().to_string(),
        "--metrics-listen".into(),
        metrics.clone(),
    ]);
    (a, metrics)
}

/// Calls the agent API once; any gRPC answer (an error status included) means it serves.
async fn agent_api_answers(listen: &str) -> Result<(), String> {
    let mut client = AgentClient::connect(format!("http://{listen}"))
        .await
        .map_err(|e| e.to_string())?;
    let r = client
        .exec(ExecRequest {
            task_id: "no-such-task".into(),
            ..Default::default()
        })
        .await;
    match r {
        Ok(_) => Ok(()),
        Err(s) if s.code() == tonic::Code::Unavailable => Err(s.to_string()),
        Err(_) => Ok(()),
    }
}

/// Scrapes `addr` until `want` shows up in the text; returns the text.
async fn scrape_until(addr: &str, want: &str, log: impl Fn() -> String) -> String {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok((status, text)) = http_get(addr, "/metrics", None) {
            if status.contains("200") && text.contains(want) {
                return text;
            }
        }
        assert!(
            Instant::now() < deadline,
            "`{want}` never showed up at {addr}; log:\n{}",
            log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_metrics_pass_promtool() {
    if !available_or_skip() {
        return;
    }
    let cd = TestContainerd::start().unwrap();
    let image = build_busybox_image(cd.dir(), &ImageOptions::new(IMAGE)).unwrap();
    let root = tempfile::tempdir().unwrap();
    let (c, _) = coordinator(root.path()).await;
    let (mut a, metrics) = agent(root.path(), &cd, &image.path, &c);
    a.start();
    // Connected to the coordinator, so the agent runs with the example config and our flags.
    scrape_until(&metrics, "shoal_agent_coordinator_session 1", || {
        a.log_text()
    })
    .await;
    // An API call refused by the agent, so that API and runtime error families have samples.
    agent_api_answers(&a.listen).await.unwrap();
    let (_, text) = http_get(&metrics, "/metrics", None).unwrap();
    for name in [
        "shoal_agent_tasks{state=\"running\"} 0",
        "shoal_agent_coordinator_session 1",
        "shoal_agent_image_imports_total 1",
        "shoal_agent_image_import_bytes_total ",
        "shoal_agent_image_import_duration_seconds_count 1",
        "shoal_agent_runtime_calls_total{op=\"import_image\"} 1",
        "shoal_agent_runtime_call_duration_seconds_bucket{",
        "shoal_agent_container_starts_total 0",
        "shoal_agent_container_restarts_total 0",
        "shoal_agent_container_exits_total 0",
        "shoal_agent_health_checks_total{result=\"passed\"} 0",
        "shoal_api_requests_total{method=\"/shoal.agent.v1.Agent/Exec\"} 1",
    ] {
        assert!(
            text.contains(name),
            "`{name}` missing from /metrics:\n{text}"
        );
    }
    // `promtool check metrics` accepts the text format; OpenMetrics ends with `# EOF`.
    check_exposition(&metrics, &text);
    a.kill();
    drop(c);
}

/// Kills a helper process (Prometheus) when the test ends, however it ends.
struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Asks Prometheus for `query` until it has a sample; returns the first sample's job and value.
async fn query(web: &str, q: &str, log: &Path) -> (String, f64) {
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut last = String::new();
    loop {
        if let Ok((_, body)) = http_get(web, &format!("/api/v1/query?query={q}"), None) {
            if let Ok(v) = serde_json::from_str::<serde_json::Value>(&body) {
                let result = &v["data"]["result"];
                if v["status"] == "success" && result.as_array().is_some_and(|r| !r.is_empty()) {
                    let s = &result[0];
                    let job = s["metric"]["job"].as_str().unwrap().to_string();
                    let value: f64 = s["value"][1].as_str().unwrap().parse().unwrap();
                    return (job, value);
                }
            }
            last = body;
        }
        assert!(
            Instant::now() < deadline,
            "Prometheus never returned {q}; last answer: {last}\nprometheus log:\n{}",
            std::fs::read_to_string(log).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_scrapes_a_coordinator_and_an_agent() {
    if !available_or_skip() {
        return;
    }
    let cd = TestContainerd::start().unwrap();
    let image = build_busybox_image(cd.dir(), &ImageOptions::new(IMAGE)).unwrap();
    let root = tempfile::tempdir().unwrap();
    let (c, coord_metrics) = coordinator(root.path()).await;
    let (mut a, agent_metrics) = agent(root.path(), &cd, &image.path, &c);
    a.start();
    let dir = root.path();
    let config = dir.join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n\
             scrape_configs:\n\
             \x20 - job_name: shoal-coordinator\n    static_configs:\n      - targets: ['{coord_metrics}']\n\
             \x20 - job_name: shoal-agent\n    static_configs:\n      - targets: ['{agent_metrics}']\n"
        ),
    )
    .unwrap();
    let web = free_addr();
    let log_path = dir.join("prometheus.log");
    let log = std::fs::File::create(&log_path).unwrap();
    let child = Command::new("prometheus")
        .arg(format!("--config.file={}", config.display()))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.join("tsdb").display()
        ))
        .arg(format!("--web.listen-address={web}"))
        .stdout(Stdio::from(log.try_clone().unwrap()))
        .stderr(Stdio::from(log))
        .spawn()
        .expect("prometheus (Debian package `prometheus`) must be installed");
    let _prometheus = KillOnDrop(child);

    let (job, term) = query(&web, "shoal_raft_term", &log_path).await;
    assert_eq!(job, "shoal-coordinator");
    assert!(term >= 1.0);
    let (job, imports) = query(&web, "shoal_agent_image_imports_total", &log_path).await;
    assert_eq!(job, "shoal-agent");
    assert_eq!(imports, 1.0);
    let (job, _) = query(
        &web,
        "shoal_agent_runtime_call_duration_seconds_count",
        &log_path,
    )
    .await;
    assert_eq!(job, "shoal-agent");
    let (_, targets) = http_get(&web, "/api/v1/targets", None).unwrap();
    assert_eq!(targets.matches("\"health\":\"up\"").count(), 2, "{targets}");
    a.kill();
    drop(c);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_notifies_ready_when_serving_pings_the_watchdog_and_says_stopping() {
    if !available_or_skip() {
        return;
    }
    let cd = TestContainerd::start().unwrap();
    let image = build_busybox_image(cd.dir(), &ImageOptions::new(IMAGE)).unwrap();
    let root = tempfile::tempdir().unwrap();
    let (c, _) = coordinator(root.path()).await;
    let sock_path = root.path().join("notify.sock");
    let sock = tokio::net::UnixDatagram::bind(&sock_path).unwrap();
    let (mut a, _) = agent(root.path(), &cd, &image.path, &c);
    a.env = vec![
        ("NOTIFY_SOCKET".into(), sock_path.display().to_string()),
        ("WATCHDOG_USEC".into(), "500000".into()),
    ];

    // No READY while containerd does not answer: stop it first, start the agent, wait.
    let cd_socket = cd.socket().to_path_buf();
    let moved = cd_socket.with_extension("away");
    std::fs::rename(&cd_socket, &moved).unwrap();
    a.start();
    let mut seen = Vec::new();
    let early = recv_until(&sock, "READY=1", Duration::from_secs(3), &mut seen).await;
    assert!(!early, "READY=1 without containerd: {seen:?}");
    std::fs::rename(&moved, &cd_socket).unwrap();

    assert!(
        recv_until(&sock, "READY=1", Duration::from_secs(30), &mut seen).await,
        "no READY=1; got {seen:?}; log:\n{}",
        a.log_text()
    );
    // By the time READY arrives, the agent API answers.
    agent_api_answers(&a.listen).await.unwrap_or_else(|e| {
        panic!(
            "READY=1 arrived but the agent API does not answer: {e}; log:\n{}",
            a.log_text()
        )
    });

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
    assert!(
        !more.iter().any(|(_, m)| m.lines().any(|l| l == "READY=1")),
        "READY=1 sent twice: {more:?}"
    );

    // SIGTERM: STOPPING=1, then a clean exit.
    let stop = tokio::task::spawn_blocking(move || {
        let status = a.terminate();
        (a, status)
    });
    let mut last = Vec::new();
    let stopping = recv_until(&sock, "STOPPING=1", Duration::from_secs(15), &mut last).await;
    let (a, exit) = stop.await.unwrap();
    assert!(stopping, "no STOPPING=1: {last:?}; log:\n{}", a.log_text());
    assert!(exit.is_some_and(|s| s.success()), "exit {exit:?}");
    drop(c);
}
