//! Unit tests for the sled store: reopening, corruption, purge/truncate, snapshots, identity keys.

use std::collections::BTreeSet;
use std::path::Path;

use openraft::storage::{RaftLogStorage, RaftLogStorageExt, RaftStateMachine};
use openraft::testing::{blank_ent, log_id, membership_ent};
use openraft::{EntryPayload, RaftLogReader, RaftSnapshotBuilder};

use super::*;
use crate::raft::types::TypeConfig;
use crate::state::{Batch, Command, Request, Response};

fn open(dir: &Path) -> Store {
    Store::open(dir).expect("open store")
}

/// Whatever `Store::open` refused with, as its message; panics if it opened.
fn refusal(dir: &Path) -> String {
    match Store::open(dir) {
        Ok(_) => panic!(
            "store at {} opened but should have been refused",
            dir.display()
        ),
        Err(e) => e.to_string(),
    }
}

fn init_cluster(term: u64, index: u64, cluster_id: &str) -> Entry {
    let command = Command::InitCluster {
        cluster_id: cluster_id.to_owned(),
    };
    Entry {
        log_id: log_id(term, 1, index),
        payload: EntryPayload::Normal(
            Request {
                request_id: None,
                now: 1_000,
                command,
            }
            .into(),
        ),
    }
}

/// Appends blank entries `indexes` in term 1.
async fn append_blank(store: &Store, indexes: std::ops::RangeInclusive<u64>) {
    let entries: Vec<Entry> = indexes.map(|i| blank_ent::<TypeConfig>(1, 1, i)).collect();
    store
        .log_store()
        .blocking_append(entries)
        .await
        .expect("append");
}

/// Every key in the `logs` tree, raw.
fn raw_log_keys(store: &Store) -> Vec<Vec<u8>> {
    let logs = store.db.open_tree(LOGS_TREE).expect("logs tree");
    logs.iter()
        .keys()
        .map(|k| k.expect("key").to_vec())
        .collect()
}

/// Opens the database under `dir` with sled alone, lets `f` change it, and flushes.
fn with_raw_db(dir: &Path, f: impl FnOnce(&sled::Db)) {
    let db = open_sled(dir).expect("raw sled open");
    f(&db);
    db.flush().expect("raw flush");
}

#[tokio::test]
async fn reopen_keeps_vote_log_and_committed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let vote = Vote::new(3, 2);
    let committed = Some(log_id(1, 1, 3));
    {
        let store = open(dir.path());
        append_blank(&store, 0..=2).await;
        store
            .log_store()
            .blocking_append([init_cluster(1, 3, "c1")])
            .await
            .expect("append");
        let mut log = store.log_store();
        log.save_vote(&vote).await.expect("save vote");
        log.save_committed(committed).await.expect("save committed");
    }
    let store = open(dir.path());
    let mut log = store.log_store();
    assert_eq!(log.read_vote().await.expect("read vote"), Some(vote));
    assert_eq!(
        log.read_committed().await.expect("read committed"),
        committed
    );
    let state = log.get_log_state().await.expect("log state");
    assert_eq!(state.last_purged_log_id, None);
    assert_eq!(state.last_log_id, Some(log_id(1, 1, 3)));
    let entries = log.try_get_log_entries(..).await.expect("entries");
    let ids: Vec<u64> = entries.iter().map(|e| e.log_id.index).collect();
    assert_eq!(ids, vec![0, 1, 2, 3]);
    assert!(matches!(&entries[3].payload, EntryPayload::Normal(Batch(r)) if r[0].now == 1_000));
    let some = log.try_get_log_entries(1..3).await.expect("entries");
    assert_eq!(
        some.iter().map(|e| e.log_id.index).collect::<Vec<_>>(),
        vec![1, 2]
    );
}

#[tokio::test]
async fn committed_can_be_cleared() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open(dir.path());
    let mut log = store.log_store();
    log.save_committed(Some(log_id(1, 1, 4)))
        .await
        .expect("save");
    log.save_committed(None).await.expect("clear");
    assert_eq!(log.read_committed().await.expect("read"), None);
}

#[test]
fn first_open_writes_format_version_and_reopens() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("data");
    drop(open(&path));
    drop(open(&path));
    with_raw_db(&path, |db| {
        let meta = db.open_tree(META_TREE).expect("meta tree");
        let version = meta
            .get(FORMAT_VERSION_KEY)
            .expect("get")
            .expect("format_version key");
        assert_eq!(version.as_ref(), FORMAT_VERSION.as_bytes());
    });
}

#[tokio::test]
async fn corrupt_log_entry_is_refused_without_writing() {
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let store = open(dir.path());
        append_blank(&store, 0..=5).await;
    }
    with_raw_db(dir.path(), |db| {
        let logs = db.open_tree(LOGS_TREE).expect("logs tree");
        logs.insert(log_key(3), &b"{not json"[..])
            .expect("insert garbage");
    });
    let msg = refusal(dir.path());
    assert!(msg.contains(&dir.path().display().to_string()), "{msg}");
    assert!(msg.contains("corrupt log entry at index 3"), "{msg}");
    // The refused open changed nothing: the garbage is still there, nothing else was added.
    with_raw_db(dir.path(), |db| {
        let logs = db.open_tree(LOGS_TREE).expect("logs tree");
        let raw = logs.get(log_key(3)).expect("get").expect("entry 3");
        assert_eq!(raw.as_ref(), b"{not json");
        assert_eq!(logs.len(), 6);
    });
}

#[tokio::test]
async fn log_with_a_hole_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let store = open(dir.path());
        append_blank(&store, 0..=5).await;
    }
    with_raw_db(dir.path(), |db| {
        let logs = db.open_tree(LOGS_TREE).expect("logs tree");
        logs.remove(log_key(2)).expect("remove");
    });
    let msg = refusal(dir.path());
    assert!(
        msg.contains("corrupt log entry at index 3: the log has a hole after index 1"),
        "{msg}"
    );
}

#[tokio::test]
async fn corrupt_vote_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let store = open(dir.path());
        store
            .log_store()
            .save_vote(&Vote::new(1, 1))
            .await
            .expect("save vote");
    }
    with_raw_db(dir.path(), |db| {
        let raft = db.open_tree(RAFT_TREE).expect("raft tree");
        raft.insert(VOTE_KEY, &b"\x00\x01"[..])
            .expect("insert garbage");
    });
    let msg = refusal(dir.path());
    assert!(msg.contains("corrupt vote"), "{msg}");
}

#[tokio::test]
async fn corrupt_snapshot_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let store = open(dir.path());
        let mut sm = store.state_machine();
        sm.apply([init_cluster(1, 1, "c1")]).await.expect("apply");
        sm.get_snapshot_builder()
            .await
            .build_snapshot()
            .await
            .expect("build");
    }
    with_raw_db(dir.path(), |db| {
        let snapshot = db.open_tree(SNAPSHOT_TREE).expect("snapshot tree");
        snapshot
            .insert(SNAPSHOT_DATA_KEY, &b"[1, 2"[..])
            .expect("insert garbage");
    });
    let msg = refusal(dir.path());
    assert!(msg.contains("corrupt snapshot `"), "{msg}");
}

#[test]
fn wrong_format_version_is_refused_without_writing() {
    let dir = tempfile::tempdir().expect("tempdir");
    drop(open(dir.path()));
    with_raw_db(dir.path(), |db| {
        let meta = db.open_tree(META_TREE).expect("meta tree");
        meta.insert(FORMAT_VERSION_KEY, "99").expect("insert");
    });
    let msg = refusal(dir.path());
    assert!(msg.contains("unsupported format version `99`"), "{msg}");
    with_raw_db(dir.path(), |db| {
        let meta = db.open_tree(META_TREE).expect("meta tree");
        let version = meta.get(FORMAT_VERSION_KEY).expect("get").expect("key");
        assert_eq!(version.as_ref(), b"99");
    });
}

#[test]
fn missing_format_version_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    drop(open(dir.path()));
    with_raw_db(dir.path(), |db| {
        let meta = db.open_tree(META_TREE).expect("meta tree");
        meta.remove(FORMAT_VERSION_KEY).expect("remove");
    });
    let msg = refusal(dir.path());
    assert!(
        msg.contains("corrupt format version: the key is missing"),
        "{msg}"
    );
}

#[test]
fn foreign_sled_database_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    with_raw_db(dir.path(), |db| {
        db.insert("hello", "world").expect("insert");
    });
    let msg = refusal(dir.path());
    assert!(msg.contains("corrupt tree `logs`: missing"), "{msg}");
}

#[test]
fn garbage_sled_files_are_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("conf"), b"this is not a sled config").expect("write conf");
    std::fs::write(dir.path().join("db"), vec![0xAB; 4096]).expect("write db");
    let msg = refusal(dir.path());
    assert!(msg.contains("sled refused to open the database"), "{msg}");
    assert!(msg.contains(&dir.path().display().to_string()), "{msg}");
}

#[test]
fn directory_of_other_files_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("notes.txt"), b"hello").expect("write");
    let msg = refusal(dir.path());
    assert!(msg.contains("not a store"), "{msg}");
    let names: Vec<_> = std::fs::read_dir(dir.path()).expect("read dir").collect();
    assert_eq!(
        names.len(),
        1,
        "open must not create files among someone else's"
    );
}

#[tokio::test]
async fn purge_and_truncate_leave_no_stray_keys() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open(dir.path());
    let mut log = store.log_store();
    append_blank(&store, 0..=10).await;

    log.purge(log_id(1, 1, 3)).await.expect("purge");
    let mut expected: Vec<Vec<u8>> = vec![LAST_PURGED_KEY.to_vec()];
    expected.extend((4..=10).map(|i| log_key(i).to_vec()));
    assert_eq!(raw_log_keys(&store), expected);

    log.truncate(log_id(1, 1, 8)).await.expect("truncate");
    expected.truncate(1 + 4); // the marker and 4..=7
    assert_eq!(raw_log_keys(&store), expected);

    let state = log.get_log_state().await.expect("log state");
    assert_eq!(state.last_purged_log_id, Some(log_id(1, 1, 3)));
    assert_eq!(state.last_log_id, Some(log_id(1, 1, 7)));
    let all = log.try_get_log_entries(..).await.expect("entries");
    assert_eq!(
        all.iter().map(|e| e.log_id.index).collect::<Vec<_>>(),
        vec![4, 5, 6, 7]
    );

    // Purging everything leaves only the marker, which then is the last log id.
    log.purge(log_id(1, 1, 7)).await.expect("purge all");
    assert_eq!(raw_log_keys(&store), vec![LAST_PURGED_KEY.to_vec()]);
    let state = log.get_log_state().await.expect("log state");
    assert_eq!(state.last_log_id, Some(log_id(1, 1, 7)));

    drop((log, store));
    let store = open(dir.path());
    let state = store
        .log_store()
        .get_log_state()
        .await
        .expect("log state after reopen");
    assert_eq!(state.last_purged_log_id, Some(log_id(1, 1, 7)));
}

#[tokio::test]
async fn snapshot_build_and_reopen_restores_state() {
    let dir = tempfile::tempdir().expect("tempdir");
    let voters: BTreeSet<u64> = [1, 2, 3].into();
    let built = {
        let store = open(dir.path());
        let mut sm = store.state_machine();
        let responses = sm
            .apply([
                membership_ent::<TypeConfig>(1, 1, 1, vec![voters.clone()]),
                init_cluster(1, 2, "c-42"),
                blank_ent::<TypeConfig>(1, 1, 3),
            ])
            .await
            .expect("apply");
        assert_eq!(responses.len(), 3);
        // Blank and membership entries carry no requests; the batch of one gets one answer.
        assert_eq!(responses[0], Vec::<Response>::new());
        assert_eq!(responses[1], vec![Response::ok()]);
        assert_eq!(responses[2], Vec::<Response>::new());
        let snapshot = sm
            .get_snapshot_builder()
            .await
            .build_snapshot()
            .await
            .expect("build");
        assert_eq!(snapshot.meta.last_log_id, Some(log_id(1, 1, 3)));
        // Applied after the snapshot: not persisted, openraft replays it from the log.
        sm.apply([blank_ent::<TypeConfig>(1, 1, 4)])
            .await
            .expect("apply");
        assert_eq!(sm.applied_index(), 4);
        snapshot.meta
    };

    let store = open(dir.path());
    let mut sm = store.state_machine();
    assert_eq!(sm.read(|s| s.cluster_id.clone()), Some("c-42".to_owned()));
    assert_eq!(sm.applied_index(), 3);
    assert_eq!(*sm.watch_applied().borrow(), 3);
    let (last_applied, membership) = sm.applied_state().await.expect("applied state");
    assert_eq!(last_applied, Some(log_id(1, 1, 3)));
    assert_eq!(membership.log_id(), &Some(log_id(1, 1, 1)));
    assert_eq!(membership.voter_ids().collect::<BTreeSet<_>>(), voters);
    let current = sm
        .get_current_snapshot()
        .await
        .expect("current")
        .expect("a snapshot");
    assert_eq!(current.meta, built);
}

#[tokio::test]
async fn install_snapshot_replaces_state_and_bumps_watch() {
    let leader_dir = tempfile::tempdir().expect("tempdir");
    let follower_dir = tempfile::tempdir().expect("tempdir");
    let leader = open(leader_dir.path());
    let follower = open(follower_dir.path());

    let mut sm_l = leader.state_machine();
    sm_l.apply([init_cluster(2, 7, "c-7")])
        .await
        .expect("apply");
    let snapshot = sm_l
        .get_snapshot_builder()
        .await
        .build_snapshot()
        .await
        .expect("build");

    let mut sm_f = follower.state_machine();
    let mut applied_rx = sm_f.watch_applied();
    sm_f.apply([init_cluster(1, 1, "other")])
        .await
        .expect("apply");
    assert!(applied_rx.has_changed().expect("sender alive"));
    assert_eq!(*applied_rx.borrow_and_update(), 1);

    let mut received = sm_f.begin_receiving_snapshot().await.expect("begin");
    *received = *snapshot.snapshot;
    sm_f.install_snapshot(&snapshot.meta, received)
        .await
        .expect("install");
    assert!(applied_rx.has_changed().expect("sender alive"));
    assert_eq!(*applied_rx.borrow_and_update(), 7);
    assert_eq!(sm_f.read(|s| s.cluster_id.clone()), Some("c-7".to_owned()));
    let current = sm_f
        .get_current_snapshot()
        .await
        .expect("current")
        .expect("a snapshot");
    assert_eq!(current.meta, snapshot.meta);

    // The installed snapshot is what a restart starts from.
    drop((sm_f, follower));
    let follower = open(follower_dir.path());
    assert_eq!(follower.state_machine().applied_index(), 7);
    let cluster_id = follower.state_machine().read(|s| s.cluster_id.clone());
    assert_eq!(cluster_id, Some("c-7".to_owned()));
}

#[test]
fn meta_keys_round_trip_and_persist() {
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let store = open(dir.path());
        assert_eq!(store.meta_get("node_id").expect("get"), None);
        store.meta_set("node_id", "3").expect("set");
        store.meta_set("cluster_id", "c-1").expect("set");
        let err = store
            .meta_set(FORMAT_VERSION_KEY, "2")
            .expect_err("reserved");
        assert!(
            err.to_string()
                .contains("meta key `format_version` is reserved"),
            "{err}"
        );
    }
    let store = open(dir.path());
    assert_eq!(
        store.meta_get("node_id").expect("get").as_deref(),
        Some("3")
    );
    assert_eq!(
        store.meta_get("cluster_id").expect("get").as_deref(),
        Some("c-1")
    );
}

#[test]
fn second_open_of_an_open_store_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let _first = open(dir.path());
    let msg = refusal(dir.path());
    assert!(msg.contains("sled refused to open the database"), "{msg}");
}
