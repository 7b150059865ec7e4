//! Rolling updates end to end on a real containerd, with the real binaries on loopback:
//! - an update to an image whose health check never passes pauses after its first batch, says
//!   why in `service ps` and in the events, and `service rollback` brings the old spec back;
//! - `service update --force` on a global service restarts it node by node, and on each node the
//!   old container is gone before the new one starts (read from `ctr events`), after its
//!   pre-stop hook ran inside it;
//! - a three-member quorum stand-in (healthy only while a majority of members answer) rolls to
//!   a new image on three coordinators and three agents while a probe reads the members every
//!   100 ms; the leader is killed mid-update and the new leader finishes it.

#![allow(clippy::unwrap_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use shoal_tests::agents::Agent;
use shoal_tests::containerd::{available_or_skip, TestContainerd};
use shoal_tests::coordinators::{cluster, wait_leader, Coord};
use shoal_tests::image::{build_busybox_image, ImageOptions};
use shoal_tests::shoalctl_insecure;

const GOOD: &str = "shoal-demo:latest";
/// The same busybox with `/etc/bad`, which fails the stack's health check.
const BAD: &str = "shoal-bad:latest";
/// The same busybox with `/etc/v2`: a new, healthy image.
const GOOD2: &str = "shoal-demo2:latest";

struct Env {
    _dir: tempfile::TempDir,
    cd: TestContainerd,
    coords: Vec<Coord>,
    endpoints: Vec<String>,
    agents: Vec<Agent>,
    stack: std::path::PathBuf,
}

/// `coordinators` coordinators, `nodes` agents that import both images.
async fn env(coordinators: u64, nodes: usize) -> Env {
    let dir = tempfile::tempdir().unwrap();
    let cd = TestContainerd::start().expect("containerd");
    let good = build_busybox_image(dir.path(), &ImageOptions::new(GOOD))
        .unwrap()
        .path;
    let mut bad_opts = ImageOptions::new(BAD);
    bad_opts.extra_file = Some(("/etc/bad".into(), b"1".to_vec()));
    let bad = build_busybox_image(dir.path(), &bad_opts).unwrap().path;
    let mut v2_opts = ImageOptions::new(GOOD2);
    v2_opts.extra_file = Some(("/etc/v2".into(), b"2".to_vec()));
    let v2 = build_busybox_image(dir.path(), &v2_opts).unwrap().path;
    let coords = cluster(dir.path(), coordinators, &[]).await;
    let refs: Vec<&Coord> = coords.iter().collect();
    wait_leader(&refs, Duration::from_secs(10)).await;
    let endpoints: Vec<String> = coords.iter().map(|c| c.addr.clone()).collect();
    let mut agents: Vec<Agent> = (1..=nodes)
        .map(|i| {
            let mut a = Agent::new(
                dir.path(),
                &format!("n{i}"),
                &[],
                &endpoints,
                cd.socket(),
                &good,
            );
            for extra in [&bad, &v2] {
                a.args
                    .extend(["--import-image".to_string(), extra.display().to_string()]);
            }
            a
        })
        .collect();
    for a in &mut agents {
        a.start();
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (_, out) = shoalctl_insecure(&endpoints, &["-o", "json", "node", "ls"]);
        let ready = serde_json::from_str::<Value>(&out).ok().and_then(|v| {
            v.as_array()
                .map(|a| a.iter().filter(|n| n["status"] == "ready").count())
        });
        if ready == Some(nodes) {
            break;
        }
        assert!(Instant::now() < deadline, "agents did not register: {out}");
        std::thread::sleep(Duration::from_millis(200));
    }
    let stack = dir.path().join("stack.yaml");
    Env {
        _dir: dir,
        cd,
        coords,
        endpoints,
        agents,
        stack,
    }
}

impl Env {
    fn ctl(&self, args: &[&str]) -> String {
        let (ok, out) = shoalctl_insecure(&self.endpoints, args);
        assert!(ok, "shoalctl {args:?}: {out}");
        out
    }

    fn apply(&self, yaml: &str) {
        std::fs::write(&self.stack, yaml).unwrap();
        self.ctl(&["apply", "-f", self.stack.to_str().unwrap()]);
    }

    /// Live tasks of `svc` (desired running, not finished).
    fn live(&self, svc: &str) -> Vec<Value> {
        let out = self.ctl(&["-o", "json", "task", "ls", "--service", svc]);
        serde_json::from_str::<Value>(&out)
            .unwrap()
            .as_array()
            .unwrap()
            .iter()
            .filter(|t| t["desired_state"] == "running")
            .filter(|t| {
                !["complete", "failed", "shutdown", "rejected", "orphaned"]
                    .contains(&t["state"].as_str().unwrap())
            })
            .cloned()
            .collect()
    }

    fn service(&self, svc: &str) -> Value {
        serde_json::from_str(&self.ctl(&["service", "inspect", svc])).unwrap()
    }

    /// Waits (at most `within`) until `check` holds; panics with `what` and the agents' logs.
    fn wait(&self, within: Duration, what: &str, check: impl Fn(&Env) -> bool) {
        let start = Instant::now();
        while !check(self) {
            if start.elapsed() > within {
                let logs: String = self
                    .agents
                    .iter()
                    .map(|a| {
                        let text = a.log_text();
                        let lines: Vec<&str> = text.lines().collect();
                        let tail = lines[lines.len().saturating_sub(20)..].join("\n");
                        format!("--- {}\n{tail}\n", a.name)
                    })
                    .collect();
                let ps = shoalctl_insecure(&self.endpoints, &["task", "ls"]).1;
                panic!("{what}: not within {within:?}\n{ps}\n{logs}");
            }
            std::thread::sleep(Duration::from_millis(250));
        }
    }
}

fn running_healthy(tasks: &[Value], image: &str) -> usize {
    tasks
        .iter()
        .filter(|t| t["state"] == "running" && t["message"] == "healthy")
        .filter(|t| t["spec"]["image"] == image)
        .count()
}

fn checked_stack(image: &str) -> String {
    format!(
        r#"services:
  api:
    image: {image}
    command: ["sleep", "3600"]
    stop_signal: SIGKILL
    healthcheck:
      test: ["CMD", "sh", "-c", "test ! -f /etc/bad"]
      interval: 300ms
      timeout: 1s
      retries: 1
    deploy:
      replicas: 3
      update_config:
        parallelism: 1
        monitor: 1s
        failure_action: pause
      rollback_config:
        parallelism: 2
        monitor: 1s
"#
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_update_pauses_after_one_batch_and_rollback_restores() {
    if !available_or_skip() {
        return;
    }
    let env = env(1, 2).await;
    env.apply(&checked_stack(GOOD));
    env.wait(Duration::from_secs(90), "3 healthy tasks", |e| {
        running_healthy(&e.live("api"), GOOD) == 3
    });
    let first: BTreeSet<String> = env
        .live("api")
        .iter()
        .map(|t| t["id"].as_str().unwrap().to_string())
        .collect();

    let out = env.ctl(&["service", "update", "api", "--image", BAD]);
    assert!(out.contains("rolling to version 2"), "{out}");
    env.wait(Duration::from_secs(60), "rollout paused", |e| {
        e.service("api")["update"]["state"] == "paused"
    });
    // Watch a while longer: nothing beyond the first batch is touched.
    std::thread::sleep(Duration::from_secs(3));
    let live = env.live("api");
    let kept: Vec<&Value> = live
        .iter()
        .filter(|t| first.contains(t["id"].as_str().unwrap()))
        .collect();
    assert_eq!(kept.len(), 2, "two old tasks kept: {live:#?}");
    assert_eq!(running_healthy(&live, GOOD), 2, "{live:#?}");
    assert!(
        live.iter().filter(|t| t["spec"]["image"] == BAD).count() <= 1,
        "{live:#?}"
    );
    let ps = env.ctl(&["service", "ps", "api"]);
    let line = ps.lines().next().unwrap();
    assert!(
        line.starts_with("rollout: version 2 paused") && line.contains("unhealthy"),
        "{ps}"
    );
    let events = env.ctl(&["-o", "json", "events"]);
    let list: Value = serde_json::from_str(&events).unwrap();
    let paused: Vec<&Value> = list
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["object"] == "api" && e["action"] == "update_paused")
        .collect();
    assert!(
        paused
            .iter()
            .any(|e| e["message"].as_str().unwrap().contains("unhealthy")),
        "{events}"
    );

    let out = env.ctl(&["service", "rollback", "api"]);
    assert!(out.contains("version 3"), "{out}");
    env.wait(Duration::from_secs(60), "rolled back", |e| {
        e.service("api")["update"]["state"] == "rolled_back"
            && running_healthy(&e.live("api"), GOOD) == 3
    });
    let live = env.live("api");
    assert_eq!(live.len(), 3);
    assert!(live.iter().all(|t| t["spec"]["image"] == GOOD));
    // The two tasks the update never touched were kept, not restarted.
    let kept = live
        .iter()
        .filter(|t| first.contains(t["id"].as_str().unwrap()))
        .count();
    assert_eq!(kept, 2, "{live:#?}");
    let svc = env.service("api");
    assert_eq!(svc["version"], 3);
    assert_eq!(svc["spec"]["container"]["image"], GOOD);
}

/// `ctr events` on the test's containerd, all namespaces, into a file.
fn ctr_events(socket: &Path, out: &Path) -> Child {
    Command::new("ctr")
        .arg("--address")
        .arg(socket)
        .arg("events")
        .stdout(std::fs::File::create(out).unwrap())
        .stderr(Stdio::null())
        .spawn()
        .expect("ctr events")
}

/// `(line, namespace, topic, container id)` of the task and container events of `ctr events`
/// (`DATE TIME ZONE UTC NAMESPACE TOPIC JSON`); the line number orders them.
fn parse_events(text: &str) -> Vec<(usize, String, String, String)> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let Some(json_at) = line.find('{') else {
            continue;
        };
        let head: Vec<&str> = line[..json_at].split_whitespace().collect();
        let (Some(topic), Some(ns)) = (head.last(), head.iter().rev().nth(1)) else {
            continue;
        };
        let Ok(body) = serde_json::from_str::<Value>(&line[json_at..]) else {
            continue;
        };
        let id = body["container_id"]
            .as_str()
            .or(body["id"].as_str())
            .unwrap_or_default();
        out.push((i, ns.to_string(), topic.to_string(), id.to_string()));
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn force_restarts_a_global_service_node_by_node_without_overlap() {
    if !available_or_skip() {
        return;
    }
    let env = env(1, 3).await;
    let hooks = env.stack.with_file_name("hooks");
    std::fs::create_dir_all(&hooks).unwrap();
    env.apply(&format!(
        r#"services:
  per-node:
    image: shoal-demo:latest
    command: ["sleep", "3600"]
    stop_signal: SIGKILL
    volumes: ["{}:/hooks"]
    x-shoal-pre-stop:
      command: ["sh", "-c", "echo drained >> /hooks/drain.log"]
      timeout: 5s
    deploy:
      mode: global
      update_config:
        monitor: 1s
"#,
        hooks.display()
    ));
    env.wait(Duration::from_secs(90), "3 running", |e| {
        let live = e.live("per-node");
        live.len() == 3 && live.iter().all(|t| t["state"] == "running")
    });
    let first: BTreeMap<String, String> = env
        .live("per-node")
        .iter()
        .map(|t| {
            (
                t["id"].as_str().unwrap().to_string(),
                t["node"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let events_file = env.stack.with_file_name("ctr-events.txt");
    let mut watcher = ctr_events(env.cd.socket(), &events_file);
    std::thread::sleep(Duration::from_millis(500));

    let out = env.ctl(&["service", "update", "per-node", "--force"]);
    assert!(out.contains("rolling to version 2"), "{out}");
    env.wait(Duration::from_secs(90), "every node restarted", |e| {
        let live = e.live("per-node");
        e.service("per-node")["update"]["state"] == "completed"
            && live.len() == 3
            && live
                .iter()
                .all(|t| t["state"] == "running" && !first.contains_key(t["id"].as_str().unwrap()))
    });
    std::thread::sleep(Duration::from_millis(500));
    let _ = watcher.kill();
    let _ = watcher.wait();

    let text = std::fs::read_to_string(&events_file).unwrap();
    let events = parse_events(&text);
    let namespace_of: BTreeMap<&str, &str> = env
        .agents
        .iter()
        .map(|a| (a.name.as_str(), a.namespace.as_str()))
        .collect();
    let at = |ns: &str, topic: &str, id: &str| {
        events
            .iter()
            .find(|(_, n, t, c)| n == ns && t == topic && c == id)
            .map(|e| e.0)
    };
    let new_tasks: BTreeMap<String, String> = env
        .live("per-node")
        .iter()
        .map(|t| {
            (
                t["node"].as_str().unwrap().to_string(),
                t["id"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    // Per node: (old container deleted, new container started), as event line numbers.
    let mut windows: Vec<(usize, usize, String)> = Vec::new();
    for (old, node) in &first {
        let ns = namespace_of[node.as_str()];
        let new = &new_tasks[node];
        let exit = at(ns, "/tasks/exit", old)
            .unwrap_or_else(|| panic!("no exit of {old} on {node}:\n{text}"));
        let deleted = at(ns, "/containers/delete", old)
            .unwrap_or_else(|| panic!("no delete of {old} on {node}:\n{text}"));
        let started = at(ns, "/tasks/start", new)
            .unwrap_or_else(|| panic!("no start of {new} on {node}:\n{text}"));
        assert!(
            exit < deleted && deleted < started,
            "stop-first on {node}: old {old} exit at {exit}, deleted at {deleted}, new {new} \
             started at {started}:\n{text}"
        );
        windows.push((exit, started, node.clone()));
    }
    // Node by node: a node's old container stops only after the previous node's new one
    // started.
    windows.sort();
    for w in windows.windows(2) {
        assert!(
            w[0].1 < w[1].0,
            "nodes {} and {} restarted together: {windows:?}\n{text}",
            w[0].2,
            w[1].2
        );
    }
    println!("restart windows (ctr events line numbers): {windows:?}");
    // The pre-stop hook ran inside each old container (exec needs it running), once each.
    let drained = std::fs::read_to_string(hooks.join("drain.log")).unwrap();
    assert_eq!(
        drained.lines().filter(|l| *l == "drained").count(),
        3,
        "{drained}"
    );
}

/// A member of the stand-in: every 100 ms it writes the host's uptime (centiseconds; one clock
/// for every container and the test) to a file of its own in the shared directory.
const MEMBER_SH: &str = "id=$(cat /proc/sys/kernel/random/uuid)
while true; do
  u=$(cut -d' ' -f1 /proc/uptime)
  echo \"${u%.*}${u#*.}\" > /shared/m.$id.tmp && mv /shared/m.$id.tmp /shared/m.$id
  sleep 0.1
done
";

/// Healthy only while a majority (2 of 3) of members wrote within the last second.
const CHECK_SH: &str = "u=$(cut -d' ' -f1 /proc/uptime)
now=${u%.*}${u#*.}
n=0
for f in /shared/m.*; do
  case $f in *.tmp) continue;; esac
  t=$(cat $f 2>/dev/null) || continue
  [ -n \"$t\" ] && [ $((now - t)) -le 100 ] && n=$((n + 1))
done
[ $n -ge 2 ]
";

/// Members that wrote within the last 0.5 s, read on the host: a member that stops counts as
/// gone 0.5 s later at most (the health check allows them a second).
fn fresh_members(shared: &Path) -> usize {
    let uptime = std::fs::read_to_string("/proc/uptime").unwrap();
    let first = uptime.split_whitespace().next().unwrap();
    let now: i64 = first.replace('.', "").parse().unwrap();
    std::fs::read_dir(shared)
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| {
            let name = e.file_name().to_string_lossy().to_string();
            name.starts_with("m.") && !name.ends_with(".tmp")
        })
        .filter_map(|e| std::fs::read_to_string(e.path()).ok())
        .filter_map(|t| t.trim().parse::<i64>().ok())
        .filter(|t| now - t <= 50)
        .count()
}

fn quorum_stack(image: &str, shared: &Path) -> String {
    let shared = shared.display();
    format!(
        r#"services:
  galera:
    image: {image}
    command: ["sh", "/shared/member.sh"]
    stop_signal: SIGKILL
    volumes: ["{shared}:/shared"]
    healthcheck:
      test: ["CMD", "sh", "/shared/check.sh"]
      interval: 300ms
      timeout: 2s
      retries: 2
      start_period: 5s
    deploy:
      replicas: 3
      x-shoal-quorum: true
      placement:
        max_replicas_per_node: 1
      update_config:
        parallelism: 3
        monitor: 2s
"#
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_quorum_service_keeps_its_majority_through_an_update_and_a_leader_kill() {
    if !available_or_skip() {
        return;
    }
    let mut env = env(3, 3).await;
    let shared = env.stack.with_file_name("shared");
    std::fs::create_dir_all(&shared).unwrap();
    std::fs::write(shared.join("member.sh"), MEMBER_SH).unwrap();
    std::fs::write(shared.join("check.sh"), CHECK_SH).unwrap();
    env.apply(&quorum_stack(GOOD, &shared));
    env.wait(Duration::from_secs(120), "3 healthy members", |e| {
        running_healthy(&e.live("galera"), GOOD) == 3
    });
    assert_eq!(fresh_members(&shared), 3);

    // The probe: members that answer, every 100 ms, until told to stop (at most 5 minutes).
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let probe = {
        let stop = stop.clone();
        let shared = shared.clone();
        std::thread::spawn(move || {
            let mut samples = Vec::new();
            let started = Instant::now();
            while !stop.load(std::sync::atomic::Ordering::Relaxed)
                && started.elapsed() < Duration::from_secs(300)
            {
                samples.push((started.elapsed(), fresh_members(&shared)));
                std::thread::sleep(Duration::from_millis(100));
            }
            samples
        })
    };

    let stack_text = quorum_stack(GOOD2, &shared);
    std::fs::write(&env.stack, &stack_text).unwrap();
    let plan = env.ctl(&["plan", "-f", env.stack.to_str().unwrap()]);
    assert!(
        plan.contains("1 at a time") || plan.contains("keeping a majority healthy"),
        "{plan}"
    );
    env.apply(&stack_text);
    // Parallelism 3, but a majority of 3 leaves room for one member down at a time.
    env.wait(Duration::from_secs(90), "first member updated", |e| {
        let u = &e.service("galera")["update"];
        assert!(u["in_flight"].as_array().map_or(0, Vec::len) <= 1, "{u}");
        u["done"].as_array().is_some_and(|d| !d.is_empty())
    });
    let refs: Vec<&Coord> = env.coords.iter().collect();
    let leader = wait_leader(&refs, Duration::from_secs(10)).await;
    let pos = env.coords.iter().position(|c| c.id == leader).unwrap();
    env.coords[pos].kill();
    println!("killed leader {leader} after the first member was updated");
    env.wait(Duration::from_secs(120), "update completed", |e| {
        e.service("galera")["update"]["state"] == "completed"
            && running_healthy(&e.live("galera"), GOOD2) == 3
    });
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let samples = probe.join().unwrap();
    let without: Vec<_> = samples.iter().filter(|(_, n)| *n < 2).collect();
    println!(
        "probe: {} samples over {:?}, {} without a majority",
        samples.len(),
        samples.last().map(|s| s.0).unwrap_or_default(),
        without.len()
    );
    // Three batches of at least `monitor` (2 s) each: 60 samples or more when all went well.
    assert!(samples.len() > 30, "{samples:?}");
    assert!(
        without.is_empty(),
        "moments without a majority: {without:?}"
    );
    let survivors: Vec<&Coord> = env.coords.iter().filter(|c| c.id != leader).collect();
    assert_ne!(
        wait_leader(&survivors, Duration::from_secs(10)).await,
        leader
    );
}
