//! Stack secrets through the real state machine and orchestrator: stamped versions, task
//! replacement on a new value, removal with the stack, refusals, and no value in any answer.

use shoal_model::{Node, NodeStatus, SecretRef, SecretValue, ServiceSpec, UpdateOrder};

use super::{ClusterState, Command, Query, Request, Response};
use crate::orchestrator::plan;

const VALUE: &str = "s3cr3t-value-7f1c2d";

fn value(s: &str) -> SecretValue {
    SecretValue::new(s.as_bytes().to_vec())
}

pub(super) fn apply(s: &mut ClusterState, command: Command) -> Response {
    s.apply(&Request {
        request_id: None,
        now: 1,
        command,
    })
}

fn spec_using(source: &str) -> ServiceSpec {
    let mut spec = ServiceSpec {
        replicas: 1,
        ..Default::default()
    };
    spec.container.image = "busybox".into();
    spec.container.secrets = vec![SecretRef::new(source)];
    // The new task starts beside the old one (on one node: the old one stops at once), so
    // that a pass without agent reports replaces it.
    spec.update_config.order = UpdateOrder::StartFirst;
    spec
}

fn stack(secret: Option<&str>) -> Command {
    Command::ApplyStack {
        stack: "cloud".into(),
        services: vec![("api".into(), spec_using("pw"))],
        secrets: secret
            .map(|v| ("pw".to_string(), value(v)))
            .into_iter()
            .collect(),
        configs: vec![],
    }
}

pub(super) fn converge(s: &mut ClusterState) {
    let mut n = 0;
    for _ in 0..10 {
        let r = plan(s, 1, &mut |svc: &str, slot: u32| {
            n += 1;
            format!("{svc}.{slot}.{n}")
        });
        if r.is_empty() {
            return;
        }
        assert_eq!(apply(s, Command::Reconcile(Box::new(r))), Response::ok());
    }
    panic!("did not converge");
}

pub(super) fn with_node() -> ClusterState {
    let mut s = ClusterState::default();
    let node = Node {
        name: "n1".into(),
        role: shoal_model::NodeRole::Worker,
        labels: Default::default(),
        availability: shoal_model::NodeAvailability::Active,
        status: NodeStatus::Ready,
        resources: shoal_model::NodeResources {
            cpu_millis: 4000,
            memory_bytes: 8 << 30,
        },
        address: String::new(),
        agent_version: String::new(),
        runtime_version: String::new(),
        registered_at: 0,
        last_heartbeat: 0,
        down_since: None,
    };
    assert_eq!(
        apply(&mut s, Command::RegisterNode { node }),
        Response::ok()
    );
    s
}

fn live_task_versions(s: &ClusterState) -> Vec<u64> {
    s.tasks
        .values()
        .filter(|t| t.desired_state == shoal_model::TaskState::Running)
        .map(|t| t.spec.secrets[0].version)
        .collect()
}

#[test]
fn a_stack_secret_is_stored_and_references_are_stamped() {
    let mut s = with_node();
    assert_eq!(apply(&mut s, stack(Some(VALUE))), Response::ok());
    let secret = s.secrets["pw"].clone();
    assert_eq!(secret.value.expose(), VALUE.as_bytes());
    assert_eq!(secret.stack, "cloud");
    let r = &s.services["api"].spec.container.secrets[0];
    assert_eq!((r.source.as_str(), r.version), ("pw", secret.version));
    assert!(secret.version > 0);
    converge(&mut s);
    assert_eq!(live_task_versions(&s), vec![secret.version]);
}

#[test]
fn a_new_value_replaces_the_tasks_and_the_same_value_does_not() {
    let mut s = with_node();
    apply(&mut s, stack(Some(VALUE)));
    converge(&mut s);
    let v1 = s.secrets["pw"].version;

    // Same value again: nothing changes.
    let before = s.services["api"].clone();
    assert_eq!(apply(&mut s, stack(Some(VALUE))), Response::ok());
    assert_eq!(s.services["api"], before);
    converge(&mut s);
    assert_eq!(live_task_versions(&s), vec![v1]);

    // A new value: new version, new service version, the task is replaced.
    assert_eq!(apply(&mut s, stack(Some("rotated"))), Response::ok());
    let v2 = s.secrets["pw"].version;
    assert!(v2 > v1);
    assert_eq!(s.services["api"].version, before.version + 1);
    converge(&mut s);
    assert_eq!(live_task_versions(&s), vec![v2]);
    assert_eq!(s.secrets["pw"].value.expose(), b"rotated");
}

#[test]
fn removing_the_stack_or_the_secret_forgets_the_value() {
    let mut s = with_node();
    apply(&mut s, stack(Some(VALUE)));
    // The stack no longer declares it (and no service uses it): gone.
    let without = Command::ApplyStack {
        stack: "cloud".into(),
        services: vec![("api".into(), spec_using("pw2"))],
        secrets: vec![("pw2".into(), value("other"))],
        configs: vec![],
    };
    assert_eq!(apply(&mut s, without), Response::ok());
    assert!(!s.secrets.contains_key("pw"));
    assert!(s.secrets.contains_key("pw2"));
    let r = apply(
        &mut s,
        Command::RemoveStack {
            stack: "cloud".into(),
        },
    );
    assert_eq!(r, Response::ok());
    assert!(s.secrets.is_empty());
    assert!(s.services.is_empty());
}

#[test]
fn refusals_change_nothing() {
    let mut s = with_node();
    apply(&mut s, stack(Some(VALUE)));
    let before = s.clone();
    let cases = [
        (stack(None), "does not provide"),
        (
            Command::ApplyStack {
                stack: "other".into(),
                services: vec![],
                secrets: vec![("pw".into(), value("x"))],
                configs: vec![],
            },
            "already exists in stack `cloud`",
        ),
        (
            Command::ApplyStack {
                stack: "cloud".into(),
                services: vec![],
                secrets: vec![("pw".into(), value(&"x".repeat(600 * 1024)))],
                configs: vec![],
            },
            "the limit is",
        ),
        (
            Command::CreateService {
                name: "solo".into(),
                spec: spec_using("pw"),
            },
            "only available to stack services",
        ),
        (
            Command::UpdateService {
                name: "api".into(),
                spec: spec_using("pw"),
            },
            "only available to stack services",
        ),
    ];
    for (cmd, want) in cases {
        let r = apply(&mut s, cmd);
        let e = r.error.unwrap_or_default();
        assert!(e.contains(want), "{e}");
        assert!(!e.contains(VALUE));
    }
    assert_eq!(s, before);
}

#[test]
fn no_query_event_or_debug_print_holds_the_value() {
    let mut s = with_node();
    let cmd = stack(Some(VALUE));
    // The value as text and as the JSON byte array it is serialized to.
    let as_json = serde_json::to_string(&value(VALUE)).unwrap();
    let needles = [
        VALUE.to_string(),
        as_json.trim_matches(['[', ']']).to_string(),
    ];
    let haystacks_of = |s: &ClusterState, cmd: &Command| {
        let mut h = vec![format!("{cmd:?}"), format!("{s:?}")];
        for q in [
            Query::Services,
            Query::Service { name: "api".into() },
            Query::Tasks {
                service: None,
                node: None,
            },
            Query::Nodes,
            Query::Events { after: 0 },
            Query::ClusterId,
        ] {
            h.push(serde_json::to_string(&s.query(&q)).expect("answers serialize"));
        }
        h
    };
    apply(&mut s, cmd.clone());
    converge(&mut s);
    apply(&mut s, stack(Some("second-value")));
    converge(&mut s);
    let hay = haystacks_of(&s, &cmd);
    assert!(hay.iter().any(|h| h.contains("\"pw\"")), "references show");
    for h in &hay {
        for n in &needles {
            assert!(!h.contains(n.as_str()), "value found in {h}");
        }
        assert!(!h.contains("second-value"), "value found in {h}");
    }
    // The events name the secret and say what happened, without the value.
    let secret_events: Vec<_> = s
        .events
        .iter()
        .filter(|e| e.kind == shoal_model::api::EventKind::Secret)
        .collect();
    assert_eq!(secret_events.len(), 2, "{secret_events:?}");
}

#[test]
fn the_plan_names_secret_changes_without_values() {
    use crate::orchestrator::preview::preview;
    let mut s = with_node();
    let p = preview(&s, "cloud", stack(Some(VALUE)), 1).unwrap();
    let actions = |p: &crate::orchestrator::preview::Preview| -> Vec<(String, String)> {
        p.secrets
            .iter()
            .map(|c| (c.name.clone(), c.action.clone()))
            .collect()
    };
    assert_eq!(actions(&p), vec![("pw".into(), "create".into())]);
    apply(&mut s, stack(Some(VALUE)));
    let p = preview(&s, "cloud", stack(Some(VALUE)), 1).unwrap();
    assert_eq!(actions(&p), vec![("pw".into(), "unchanged".into())]);
    let p = preview(&s, "cloud", stack(Some("new")), 1).unwrap();
    assert_eq!(actions(&p), vec![("pw".into(), "update".into())]);
    assert_eq!(p.services[0].action, "update");
    let text = serde_json::to_string(&p).unwrap();
    assert!(!text.contains(VALUE) && !text.contains("\"new\""), "{text}");
}
