//! End to end on a real containerd: three coordinators and three agents (separate processes on
//! loopback) apply a stack with replicated, global and job services, a constraint, a
//! `depends_on` chain, and two services on one host port; then a node dies, one is drained,
//! a service scales, and the stack is removed.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;
use shoal_tests::agents::{containers, kill_all_tasks, running_tasks, Agent};
use shoal_tests::containerd::TestContainerd;
use shoal_tests::coordinators::{cluster, wait_leader, Coord};
use shoal_tests::image::{build_busybox_image, ImageOptions};
use shoal_tests::{binary, shoalctl_insecure};

const IMAGE: &str = "shoal-demo:latest";

fn stack_yaml(order_dir: &Path) -> String {
    let order = order_dir.display();
    format!(
        r#"name: e2e
services:
  init-job:
    image: {IMAGE}
    command: ["sh", "-c", "echo init-job >> /order/starts.log"]
    volumes: ["{order}:/order"]
    deploy:
      mode: replicated-job
      replicas: 1
      restart_policy: {{ condition: on-failure, max_attempts: 3 }}
  db:
    image: {IMAGE}
    command: ["sh", "-c", "echo db >> /order/starts.log; touch /tmp/ready; exec sleep 3600"]
    volumes: ["{order}:/order"]
    stop_signal: SIGKILL
    healthcheck:
      test: ["CMD", "test", "-f", "/tmp/ready"]
      interval: 300ms
      timeout: 1s
      retries: 2
    depends_on:
      init-job: {{ condition: service_completed_successfully }}
    deploy:
      replicas: 1
      placement:
        constraints: ["node.labels.role == controller"]
  api:
    image: {IMAGE}
    command: ["sh", "-c", "echo api >> /order/starts.log; exec sleep 3600"]
    volumes: ["{order}:/order"]
    stop_signal: SIGKILL
    depends_on:
      db: {{ condition: service_healthy }}
    deploy:
      replicas: 2
      # It writes to a shared bind, but two copies are fine: replace it on node loss.
      x-shoal-node-loss: replace
  web-a:
    image: {IMAGE}
    network_mode: none
    command: ["sh", "-c", "mkdir -p /www; exec httpd -f -p 18080 -h /www"]
    stop_signal: SIGKILL
    ports: [{{ target: 18080, published: 18080, mode: host }}]
    deploy:
      replicas: 2
  web-b:
    image: {IMAGE}
    network_mode: none
    command: ["sh", "-c", "mkdir -p /www; exec httpd -f -p 18080 -h /www"]
    stop_signal: SIGKILL
    ports: [{{ target: 18080, published: 18080, mode: host }}]
    deploy:
      replicas: 1
  per-node:
    image: {IMAGE}
    command: ["sleep", "3600"]
    stop_signal: SIGKILL
    deploy:
      mode: global
"#
    )
}

fn shoalctl(coords: &[String], args: &[&str]) -> (bool, String) {
    shoalctl_insecure(coords, args)
}

fn tasks(coords: &[String]) -> Vec<Value> {
    let (ok, out) = shoalctl(coords, &["-o", "json", "task", "ls"]);
    assert!(ok, "task ls: {out}");
    serde_json::from_str::<Value>(&out)
        .unwrap()
        .as_array()
        .unwrap()
        .clone()
}

/// Live tasks (desired running, not finished) per service: (node, state).
fn live(coords: &[String]) -> BTreeMap<String, Vec<(String, String)>> {
    let mut m: BTreeMap<String, Vec<(String, String)>> = BTreeMap::new();
    for t in tasks(coords) {
        let state = t["state"].as_str().unwrap().to_string();
        if t["desired_state"] != "running"
            || ["complete", "failed", "shutdown", "rejected", "orphaned"].contains(&state.as_str())
        {
            continue;
        }
        let node = t["node"].as_str().unwrap_or("-").to_string();
        m.entry(t["service"].as_str().unwrap().to_string())
            .or_default()
            .push((node, state));
    }
    m
}

/// Waits until `check` holds on the live tasks, or panics with the last view and agent logs.
fn wait_for(
    coords: &[String],
    within: Duration,
    what: &str,
    agents: &[Agent],
    check: impl Fn(&BTreeMap<String, Vec<(String, String)>>) -> bool,
) -> Duration {
    let start = Instant::now();
    loop {
        let view = live(coords);
        if check(&view) {
            return start.elapsed();
        }
        if start.elapsed() > within {
            let logs: String = agents
                .iter()
                .map(|a| format!("--- {}\n{}", a.name, tail(&a.log_text())))
                .collect();
            panic!("{what}: not reached within {within:?}; live tasks: {view:#?}\n{logs}");
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn tail(s: &str) -> String {
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(30)..].join("\n")
}

fn all_running(view: &BTreeMap<String, Vec<(String, String)>>, svc: &str, n: usize) -> bool {
    view.get(svc)
        .is_some_and(|ts| ts.len() == n && ts.iter().all(|(_, s)| s == "running"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stack_converges_survives_a_dead_node_and_is_removed() {
    let dir = tempfile::tempdir().unwrap();
    let cd = TestContainerd::start().expect("containerd");
    let image = build_busybox_image(dir.path(), &ImageOptions::new(IMAGE))
        .unwrap()
        .path;
    let coords = cluster(dir.path(), 3, &[]).await;
    let refs: Vec<&Coord> = coords.iter().collect();
    wait_leader(&refs, Duration::from_secs(10)).await;
    let endpoints: Vec<String> = coords.iter().map(|c| c.addr.clone()).collect();

    let mut agents: Vec<Agent> = [
        ("n1", "controller"),
        ("n2", "controller"),
        ("n3", "compute"),
    ]
    .iter()
    .map(|(n, role)| {
        Agent::new(
            dir.path(),
            n,
            &[("role", role)],
            &endpoints,
            cd.socket(),
            &image,
        )
    })
    .collect();
    for a in &mut agents {
        a.start();
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (_, out) = shoalctl(&endpoints, &["-o", "json", "node", "ls"]);
        let ready = serde_json::from_str::<Value>(&out).ok().and_then(|v| {
            v.as_array()
                .map(|a| a.iter().filter(|n| n["status"] == "ready").count())
        });
        if ready == Some(3) {
            break;
        }
        assert!(Instant::now() < deadline, "agents did not register: {out}");
        std::thread::sleep(Duration::from_millis(200));
    }

    // Watch events for the whole test, as an operator would.
    let events_out = dir.path().join("events.jsonl");
    let mut events = Command::new(binary("shoalctl"))
        .env("SHOAL_INSECURE", "true")
        .arg("--coordinators")
        .arg(endpoints.join(","))
        .args(["-o", "json", "events", "--follow"])
        .stdout(std::fs::File::create(&events_out).unwrap())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();

    let order_dir = dir.path().join("order");
    std::fs::create_dir_all(&order_dir).unwrap();
    let stack = dir.path().join("stack.yaml");
    std::fs::write(&stack, stack_yaml(&order_dir)).unwrap();
    let (ok, out) = shoalctl(&endpoints, &["apply", "-f", stack.to_str().unwrap()]);
    assert!(ok, "apply: {out}");

    let took = wait_for(
        &endpoints,
        Duration::from_secs(120),
        "stack converged",
        &agents,
        |v| {
            all_running(v, "db", 1)
                && all_running(v, "api", 2)
                && all_running(v, "web-a", 2)
                && all_running(v, "web-b", 1)
                && all_running(v, "per-node", 3)
        },
    );
    println!("stack converged in {took:?}");

    // The job ran exactly once, and containers started in dependency order.
    let starts = std::fs::read_to_string(order_dir.join("starts.log")).unwrap();
    let lines: Vec<&str> = starts.lines().collect();
    assert_eq!(
        lines.iter().filter(|l| **l == "init-job").count(),
        1,
        "{starts}"
    );
    let first = |name: &str| {
        lines
            .iter()
            .position(|l| *l == name)
            .unwrap_or_else(|| panic!("{name} never started: {starts}"))
    };
    assert!(
        first("init-job") < first("db") && first("db") < first("api"),
        "start order: {starts}"
    );
    let job: Vec<Value> = tasks(&endpoints)
        .into_iter()
        .filter(|t| t["service"] == "init-job")
        .collect();
    assert_eq!(job.len(), 1);
    assert_eq!(job[0]["state"], "complete");

    // The constraint held, and users of port 18080 never share a node.
    let view = live(&endpoints);
    assert!(
        view["db"].iter().all(|(n, _)| n == "n1" || n == "n2"),
        "{view:?}"
    );
    let mut port_nodes: Vec<&String> = view["web-a"]
        .iter()
        .chain(view["web-b"].iter())
        .map(|(n, _)| n)
        .collect();
    port_nodes.sort();
    port_nodes.dedup();
    assert_eq!(
        port_nodes.len(),
        3,
        "two users of port 18080 share a node: {view:?}"
    );

    // A node dies: its agent is killed and its containers stop. Replicated tasks move.
    let victim = view["api"][0].0.clone();
    let pos = agents.iter().position(|a| a.name == victim).unwrap();
    let killed_at = Instant::now();
    agents[pos].kill();
    kill_all_tasks(cd.socket(), &agents[pos].namespace);
    let moved = wait_for(
        &endpoints,
        Duration::from_secs(30),
        "api rescheduled off the dead node",
        &agents,
        |v| all_running(v, "api", 2) && v["api"].iter().all(|(n, _)| *n != victim),
    );
    let moved = moved.max(killed_at.elapsed());
    println!("replicated tasks of dead node {victim} running elsewhere {moved:?} after the kill (grace 5 s)");
    assert!(moved < Duration::from_secs(15), "took {moved:?}");

    // The node comes back; then drain another node: its replicated tasks move.
    agents[pos].start();
    wait_for(
        &endpoints,
        Duration::from_secs(60),
        "node back",
        &agents,
        |v| all_running(v, "per-node", 3),
    );
    let drained = live(&endpoints)["db"][0].0.clone();
    let (ok, out) = shoalctl(&endpoints, &["node", "drain", &drained]);
    assert!(ok, "{out}");
    wait_for(
        &endpoints,
        Duration::from_secs(60),
        "db moved off the drained node",
        &agents,
        |v| {
            all_running(v, "db", 1)
                && v["db"][0].0 != drained
                && v["per-node"].iter().all(|(n, _)| *n != drained)
        },
    );
    let (ok, out) = shoalctl(&endpoints, &["node", "activate", &drained]);
    assert!(ok, "{out}");

    // Scale up and down.
    let (ok, out) = shoalctl(&endpoints, &["service", "scale", "api=3"]);
    assert!(ok, "{out}");
    wait_for(
        &endpoints,
        Duration::from_secs(60),
        "api scaled to 3",
        &agents,
        |v| all_running(v, "api", 3),
    );
    let (ok, out) = shoalctl(&endpoints, &["service", "scale", "api=1"]);
    assert!(ok, "{out}");
    wait_for(
        &endpoints,
        Duration::from_secs(60),
        "api scaled to 1",
        &agents,
        |v| all_running(v, "api", 1),
    );

    // stack rm removes every container.
    let (ok, out) = shoalctl(&endpoints, &["stack", "rm", "e2e"]);
    assert!(ok, "{out}");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let left: Vec<String> = agents
            .iter()
            .flat_map(|a| containers(cd.socket(), &a.namespace))
            .collect();
        if left.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "containers left after stack rm: {left:?}"
        );
        std::thread::sleep(Duration::from_millis(300));
    }
    for a in &agents {
        assert!(running_tasks(cd.socket(), &a.namespace).is_empty());
    }

    // `shoalctl events --follow` showed whole task lifecycles: the db task from creation on a
    // node through preparing, starting and running to its shutdown at `stack rm`.
    std::thread::sleep(Duration::from_millis(800));
    let _ = events.kill();
    let _ = events.wait();
    let text = std::fs::read_to_string(&events_out).unwrap();
    let mut lifecycles: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for line in text.lines() {
        let e: Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("bad event line {line}: {e}"));
        if e["kind"] == "task" {
            lifecycles
                .entry(e["object"].as_str().unwrap().to_string())
                .or_default()
                .push(e["action"].as_str().unwrap().to_string());
        }
    }
    let want = ["assigned", "preparing", "starting", "running", "shutdown"];
    let whole = lifecycles.iter().find(|(id, actions)| {
        id.starts_with("db.") && want.iter().all(|w| actions.contains(&w.to_string()))
    });
    assert!(
        whole.is_some(),
        "no db task with a whole lifecycle in the event stream: {lifecycles:#?}"
    );
    let (_, actions) = whole.unwrap();
    let pos = |w: &str| actions.iter().position(|a| a == w).unwrap();
    assert!(
        pos("assigned") < pos("preparing")
            && pos("starting") < pos("running")
            && pos("running") < pos("shutdown"),
        "{actions:?}"
    );
    let job = lifecycles
        .iter()
        .find(|(id, _)| id.starts_with("init-job."))
        .unwrap();
    assert!(job.1.contains(&"complete".to_string()), "{job:?}");
}
