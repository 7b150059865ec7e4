//! Stack configs through the real state machine and orchestrator: versions stamped into the
//! services that use them, only those services' tasks replaced on a new value, removal with the
//! stack, the size limit, and sensitive values in no answer, event or print.

use shoal_model::config::{config_ref, MAX_CONFIG_BYTES};
use shoal_model::{SecretValue, ServiceSpec, TaskState};

use super::secrets_tests::{apply, converge, with_node};
use super::{ClusterState, Command, ConfigInput, Query, Response};

const SENSITIVE: &str = "sensitive-config-9d2e4b";

fn input(name: &str, value: &str, sensitive: bool) -> ConfigInput {
    ConfigInput {
        name: name.into(),
        value: SecretValue::new(value.as_bytes().to_vec()),
        sensitive,
        template: false,
    }
}

fn spec(replicas: u32, configs: &[&str]) -> ServiceSpec {
    let mut spec = ServiceSpec {
        replicas,
        ..Default::default()
    };
    spec.container.image = "busybox".into();
    spec.container.configs = configs.iter().map(|c| config_ref(*c)).collect();
    spec
}

/// keystone uses keystone.conf, db uses galera.cnf (sensitive), memcached uses none.
fn stack(keystone_conf: &str, galera: &str) -> Command {
    Command::ApplyStack {
        stack: "cloud".into(),
        services: vec![
            ("keystone".into(), spec(2, &["keystone.conf"])),
            ("db".into(), spec(1, &["galera.cnf"])),
            ("memcached".into(), spec(1, &[])),
        ],
        secrets: vec![],
        configs: vec![
            input("keystone.conf", keystone_conf, false),
            input("galera.cnf", galera, true),
        ],
    }
}

/// `(service, task id)` of every task that should run.
fn live(s: &ClusterState) -> Vec<(String, String)> {
    s.tasks
        .values()
        .filter(|t| t.desired_state == TaskState::Running)
        .map(|t| (t.service.clone(), t.id.clone()))
        .collect()
}

#[test]
fn configs_are_stored_with_versions_stamped_into_their_services() {
    let mut s = with_node();
    assert_eq!(apply(&mut s, stack("[DEFAULT]", SENSITIVE)), Response::ok());
    let conf = s.configs["keystone.conf"].clone();
    assert_eq!(
        (conf.stack.as_str(), conf.value.expose(), conf.sensitive),
        ("cloud", &b"[DEFAULT]"[..], false)
    );
    assert!(conf.version > 0);
    let r = &s.services["keystone"].spec.container.configs[0];
    assert_eq!(
        (r.source.as_str(), r.version),
        ("keystone.conf", conf.version)
    );
    assert!(s.configs["galera.cnf"].sensitive);
    converge(&mut s);
    assert!(s
        .tasks
        .values()
        .filter(|t| t.service == "keystone")
        .all(|t| t.spec.configs[0].version == conf.version));
}

#[test]
fn a_new_value_replaces_only_the_tasks_of_the_services_using_it() {
    let mut s = with_node();
    apply(&mut s, stack("a=1", SENSITIVE));
    converge(&mut s);
    let before = live(&s);
    assert_eq!(before.len(), 4);

    // The same values again: nothing moves.
    assert_eq!(apply(&mut s, stack("a=1", SENSITIVE)), Response::ok());
    converge(&mut s);
    assert_eq!(live(&s), before);

    // keystone.conf changes: keystone's tasks are replaced (rolling: its first batch here,
    // where no task ever reports running), db's and memcached's are not.
    let v1 = s.configs["keystone.conf"].version;
    let galera = s.configs["galera.cnf"].version;
    assert_eq!(apply(&mut s, stack("a=2", SENSITIVE)), Response::ok());
    assert!(s.configs["keystone.conf"].version > v1);
    assert_eq!(s.configs["galera.cnf"].version, galera);
    converge(&mut s);
    let after = live(&s);
    let mut replaced = 0;
    for (svc, id) in &before {
        let kept = after.iter().any(|(_, a)| a == id);
        if svc == "keystone" {
            replaced += usize::from(!kept);
        } else {
            assert!(kept, "{svc} task {id} was replaced");
        }
    }
    assert!(replaced >= 1, "no keystone task was replaced");
    assert!(s.services["keystone"].update.is_some(), "keystone rolls");
    // Stop-first: at most the one slot of the batch is down while its old task stops.
    assert!(after.len() >= 3, "{after:?}");
}

#[test]
fn the_plan_lists_the_tasks_a_config_change_restarts() {
    use crate::orchestrator::preview::preview;
    let mut s = with_node();
    apply(&mut s, stack("a=1", SENSITIVE));
    converge(&mut s);
    let p = preview(&s, "cloud", stack("a=2", SENSITIVE), 1).unwrap();
    let restarted: Vec<(&str, &[String])> = p
        .restarts
        .iter()
        .map(|r| (r.service.as_str(), r.configs.as_slice()))
        .collect();
    let conf = ["keystone.conf".to_string()];
    assert_eq!(
        restarted,
        vec![("keystone", &conf[..]), ("keystone", &conf[..])]
    );
    let actions: Vec<(&str, &str)> = p
        .configs
        .iter()
        .map(|c| (c.name.as_str(), c.action.as_str()))
        .collect();
    assert_eq!(
        actions,
        vec![("galera.cnf", "unchanged"), ("keystone.conf", "update")]
    );
    let p = preview(&s, "cloud", stack("a=1", SENSITIVE), 1).unwrap();
    assert!(p.restarts.is_empty(), "{:?}", p.restarts);
}

#[test]
fn removal_limits_and_refusals() {
    let mut s = with_node();
    apply(&mut s, stack("a=1", SENSITIVE));
    let before = s.clone();
    let huge = "x".repeat(MAX_CONFIG_BYTES + 1);
    let cases = [
        (
            stack(&huge, SENSITIVE),
            "config `keystone.conf` is 1024001 bytes; the limit is 1024000",
        ),
        (
            Command::ApplyStack {
                stack: "cloud".into(),
                services: vec![("keystone".into(), spec(1, &["missing"]))],
                secrets: vec![],
                configs: vec![],
            },
            "service `keystone` uses config `missing`, which stack `cloud` does not provide",
        ),
        (
            Command::ApplyStack {
                stack: "other".into(),
                services: vec![],
                secrets: vec![],
                configs: vec![input("keystone.conf", "b", false)],
            },
            "config `keystone.conf` already exists in stack `cloud`",
        ),
        (
            Command::CreateService {
                name: "solo".into(),
                spec: spec(1, &["keystone.conf"]),
            },
            "configs are only available to stack services",
        ),
    ];
    for (cmd, want) in cases {
        let e = apply(&mut s, cmd).error.unwrap_or_default();
        assert!(e.contains(want), "{e}");
    }
    assert_eq!(s, before);
    let r = apply(
        &mut s,
        Command::RemoveStack {
            stack: "cloud".into(),
        },
    );
    assert_eq!(r, Response::ok());
    assert!(s.configs.is_empty());
}

#[test]
fn queries_show_plain_configs_and_never_a_sensitive_value() {
    let mut s = with_node();
    let cmd = stack("[DEFAULT]\ndebug = true\n", SENSITIVE);
    apply(&mut s, cmd.clone());
    converge(&mut s);
    apply(&mut s, stack("[DEFAULT]\n", "second-sensitive-value"));
    converge(&mut s);

    let json = |a| serde_json::to_value(a).expect("answers serialize");
    let one = json(s.query(&Query::Config {
        name: "keystone.conf".into(),
    }));
    assert_eq!(one["content"], "[DEFAULT]\n");
    assert_eq!(one["services"], serde_json::json!(["keystone"]));
    let list = json(s.query(&Query::Configs));
    assert_eq!(list.as_array().map(Vec::len), Some(2));
    assert!(list[0].get("content").is_none(), "ls shows no content");
    let galera = json(s.query(&Query::Config {
        name: "galera.cnf".into(),
    }));
    assert_eq!(galera["sensitive"], true);
    assert!(galera.get("content").is_none());

    let mut hay = vec![format!("{cmd:?}"), format!("{s:?}"), list.to_string()];
    hay.push(galera.to_string());
    for q in [
        Query::Services,
        Query::Tasks {
            service: None,
            node: None,
        },
        Query::Events { after: 0 },
    ] {
        hay.push(serde_json::to_string(&s.query(&q)).expect("answers serialize"));
    }
    for h in &hay {
        assert!(!h.contains(SENSITIVE), "value found in {h}");
        assert!(!h.contains("second-sensitive-value"), "value found in {h}");
    }
    let events: Vec<_> = s
        .events
        .iter()
        .filter(|e| e.kind == shoal_model::api::EventKind::Config)
        .collect();
    assert_eq!(events.len(), 4, "{events:?}");
}
