//! The sled database behind a coordinator's Raft: opening, validating and the identity keys.
//!
//! One sled database per coordinator, with four trees:
//!
//! - `logs`: Raft log entries as JSON under their index as a big-endian `u64` (8 bytes, so key
//!   order is log order), plus the last purged log id under the empty key, which sorts before
//!   every entry so that a purge is a single atomic batch.
//! - `raft`: the vote and the committed log id.
//! - `snapshot`: the current state machine snapshot (`meta` and `data`) and a build counter.
//! - `meta`: `format_version` and identity keys such as `node_id` and `cluster_id`.
//!
//! Invariant: [`Store::open`] reads and checks everything a restart needs (format version, vote,
//! committed, purge marker, every log entry, the snapshot) before it writes anything, and refuses
//! a store that fails a check.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use openraft::{AnyError, ErrorSubject, ErrorVerb, StorageError, StorageIOError};
use serde::de::DeserializeOwned;

use super::disk_sync::{DiskSync, SyncError};
use super::log_store::LogStore;
use super::state_machine::{SnapshotImage, StateMachineStore};
use super::types::{Entry, LogId, NodeId, Vote};

/// The on-disk layout written by this code; bump it on any incompatible change.
/// 2: a log entry's payload is a batch of requests (was one request).
pub(crate) const FORMAT_VERSION: &str = "2";

pub(crate) const LOGS_TREE: &str = "logs";
pub(crate) const RAFT_TREE: &str = "raft";
pub(crate) const SNAPSHOT_TREE: &str = "snapshot";
pub(crate) const META_TREE: &str = "meta";
const TREES: [&str; 4] = [LOGS_TREE, RAFT_TREE, SNAPSHOT_TREE, META_TREE];

/// In `logs`: the last purged log id. Shorter than an entry key and a prefix of none, so it sorts
/// before all of them and no entry range ever includes it.
pub(crate) const LAST_PURGED_KEY: &[u8] = b"";
/// In `raft`.
pub(crate) const VOTE_KEY: &[u8] = b"vote";
/// In `raft`.
pub(crate) const COMMITTED_KEY: &[u8] = b"committed";
/// In `snapshot`: JSON [`SnapshotMeta`](super::types::SnapshotMeta) of the current snapshot.
pub(crate) const SNAPSHOT_META_KEY: &[u8] = b"meta";
/// In `snapshot`: the current snapshot's bytes (see [`SnapshotImage`]).
pub(crate) const SNAPSHOT_DATA_KEY: &[u8] = b"data";
/// In `snapshot`: how many snapshots this store has built, for unique snapshot ids.
pub(crate) const SNAPSHOT_SEQ_KEY: &[u8] = b"seq";
/// In `meta`.
const FORMAT_VERSION_KEY: &str = "format_version";

/// The key of the log entry at `index`.
pub(crate) fn log_key(index: u64) -> [u8; 8] {
    index.to_be_bytes()
}

/// The index of an entry key, or `None` if `key` is not one.
pub(crate) fn parse_log_key(key: &[u8]) -> Option<u64> {
    let bytes: [u8; 8] = key.try_into().ok()?;
    Some(u64::from_be_bytes(bytes))
}

/// Why a store could not be opened or its metadata read or written.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("store `{}`: cannot inspect directory: {source}", path.display())]
    Dir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("store `{}`: not a store: the directory has files but no sled database", path.display())]
    NotAStore { path: PathBuf },
    #[error("store `{}`: sled refused to open the database: {source}", path.display())]
    Open { path: PathBuf, source: sled::Error },
    #[error("store `{}`: {action} failed: {source}", path.display())]
    Sled {
        path: PathBuf,
        action: &'static str,
        source: sled::Error,
    },
    #[error("store `{}`: {source}", path.display())]
    Sync { path: PathBuf, source: SyncError },
    #[error("store `{}`: corrupt {what}: {reason}", path.display())]
    Corrupt {
        path: PathBuf,
        what: String,
        reason: String,
    },
    #[error(
        "store `{}`: unsupported format version `{found}` (this build reads `{FORMAT_VERSION}`)",
        path.display()
    )]
    FormatVersion { path: PathBuf, found: String },
    #[error("store `{}`: meta key `{key}` is reserved for the store itself", path.display())]
    ReservedKey { path: PathBuf, key: String },
}

/// A problem found while validating stored data, before the store's path is attached.
#[derive(Debug)]
pub(crate) struct Corruption {
    pub what: String,
    pub reason: String,
}

impl Corruption {
    pub(crate) fn new(what: impl Into<String>, reason: impl ToString) -> Self {
        Self {
            what: what.into(),
            reason: reason.to_string(),
        }
    }

    /// As an openraft read error about `subject`, for corruption found while running.
    pub(crate) fn into_storage(self, subject: ErrorSubject<NodeId>) -> StorageError<NodeId> {
        let msg = format!("corrupt {}: {}", self.what, self.reason);
        StorageIOError::new(subject, ErrorVerb::Read, AnyError::error(msg)).into()
    }
}

/// An open store: hands out the Raft log storage and the state machine, and keeps identity keys.
pub struct Store {
    path: PathBuf,
    /// The database itself; the trees below keep it open, the store's tests reach past them.
    #[cfg_attr(not(test), allow(dead_code))]
    db: sled::Db,
    disk: DiskSync,
    meta: sled::Tree,
    /// Vote and committed log id (shared with the log store).
    raft: sled::Tree,
    log_store: LogStore,
    state_machine: StateMachineStore,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl Store {
    /// Opens (or creates, when `dir` is missing or empty) the store at `dir`.
    ///
    /// An existing store is validated before anything is written; a store that does not pass is
    /// refused with an error naming the path and the problem. Blocking (it reads the whole log):
    /// call it before the runtime starts or from `spawn_blocking`.
    pub fn open(dir: &Path) -> Result<Store, StoreError> {
        let path = dir.to_path_buf();
        check_dir(&path)?;
        let db = open_sled(&path).map_err(|source| StoreError::Open {
            path: path.clone(),
            source,
        })?;
        let fresh = is_fresh(&db).map_err(|source| sled_err(&path, "listing trees", source))?;
        if !fresh {
            let names = db.tree_names();
            for name in TREES {
                if !names.iter().any(|n| n.as_ref() == name.as_bytes()) {
                    return Err(corrupt(
                        &path,
                        Corruption::new(format!("tree `{name}`"), "missing"),
                    ));
                }
            }
        }
        // For a store that passed the check above these trees exist, so nothing is written.
        let open_tree = |name: &'static str| {
            db.open_tree(name)
                .map_err(|source| sled_err(&path, "opening a tree", source))
        };
        let logs = open_tree(LOGS_TREE)?;
        let raft = open_tree(RAFT_TREE)?;
        let snapshot = open_tree(SNAPSHOT_TREE)?;
        let meta = open_tree(META_TREE)?;

        if !fresh {
            check_format_version(&path, &meta)?;
        }
        validate_raft(&raft).map_err(|c| corrupt(&path, c))?;
        validate_logs(&logs).map_err(|c| corrupt(&path, c))?;
        let image = SnapshotImage::load(&snapshot).map_err(|c| corrupt(&path, c))?;

        let disk = DiskSync::open(&path).map_err(|source| StoreError::Sync {
            path: path.clone(),
            source,
        })?;
        if fresh {
            meta.insert(FORMAT_VERSION_KEY, FORMAT_VERSION)
                .map_err(|source| sled_err(&path, "writing the format version", source))?;
            disk.flush(&meta).map_err(|source| StoreError::Sync {
                path: path.clone(),
                source,
            })?;
        }
        tracing::info!(
            path = %path.display(),
            fresh,
            snapshot = ?image.as_ref().map(|i| i.meta.last_log_id),
            "opened raft store"
        );

        let log_store = LogStore::new(logs, raft.clone(), disk.clone());
        let state_machine = StateMachineStore::new(snapshot, image, disk.clone());
        Ok(Store {
            path,
            db,
            disk,
            meta,
            raft,
            log_store,
            state_machine,
        })
    }

    /// True when nothing was ever stored here: no vote, no log entry, no snapshot. Such a
    /// member has no record of the votes it cast.
    pub fn is_empty(&self) -> Result<bool, StoreError> {
        let vote = self
            .raft
            .get(VOTE_KEY)
            .map_err(|source| sled_err(&self.path, "reading the vote", source))?;
        let logs = self
            .log_store
            .is_empty()
            .map_err(|source| sled_err(&self.path, "reading the log", source))?;
        Ok(vote.is_none() && logs && self.state_machine.applied_index() == 0)
    }

    /// Called before Raft starts: if the stored vote says this member led its term (a
    /// committed vote for itself), keeps the term and whom it voted for but drops "committed",
    /// durably. openraft 0.9 would otherwise restore it as the leader of that term at once,
    /// without a new entry of its own, and answer read-index requests from the committed index
    /// it stored (a hint, behind the last acknowledged write after a crash): stale
    /// "linearizable" reads. As a follower it must win an election in a new term, whose first
    /// (blank) entry commits only after everything committed before it, and openraft's read
    /// index is never below that entry. Returns the vote it replaced, if any.
    ///
    /// Safe: the vote keeps its term and candidate, so this member still refuses any other
    /// candidate of that term it refused before; only its own old leadership is forgotten.
    pub fn step_down_if_leader(&self, id: NodeId) -> Result<Option<Vote>, StoreError> {
        let vote: Option<Vote> =
            read_json(&self.raft, VOTE_KEY, "vote").map_err(|c| corrupt(&self.path, c))?;
        let Some(vote) = vote.filter(|v| v.committed && v.leader_id.voted_for() == Some(id)) else {
            return Ok(None);
        };
        let demoted = Vote::new(vote.leader_id.term, id);
        let bytes = serde_json::to_vec(&demoted)
            .map_err(|e| corrupt(&self.path, Corruption::new("vote", e)))?;
        self.raft
            .insert(VOTE_KEY, bytes)
            .map_err(|source| sled_err(&self.path, "writing the vote", source))?;
        self.disk
            .flush(&self.raft)
            .map_err(|source| StoreError::Sync {
                path: self.path.clone(),
                source,
            })?;
        Ok(Some(vote))
    }

    /// Seconds per durable flush of this store (appends, votes, truncates, purges, snapshots).
    pub fn disk_sync_durations(&self) -> prometheus_client::metrics::histogram::Histogram {
        self.disk.durations()
    }

    /// The directory this store lives in.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The Raft log storage (log entries, vote, committed). Clones share the same database.
    pub fn log_store(&self) -> LogStore {
        self.log_store.clone()
    }

    /// The Raft state machine over [`ClusterState`](crate::state::ClusterState). Clones share the
    /// same state.
    pub fn state_machine(&self) -> StateMachineStore {
        self.state_machine.clone()
    }

    /// Reads an identity key such as `node_id` or `cluster_id`.
    pub fn meta_get(&self, key: &str) -> Result<Option<String>, StoreError> {
        let Some(raw) = self
            .meta
            .get(key)
            .map_err(|source| sled_err(&self.path, "reading a meta key", source))?
        else {
            return Ok(None);
        };
        let value = String::from_utf8(raw.to_vec())
            .map_err(|e| corrupt(&self.path, Corruption::new(format!("meta key `{key}`"), e)))?;
        Ok(Some(value))
    }

    /// Writes an identity key and flushes it to disk before returning (blocking).
    pub fn meta_set(&self, key: &str, value: &str) -> Result<(), StoreError> {
        if key == FORMAT_VERSION_KEY {
            return Err(StoreError::ReservedKey {
                path: self.path.clone(),
                key: key.to_owned(),
            });
        }
        self.meta
            .insert(key, value)
            .map_err(|source| sled_err(&self.path, "writing a meta key", source))?;
        self.disk
            .flush(&self.meta)
            .map_err(|source| StoreError::Sync {
                path: self.path.clone(),
                source,
            })
    }
}

/// How long [`open_sled`] waits for a lock held by this process's own just-dropped handles.
const LOCK_WAIT: Duration = Duration::from_secs(1);

/// Opens the sled database, waiting up to [`LOCK_WAIT`] while its file lock is taken.
///
/// sled releases the lock only when its last internal handle goes, and its background writer
/// threads can hold one for a moment after the store has been dropped; reopening in the same
/// process (tests, a store reset) would otherwise fail at random. A lock held by another process
/// is still refused, after the wait.
pub(crate) fn open_sled(path: &Path) -> Result<sled::Db, sled::Error> {
    let deadline = Instant::now() + LOCK_WAIT;
    loop {
        match sled::Config::new().path(path).open() {
            // sled 0.34 reports a taken lock only as an I/O error with this message.
            Err(sled::Error::Io(e))
                if e.to_string().contains("could not acquire lock")
                    && Instant::now() < deadline =>
            {
                std::thread::sleep(Duration::from_millis(10));
            }
            result => return result,
        }
    }
}

fn sled_err(path: &Path, action: &'static str, source: sled::Error) -> StoreError {
    StoreError::Sled {
        path: path.to_path_buf(),
        action,
        source,
    }
}

fn corrupt(path: &Path, c: Corruption) -> StoreError {
    StoreError::Corrupt {
        path: path.to_path_buf(),
        what: c.what,
        reason: c.reason,
    }
}

/// Entries of a data dir that the coordinator writes beside the store (certificates).
const OWN_ENTRIES: [&str; 2] = ["tls", "admin"];

/// Refuses a path that is not a directory, and a non-empty directory without a sled database in
/// it (sled would otherwise create one among someone else's files).
fn check_dir(path: &Path) -> Result<(), StoreError> {
    let dir_err = |source| StoreError::Dir {
        path: path.to_path_buf(),
        source,
    };
    let mut entries = match std::fs::read_dir(path) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(dir_err(e)),
    };
    // The coordinator's own certificate directories may be made before the store.
    let mut non_empty = false;
    for entry in entries.by_ref() {
        let name = entry.map_err(dir_err)?.file_name();
        if !OWN_ENTRIES.iter().any(|own| name == *own) {
            non_empty = true;
            break;
        }
    }
    let has_db = path.join("conf").is_file() && path.join("db").is_file();
    if non_empty && !has_db {
        return Err(StoreError::NotAStore {
            path: path.to_path_buf(),
        });
    }
    Ok(())
}

/// True when sled just created this database: only its default tree, and that one empty.
fn is_fresh(db: &sled::Db) -> Result<bool, sled::Error> {
    let only_default = db.tree_names().len() == 1;
    Ok(only_default && db.first()?.is_none())
}

fn check_format_version(path: &Path, meta: &sled::Tree) -> Result<(), StoreError> {
    let found = meta
        .get(FORMAT_VERSION_KEY)
        .map_err(|source| sled_err(path, "reading the format version", source))?;
    let Some(found) = found else {
        return Err(corrupt(
            path,
            Corruption::new("format version", "the key is missing"),
        ));
    };
    if found.as_ref() != FORMAT_VERSION.as_bytes() {
        let found = String::from_utf8_lossy(&found).into_owned();
        return Err(StoreError::FormatVersion {
            path: path.to_path_buf(),
            found,
        });
    }
    Ok(())
}

/// Reads and decodes one JSON value; `what` names it in the error.
pub(crate) fn read_json<T: DeserializeOwned>(
    tree: &sled::Tree,
    key: &[u8],
    what: &str,
) -> Result<Option<T>, Corruption> {
    let Some(raw) = tree.get(key).map_err(|e| Corruption::new(what, e))? else {
        return Ok(None);
    };
    serde_json::from_slice(&raw)
        .map(Some)
        .map_err(|e| Corruption::new(what, e))
}

fn validate_raft(raft: &sled::Tree) -> Result<(), Corruption> {
    read_json::<Vote>(raft, VOTE_KEY, "vote")?;
    read_json::<LogId>(raft, COMMITTED_KEY, "committed log id")?;
    for item in raft.iter() {
        let (key, _) = item.map_err(|e| Corruption::new("raft tree", e))?;
        if key.as_ref() != VOTE_KEY && key.as_ref() != COMMITTED_KEY {
            let key = String::from_utf8_lossy(&key).into_owned();
            return Err(Corruption::new(
                "raft tree",
                format!("unexpected key `{key}`"),
            ));
        }
    }
    Ok(())
}

/// Decodes every entry and checks that the log has no holes and starts after the purge marker.
fn validate_logs(logs: &sled::Tree) -> Result<(), Corruption> {
    let purged: Option<LogId> = read_json(logs, LAST_PURGED_KEY, "last purged log id")?;
    let mut prev: Option<u64> = purged.map(|p| p.index);
    let mut first = true;
    for item in logs.iter() {
        let (key, value) = item.map_err(|e| Corruption::new("log", e))?;
        if key.as_ref() == LAST_PURGED_KEY {
            continue;
        }
        let Some(index) = parse_log_key(&key) else {
            return Err(Corruption::new(
                "log",
                format!("unexpected key {:?}", key.as_ref()),
            ));
        };
        let what = || format!("log entry at index {index}");
        let entry: Entry =
            serde_json::from_slice(&value).map_err(|e| Corruption::new(what(), e))?;
        if entry.log_id.index != index {
            let reason = format!("it holds log id {}", entry.log_id);
            return Err(Corruption::new(what(), reason));
        }
        match prev {
            // Without a purge marker the first entry may have any index.
            None => {}
            Some(p) if first && index <= p => {
                let reason = format!("it is at or before the last purged index {p}");
                return Err(Corruption::new(what(), reason));
            }
            Some(p) if !first && index != p + 1 => {
                let reason = format!("the log has a hole after index {p}");
                return Err(Corruption::new(what(), reason));
            }
            Some(_) => {}
        }
        prev = Some(index);
        first = false;
    }
    Ok(())
}

#[cfg(test)]
mod tests;
