//! Golden files: Raft log entries (one per command kind, plus a blank and a membership entry)
//! and a snapshot, as this build's code wrote them, checked in under `coordinator/tests/golden/`.
//! Every later build must still decode them: that is the storage half of the compatibility
//! promise in ARCHITECTURE.md.
//!
//! `SHOAL_WRITE_GOLDEN=1 cargo test -p shoal-coordinator --lib golden -- --ignored` writes the
//! files that are missing (a new command kind's) and never overwrites one.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use openraft::{CommittedLeaderId, EntryPayload, Membership};
use shoal_model::{
    ContainerSpec, Node, NodeAvailability, NodeResources, NodeRole, NodeStatus, SecretValue,
    ServiceSpec, Task, TaskState,
};
use shoal_pki::{CertAuthority, Role};

use super::state_machine::{decode_applied, Applied, SNAPSHOT_FORMAT};
use super::types::{Entry, LogId, SnapshotMeta, StoredMembership};
use crate::state::pki::{CertRecord, Redacted};
use crate::state::{Batch, ClusterState, Command, Reconcile, Request, TaskStatusUpdate};

fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden")
}

/// The file name of a command kind: its JSON `type` tag. Exhaustive on purpose: a new kind
/// does not compile until it is named here (and then needs a sample and a golden file).
fn kind(c: &Command) -> &'static str {
    match c {
        Command::InitCluster { .. } => "init_cluster",
        Command::CreateService { .. } => "create_service",
        Command::UpdateService { .. } => "update_service",
        Command::RemoveService { .. } => "remove_service",
        Command::RollbackService { .. } => "rollback_service",
        Command::PauseUpdate { .. } => "pause_update",
        Command::RegisterNode { .. } => "register_node",
        Command::NodeHeartbeat { .. } => "node_heartbeat",
        Command::ReportTaskStatus { .. } => "report_task_status",
        Command::ApplyStack { .. } => "apply_stack",
        Command::RemoveStack { .. } => "remove_stack",
        Command::UpdateNode { .. } => "update_node",
        Command::RemoveNode { .. } => "remove_node",
        Command::MarkNodeDown { .. } => "mark_node_down",
        Command::Reconcile(_) => "reconcile",
        Command::InitPki { .. } => "init_pki",
        Command::RecordCert { .. } => "record_cert",
        Command::RotateToken { .. } => "rotate_token",
        Command::RevokeCert { .. } => "revoke_cert",
        Command::RevokeMember { .. } => "revoke_member",
    }
}

fn spec(image: &str, replicas: u32) -> ServiceSpec {
    ServiceSpec {
        container: ContainerSpec {
            image: image.into(),
            command: vec!["sleep".into(), "600".into()],
            ..Default::default()
        },
        replicas,
        ..Default::default()
    }
}

fn node(name: &str) -> Node {
    Node {
        name: name.into(),
        role: NodeRole::Worker,
        labels: BTreeMap::from([("zone".into(), "a".into())]),
        availability: NodeAvailability::Active,
        status: NodeStatus::Ready,
        resources: NodeResources {
            cpu_millis: 4000,
            memory_bytes: 8 << 30,
        },
        address: "127.0.0.1:7100".into(),
        agent_version: "0.1.0".into(),
        runtime_version: "1.6.20".into(),
        registered_at: 1_000,
        last_heartbeat: 1_000,
        down_since: None,
    }
}

fn task(id: &str, service: &str, slot: u32) -> Task {
    Task {
        id: id.into(),
        service: service.into(),
        service_version: 1,
        slot,
        node: None,
        desired_state: TaskState::Running,
        state: TaskState::Pending,
        message: String::new(),
        exit_code: None,
        image_digest: None,
        spec: spec("busybox", 1).container,
        restart_policy: Default::default(),
        mode: Default::default(),
        created_at: 2_000,
        updated_at: 2_000,
    }
}

/// One command of every kind, in an order that applies cleanly to an empty state.
fn samples() -> Vec<Command> {
    let ca =
        CertAuthority::generate("golden", Duration::from_secs(3600)).expect("a test CA generates");
    let cert = |serial: &str, role: Role, name: &str| CertRecord {
        serial: serial.into(),
        role,
        name: name.into(),
        member_id: (role == Role::Coordinator).then_some(1),
        not_after: 4_000_000_000,
    };
    vec![
        Command::InitCluster {
            cluster_id: "golden-cluster".into(),
        },
        Command::InitPki {
            ca,
            agent_secret: Redacted("agent-secret".into()),
            coordinator_secret: Redacted("coordinator-secret".into()),
            issued: vec![cert("0a", Role::Coordinator, "coordinator-1")],
        },
        Command::RegisterNode { node: node("n1") },
        Command::NodeHeartbeat { name: "n1".into() },
        Command::CreateService {
            name: "web".into(),
            spec: spec("busybox", 2),
        },
        Command::UpdateService {
            name: "web".into(),
            spec: spec("busybox", 3),
        },
        Command::Reconcile(Box::new(Reconcile {
            create: vec![task("t1", "web", 1), task("t2", "web", 2)],
            assign: vec![("t1".into(), "n1".into())],
            unplaceable: vec![("t2".into(), "no node has room".into())],
            shutdown: vec![],
            orphan: vec![],
            forget: vec![],
            updates: Default::default(),
            rollbacks: Default::default(),
        })),
        Command::ReportTaskStatus {
            node: "n1".into(),
            updates: vec![TaskStatusUpdate {
                task_id: "t1".into(),
                state: TaskState::Running,
                message: "started".into(),
                exit_code: None,
                image_digest: None,
            }],
        },
        Command::ApplyStack {
            stack: "demo".into(),
            services: vec![("db".into(), {
                let mut s = spec("busybox", 1);
                s.container.secrets = vec![shoal_model::SecretRef::new("pw")];
                s
            })],
            secrets: vec![("pw".into(), SecretValue::new(b"golden-pw".to_vec()))],
            configs: vec![],
        },
        Command::UpdateNode {
            name: "n1".into(),
            availability: Some(NodeAvailability::Drain),
            add_labels: vec![("rack".into(), "r1".into())],
            remove_labels: vec!["zone".into()],
        },
        Command::RecordCert {
            cert: cert("0b", Role::Agent, "n1"),
            join_secret: Some(Redacted("agent-secret".into())),
        },
        Command::RotateToken {
            role: Role::Agent,
            secret: Redacted("agent-secret-2".into()),
        },
        Command::RevokeCert {
            serial: "0b".into(),
        },
        Command::RegisterNode { node: node("n2") },
        Command::MarkNodeDown { name: "n2".into() },
        Command::RemoveNode {
            name: "n2".into(),
            force: true,
        },
        Command::RemoveStack {
            stack: "demo".into(),
        },
        Command::RemoveService { name: "web".into() },
        Command::RevokeMember { member_id: 3 },
        // A rollout to pause and roll back (the first two kinds were sampled above).
        Command::CreateService {
            name: "api".into(),
            spec: spec("busybox", 2),
        },
        Command::UpdateService {
            name: "api".into(),
            spec: spec("busybox:2", 2),
        },
        Command::PauseUpdate {
            name: "api".into(),
            paused: true,
        },
        Command::RollbackService { name: "api".into() },
    ]
}

fn log_id(index: u64) -> LogId {
    LogId::new(CommittedLeaderId::new(1, 1), index)
}

/// The log entries as the store writes them, by file name.
fn entries() -> Vec<(String, Entry)> {
    let mut out = vec![
        (
            "blank".to_string(),
            Entry {
                log_id: log_id(1),
                payload: EntryPayload::Blank,
            },
        ),
        (
            "membership".to_string(),
            Entry {
                log_id: log_id(2),
                payload: EntryPayload::Membership(Membership::new(
                    vec![BTreeSet::from([1, 2, 3])],
                    None,
                )),
            },
        ),
    ];
    for (i, command) in samples().into_iter().enumerate() {
        let name = kind(&command).to_string();
        let request = Request {
            request_id: Some(format!("golden-{i}-{name}")),
            now: 10_000 + i as u64,
            command,
        };
        let entry = Entry {
            log_id: log_id(3 + i as u64),
            payload: EntryPayload::Normal(Batch(vec![request])),
        };
        out.push((name, entry));
    }
    out
}

/// The state after applying every sample, as snapshot metadata and data.
fn snapshot() -> (SnapshotMeta, Applied) {
    let mut state = ClusterState::default();
    let entries = entries();
    for (name, e) in &entries {
        if let EntryPayload::Normal(batch) = &e.payload {
            for r in &batch.0 {
                let response = state.apply(r);
                assert_eq!(response.error, None, "sample {name} is refused");
            }
        }
    }
    let last = entries.last().map(|(_, e)| e.log_id);
    let membership = StoredMembership::new(
        Some(log_id(2)),
        Membership::new(vec![BTreeSet::from([1, 2, 3])], None),
    );
    let meta = SnapshotMeta {
        last_log_id: last,
        last_membership: membership.clone(),
        snapshot_id: "golden-1".into(),
    };
    let applied = Applied {
        format: SNAPSHOT_FORMAT,
        state,
        last_applied: last,
        last_membership: membership,
    };
    (meta, applied)
}

/// Writes `bytes` to `path` unless the file exists: golden files are never rewritten.
fn write_new(path: &Path, bytes: &[u8]) {
    if path.exists() {
        return;
    }
    std::fs::create_dir_all(path.parent().expect("golden files live in a directory"))
        .expect("create golden dir");
    std::fs::write(path, bytes).expect("write golden file");
    eprintln!("wrote {}", path.display());
}

#[test]
#[ignore = "writes missing golden files; run with SHOAL_WRITE_GOLDEN=1 and --ignored"]
fn write_golden_files() {
    if std::env::var_os("SHOAL_WRITE_GOLDEN").is_none() {
        eprintln!("SHOAL_WRITE_GOLDEN is not set: nothing written");
        return;
    }
    // A kind sampled twice (two nodes register) is written once, from its first sample.
    for (name, entry) in entries() {
        let bytes = serde_json::to_vec_pretty(&entry).expect("entries serialize");
        write_new(&dir().join(format!("log/{name}.json")), &bytes);
    }
    let (meta, applied) = snapshot();
    let meta = serde_json::to_vec_pretty(&meta).expect("meta serializes");
    write_new(&dir().join("snapshot/meta.json"), &meta);
    // The data exactly as `build_snapshot` encodes it (compact).
    let data = serde_json::to_vec(&applied).expect("state serializes");
    write_new(&dir().join("snapshot/data.json"), &data);
}

#[test]
fn every_command_kind_has_a_golden_log_entry() {
    let files: BTreeSet<String> = std::fs::read_dir(dir().join("log"))
        .expect("coordinator/tests/golden/log exists")
        .map(|e| {
            let name = e.expect("dir entry").file_name();
            name.to_string_lossy().trim_end_matches(".json").to_string()
        })
        .collect();
    for (name, _) in entries() {
        assert!(
            files.contains(&name),
            "no golden log entry `{name}.json`: write it with SHOAL_WRITE_GOLDEN=1 cargo test \
             -p shoal-coordinator --lib golden -- --ignored"
        );
    }
}

#[test]
fn golden_log_entries_decode() {
    let mut decoded = 0;
    for file in std::fs::read_dir(dir().join("log")).expect("golden log dir") {
        let path = file.expect("dir entry").path();
        let name = path
            .file_stem()
            .expect("a file name")
            .to_string_lossy()
            .to_string();
        let bytes = std::fs::read(&path).expect("read golden file");
        let entry: Entry = serde_json::from_slice(&bytes)
            .unwrap_or_else(|e| panic!("{}: no longer decodes: {e}", path.display()));
        match (&entry.payload, name.as_str()) {
            (EntryPayload::Blank, "blank") | (EntryPayload::Membership(_), "membership") => {}
            (EntryPayload::Normal(batch), _) => {
                assert_eq!(batch.0.len(), 1, "{name}");
                assert_eq!(kind(&batch.0[0].command), name, "{}", path.display());
                let id = batch.0[0].request_id.as_deref().unwrap_or_default();
                assert!(
                    id.starts_with("golden-") && id.ends_with(&name),
                    "{name}: {id}"
                );
            }
            (other, _) => panic!("{}: unexpected payload {other:?}", path.display()),
        }
        decoded += 1;
    }
    assert!(decoded >= 20, "only {decoded} golden log entries");
}

#[test]
fn golden_snapshot_decodes_into_the_state_it_was_taken_from() {
    let meta = std::fs::read(dir().join("snapshot/meta.json")).expect("golden snapshot meta");
    let meta: SnapshotMeta = serde_json::from_slice(&meta).expect("snapshot meta decodes");
    let data = std::fs::read(dir().join("snapshot/data.json")).expect("golden snapshot data");
    let applied = decode_applied(&meta, &data).expect("snapshot data decodes");
    let s = &applied.state;
    assert_eq!(s.cluster_id.as_deref(), Some("golden-cluster"));
    assert!(s.services.is_empty(), "web and the stack were removed");
    assert_eq!(s.nodes.keys().collect::<Vec<_>>(), ["n1"], "n2 was removed");
    assert_eq!(s.nodes["n1"].availability, NodeAvailability::Drain);
    assert!(s
        .events
        .iter()
        .any(|e| e.object == "web" && e.action == "create"));
    assert_eq!(applied.last_applied, meta.last_log_id);
}

#[test]
fn the_samples_apply_without_refusal() {
    let (_, applied) = snapshot();
    assert_eq!(applied.state.cluster_id.as_deref(), Some("golden-cluster"));
}

#[test]
fn newer_snapshot_data_is_refused_and_older_reads() {
    let (meta, mut applied) = snapshot();
    applied.format = SNAPSHOT_FORMAT + 1;
    let data = serde_json::to_vec(&applied).expect("serializes");
    let e = decode_applied(&meta, &data).expect_err("too new");
    assert!(e.to_string().contains("newer than this build"), "{e}");
    // Data written before the field (no `format`) reads as version 1.
    let mut v = serde_json::to_value(&applied).expect("value");
    v.as_object_mut().expect("an object").remove("format");
    let data = serde_json::to_vec(&v).expect("serializes");
    let applied = decode_applied(&meta, &data).expect("old data reads");
    assert_eq!(applied.format, SNAPSHOT_FORMAT);
}
