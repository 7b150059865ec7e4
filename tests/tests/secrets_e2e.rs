//! Stack secrets end to end on a real containerd: three coordinators and two agents (debug
//! logging, `/metrics` on every process). A stack with a file secret and an environment secret is
//! applied with the real `shoalctl`; the task that uses them reads both at their paths, read-only,
//! from files on the agent's tmpfs; the other node never receives them; and the values appear in
//! no log, `service inspect`, `task ls`, plan, events or metrics output, nor in any file the
//! agents keep on disk. Then the agent restarts (the container keeps its secrets), the value
//! changes (the task is replaced and sees the new one), and the stack goes (the files go).

#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use serde_json::Value;
use shoal_tests::agents::Agent;
use shoal_tests::containerd::TestContainerd;

use shoal_tests::image::{build_busybox_image, ImageOptions};
use shoal_tests::leaks::{contains, files_under, is_tmpfs, strip_ansi};
use shoal_tests::probes::http_get;
use shoal_tests::watched::{watched_cluster, Watched};
use shoal_tests::{binary, wait_until};

const IMAGE: &str = "shoal-demo:latest";

fn stack_yaml() -> String {
    format!(
        r#"name: sec
secrets:
  db_password:
    file: ./db_password.txt
  api_token:
    environment: SHOAL_E2E_TOKEN
services:
  app:
    image: {IMAGE}
    command: ["sleep", "3600"]
    stop_signal: SIGKILL
    secrets:
      - db_password
      - source: api_token
        target: /etc/app/token
        mode: 0440
    deploy:
      placement:
        constraints: ["node.labels.role == secret"]
  other:
    image: {IMAGE}
    command: ["sleep", "3600"]
    stop_signal: SIGKILL
    env_file: ./other.env
    environment:
      OVERRIDDEN: by-environment
    deploy:
      placement:
        constraints: ["node.labels.role == other"]
"#
    )
}

fn shoalctl_env(coords: &[String], args: &[&str], token: &str) -> Output {
    Command::new(binary("shoalctl"))
        .arg("--coordinators")
        .arg(coords.join(","))
        .args(args)
        .env("SHOAL_E2E_TOKEN", token)
        .output()
        .unwrap()
}

fn shoalctl(coords: &[String], args: &[&str]) -> String {
    let out = shoalctl_env(coords, args, "");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "shoalctl {args:?}: {text}");
    text
}

/// The one live (desired running, state running) task of `service`: (id, node).
fn running_task(coords: &[String], service: &str) -> Option<(String, String)> {
    let v: Value = serde_json::from_str(&shoalctl(coords, &["-o", "json", "task", "ls"])).ok()?;
    v.as_array()?
        .iter()
        .find(|t| {
            t["service"] == service && t["desired_state"] == "running" && t["state"] == "running"
        })
        .map(|t| {
            (
                t["id"].as_str().unwrap_or_default().to_string(),
                t["node"].as_str().unwrap_or_default().to_string(),
            )
        })
}

/// `cat PATH` inside the task's container through `shoalctl exec`.
fn cat(coords: &[String], task: &str, path: &str) -> (bool, String) {
    let out = shoalctl_env(coords, &["exec", task, "--", "cat", path], "");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).to_string(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_reach_only_their_containers_and_are_printed_nowhere() {
    let dir = tempfile::tempdir().unwrap();
    let cd = TestContainerd::start().expect("containerd");
    let image = build_busybox_image(dir.path(), &ImageOptions::new(IMAGE))
        .unwrap()
        .path;

    // Three coordinators of a secure cluster (every connection mutual TLS) and two agents, each
    // with its own /metrics, logging at debug. n1 runs the task that uses the secrets; n2 runs
    // another one.
    let nodes: [(&str, &[(&str, &str)]); 2] =
        [("n1", &[("role", "secret")]), ("n2", &[("role", "other")])];
    let w = watched_cluster(dir.path(), 3, &nodes, cd.socket(), &image).await;
    let Watched {
        coords,
        endpoints,
        coord_metrics,
        mut agents,
        agent_metrics,
        secrets_dirs,
        ..
    } = w;

    let events_file = dir.path().join("events.jsonl");
    let mut follower = Command::new(binary("shoalctl"))
        .arg("--coordinators")
        .arg(endpoints.join(","))
        .args(["-o", "json", "events", "--follow"])
        .stdout(std::fs::File::create(&events_file).unwrap())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();

    // Unique values, so that finding one anywhere means it leaked from this test.
    let value = format!("pw-{}", uuid::Uuid::new_v4().simple());
    let token = format!("tk-{}", uuid::Uuid::new_v4().simple());
    let stack_dir = dir.path().join("stack");
    std::fs::create_dir_all(&stack_dir).unwrap();
    std::fs::write(stack_dir.join("db_password.txt"), &value).unwrap();
    // `env_file` is read by shoalctl next to the stack file; `environment` wins over it.
    std::fs::write(
        stack_dir.join("other.env"),
        "# kolla-style settings\nFROM_ENV_FILE=\"env file value\"\nOVERRIDDEN=by-env-file\n",
    )
    .unwrap();
    let stack = stack_dir.join("stack.yaml");
    std::fs::write(&stack, stack_yaml()).unwrap();
    let stack_arg = stack.to_str().unwrap();

    // Without the environment variable nothing is sent, and the error names secret and file.
    let out = Command::new(binary("shoalctl"))
        .arg("--coordinators")
        .arg(endpoints.join(","))
        .args(["apply", "-f", stack_arg])
        .env_remove("SHOAL_E2E_TOKEN")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("secret `api_token`")
            && err.contains("SHOAL_E2E_TOKEN")
            && err.contains("stack.yaml"),
        "{err}"
    );

    let mut outputs: Vec<(String, String)> = Vec::new();
    let plan = shoalctl_env(&endpoints, &["plan", "-f", stack_arg], &token);
    assert!(plan.status.success(), "{plan:?}");
    let plan_text = String::from_utf8_lossy(&plan.stdout).to_string();
    assert!(
        plan_text.contains("SECRET")
            && plan_text.contains("db_password")
            && plan_text.contains("api_token"),
        "the plan names the secrets: {plan_text}"
    );
    outputs.push(("plan".into(), plan_text));
    let applied = shoalctl_env(
        &endpoints,
        &["-o", "json", "apply", "-f", stack_arg],
        &token,
    );
    assert!(applied.status.success(), "{applied:?}");
    outputs.push((
        "apply".into(),
        String::from_utf8_lossy(&applied.stdout).into(),
    ));

    let (task, node) = wait_until(Duration::from_secs(90), "app running", || {
        running_task(&endpoints, "app")
    });
    assert_eq!(node, "n1");
    let (other_task, other_node) = wait_until(Duration::from_secs(60), "other running", || {
        running_task(&endpoints, "other")
    });
    assert_eq!(other_node, "n2");
    let (ok, environ) = cat(&endpoints, &other_task, "/proc/1/environ");
    assert!(ok, "{environ}");
    let vars: Vec<&str> = environ.split('\0').collect();
    assert!(vars.contains(&"FROM_ENV_FILE=env file value"), "{vars:?}");
    assert!(vars.contains(&"OVERRIDDEN=by-environment"), "{vars:?}");

    // Inside the container: the values, at their paths, read-only, with their modes.
    assert_eq!(
        cat(&endpoints, &task, "/run/secrets/db_password"),
        (true, value.clone())
    );
    assert_eq!(
        cat(&endpoints, &task, "/etc/app/token"),
        (true, token.clone())
    );
    let ls = shoalctl_env(
        &endpoints,
        &[
            "exec",
            &task,
            "--",
            "ls",
            "-ln",
            "/run/secrets/db_password",
            "/etc/app/token",
        ],
        "",
    );
    let ls = String::from_utf8_lossy(&ls.stdout).to_string();
    assert!(
        ls.contains("-r--------") && ls.contains("-r--r-----"),
        "{ls}"
    );
    let write = shoalctl_env(
        &endpoints,
        &[
            "exec",
            &task,
            "--",
            "sh",
            "-c",
            "echo x > /run/secrets/db_password",
        ],
        "",
    );
    assert!(
        !write.status.success(),
        "the secret file is writable: {write:?}"
    );
    let mounts = shoalctl_env(
        &endpoints,
        &["exec", &task, "--", "cat", "/proc/mounts"],
        "",
    );
    let mounts = String::from_utf8_lossy(&mounts.stdout).to_string();
    let line = mounts
        .lines()
        .find(|l| l.contains(" /run/secrets/db_password "))
        .unwrap_or_else(|| panic!("no mount for the secret: {mounts}"));
    assert!(line.contains(" tmpfs ") && line.contains("ro,"), "{line}");

    // On the host: the file lives on n1's tmpfs; n2 has nothing.
    assert!(
        is_tmpfs(&secrets_dirs[0]),
        "{} is not a tmpfs",
        secrets_dirs[0].display()
    );
    let host_file = secrets_dirs[0].join(&task).join("secret-0");
    assert_eq!(std::fs::read_to_string(&host_file).unwrap(), value);
    let mut n2_files = Vec::new();
    files_under(&agents[1].root, Path::new("/nonexistent"), &mut n2_files);
    assert!(!n2_files.is_empty());
    for f in &n2_files {
        let bytes = std::fs::read(f).unwrap_or_default();
        assert!(
            !contains(&bytes, value.as_bytes()) && !contains(&bytes, token.as_bytes()),
            "n2 holds a secret in {}",
            f.display()
        );
    }

    // The agent restarts: its container keeps running with its secrets.
    agents[0].kill();
    agents[0].start();
    wait_until(Duration::from_secs(30), "agent n1 back", || {
        agents[0]
            .log_text()
            .contains("adopting running container")
            .then_some(())
    });
    assert_eq!(
        cat(&endpoints, &task, "/run/secrets/db_password"),
        (true, value.clone())
    );

    // Everything an operator or a monitoring system can read.
    for args in [
        vec!["service", "inspect", "app"],
        vec!["-o", "json", "service", "inspect", "app"],
        vec!["service", "ls"],
        vec!["-o", "json", "service", "ls"],
        vec!["task", "ls"],
        vec!["-o", "json", "task", "ls"],
        vec!["events"],
        vec!["-o", "json", "events"],
    ] {
        outputs.push((format!("shoalctl {args:?}"), shoalctl(&endpoints, &args)));
    }
    let inspect = &outputs[2].1;
    assert!(
        inspect.contains("db_password")
            && inspect.contains("/etc/app/token")
            && inspect.contains("\"mode\": \"0440\""),
        "inspect shows the references: {inspect}"
    );
    let events = &outputs[9].1;
    assert!(
        events.contains("secret") && events.contains("api_token"),
        "{events}"
    );
    for (i, m) in coord_metrics.iter().enumerate() {
        let (status, body) = http_get(m, "/metrics", None).unwrap();
        assert!(status.contains("200"), "{status}");
        outputs.push((format!("coordinator {} metrics", i + 1), body));
    }
    for (i, m) in agent_metrics.iter().enumerate() {
        let (status, body) = http_get(m, "/metrics", None).unwrap();
        assert!(status.contains("200"), "{status}");
        outputs.push((format!("agent n{} metrics", i + 1), body));
    }

    // Rotate the value: the task is replaced and its successor reads the new one.
    let rotated = format!("pw-{}", uuid::Uuid::new_v4().simple());
    std::fs::write(stack_dir.join("db_password.txt"), &rotated).unwrap();
    let applied = shoalctl_env(&endpoints, &["apply", "-f", stack_arg], &token);
    assert!(applied.status.success(), "{applied:?}");
    let (task2, _) = wait_until(Duration::from_secs(90), "app replaced", || {
        running_task(&endpoints, "app").filter(|(t, _)| *t != task)
    });
    assert_eq!(
        cat(&endpoints, &task2, "/run/secrets/db_password"),
        (true, rotated.clone())
    );
    wait_until(
        Duration::from_secs(30),
        "old task's secret files removed",
        || (!secrets_dirs[0].join(&task).exists()).then_some(()),
    );

    // The stack goes: so do the secret files.
    shoalctl(&endpoints, &["stack", "rm", "sec"]);
    wait_until(Duration::from_secs(60), "secret files removed", || {
        let left = std::fs::read_dir(&secrets_dirs[0])
            .map(|d| d.count())
            .unwrap_or(0);
        (left == 0).then_some(())
    });
    let _ = follower.kill();
    let _ = follower.wait();
    outputs.push((
        "events --follow".into(),
        std::fs::read_to_string(&events_file).unwrap(),
    ));

    // Logs of every process, then every file the agents keep outside the tmpfs (state db,
    // container logs): none holds a value.
    for c in &coords {
        outputs.push((format!("coordinator {} log", c.id), c.log_text()));
    }
    for a in &agents {
        outputs.push((format!("agent {} log", a.name), a.log_text()));
    }
    outputs.push(("containerd log".into(), cd.log()));
    for (i, a) in agents.iter().enumerate() {
        let mut files = Vec::new();
        files_under(&a.root, &secrets_dirs[i], &mut files);
        assert!(
            files.iter().any(|f| f.starts_with(a.root.join("data"))),
            "no state db files"
        );
        for f in files {
            let bytes = std::fs::read(&f).unwrap_or_default();
            for v in [&value, &token, &rotated] {
                assert!(
                    !contains(&bytes, v.as_bytes()),
                    "a value is in {}",
                    f.display()
                );
            }
        }
    }
    for (what, text) in &outputs {
        assert!(
            !text.trim().is_empty(),
            "{what} is empty: the search would mean nothing"
        );
        for v in [&value, &token, &rotated] {
            assert!(
                !text.contains(v.as_str()),
                "a secret value is in the {what}"
            );
        }
    }
    // The debug logs did record the work the values went through.
    // n1 received the two values; n2, which runs nothing that uses them, never did (the agent
    // logs how many values each assignment set carried).
    let counts = |a: &Agent| -> Vec<String> {
        strip_ansi(&a.log_text())
            .lines()
            .filter(|l| l.contains("assignment set") && l.contains("secrets="))
            .filter_map(|l| l.split("secrets=").nth(1))
            .filter_map(|r| r.split_whitespace().next().map(str::to_string))
            .collect()
    };
    let (n1, n2) = (counts(&agents[0]), counts(&agents[1]));
    assert!(n1.iter().any(|c| c == "2"), "n1 assignment sets: {n1:?}");
    assert!(
        !n2.is_empty() && n2.iter().all(|c| c == "0"),
        "n2 assignment sets: {n2:?}"
    );
    let agent_log = agents[0].log_text();
    assert!(agent_log.contains("DEBUG"), "no debug logging in the agent");
    assert!(
        coords.iter().any(|c| c.log_text().contains("DEBUG")),
        "no debug logging"
    );
    let searched: usize = outputs.iter().map(|(_, t)| t.len()).sum();
    println!("searched {} texts, {searched} bytes", outputs.len());
}
