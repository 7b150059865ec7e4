//! Golden wire messages: dispatcher and control-API messages as this build encoded them,
//! checked in under `proto/tests/golden/`. Every later build must still decode them into the
//! same domain values: the wire half of the compatibility promise in ARCHITECTURE.md.
//!
//! `SHOAL_WRITE_GOLDEN=1 cargo test -p shoal-proto --test golden -- --ignored` writes the files
//! that are missing and never overwrites one.

use std::path::{Path, PathBuf};

use prost::Message;
use shoal_model::api::{Query, UserCommand};
use shoal_model::{ContainerSpec, NodeAvailability, ServiceSpec, Task, TaskState};
use shoal_proto::control::{ApplyRequest, QueryRequest};
use shoal_proto::control_api;
use shoal_proto::convert::{tasks_from_json, StatusUpdate};
use shoal_proto::dispatcher::{AssignmentSet, SecretValue, StatusReport, TaskStatus};

fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden")
}

fn task() -> Task {
    Task {
        id: "t1".into(),
        service: "web".into(),
        service_version: 2,
        slot: 1,
        node: Some("n1".into()),
        desired_state: TaskState::Running,
        state: TaskState::Assigned,
        message: String::new(),
        exit_code: None,
        image_digest: None,
        spec: ContainerSpec {
            image: "busybox".into(),
            command: vec!["sleep".into(), "600".into()],
            ..Default::default()
        },
        restart_policy: Default::default(),
        mode: Default::default(),
        created_at: 1_000,
        updated_at: 2_000,
    }
}

fn create_web() -> UserCommand {
    UserCommand::CreateService {
        name: "web".into(),
        spec: ServiceSpec {
            container: ContainerSpec {
                image: "busybox".into(),
                ..Default::default()
            },
            replicas: 2,
            ..Default::default()
        },
    }
}

fn drain_n1() -> UserCommand {
    UserCommand::UpdateNode {
        name: "n1".into(),
        availability: Some(NodeAvailability::Drain),
        add_labels: vec![],
        remove_labels: vec![],
    }
}

fn tasks_of_web() -> Query {
    Query::Tasks {
        service: Some("web".into()),
        node: None,
    }
}

/// Every golden message, by file name.
fn messages() -> Vec<(&'static str, Vec<u8>)> {
    let assignments = AssignmentSet {
        tasks_json: serde_json::to_vec(&vec![task()]).expect("tasks serialize"),
        applied_index: 42,
        secrets: [(
            "pw".to_string(),
            SecretValue {
                version: 1,
                value: b"golden-pw".to_vec(),
                template: false,
            },
        )]
        .into(),
        revoked_serials: vec!["0b".into()],
        configs: Default::default(),
        members_json: Vec::new(),
        images_to_ready: Vec::new(),
    };
    let report = StatusReport {
        node: "n1".into(),
        updates: vec![TaskStatus {
            task_id: "t1".into(),
            state: "running".into(),
            message: "started".into(),
            has_exit_code: false,
            exit_code: 0,
            image_digest: String::new(),
        }],
    };
    vec![
        ("dispatcher_assignment_set.pb", assignments.encode_to_vec()),
        ("dispatcher_status_report.pb", report.encode_to_vec()),
        (
            "control_apply_create_service.pb",
            control_api::apply_request("golden-1", &create_web()).encode_to_vec(),
        ),
        (
            "control_apply_update_node.pb",
            control_api::apply_request("golden-2", &drain_n1()).encode_to_vec(),
        ),
        (
            "control_query_tasks.pb",
            control_api::query_request(&tasks_of_web(), true).encode_to_vec(),
        ),
    ]
}

fn read(name: &str) -> Vec<u8> {
    std::fs::read(dir().join(name)).unwrap_or_else(|e| panic!("golden file {name}: {e}"))
}

#[test]
#[ignore = "writes missing golden files; run with SHOAL_WRITE_GOLDEN=1 and --ignored"]
fn write_golden_files() {
    if std::env::var_os("SHOAL_WRITE_GOLDEN").is_none() {
        eprintln!("SHOAL_WRITE_GOLDEN is not set: nothing written");
        return;
    }
    std::fs::create_dir_all(dir()).expect("golden dir");
    for (name, bytes) in messages() {
        let path = dir().join(name);
        if !path.exists() {
            std::fs::write(&path, bytes).expect("write golden file");
            eprintln!("wrote {}", path.display());
        }
    }
}

#[test]
fn every_golden_message_exists() {
    for (name, _) in messages() {
        assert!(dir().join(name).exists(), "missing golden file {name}");
    }
}

#[test]
fn golden_dispatcher_messages_decode() {
    let set = AssignmentSet::decode(read("dispatcher_assignment_set.pb").as_slice())
        .expect("an assignment set");
    assert_eq!(
        tasks_from_json(&set.tasks_json).expect("tasks"),
        vec![task()]
    );
    assert_eq!(set.applied_index, 42);
    assert_eq!(set.secrets["pw"].value, b"golden-pw");
    assert_eq!(set.revoked_serials, ["0b"]);

    let report = StatusReport::decode(read("dispatcher_status_report.pb").as_slice())
        .expect("a status report");
    assert_eq!(report.node, "n1");
    let update = StatusUpdate::try_from(&report.updates[0]).expect("a status update");
    assert_eq!(update.task_id, "t1");
    assert_eq!(update.state, TaskState::Running);
    assert_eq!(update.exit_code, None);
}

#[test]
fn golden_control_requests_decode() {
    let req = ApplyRequest::decode(read("control_apply_create_service.pb").as_slice())
        .expect("an apply request");
    assert_eq!(req.request_id, "golden-1");
    assert_eq!(
        control_api::command_of(&req).expect("a command"),
        create_web()
    );
    let req = ApplyRequest::decode(read("control_apply_update_node.pb").as_slice())
        .expect("an apply request");
    assert_eq!(
        control_api::command_of(&req).expect("a command"),
        drain_n1()
    );
    let req =
        QueryRequest::decode(read("control_query_tasks.pb").as_slice()).expect("a query request");
    assert!(req.stale);
    assert_eq!(
        control_api::query_of(&req).expect("a query"),
        tasks_of_web()
    );
}
