//! The Raft state machine: [`ClusterState`] in memory, persisted only through snapshots in sled.
//!
//! After a restart the state is the last snapshot's, and openraft replays the committed log after
//! it (`applied_state` reports the snapshot's last log id).

// openraft's traits return its `StorageError` (over 200 bytes); the helpers here return the same
// type so that `?` carries it through unchanged.
#![allow(clippy::result_large_err)]

use std::io::Cursor;
use std::sync::{Arc, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};

use openraft::storage::RaftStateMachine;
use openraft::{
    AnyError, EntryPayload, ErrorSubject, ErrorVerb, OptionalSend, RaftSnapshotBuilder,
    StorageError, StorageIOError,
};
use serde::{Deserialize, Serialize};
use tokio::sync::{watch, Mutex, MutexGuard};

use super::disk_sync::DiskSync;
use super::store::{read_json, Corruption, SNAPSHOT_DATA_KEY, SNAPSHOT_META_KEY, SNAPSHOT_SEQ_KEY};
use super::types::{Entry, LogId, NodeId, Snapshot, SnapshotMeta, StoredMembership, TypeConfig};
use crate::state::{Batch, ClusterState, Response};

type StorageResult<T> = Result<T, StorageError<NodeId>>;

fn snapshot_err(
    meta: Option<&SnapshotMeta>,
    verb: ErrorVerb,
    e: &(impl std::error::Error + 'static),
) -> StorageError<NodeId> {
    let subject = ErrorSubject::Snapshot(meta.map(|m| m.signature()));
    StorageIOError::new(subject, verb, AnyError::new(e)).into()
}

/// The snapshot data format this build writes (`Applied::format`). Version 1 is the first with
/// the field; data without it (0) was written before and reads as version 1. A build refuses
/// snapshot data of a newer format than its own.
pub(crate) const SNAPSHOT_FORMAT: u32 = 1;

/// Everything the state machine holds; also the JSON format of snapshot data.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(crate) struct Applied {
    /// The snapshot data format ([`SNAPSHOT_FORMAT`] when written; 0 before the field).
    #[serde(default)]
    pub format: u32,
    pub state: ClusterState,
    pub last_applied: Option<LogId>,
    pub last_membership: StoredMembership,
}

/// Snapshot data of a newer format than this build reads.
#[derive(Debug, thiserror::Error)]
pub(crate) enum SnapshotDecodeError {
    #[error("invalid snapshot data: {0}")]
    Json(#[from] serde_json::Error),
    #[error(
        "snapshot data format {0} is newer than this build's ({SNAPSHOT_FORMAT}); run a newer \
         shoal-coordinator"
    )]
    TooNew(u32),
}

/// A stored snapshot, decoded: its metadata and the state it holds.
#[derive(Debug)]
pub(crate) struct SnapshotImage {
    pub meta: SnapshotMeta,
    pub applied: Applied,
}

impl SnapshotImage {
    /// Reads and decodes the current snapshot from the `snapshot` tree, if there is one.
    pub(crate) fn load(tree: &sled::Tree) -> Result<Option<SnapshotImage>, Corruption> {
        let meta: Option<SnapshotMeta> = read_json(tree, SNAPSHOT_META_KEY, "snapshot metadata")?;
        read_json::<u64>(tree, SNAPSHOT_SEQ_KEY, "snapshot counter")?;
        let data = tree
            .get(SNAPSHOT_DATA_KEY)
            .map_err(|e| Corruption::new("snapshot data", e))?;
        let (meta, data) = match (meta, data) {
            (None, None) => return Ok(None),
            (Some(meta), Some(data)) => (meta, data),
            (Some(_), None) => return Err(Corruption::new("snapshot", "metadata without data")),
            (None, Some(_)) => return Err(Corruption::new("snapshot", "data without metadata")),
        };
        let applied = decode_applied(&meta, &data)
            .map_err(|e| Corruption::new(format!("snapshot `{}`", meta.snapshot_id), e))?;
        Ok(Some(SnapshotImage { meta, applied }))
    }
}

/// Decodes snapshot data; the metadata is authoritative for last applied and membership.
pub(crate) fn decode_applied(
    meta: &SnapshotMeta,
    data: &[u8],
) -> Result<Applied, SnapshotDecodeError> {
    let mut applied: Applied = serde_json::from_slice(data)?;
    if applied.format > SNAPSHOT_FORMAT {
        return Err(SnapshotDecodeError::TooNew(applied.format));
    }
    applied.format = SNAPSHOT_FORMAT;
    applied.last_applied = meta.last_log_id;
    applied.last_membership = meta.last_membership.clone();
    Ok(applied)
}

/// Snapshots this member built since it started, and the last one's cost (for metrics).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct SnapshotBuilds {
    pub count: u64,
    pub last_seconds: f64,
    pub last_bytes: u64,
}

/// The Raft state machine and snapshot store. Clones share the same state.
#[derive(Clone)]
pub struct StateMachineStore {
    applied: Arc<RwLock<Applied>>,
    applied_tx: Arc<watch::Sender<u64>>,
    builds_tx: Arc<watch::Sender<SnapshotBuilds>>,
    snapshots: sled::Tree,
    /// Makes a stored snapshot durable (sled's own flush is not).
    disk: DiskSync,
    /// Serializes writes of the current snapshot (a build runs concurrently with installs).
    snapshot_write: Arc<Mutex<()>>,
}

impl std::fmt::Debug for StateMachineStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StateMachineStore")
            .field("applied_index", &self.applied_index())
            .finish_non_exhaustive()
    }
}

fn index_of(log_id: Option<LogId>) -> u64 {
    log_id.map_or(0, |l| l.index)
}

impl StateMachineStore {
    pub(crate) fn new(snapshots: sled::Tree, image: Option<SnapshotImage>, disk: DiskSync) -> Self {
        let applied = image.map(|i| i.applied).unwrap_or_default();
        let (applied_tx, _) = watch::channel(index_of(applied.last_applied));
        Self {
            applied: Arc::new(RwLock::new(applied)),
            applied_tx: Arc::new(applied_tx),
            builds_tx: Arc::new(watch::channel(SnapshotBuilds::default()).0),
            snapshots,
            disk,
            snapshot_write: Arc::new(Mutex::new(())),
        }
    }

    /// Follows the snapshots this member builds.
    pub fn watch_snapshot_builds(&self) -> watch::Receiver<SnapshotBuilds> {
        self.builds_tx.subscribe()
    }

    // Poisoning is ignored: the lock is only written by `apply` (which panics only if
    // `ClusterState::apply` does, taking openraft's state machine worker down with it) and by a
    // whole-value swap in `install_snapshot`; readers may still look at the last state.
    fn lock_read(&self) -> RwLockReadGuard<'_, Applied> {
        self.applied.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn lock_write(&self) -> RwLockWriteGuard<'_, Applied> {
        self.applied.write().unwrap_or_else(PoisonError::into_inner)
    }

    /// Runs `f` on the current cluster state.
    pub fn read<R>(&self, f: impl FnOnce(&ClusterState) -> R) -> R {
        f(&self.lock_read().state)
    }

    /// Runs `f` on the current cluster state; also the index of the last entry applied to that
    /// very state (read under the same lock).
    pub fn read_at<R>(&self, f: impl FnOnce(&ClusterState) -> R) -> (R, u64) {
        let applied = self.lock_read();
        (f(&applied.state), index_of(applied.last_applied))
    }

    /// Index of the last applied log entry; 0 when nothing has been applied.
    pub fn applied_index(&self) -> u64 {
        index_of(self.lock_read().last_applied)
    }

    /// A receiver of the applied index, updated after each apply and snapshot install.
    pub fn watch_applied(&self) -> watch::Receiver<u64> {
        self.applied_tx.subscribe()
    }

    /// Stores `meta` + `data` as the current snapshot and flushes. A built snapshot (`seq` is its
    /// build number) does not replace a newer stored one, which an install may have put there
    /// while it was being built; an installed snapshot (`seq` is `None`) always replaces. The
    /// caller holds `snapshot_write` (`_held`), for a build since reading the counter.
    async fn store_snapshot(
        &self,
        _held: &MutexGuard<'_, ()>,
        meta: &SnapshotMeta,
        data: &[u8],
        seq: Option<u64>,
    ) -> StorageResult<()> {
        let mut batch = sled::Batch::default();
        let mut newer_stored = false;
        if let Some(seq) = seq {
            let current: Option<SnapshotMeta> =
                read_json(&self.snapshots, SNAPSHOT_META_KEY, "snapshot metadata")
                    .map_err(|c| c.into_storage(ErrorSubject::Snapshot(None)))?;
            newer_stored = current.is_some_and(|c| c.last_log_id > meta.last_log_id);
            let seq = serde_json::to_vec(&seq)
                .map_err(|e| snapshot_err(Some(meta), ErrorVerb::Write, &e))?;
            batch.insert(SNAPSHOT_SEQ_KEY, seq);
        }
        if !newer_stored {
            let meta_bytes = serde_json::to_vec(meta)
                .map_err(|e| snapshot_err(Some(meta), ErrorVerb::Write, &e))?;
            batch.insert(SNAPSHOT_META_KEY, meta_bytes);
            batch.insert(SNAPSHOT_DATA_KEY, data);
        }
        self.snapshots
            .apply_batch(batch)
            .map_err(|e| snapshot_err(Some(meta), ErrorVerb::Write, &e))?;
        self.disk
            .flush_async(&self.snapshots)
            .await
            .map_err(|e| snapshot_err(Some(meta), ErrorVerb::Write, &e))?;
        Ok(())
    }

    fn next_snapshot_seq(&self, _held: &MutexGuard<'_, ()>) -> StorageResult<u64> {
        let seq: Option<u64> = read_json(&self.snapshots, SNAPSHOT_SEQ_KEY, "snapshot counter")
            .map_err(|c| c.into_storage(ErrorSubject::Snapshot(None)))?;
        Ok(seq.unwrap_or(0) + 1)
    }
}

impl RaftSnapshotBuilder<TypeConfig> for StateMachineStore {
    async fn build_snapshot(&mut self) -> StorageResult<Snapshot> {
        let started = std::time::Instant::now();
        // Copy the state under the lock and encode the copy after releasing it: `apply` waits
        // for the lock, and encoding a large state (17 MB, 100,000 request ids) took 30-80 ms,
        // which every write committed meanwhile waited out; the copy takes about half of that
        // (see `DedupId`). Both run on a blocking thread so that they do not hold up other
        // tasks on the runtime either.
        let applied = self.applied.clone();
        let (cloned, last_applied, last_membership, data) =
            tokio::task::spawn_blocking(move || {
                let mut copy = applied
                    .read()
                    .unwrap_or_else(PoisonError::into_inner)
                    .clone();
                copy.format = SNAPSHOT_FORMAT;
                let cloned = started.elapsed();
                let data = serde_json::to_vec(&copy);
                (cloned, copy.last_applied, copy.last_membership, data)
            })
            .await
            .map_err(|e| snapshot_err(None, ErrorVerb::Read, &e))?;
        let data = data.map_err(|e| {
            StorageIOError::new(
                ErrorSubject::StateMachine,
                ErrorVerb::Read,
                AnyError::new(&e),
            )
        })?;
        let held = self.snapshot_write.lock().await;
        let seq = self.next_snapshot_seq(&held)?;
        let snapshot_id = match last_applied {
            Some(l) => format!("{}-{}-{seq}", l.leader_id, l.index),
            None => format!("none-{seq}"),
        };
        let meta = SnapshotMeta {
            last_log_id: last_applied,
            last_membership,
            snapshot_id,
        };
        self.store_snapshot(&held, &meta, &data, Some(seq)).await?;
        drop(held);
        self.builds_tx.send_modify(|b| {
            b.count += 1;
            b.last_seconds = started.elapsed().as_secs_f64();
            b.last_bytes = data.len() as u64;
        });
        tracing::info!(
            snapshot_id = %meta.snapshot_id,
            bytes = data.len(),
            lock_held_ms = cloned.as_secs_f64() * 1000.0,
            total_ms = started.elapsed().as_secs_f64() * 1000.0,
            "built snapshot"
        );
        Ok(Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(data)),
        })
    }
}

impl RaftStateMachine<TypeConfig> for StateMachineStore {
    type SnapshotBuilder = StateMachineStore;

    async fn applied_state(&mut self) -> StorageResult<(Option<LogId>, StoredMembership)> {
        let applied = self.lock_read();
        Ok((applied.last_applied, applied.last_membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> StorageResult<Vec<Vec<Response>>>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let mut responses = Vec::new();
        let last_index = {
            let mut applied = self.lock_write();
            for entry in entries {
                let response = match &entry.payload {
                    EntryPayload::Blank => Vec::new(),
                    // One response per request, in order: the batcher pairs them up by position.
                    EntryPayload::Normal(Batch(requests)) => {
                        requests.iter().map(|r| applied.state.apply(r)).collect()
                    }
                    EntryPayload::Membership(membership) => {
                        applied.last_membership =
                            StoredMembership::new(Some(entry.log_id), membership.clone());
                        Vec::new()
                    }
                };
                applied.last_applied = Some(entry.log_id);
                responses.push(response);
            }
            index_of(applied.last_applied)
        };
        self.applied_tx.send_replace(last_index);
        Ok(responses)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.clone()
    }

    async fn begin_receiving_snapshot(&mut self) -> StorageResult<Box<Cursor<Vec<u8>>>> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> StorageResult<()> {
        let data = snapshot.into_inner();
        let applied = decode_applied(meta, &data)
            .map_err(|e| snapshot_err(Some(meta), ErrorVerb::Read, &e))?;
        let held = self.snapshot_write.lock().await;
        self.store_snapshot(&held, meta, &data, None).await?;
        drop(held);
        *self.lock_write() = applied;
        self.applied_tx.send_replace(index_of(meta.last_log_id));
        tracing::info!(snapshot_id = %meta.snapshot_id, "installed snapshot");
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> StorageResult<Option<Snapshot>> {
        // Meta and data are read under the write lock so that they belong together.
        let _guard = self.snapshot_write.lock().await;
        let meta: Option<SnapshotMeta> =
            read_json(&self.snapshots, SNAPSHOT_META_KEY, "snapshot metadata")
                .map_err(|c| c.into_storage(ErrorSubject::Snapshot(None)))?;
        let Some(meta) = meta else {
            return Ok(None);
        };
        let data = self
            .snapshots
            .get(SNAPSHOT_DATA_KEY)
            .map_err(|e| snapshot_err(Some(&meta), ErrorVerb::Read, &e))?;
        let Some(data) = data else {
            let msg = "snapshot metadata without data";
            return Err(StorageIOError::new(
                ErrorSubject::Snapshot(Some(meta.signature())),
                ErrorVerb::Read,
                AnyError::error(msg),
            )
            .into());
        };
        Ok(Some(Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(data.to_vec())),
        }))
    }
}
