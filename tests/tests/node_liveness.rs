//! Liveness and exactly-one-copy on a real containerd, with the real binaries:
//! - a node busy starting 100 containers while the disk is loaded is not declared down, and
//!   never holds more containers than it has assigned tasks;
//! - a frozen node (SIGSTOP past its grace) loses its stateless tasks to another node and
//!   removes their old copies as soon as it resumes, while a service with a volume waits for it
//!   and never runs twice; it moves only once the operator says the node is gone.
//!
//! Needs root, containerd, runc and ctr (or `SHOAL_SKIP_CONTAINERD_TESTS=1`).

#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant};

use serde_json::Value;
use shoal_tests::agents::Agent;
use shoal_tests::containerd::{available_or_skip, TestContainerd};
use shoal_tests::containerd_events::{replay, EventRecorder, Held, Track};
use shoal_tests::coordinators::{cluster, wait_leader, Coord};
use shoal_tests::disk_load::DiskLoad;
use shoal_tests::image::{build_busybox_image, ImageOptions};
use shoal_tests::shoalctl_insecure;

const IMAGE: &str = "shoal-liveness:latest";

fn shoalctl(coords: &[String], args: &[&str]) -> (bool, String) {
    shoalctl_insecure(coords, args)
}

fn json(coords: &[String], args: &[&str]) -> Vec<Value> {
    let mut all = vec!["-o", "json"];
    all.extend_from_slice(args);
    let (ok, out) = shoalctl(coords, &all);
    assert!(ok, "{args:?}: {out}");
    serde_json::from_str::<Value>(&out)
        .unwrap_or_else(|e| panic!("{args:?}: {e}: {out}"))
        .as_array()
        .cloned()
        .unwrap_or_default()
}

/// Tasks of `service` that are desired running and not finished: (id, node, state).
fn live_tasks(coords: &[String], service: &str) -> Vec<(String, String, String)> {
    json(coords, &["task", "ls", "--service", service])
        .into_iter()
        .filter(|t| t["desired_state"] == "running")
        .filter(|t| {
            !["complete", "failed", "shutdown", "rejected", "orphaned"]
                .contains(&t["state"].as_str().unwrap_or_default())
        })
        .map(|t| {
            (
                t["id"].as_str().unwrap_or_default().to_string(),
                t["node"].as_str().unwrap_or("-").to_string(),
                t["state"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect()
}

/// Node-down events so far.
fn node_down_events(coords: &[String]) -> Vec<Value> {
    json(coords, &["events"])
        .into_iter()
        .filter(|e| e["kind"] == "node" && e["action"] == "down")
        .collect()
}

async fn wait_nodes_ready(coords: &[String], n: usize) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let ready = json(coords, &["node", "ls"])
            .iter()
            .filter(|n| n["status"] == "ready")
            .count();
        if ready == n {
            return;
        }
        assert!(Instant::now() < deadline, "{ready} of {n} nodes ready");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn tail(s: &str, n: usize) -> String {
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// Done-when 1 of issue 22: 100 replicas on one agent while writers load the disk.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn busy_node_is_not_declared_down_and_never_runs_more_than_assigned() {
    if !available_or_skip() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let cd = TestContainerd::start().expect("containerd");
    let image = build_busybox_image(dir.path(), &ImageOptions::new(IMAGE))
        .unwrap()
        .path;
    let coords: Vec<Coord> = cluster(dir.path(), 1, &[]).await;
    wait_leader(&coords.iter().collect::<Vec<_>>(), Duration::from_secs(10)).await;
    let endpoints: Vec<String> = coords.iter().map(|c| c.addr.clone()).collect();
    let mut agent = Agent::new(dir.path(), "busy", &[], &endpoints, cd.socket(), &image);
    agent.start();
    wait_nodes_ready(&endpoints, 1).await;

    // Bounded load: six writers (`SHOAL_TEST_DISK_WRITERS` to change), 1 MiB writes, fsync
    // every 8 MiB, files of at most 256 MiB, at most 150 s. Two writers did not trouble this
    // machine's disk; six made main (87ce69f) declare the node down 6 times and run up to 443
    // containers for 100 tasks.
    let writers = std::env::var("SHOAL_TEST_DISK_WRITERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(6);
    let mut load =
        DiskLoad::start(&dir.path().join("load"), writers, Duration::from_secs(150)).unwrap();
    // Every container create and delete, in the order containerd published them.
    let recorder = EventRecorder::start(cd.socket()).unwrap();
    let initial: Vec<Held> = shoal_tests::agents::containers(cd.socket(), &agent.namespace)
        .into_iter()
        .map(|c| (agent.namespace.clone(), c))
        .collect();
    let started = Instant::now();
    let (ok, out) = shoalctl(
        &endpoints,
        &[
            "service",
            "create",
            "busy",
            "--image",
            IMAGE,
            "--replicas",
            "100",
            "--",
            "sleep",
            "3600",
        ],
    );
    assert!(ok, "service create: {out}");
    let deadline = Instant::now() + Duration::from_secs(110);
    let mut running = 0;
    while Instant::now() < deadline {
        running = live_tasks(&endpoints, "busy")
            .iter()
            .filter(|(_, _, s)| s == "running")
            .count();
        if running == 100 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let converged = started.elapsed();
    // A few more seconds of load on a node that is now idle.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let written = load.stop();
    let events = recorder.stop();
    let downs = node_down_events(&endpoints);
    let ours: Vec<_> = events
        .into_iter()
        .filter(|e| e.namespace == agent.namespace)
        .collect();
    let created = ours
        .iter()
        .filter(|e| e.topic == "/containers/create")
        .count();
    let max = replay(&initial, &ours, Track::Containers)
        .iter()
        .map(|m| m.held.len())
        .max()
        .unwrap_or(initial.len());
    println!(
        "100 replicas under disk load ({} MiB written): {running} running after {converged:?}; \
         {created} containers created, at most {max} at once; {} node-down events",
        written >> 20,
        downs.len()
    );
    let logs = || {
        format!(
            "--- agent\n{}\n--- coordinator\n{}",
            tail(&agent.log_text(), 40),
            tail(&coords[0].log_text(), 40)
        )
    };
    // The history is complete: every container the agent made is in it.
    assert!(
        created >= 100,
        "the event stream shows {created} container creates for 100 tasks"
    );
    assert!(
        downs.is_empty(),
        "node declared down: {downs:?}\n{}",
        logs()
    );
    assert!(
        max <= 100,
        "{max} containers for 100 assigned tasks\n{}",
        logs()
    );
    assert_eq!(running, 100, "not all running\n{}", logs());
}

fn stack_yaml() -> String {
    format!(
        r#"name: loss
volumes:
  data: {{}}
services:
  web:
    image: {IMAGE}
    network_mode: none
    command: ["sleep", "3600"]
    stop_signal: SIGKILL
    deploy:
      replicas: 2
  db:
    image: {IMAGE}
    network_mode: none
    command: ["sleep", "3600"]
    stop_signal: SIGKILL
    volumes: ["data:/var/lib/db"]
    deploy:
      replicas: 1
"#
    )
}

fn signal(agent: &Agent, sig: nix::sys::signal::Signal) {
    let pid = nix::unistd::Pid::from_raw(agent.pid().unwrap() as i32);
    nix::sys::signal::kill(pid, sig).unwrap();
}

/// Polls `check` every 100 ms for up to `within`; returns how long it took, or panics.
async fn within(
    what: &str,
    limit: Duration,
    mut check: impl FnMut() -> bool,
    logs: impl Fn() -> String,
) -> Duration {
    let start = Instant::now();
    loop {
        if check() {
            return start.elapsed();
        }
        assert!(
            start.elapsed() < limit,
            "{what}: not within {limit:?}\n{}",
            logs()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Done-when 2 of issue 22: a frozen node (SIGSTOP past its grace, then SIGCONT).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn frozen_node_loses_stateless_tasks_and_keeps_its_data_service() {
    if !available_or_skip() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let cd = TestContainerd::start().expect("containerd");
    let image = build_busybox_image(dir.path(), &ImageOptions::new(IMAGE))
        .unwrap()
        .path;
    // A short grace keeps the test short: heartbeats every 500 ms, down after 2 s of silence.
    let cfg = dir.path().join("c.toml");
    std::fs::write(
        &cfg,
        "[agents]\nheartbeat_ms = 500\ngrace_ms = 2000\nmax_grace_ms = 4000\n",
    )
    .unwrap();
    let coords: Vec<Coord> = cluster(dir.path(), 1, &["--config", cfg.to_str().unwrap()]).await;
    wait_leader(&coords.iter().collect::<Vec<_>>(), Duration::from_secs(10)).await;
    let endpoints: Vec<String> = coords.iter().map(|c| c.addr.clone()).collect();
    let mut agents: Vec<Agent> = ["n1", "n2"]
        .iter()
        .map(|n| Agent::new(dir.path(), n, &[], &endpoints, cd.socket(), &image))
        .collect();
    for a in &mut agents {
        a.start();
    }
    wait_nodes_ready(&endpoints, 2).await;
    let stack = dir.path().join("stack.yaml");
    std::fs::write(&stack, stack_yaml()).unwrap();
    let (ok, out) = shoalctl(&endpoints, &["apply", "-f", stack.to_str().unwrap()]);
    assert!(ok, "apply: {out}");
    let logs = |agents: &[Agent]| {
        let mut s = String::new();
        for a in agents {
            s += &format!("--- {}\n{}\n", a.name, tail(&a.log_text(), 25));
        }
        s + &format!("--- coordinator\n{}", tail(&coords[0].log_text(), 25))
    };
    within(
        "stack running",
        Duration::from_secs(60),
        || {
            let web = live_tasks(&endpoints, "web");
            let db = live_tasks(&endpoints, "db");
            web.len() == 2
                && web.iter().all(|t| t.2 == "running")
                && web[0].1 != web[1].1
                && db.len() == 1
                && db[0].2 == "running"
        },
        || logs(&agents),
    )
    .await;
    let db = live_tasks(&endpoints, "db");
    let victim_name = db[0].1.clone();
    let v = agents.iter().position(|a| a.name == victim_name).unwrap();
    let other_name = agents[1 - v].name.clone();
    let web_on_victim: Vec<String> = live_tasks(&endpoints, "web")
        .into_iter()
        .filter(|t| t.1 == victim_name)
        .map(|t| t.0)
        .collect();
    assert_eq!(web_on_victim.len(), 1);
    // Every task start and exit from here on, in the order containerd published them.
    let recorder = EventRecorder::start(cd.socket()).unwrap();
    let recorder_started = recorder.started();
    let initial: Vec<Held> = agents
        .iter()
        .flat_map(|a| {
            shoal_tests::agents::running_tasks(cd.socket(), &a.namespace)
                .into_iter()
                .map(|t| (a.namespace.clone(), t))
        })
        .collect();
    assert!(
        initial
            .iter()
            .any(|(ns, id)| *ns == agents[v].namespace && web_on_victim.contains(id)),
        "the web replica on {victim_name} is not running: {initial:?}"
    );

    // Freeze the node past its grace: the stateless replica moves, the database waits.
    signal(&agents[v], nix::sys::signal::Signal::SIGSTOP);
    let frozen = Instant::now();
    let moved = within(
        "web replaced on the other node",
        Duration::from_secs(20),
        || {
            let web = live_tasks(&endpoints, "web");
            web.len() == 2 && web.iter().all(|t| t.1 == other_name && t.2 == "running")
        },
        || logs(&agents),
    )
    .await;
    // Frozen 3 s more: a copy of the database wrongly started with the web replica would have
    // had time to start beside the frozen one.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let db_now = live_tasks(&endpoints, "db");
    assert_eq!(db_now, db, "the database must wait for its node");
    assert!(
        !node_down_events(&endpoints).is_empty(),
        "the frozen node was never declared down"
    );

    // Resume: the node's copy of the orphaned web task goes at once; the database stays.
    signal(&agents[v], nix::sys::signal::Signal::SIGCONT);
    let resumed = Instant::now();
    let victim_ns = agents[v].namespace.clone();
    let gone = within(
        "old web copy removed from the returning node",
        Duration::from_secs(10),
        || {
            !shoal_tests::agents::containers(cd.socket(), &victim_ns)
                .iter()
                .any(|c| web_on_victim.contains(c))
        },
        || logs(&agents),
    )
    .await;
    within(
        "returning node ready",
        Duration::from_secs(10),
        || {
            json(&endpoints, &["node", "ls"])
                .iter()
                .all(|n| n["status"] == "ready")
        },
        || logs(&agents),
    )
    .await;
    assert_eq!(live_tasks(&endpoints, "db"), db);
    println!(
        "frozen {:?}: web replaced {moved:?} after SIGSTOP; old copy removed {gone:?} after \
         SIGCONT; db kept its one copy",
        resumed - frozen
    );

    // The node dies for real; the database moves only on the operator's word.
    agents[v].kill();
    shoal_tests::agents::kill_all_tasks(cd.socket(), &victim_ns);
    within(
        "dead node down",
        Duration::from_secs(20),
        || {
            json(&endpoints, &["node", "ls"])
                .iter()
                .any(|n| n["name"] == victim_name.as_str() && n["status"] == "down")
        },
        || logs(&agents),
    )
    .await;
    let (ok, out) = shoalctl(&endpoints, &["node", "rm", &victim_name]);
    assert!(
        !ok && out.contains("--force") && out.contains(&db[0].0),
        "{out}"
    );
    assert_eq!(live_tasks(&endpoints, "db"), db);
    let (ok, out) = shoalctl(&endpoints, &["node", "rm", "--force", &victim_name]);
    assert!(ok, "{out}");
    let rehomed = within(
        "db started on the other node",
        Duration::from_secs(20),
        || {
            let db = live_tasks(&endpoints, "db");
            db.len() == 1 && db[0].1 == other_name && db[0].2 == "running"
        },
        || logs(&agents),
    )
    .await;
    println!("db running on {other_name} {rehomed:?} after `node rm --force`");
    let events = recorder.stop();
    let moments = replay(&initial, &events, Track::Running);

    // Never two copies of the database at once, on one node or on both, at any point of the
    // exact history.
    for m in &moments {
        let running_db: Vec<&Held> = m.held.iter().filter(|h| h.1.starts_with("db.")).collect();
        assert!(
            running_db.len() <= 1,
            "two copies of db at {:?}: {running_db:?}",
            m.at
        );
    }
    // The history is complete: it holds the database's start on the other node.
    let db_started_elsewhere = events.iter().any(|e| {
        e.topic == "/tasks/start" && e.container.starts_with("db.") && e.namespace != victim_ns
    });
    assert!(
        db_started_elsewhere,
        "the event stream lacks the database's start on {other_name}"
    );
    // After the resume, the old web copy ran only as long as its removal took.
    let resumed_at = resumed - recorder_started;
    let old_web_exit = moments
        .iter()
        .find(|m| {
            !m.held
                .iter()
                .any(|(ns, id)| *ns == victim_ns && web_on_victim.contains(id))
        })
        .map(|m| m.at)
        .expect("the old web copy's exit is in the event stream");
    println!(
        "{} events; old web copy exited {:?} after SIGCONT",
        events.len(),
        old_web_exit.saturating_sub(resumed_at)
    );
    assert!(
        old_web_exit < resumed_at + Duration::from_secs(3),
        "old web copy still ran {:?} after SIGCONT",
        old_web_exit - resumed_at
    );
}
