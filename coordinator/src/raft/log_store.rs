//! The Raft log storage on sled: entries, vote, committed log id and purge marker.
//!
//! Invariant: every append, vote, truncate and purge is on stable storage (sled's flush, then
//! the `fdatasync`/`fsync` of [`DiskSync`]) before it is reported done; truncate and purge are
//! each one atomic sled batch. The committed log id is written without a flush (see
//! [`RaftLogStorage::save_committed`] below).

// openraft's traits return its `StorageError` (over 200 bytes); the helpers here return the same
// type so that `?` carries it through unchanged.
#![allow(clippy::result_large_err)]

use std::fmt::Debug;
use std::ops::{Bound, RangeBounds};

use openraft::storage::{LogFlushed, LogState, RaftLogStorage};
use openraft::{
    AnyError, ErrorSubject, ErrorVerb, OptionalSend, RaftLogReader, StorageError, StorageIOError,
};
use serde::Serialize;

use super::disk_sync::DiskSync;
use super::log_cache::LogCache;
use super::store::{log_key, parse_log_key, read_json, COMMITTED_KEY, LAST_PURGED_KEY, VOTE_KEY};
use super::types::{Entry, LogId, NodeId, TypeConfig, Vote};

type StorageResult<T> = Result<T, StorageError<NodeId>>;

/// Most encoded bytes of log entries in one AppendEntries (at least one entry is always sent).
/// An entry is a batch of up to 256 requests; openraft gives each AppendEntries only the
/// heartbeat interval to complete, so a catch-up payload must stay small enough to be sent,
/// decoded and synced to disk by the follower well within it, or it times out again and again
/// (issue 11: 300 such entries after a leader change took seconds).
pub const MAX_PAYLOAD_BYTES: usize = 256 << 10;

fn sto_err(
    subject: ErrorSubject<NodeId>,
    verb: ErrorVerb,
    e: &(impl std::error::Error + 'static),
) -> StorageError<NodeId> {
    StorageIOError::new(subject, verb, AnyError::new(e)).into()
}

/// Raft log storage. Clones share the same sled trees; openraft uses clones as log readers.
#[derive(Clone)]
pub struct LogStore {
    /// Entries under [`log_key`], and the purge marker under [`LAST_PURGED_KEY`].
    logs: sled::Tree,
    /// Vote and committed log id.
    raft: sled::Tree,
    /// The last entries appended, decoded, for replication to read without sled.
    recent: LogCache,
    /// Makes a flush durable (sled's own is not).
    disk: DiskSync,
}

impl Debug for LogStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogStore").finish_non_exhaustive()
    }
}

impl LogStore {
    pub(crate) fn new(logs: sled::Tree, raft: sled::Tree, disk: DiskSync) -> Self {
        Self {
            logs,
            raft,
            recent: LogCache::default(),
            disk,
        }
    }

    /// True when the log holds no entry and no purge marker.
    pub(crate) fn is_empty(&self) -> Result<bool, sled::Error> {
        Ok(self.logs.first()?.is_none())
    }

    /// Waits until everything written so far is on stable storage (the whole database).
    async fn flush(&self, subject: ErrorSubject<NodeId>) -> StorageResult<()> {
        self.disk
            .flush_async(&self.logs)
            .await
            .map_err(|e| sto_err(subject, ErrorVerb::Write, &e))
    }

    fn read_meta<T: serde::de::DeserializeOwned>(
        tree: &sled::Tree,
        key: &[u8],
        what: &str,
        subject: ErrorSubject<NodeId>,
    ) -> StorageResult<Option<T>> {
        read_json(tree, key, what).map_err(|c| c.into_storage(subject))
    }

    async fn write_meta(
        &self,
        tree: &sled::Tree,
        key: &[u8],
        value: &impl Serialize,
        subject: ErrorSubject<NodeId>,
    ) -> StorageResult<()> {
        let bytes = serde_json::to_vec(value)
            .map_err(|e| sto_err(subject.clone(), ErrorVerb::Write, &e))?;
        tree.insert(key, bytes)
            .map_err(|e| sto_err(subject.clone(), ErrorVerb::Write, &e))?;
        self.flush(subject).await
    }

    fn last_purged(&self) -> StorageResult<Option<LogId>> {
        Self::read_meta(
            &self.logs,
            LAST_PURGED_KEY,
            "last purged log id",
            ErrorSubject::Logs,
        )
    }

    /// The log id of the last entry present, if any.
    fn last_entry_id(&self) -> StorageResult<Option<LogId>> {
        let Some(item) = self.logs.range(log_key(0)..).next_back() else {
            return Ok(None);
        };
        let (key, value) = item.map_err(|e| sto_err(ErrorSubject::Logs, ErrorVerb::Read, &e))?;
        let entry = decode_entry(entry_index(&key)?, &value)?;
        Ok(Some(entry.log_id))
    }

    /// Applies `batch` atomically and flushes it.
    async fn write_batch(&self, batch: sled::Batch) -> StorageResult<()> {
        self.logs
            .apply_batch(batch)
            .map_err(|e| sto_err(ErrorSubject::Logs, ErrorVerb::Write, &e))?;
        self.flush(ErrorSubject::Logs).await
    }
}

/// The index an entry key stands for.
fn entry_index(key: &[u8]) -> StorageResult<u64> {
    parse_log_key(key).ok_or_else(|| {
        let msg = format!("unexpected key {key:?} among log entries");
        StorageIOError::new(ErrorSubject::Logs, ErrorVerb::Read, AnyError::error(msg)).into()
    })
}

fn decode_entry(index: u64, value: &[u8]) -> StorageResult<Entry> {
    serde_json::from_slice(value)
        .map_err(|e| sto_err(ErrorSubject::LogIndex(index), ErrorVerb::Read, &e))
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> StorageResult<Vec<Entry>> {
        let start = match range.start_bound() {
            Bound::Included(&i) => i,
            Bound::Excluded(&i) => match i.checked_add(1) {
                Some(i) => i,
                None => return Ok(Vec::new()),
            },
            Bound::Unbounded => 0,
        };
        self.read_entries(start, &range, usize::MAX)
    }

    /// Entries for replication: at most [`MAX_PAYLOAD_BYTES`] of them (but at least one).
    async fn limited_get_log_entries(&mut self, start: u64, end: u64) -> StorageResult<Vec<Entry>> {
        self.read_entries(start, &(start..end), MAX_PAYLOAD_BYTES)
    }
}

impl LogStore {
    /// The entries of `range` (starting at `start`), from the cache when it has them, up to
    /// `max_bytes` of encoded entries (the first one always).
    fn read_entries(
        &self,
        start: u64,
        range: &impl RangeBounds<u64>,
        max_bytes: usize,
    ) -> StorageResult<Vec<Entry>> {
        if let Some(entries) = self.recent.get_limited(start, range, max_bytes) {
            return Ok(entries);
        }
        let mut entries = Vec::new();
        let mut bytes = 0usize;
        for item in self.logs.range(log_key(start)..) {
            let (key, value) =
                item.map_err(|e| sto_err(ErrorSubject::Logs, ErrorVerb::Read, &e))?;
            let index = entry_index(&key)?;
            bytes = bytes.saturating_add(value.len());
            if !range.contains(&index) || (!entries.is_empty() && bytes > max_bytes) {
                break;
            }
            entries.push(decode_entry(index, &value)?);
        }
        Ok(entries)
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogStore;

    async fn get_log_state(&mut self) -> StorageResult<LogState<TypeConfig>> {
        let last_purged_log_id = self.last_purged()?;
        let last_log_id = self.last_entry_id()?.or(last_purged_log_id);
        Ok(LogState {
            last_purged_log_id,
            last_log_id,
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote) -> StorageResult<()> {
        let raft = self.raft.clone();
        self.write_meta(&raft, VOTE_KEY, vote, ErrorSubject::Vote)
            .await
    }

    async fn read_vote(&mut self) -> StorageResult<Option<Vote>> {
        Self::read_meta(&self.raft, VOTE_KEY, "vote", ErrorSubject::Vote)
    }

    /// Written but not flushed: openraft calls this on every commit, and a flush here was a
    /// second disk sync per write, waited for by the Raft core. The committed log id is only a hint for how far
    /// to re-apply the log at start-up (openraft treats it as optional); it reaches disk with
    /// the next append, vote or sled's own periodic flush, and a lost one means re-applying less
    /// at start-up, then catching up from the leader. It never points past the flushed log:
    /// openraft 0.9 waits for each append's flush before it can commit the entries.
    async fn save_committed(&mut self, committed: Option<LogId>) -> StorageResult<()> {
        let result = match committed {
            Some(log_id) => {
                let bytes = serde_json::to_vec(&log_id)
                    .map_err(|e| sto_err(ErrorSubject::Store, ErrorVerb::Write, &e))?;
                self.raft.insert(COMMITTED_KEY, bytes).map(drop)
            }
            None => self.raft.remove(COMMITTED_KEY).map(drop),
        };
        result.map_err(|e| sto_err(ErrorSubject::Store, ErrorVerb::Write, &e))
    }

    async fn read_committed(&mut self) -> StorageResult<Option<LogId>> {
        Self::read_meta(
            &self.raft,
            COMMITTED_KEY,
            "committed log id",
            ErrorSubject::Store,
        )
    }

    async fn append<I>(&mut self, entries: I, callback: LogFlushed<TypeConfig>) -> StorageResult<()>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let mut encoded = Vec::new();
        for entry in entries {
            let bytes = serde_json::to_vec(&entry)
                .map_err(|e| sto_err(ErrorSubject::Log(entry.log_id), ErrorVerb::Write, &e))?;
            encoded.push((entry, bytes));
        }
        let last = encoded.last().map(|(e, _)| e.log_id);
        let applied = match &encoded[..] {
            // The usual case (openraft appends each proposal on its own): a plain insert is
            // atomic too, and skips a batch's global write lock and the batch marker sled logs.
            // Measured: +15-20% writes/s at 1 and 16 clients (BENCHMARKS.md).
            [(entry, bytes)] => self
                .logs
                .insert(&log_key(entry.log_id.index)[..], &bytes[..])
                .map(drop),
            _ => {
                let mut batch = sled::Batch::default();
                for (entry, bytes) in &encoded {
                    batch.insert(&log_key(entry.log_id.index)[..], &bytes[..]);
                }
                self.logs.apply_batch(batch)
            }
        }
        .map_err(|e| sto_err(ErrorSubject::Logs, ErrorVerb::Write, &e));
        if applied.is_ok() {
            // Readable from here on (openraft may read them before the flush completes).
            for (entry, bytes) in encoded {
                self.recent.appended(entry, bytes.len());
            }
        }
        let result = match applied {
            Ok(()) => self.flush(ErrorSubject::Logs).await,
            Err(e) => Err(e),
        };
        tracing::trace!(last = ?last, ok = result.is_ok(), "appended raft log entries");
        match &result {
            Ok(()) => callback.log_io_completed(Ok(())),
            Err(e) => callback.log_io_completed(Err(std::io::Error::other(e.to_string()))),
        }
        result
    }

    async fn truncate(&mut self, log_id: LogId) -> StorageResult<()> {
        tracing::debug!(since = %log_id, "truncating raft log");
        self.recent.truncated(log_id);
        let mut batch = sled::Batch::default();
        for key in self.logs.range(log_key(log_id.index)..).keys() {
            let key = key.map_err(|e| sto_err(ErrorSubject::Logs, ErrorVerb::Read, &e))?;
            batch.remove(key);
        }
        self.write_batch(batch).await
    }

    async fn purge(&mut self, log_id: LogId) -> StorageResult<()> {
        tracing::debug!(upto = %log_id, "purging raft log");
        self.recent.purged(log_id);
        let marker = serde_json::to_vec(&log_id)
            .map_err(|e| sto_err(ErrorSubject::Logs, ErrorVerb::Write, &e))?;
        let mut batch = sled::Batch::default();
        batch.insert(LAST_PURGED_KEY, marker);
        for key in self.logs.range(log_key(0)..=log_key(log_id.index)).keys() {
            let key = key.map_err(|e| sto_err(ErrorSubject::Logs, ErrorVerb::Read, &e))?;
            batch.remove(key);
        }
        self.write_batch(batch).await
    }
}
