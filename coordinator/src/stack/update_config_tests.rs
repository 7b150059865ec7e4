//! Stack file tests for `update_config`, `rollback_config` and `x-shoal-quorum`.

use shoal_model::{FailureAction, UpdateConfig, UpdateOrder};

use super::*;

fn only_service(src: &str) -> ServiceSpec {
    match parse_stack("stack.yaml", src) {
        Ok(mut s) => s.services.remove(0).1,
        Err(e) => panic!("unexpected error: {e}"),
    }
}

fn error(src: &str) -> String {
    match parse_stack("bad.yaml", src) {
        Ok(_) => panic!("parsed without error: {src}"),
        Err(e) => e.to_string(),
    }
}

/// The example of Docker's Compose file reference (`deploy.update_config`), unchanged.
#[test]
fn docker_reference_example_is_accepted_unchanged() {
    let spec = only_service(
        r#"version: "3.9"
services:
  vote:
    image: dockersamples/examplevotingapp_vote:before
    depends_on:
      - redis
    deploy:
      replicas: 2
      update_config:
        parallelism: 2
        delay: 10s
        order: stop-first
  redis:
    image: redis:alpine
"#,
    );
    assert_eq!(
        spec.update_config,
        UpdateConfig {
            parallelism: 2,
            delay_ms: 10_000,
            ..UpdateConfig::default()
        }
    );
    assert_eq!(spec.rollback_config, UpdateConfig::default());
}

#[test]
fn every_key_of_both_configs_is_read() {
    let spec = only_service(
        r#"services:
  db:
    image: mariadb
    deploy:
      replicas: 3
      x-shoal-quorum: true
      update_config:
        parallelism: 0
        delay: 1m30s
        failure_action: rollback
        monitor: 30s
        max_failure_ratio: 0.25
        order: start-first
      rollback_config:
        parallelism: 3
        delay: 0s
        failure_action: continue
        monitor: 500ms
        max_failure_ratio: 1
        order: stop-first
"#,
    );
    assert!(spec.quorum);
    assert_eq!(
        spec.update_config,
        UpdateConfig {
            parallelism: 0,
            delay_ms: 90_000,
            failure_action: FailureAction::Rollback,
            monitor_ms: 30_000,
            max_failure_ratio_ppm: 250_000,
            order: UpdateOrder::StartFirst,
        }
    );
    assert_eq!(
        spec.rollback_config,
        UpdateConfig {
            parallelism: 3,
            delay_ms: 0,
            failure_action: FailureAction::Continue,
            monitor_ms: 500,
            max_failure_ratio_ppm: 1_000_000,
            order: UpdateOrder::StopFirst,
        }
    );
}

#[test]
fn swarm_defaults_when_left_out() {
    let spec =
        only_service("services:\n  a:\n    image: x\n    deploy:\n      update_config: {}\n");
    let d = &spec.update_config;
    assert_eq!(d.parallelism, 1);
    assert_eq!(d.delay_ms, 0);
    assert_eq!(d.failure_action, FailureAction::Pause);
    assert_eq!(d.monitor_ms, 5_000);
    assert_eq!(d.max_failure_ratio_ppm, 0);
    assert_eq!(d.order, UpdateOrder::StopFirst);
    assert!(!spec.quorum);
    // Swarm: a monitor of 0 is the default.
    let spec = only_service(
        "services:\n  a:\n    image: x\n    deploy:\n      update_config:\n        monitor: 0s\n",
    );
    assert_eq!(spec.update_config.monitor_ms, 5_000);
}

#[test]
fn bad_values_name_file_line_and_key() {
    let head = "services:\n  a:\n    image: x\n    deploy:\n";
    let cases = [
        (
            "      update_config:\n        parallelism: -1\n",
            "bad.yaml:6:22: services.a.deploy.update_config.parallelism: expected a non-negative integer",
        ),
        (
            "      update_config:\n        delay: soon\n",
            "bad.yaml:6:16: services.a.deploy.update_config.delay: expected a duration",
        ),
        (
            "      update_config:\n        failure_action: explode\n",
            "bad.yaml:6:25: services.a.deploy.update_config.failure_action: unknown failure_action \"explode\" (expected pause, continue or rollback)",
        ),
        (
            "      rollback_config:\n        failure_action: rollback\n",
            "bad.yaml:6:25: services.a.deploy.rollback_config.failure_action: a rollback cannot roll back",
        ),
        (
            "      update_config:\n        monitor: [1]\n",
            "bad.yaml:6:18: services.a.deploy.update_config.monitor: expected a scalar",
        ),
        (
            "      update_config:\n        max_failure_ratio: 1.5\n",
            "bad.yaml:6:28: services.a.deploy.update_config.max_failure_ratio: expected a number from 0 to 1, got 1.5",
        ),
        (
            "      update_config:\n        max_failure_ratio: half\n",
            "bad.yaml:6:28: services.a.deploy.update_config.max_failure_ratio: expected a number from 0 to 1",
        ),
        (
            "      update_config:\n        order: random\n",
            "bad.yaml:6:16: services.a.deploy.update_config.order: unknown order \"random\" (expected stop-first or start-first)",
        ),
        (
            "      update_config:\n        paralelism: 2\n",
            "bad.yaml:6:9: services.a.deploy.update_config.paralelism: unknown or unsupported key",
        ),
        (
            "      update_config: 2\n",
            "bad.yaml:5:22: services.a.deploy.update_config: expected a mapping",
        ),
        (
            "      x-shoal-quorum: yes please\n",
            "bad.yaml:5:23: services.a.deploy.x-shoal-quorum: expected true or false",
        ),
        (
            "      replicas: 1\n    x-shoal-pre-stop: { timeout: 5s }\n",
            "bad.yaml:6:23: services.a.x-shoal-pre-stop: expected `command: CMD`",
        ),
        (
            "      replicas: 1\n    x-shoal-pre-stop: { command: drain, timeout: later }\n",
            "bad.yaml:6:50: services.a.x-shoal-pre-stop.timeout: expected a duration",
        ),
        (
            "      replicas: 3\n    x-shoal-first-start: { command: bootstrap }\n",
            "bad.yaml:6:26: services.a.x-shoal-first-start: only a replicated quorum service",
        ),
        (
            "      x-shoal-quorum: true\n    x-shoal-first-start: {}\n",
            "bad.yaml:6:26: services.a.x-shoal-first-start: expected `command` or `environment`",
        ),
        (
            "      x-shoal-run: once\n",
            "bad.yaml:5:20: services.a.deploy.x-shoal-run: only jobs (mode replicated-job or global-job) take x-shoal-run",
        ),
        (
            "      mode: replicated-job\n      x-shoal-run: twice\n",
            "bad.yaml:6:20: services.a.deploy.x-shoal-run: expected `once` or `on-change`, got \"twice\"",
        ),
        (
            "      mode: replicated-job\n      x-shoal-quorum: true\n",
            "bad.yaml:6:23: services.a.deploy.x-shoal-quorum: a job cannot be a quorum cluster",
        ),
    ];
    let mut failures = Vec::new();
    for (i, (tail, want)) in cases.iter().enumerate() {
        let got = error(&format!("{head}{tail}"));
        if !got.starts_with(want) {
            failures.push(format!("case {}: got `{got}`, want `{want}...`", i + 1));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn a_job_runs_once_or_on_change() {
    let spec = only_service(
        "services:\n  boot:\n    image: x\n    deploy:\n      mode: replicated-job\n      x-shoal-run: once\n",
    );
    assert!(spec.run_once);
    let spec = only_service(
        "services:\n  sync:\n    image: x\n    deploy:\n      mode: replicated-job\n      x-shoal-run: on-change\n",
    );
    assert!(!spec.run_once);
}

#[test]
fn a_pre_stop_hook_has_a_command_and_a_timeout() {
    let spec = only_service(
        "services:\n  mq:\n    image: rabbitmq\n    x-shoal-pre-stop:\n      command: rabbitmq-upgrade drain\n      timeout: 2m\n",
    );
    let hook = spec.container.pre_stop.expect("a hook");
    assert_eq!(hook.command, vec!["rabbitmq-upgrade", "drain"]);
    assert_eq!(hook.timeout_ms, 120_000);
    let spec = only_service(
        "services:\n  mq:\n    image: rabbitmq\n    x-shoal-pre-stop: { command: [\"sh\", \"-c\", \"drain\"] }\n",
    );
    assert_eq!(spec.container.pre_stop.unwrap().timeout_ms, 30_000);
}

#[test]
fn a_quorum_service_has_a_first_start() {
    let spec = only_service(
        "services:\n  galera:\n    image: mariadb\n    command: mysqld\n    x-shoal-first-start:\n      command: mysqld --wsrep-new-cluster\n      environment: { BOOTSTRAP: \"1\" }\n    deploy:\n      replicas: 3\n      x-shoal-quorum: true\n",
    );
    let first = spec.first_start.expect("a first start");
    assert_eq!(first.command, vec!["mysqld", "--wsrep-new-cluster"]);
    assert_eq!(first.env.get("BOOTSTRAP").map(String::as_str), Some("1"));
}
