//! End to end: three real coordinators, the real `shoal-agent` on a private containerd, and
//! `shoalctl logs` / `exec` against the task the cluster placed on the agent. Then the leader dies:
//! the agent follows the new leader and its reports still arrive.
#![allow(clippy::unwrap_used)]

use std::io::Read;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use shoal_model::api::{Query, UserCommand};
use shoal_model::{ContainerSpec, RestartCondition, RestartPolicy, ServiceSpec};
use shoal_proto::control_api;
use shoal_tests::containerd::{available_or_skip, TestContainerd};
use shoal_tests::coordinators::{cluster, wait_leader, Coord};
use shoal_tests::image::{build_busybox_image, ImageOptions};
use shoal_tests::{binary, free_addr};

const IMAGE: &str = "shoal.test/busybox:e2e";

struct Agent(Child, std::path::PathBuf);

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
        if std::thread::panicking() {
            let log = std::fs::read_to_string(&self.1).unwrap_or_default();
            eprintln!("--- agent log ---\n{log}");
        }
    }
}

async fn tasks(c: &Coord) -> Vec<Value> {
    let all = Query::Tasks {
        service: None,
        node: None,
    };
    match c.query_json(&all, false).await {
        Ok((v, _)) => v.as_array().cloned().unwrap_or_default(),
        Err(_) => Vec::new(),
    }
}

/// Waits until some coordinator in `coords` shows a task of `service` for which `f` holds.
async fn wait_task(
    coords: &[&Coord],
    service: &str,
    what: &str,
    f: impl Fn(&Value) -> bool,
) -> Value {
    let start = Instant::now();
    loop {
        for c in coords {
            if let Some(t) = tasks(c)
                .await
                .into_iter()
                .find(|t| t["service"] == json!(service) && f(t))
            {
                return t;
            }
        }
        if start.elapsed() > Duration::from_secs(90) {
            let mut all = Vec::new();
            for c in coords {
                all.push(tasks(c).await);
            }
            panic!("{service}: no task {what} within 90 s: {all:#?}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn shoalctl(coordinators: &str, args: &[&str]) -> std::process::Output {
    Command::new(binary("shoalctl"))
        .env("SHOAL_INSECURE", "true")
        .args(["--coordinators", coordinators])
        .args(args)
        .output()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_runs_a_service_and_serves_logs_and_exec_through_shoalctl() {
    if !available_or_skip() {
        return;
    }
    let cd = TestContainerd::start().unwrap();
    let image = build_busybox_image(cd.dir(), &ImageOptions::new(IMAGE)).unwrap();
    let root = tempfile::tempdir().unwrap();
    let mut coords = cluster(root.path(), 3, &[]).await;
    let refs: Vec<&Coord> = coords.iter().collect();
    let leader = wait_leader(&refs, Duration::from_secs(20)).await;
    // List a follower first: the agent must follow the redirect to the leader.
    let mut order: Vec<&Coord> = coords.iter().collect();
    order.sort_by_key(|c| c.id == leader);
    let all_addrs: Vec<String> = order.iter().map(|c| c.addr.clone()).collect();
    let all_addrs = all_addrs.join(",");

    let base = cd.dir().join("agent");
    let log = base.join("agent.log");
    std::fs::create_dir_all(&base).unwrap();
    let out = std::fs::File::create(&log).unwrap();
    let listen = free_addr();
    let agent = Command::new(binary("shoal-agent"))
        .args(["--node-name", "e2e-node", "--label", "role=controller"])
        .arg("--insecure")
        .args(["--coordinators", &all_addrs])
        .arg("--containerd-socket")
        .arg(cd.socket())
        .args(["--namespace", "shoal-e2e"])
        .arg("--data-dir")
        .arg(base.join("data"))
        .arg("--log-dir")
        .arg(base.join("logs"))
        .arg("--volumes-dir")
        .arg(base.join("volumes"))
        .args(["--listen", &listen])
        .arg("--import-image")
        .arg(&image.path)
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(out.try_clone().unwrap())
        .stderr(out)
        .spawn()
        .unwrap();
    let _agent = Agent(agent, log);

    // The node registers; then a service lands on it and runs.
    let start = Instant::now();
    loop {
        let nodes = coords[0].nodes(false).await.unwrap();
        if nodes.iter().any(|n| n.name == "e2e-node") {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "node never registered"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let ticker = "echo hello; i=0; while true; do i=$((i+1)); echo tick$i; sleep 0.2; done";
    let cmd = UserCommand::CreateService {
        name: "ticker".into(),
        spec: ServiceSpec {
            container: ContainerSpec {
                image: IMAGE.into(),
                command: vec!["sh".into(), "-c".into(), ticker.into()],
                stop_signal: Some("SIGKILL".into()),
                ..Default::default()
            },
            replicas: 1,
            restart_policy: RestartPolicy {
                condition: RestartCondition::Any,
                delay_ms: 200,
                max_attempts: None,
                window_ms: 0,
            },
            ..Default::default()
        },
    };
    coords[0]
        .client()
        .await
        .unwrap()
        .apply(control_api::apply_request("e2e-create", &cmd))
        .await
        .unwrap();
    let t = wait_task(&refs, "ticker", "running", |t| {
        t["state"] == json!("running")
    })
    .await;
    let task_id = t["id"].as_str().unwrap().to_owned();
    assert_eq!(t["node"], json!("e2e-node"));
    tokio::time::sleep(Duration::from_secs(1)).await;

    // shoalctl logs, with --tail, and -f.
    let out = shoalctl(&all_addrs, &["logs", &task_id]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{out:?}");
    assert!(text.starts_with("hello\ntick1\n"), "{text}");
    let out = shoalctl(&all_addrs, &["logs", &task_id, "--tail", "1"]);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(text.lines().count(), 1, "{text}");
    let last: u32 = text.trim().trim_start_matches("tick").parse().unwrap();
    let mut follow = Command::new(binary("shoalctl"))
        .env("SHOAL_INSECURE", "true")
        .args([
            "--coordinators",
            &all_addrs,
            "logs",
            &task_id,
            "-f",
            "--tail",
            "1",
        ])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = follow.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut seen = String::new();
        let mut buf = [0u8; 256];
        let want = format!("tick{}\n", last + 5);
        while !seen.contains(&want) {
            match stdout.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => seen.push_str(&String::from_utf8_lossy(&buf[..n])),
            }
        }
        seen
    });
    let start = Instant::now();
    while !reader.is_finished() && start.elapsed() < Duration::from_secs(20) {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let _ = follow.kill();
    let _ = follow.wait();
    let seen = reader.join().unwrap();
    assert!(seen.contains(&format!("tick{}\n", last + 5)), "{seen}");

    // shoalctl exec: output and exit code.
    let out = shoalctl(
        &all_addrs,
        &[
            "exec",
            &task_id,
            "--",
            "sh",
            "-c",
            "echo from-inside; exit 3",
        ],
    );
    assert_eq!(out.status.code(), Some(3), "{out:?}");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "from-inside\n");

    // The leader dies: the agent finds the new one, and a crash-and-restart it handles while
    // moving reaches the cluster.
    let leader_idx = coords.iter().position(|c| c.id == leader).unwrap();
    coords[leader_idx].kill();
    let survivors: Vec<&Coord> = coords.iter().filter(|c| c.id != leader).collect();
    wait_leader(&survivors, Duration::from_secs(20)).await;
    cd.ctr_ok(&[
        "-n",
        "shoal-e2e",
        "tasks",
        "kill",
        "-s",
        "SIGKILL",
        &task_id,
    ])
    .unwrap();
    let t = wait_task(&survivors, "ticker", "restarted in place", |t| {
        t["id"] == json!(task_id)
            && t["state"] == json!("running")
            && t["message"]
                .as_str()
                .is_some_and(|m| m.starts_with("restarted after exited with code 137"))
    })
    .await;
    assert_eq!(t["node"], json!("e2e-node"));
}
