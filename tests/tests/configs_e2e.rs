//! Stack configs end to end on a real containerd: one coordinator and three agents (debug
//! logging, `/metrics` on every process). A stack with three configs (inline `content`, a `file`
//! and a sensitive `environment` value) and two services is applied with the real `shoalctl`:
//! each of the three `db` containers reads its configs at their targets, read-only, with the
//! owner and mode asked for; `config ls`/`inspect` show them (never the sensitive value); the
//! agent restarts and the containers keep running with their files; a changed config replaces
//! only the tasks of the service that uses it (the plan says which first); and the sensitive
//! value appears in no log, event, metrics or query output, nor in any file outside the agents'
//! tmpfs. Templates: each db container reads its own rendering of a templated config (its
//! node's name and advertised address, its slot, every member's address); `shoalctl plan` refuses
//! a template syntax error with file:line; a template that fails only when rendered is the task's
//! error.

#![allow(clippy::unwrap_used)]

use std::process::{Command, Output};
use std::time::Duration;

use serde_json::Value;
use shoal_tests::containerd::TestContainerd;
use shoal_tests::image::{build_busybox_image, ImageOptions};
use shoal_tests::leaks::{contains, files_under, is_tmpfs};
use shoal_tests::probes::http_get;
use shoal_tests::watched::{watched_cluster, Watched};
use shoal_tests::{binary, wait_until};

const IMAGE: &str = "shoal-demo:latest";
const GALERA_PATH: &str = "/etc/mysql/conf.d/galera.cnf";
const PEERS_PATH: &str = "/etc/peers.cnf";
/// A template rendered per task: the node's own values and the addresses of all db members.
const PEERS: &str = r#"node={{ node.name }} address={{ node.address }} slot={{ task.slot }}\npeers={{ members('db') | map(attribute='address') | join(',') }}\n"#;

fn stack_yaml(galera: &str) -> String {
    format!(
        r#"name: cfg
configs:
  galera.cnf:
    content: "{galera}"
  peers.cnf:
    content: "{PEERS}"
    x-shoal-template: true
  web.conf:
    file: ./web.conf
  db_url:
    environment: SHOAL_E2E_DB_URL
    x-shoal-sensitive: true
services:
  db:
    image: {IMAGE}
    # The start time tells a restarted container from one that kept running.
    command: ["sh", "-c", "date +%s%N > /tmp/started; exec sleep 3600"]
    stop_signal: SIGKILL
    configs:
      - source: galera.cnf
        target: {GALERA_PATH}
        uid: "999"
        gid: 998
        mode: 0440
      - db_url
      - source: peers.cnf
        target: {PEERS_PATH}
    deploy:
      replicas: 3
      placement:
        max_replicas_per_node: 1
  web:
    image: {IMAGE}
    command: ["sh", "-c", "date +%s%N > /tmp/started; exec sleep 3600"]
    stop_signal: SIGKILL
    configs: [web.conf]
"#
    )
}

struct Ctl {
    endpoints: Vec<String>,
    db_url: String,
}

impl Ctl {
    fn run(&self, args: &[&str]) -> Output {
        Command::new(binary("shoalctl"))
            .arg("--coordinators")
            .arg(self.endpoints.join(","))
            .args(args)
            .env("SHOAL_E2E_DB_URL", &self.db_url)
            .output()
            .unwrap()
    }

    fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(out.status.success(), "shoalctl {args:?}: {text}");
        text
    }

    /// `(task id, node)` of the live tasks of `service`, by task id.
    fn running(&self, service: &str) -> Vec<(String, String)> {
        let v: Value =
            serde_json::from_str(&self.ok(&["-o", "json", "task", "ls"])).unwrap_or_default();
        let mut out: Vec<(String, String)> = v
            .as_array()
            .into_iter()
            .flatten()
            .filter(|t| {
                t["service"] == service
                    && t["desired_state"] == "running"
                    && t["state"] == "running"
            })
            .map(|t| {
                (
                    t["id"].as_str().unwrap_or_default().to_string(),
                    t["node"].as_str().unwrap_or_default().to_string(),
                )
            })
            .collect();
        out.sort();
        out
    }

    /// `cat PATH` in the task's container: its output if it succeeded.
    fn cat(&self, task: &str, path: &str) -> Option<String> {
        let out = self.run(&["exec", task, "--", "cat", path]);
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).to_string())
    }
}

/// Waits for exactly `n` live tasks of `service` other than those in `not`.
fn wait_running(ctl: &Ctl, service: &str, n: usize, not: &[String]) -> Vec<(String, String)> {
    wait_until(Duration::from_secs(120), &format!("{n} {service}"), || {
        let r = ctl.running(service);
        (r.len() == n && r.iter().all(|(t, _)| !not.contains(t))).then_some(r)
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn configs_reach_their_containers_and_a_change_moves_only_their_service() {
    let dir = tempfile::tempdir().unwrap();
    let cd = TestContainerd::start().expect("containerd");
    let image = build_busybox_image(dir.path(), &ImageOptions::new(IMAGE))
        .unwrap()
        .path;
    let no_labels: &[(&str, &str)] = &[];
    let nodes = [("n1", no_labels), ("n2", no_labels), ("n3", no_labels)];
    let w = watched_cluster(dir.path(), 1, &nodes, cd.socket(), &image).await;
    let Watched {
        coords,
        endpoints,
        coord_metrics,
        mut agents,
        agent_metrics,
        secrets_dirs,
        ..
    } = w;

    // A unique sensitive value: finding it anywhere means it leaked from this test.
    let db_url = format!("mysql://root:{}@db", uuid::Uuid::new_v4().simple());
    let ctl = Ctl {
        endpoints: endpoints.clone(),
        db_url: db_url.clone(),
    };

    let stack_dir = dir.path().join("stack");
    std::fs::create_dir_all(&stack_dir).unwrap();
    std::fs::write(stack_dir.join("web.conf"), "listen 8080\n").unwrap();
    let stack = stack_dir.join("stack.yaml");
    let galera1 = "[galera]\\nwsrep_on = ON\\n";
    std::fs::write(&stack, stack_yaml(galera1)).unwrap();
    let stack_arg = stack.to_str().unwrap();
    let mut outputs: Vec<(String, String)> = Vec::new();
    outputs.push(("apply".into(), ctl.ok(&["apply", "-f", stack_arg])));

    // Each db container, one per node, reads its configs at their targets, read-only, with the
    // owner and mode asked for.
    let db = wait_running(&ctl, "db", 3, &[]);
    let nodes: std::collections::BTreeSet<&str> = db.iter().map(|(_, n)| n.as_str()).collect();
    assert_eq!(nodes.len(), 3, "{db:?}");
    let web = wait_running(&ctl, "web", 1, &[]);
    for (task, _) in &db {
        assert_eq!(
            ctl.cat(task, GALERA_PATH).as_deref(),
            Some("[galera]\nwsrep_on = ON\n")
        );
        assert_eq!(ctl.cat(task, "/db_url"), Some(db_url.clone()));
    }
    assert_eq!(
        ctl.cat(&web[0].0, "/web.conf").as_deref(),
        Some("listen 8080\n")
    );
    let ls = ctl.ok(&["exec", &db[0].0, "--", "ls", "-ln", GALERA_PATH, "/db_url"]);
    let modes: Vec<(&str, &str, &str)> = ls
        .lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .filter(|f| f.len() > 4)
        .map(|f| (f[0], f[2], f[3]))
        .collect();
    assert_eq!(
        modes,
        // `ls` sorts: /db_url first.
        vec![("-r--r--r--", "0", "0"), ("-r--r-----", "999", "998")],
        "{ls}"
    );
    // The templated config: each container reads its own node's values and every member.
    let nodes_json: Value = serde_json::from_str(&ctl.ok(&["-o", "json", "node", "ls"])).unwrap();
    let address = |node: &str| {
        nodes_json
            .as_array()
            .into_iter()
            .flatten()
            .find(|n| n["name"] == node)
            .and_then(|n| n["address"].as_str())
            .unwrap()
            .to_string()
    };
    let mut all: Vec<String> = db.iter().map(|(_, n)| address(n)).collect();
    all.sort();
    let mut slots = Vec::new();
    for (task, node) in &db {
        let text = ctl.cat(task, PEERS_PATH).unwrap();
        let (first, peers) = text.split_once('\n').unwrap();
        let prefix = format!("node={node} address={} slot=", address(node));
        let slot = first
            .strip_prefix(&prefix)
            .unwrap_or_else(|| panic!("{text}"));
        slots.push(slot.to_string());
        let mut listed: Vec<&str> = peers
            .trim_end()
            .strip_prefix("peers=")
            .unwrap()
            .split(',')
            .collect();
        listed.sort();
        assert_eq!(listed, all, "{text}");
    }
    slots.sort();
    assert_eq!(slots, ["1", "2", "3"]);
    let write = ctl.run(&["exec", &db[0].0, "--", "sh", "-c", "echo x >> /db_url"]);
    assert!(!write.status.success(), "the config file is writable");
    // On the host: on the agents' tmpfs.
    assert!(secrets_dirs.iter().all(|d| is_tmpfs(d)));

    // A template with a syntax error is refused at plan time, naming the file and the line.
    let broken = stack_dir.join("broken.yaml");
    std::fs::write(
        &broken,
        "name: broken\nconfigs:\n  t:\n    file: ./t.conf\n    x-shoal-template: true\nservices: {}\n",
    )
    .unwrap();
    std::fs::write(stack_dir.join("t.conf"), "a = 1\nb = {{ node.name }\n").unwrap();
    let out = ctl.run(&["plan", "-f", broken.to_str().unwrap()]);
    let text = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(!out.status.success(), "{text}");
    assert!(text.contains("template ./t.conf:2: syntax error"), "{text}");

    // shoalctl config ls / inspect.
    let list = ctl.ok(&["config", "ls"]);
    assert!(
        list.contains("galera.cnf") && list.contains("web.conf") && list.contains("db_url"),
        "{list}"
    );
    let inspect = ctl.ok(&["config", "inspect", "galera.cnf"]);
    assert!(
        inspect.contains("used by  db") && inspect.contains("wsrep_on = ON"),
        "{inspect}"
    );
    let sensitive = ctl.ok(&["config", "inspect", "db_url"]);
    assert!(sensitive.contains("<sensitive: not shown>"), "{sensitive}");
    outputs.push(("config ls".into(), list));
    outputs.push(("config inspect".into(), sensitive));
    outputs.push((
        "config inspect json".into(),
        ctl.ok(&["-o", "json", "config", "inspect", "db_url"]),
    ));

    // The agent of n1 restarts: its container keeps running (same task, same start time) and
    // still reads its configs.
    let (db_n1, _) = db.iter().find(|(_, n)| n == "n1").cloned().unwrap();
    let started = ctl.cat(&db_n1, "/tmp/started").unwrap();
    agents[0].kill();
    agents[0].start();
    wait_until(Duration::from_secs(30), "agent n1 back", || {
        agents[0]
            .log_text()
            .contains("adopting running container")
            .then_some(())
    });
    assert_eq!(ctl.cat(&db_n1, "/tmp/started"), Some(started));
    assert_eq!(ctl.cat(&db_n1, "/db_url"), Some(db_url.clone()));
    assert!(secrets_dirs[0].join(&db_n1).join("config-0").exists());

    // galera.cnf changes: the plan lists the three db tasks, and only they are replaced.
    let galera2 = "[galera]\\nwsrep_on = ON\\nwsrep_slave_threads = 4\\n";
    std::fs::write(&stack, stack_yaml(galera2)).unwrap();
    let plan = ctl.ok(&["plan", "-f", stack_arg]);
    let restarts: Vec<&str> = plan.lines().filter(|l| l.contains("galera.cnf")).collect();
    let listed = |t: &str| restarts.iter().any(|l| l.starts_with(t));
    assert!(db.iter().all(|(t, _)| listed(t)), "{plan}");
    assert!(!listed(&web[0].0), "{plan}");
    outputs.push(("plan".into(), plan));
    let web_started = ctl.cat(&web[0].0, "/tmp/started").unwrap();
    ctl.ok(&["apply", "-f", stack_arg]);
    let old: Vec<String> = db.iter().map(|(t, _)| t.clone()).collect();
    let db2 = wait_running(&ctl, "db", 3, &old);
    for (task, _) in &db2 {
        assert_eq!(
            ctl.cat(task, GALERA_PATH).as_deref(),
            Some("[galera]\nwsrep_on = ON\nwsrep_slave_threads = 4\n")
        );
    }
    assert_eq!(ctl.running("web"), web, "web was replaced");
    assert_eq!(ctl.cat(&web[0].0, "/tmp/started"), Some(web_started));
    wait_until(Duration::from_secs(30), "old tasks' files removed", || {
        old.iter()
            .all(|t| secrets_dirs.iter().all(|d| !d.join(t).exists()))
            .then_some(())
    });

    // Everything an operator or a monitoring system reads: no sensitive value.
    for args in [
        vec!["-o", "json", "service", "inspect", "db"],
        vec!["-o", "json", "task", "ls"],
        vec!["-o", "json", "events"],
        vec!["-o", "json", "config", "ls"],
    ] {
        outputs.push((format!("shoalctl {args:?}"), ctl.ok(&args)));
    }
    for m in coord_metrics.iter().chain(&agent_metrics) {
        let (status, body) = http_get(m, "/metrics", None).unwrap();
        assert!(status.contains("200"), "{status}");
        outputs.push((format!("metrics {m}"), body));
    }
    ctl.ok(&["stack", "rm", "cfg"]);
    wait_until(Duration::from_secs(60), "config files removed", || {
        let left: usize = secrets_dirs
            .iter()
            .map(|d| std::fs::read_dir(d).map(|e| e.count()).unwrap_or(0))
            .sum();
        (left == 0).then_some(())
    });
    // A template that only fails when rendered (a `members()` of a service the stack lacks):
    // the task's error names the config and the line; no file is written.
    let bad = stack_dir.join("bad.yaml");
    std::fs::write(
        &bad,
        format!(
            "name: bad\nconfigs:\n  t:\n    x-shoal-template: true\n    content: \"a\\n{{{{ members('nosuch') }}}}\"\n\
             services:\n  b:\n    image: {IMAGE}\n    command: [sleep, '3600']\n    configs: [t]\n"
        ),
    )
    .unwrap();
    ctl.ok(&["apply", "-f", bad.to_str().unwrap()]);
    let message = wait_until(Duration::from_secs(60), "b rejected", || {
        let v: Value = serde_json::from_str(&ctl.ok(&["-o", "json", "task", "ls"])).ok()?;
        v.as_array()?
            .iter()
            .find(|t| t["service"] == "b" && t["state"] == "rejected")
            .and_then(|t| t["message"].as_str().map(String::from))
    });
    assert!(
        message.starts_with("config `t`: template line 2:") && message.contains("nosuch"),
        "{message}"
    );
    ctl.ok(&["stack", "rm", "bad"]);
    for c in &coords {
        outputs.push((format!("coordinator {} log", c.id), c.log_text()));
    }
    for a in &agents {
        outputs.push((format!("agent {} log", a.name), a.log_text()));
    }
    outputs.push(("containerd log".into(), cd.log()));
    for (what, text) in &outputs {
        assert!(
            !text.trim().is_empty(),
            "{what} is empty: the search would mean nothing"
        );
        assert!(
            !text.contains(&db_url),
            "the sensitive config is in the {what}"
        );
    }
    for (i, a) in agents.iter().enumerate() {
        let mut files = Vec::new();
        files_under(&a.root, &secrets_dirs[i], &mut files);
        assert!(!files.is_empty());
        for f in files {
            let bytes = std::fs::read(&f).unwrap_or_default();
            assert!(
                !contains(&bytes, db_url.as_bytes()),
                "value in {}",
                f.display()
            );
        }
    }
    // A db node received the three configs of db (the agent logs how many values came).
    let logs = shoal_tests::leaks::strip_ansi(&agents[1].log_text());
    assert!(
        logs.contains("configs=3"),
        "assignment sets log their config counts"
    );
}
