//! The agent's local sled db: the last assignment set, the revoked certificate serials that came
//! with it, reported task states and unsent reports.
//!
//! It is what lets the agent restart without a coordinator: it keeps running the tasks it last
//! had, keeps refusing the certificates it was told are revoked, and resends the status reports
//! no coordinator acknowledged.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use shoal_model::{Task, TaskState};
use shoal_proto::convert::StatusUpdate;

const ASSIGNMENTS_KEY: &[u8] = b"assignments";
const REVOKED_KEY: &[u8] = b"revoked_serials";

/// What can go wrong with the local db.
#[derive(Debug, thiserror::Error)]
pub enum StateDbError {
    #[error("state db `{path}`: {error}")]
    Open { path: PathBuf, error: sled::Error },
    #[error("state db: {0}")]
    Sled(#[from] sled::Error),
    #[error("state db: record `{key}`: {source}")]
    Decode {
        key: String,
        #[source]
        source: serde_json::Error,
    },
}

/// A status update as stored on disk.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct StoredUpdate {
    task_id: String,
    state: TaskState,
    message: String,
    exit_code: Option<i32>,
    #[serde(default)]
    image_digest: Option<String>,
}

impl From<&StatusUpdate> for StoredUpdate {
    fn from(u: &StatusUpdate) -> Self {
        Self {
            task_id: u.task_id.clone(),
            state: u.state,
            message: u.message.clone(),
            exit_code: u.exit_code,
            image_digest: u.image_digest.clone(),
        }
    }
}

impl From<StoredUpdate> for StatusUpdate {
    fn from(u: StoredUpdate) -> Self {
        Self {
            task_id: u.task_id,
            state: u.state,
            message: u.message,
            exit_code: u.exit_code,
            image_digest: u.image_digest,
        }
    }
}

fn encode<T: Serialize>(v: &T) -> Vec<u8> {
    // Plain data with string keys: serializing cannot fail.
    serde_json::to_vec(v).unwrap_or_default()
}

fn decode<T: serde::de::DeserializeOwned>(key: &[u8], bytes: &[u8]) -> Result<T, StateDbError> {
    serde_json::from_slice(bytes).map_err(|source| StateDbError::Decode {
        key: String::from_utf8_lossy(key).into_owned(),
        source,
    })
}

/// The agent's db, in `<data dir>/state`.
#[derive(Clone)]
pub struct StateDb {
    db: sled::Db,
    meta: sled::Tree,
    pending: sled::Tree,
    states: sled::Tree,
}

impl StateDb {
    /// Opens (or creates) the db under `data_dir`, waiting briefly for a previous process's lock.
    pub fn open(data_dir: &Path) -> Result<Self, StateDbError> {
        let path = data_dir.join("state");
        let mut tries = 0;
        let db = loop {
            match sled::open(&path) {
                Ok(db) => break db,
                Err(sled::Error::Io(_)) if tries < 50 => {
                    tries += 1;
                    std::thread::sleep(std::time::Duration::from_millis(100));
                }
                Err(error) => return Err(StateDbError::Open { path, error }),
            }
        };
        Ok(Self {
            meta: db.open_tree("meta")?,
            pending: db.open_tree("pending")?,
            states: db.open_tree("states")?,
            db,
        })
    }

    fn flush(&self) -> Result<(), StateDbError> {
        self.db.flush()?;
        Ok(())
    }

    /// Stores the last full assignment set.
    pub fn save_assignments(&self, tasks: &[Task]) -> Result<(), StateDbError> {
        self.meta.insert(ASSIGNMENTS_KEY, encode(&tasks))?;
        self.flush()
    }

    /// The last stored assignment set, if any.
    pub fn load_assignments(&self) -> Result<Option<Vec<Task>>, StateDbError> {
        match self.meta.get(ASSIGNMENTS_KEY)? {
            Some(v) => Ok(Some(decode(ASSIGNMENTS_KEY, &v)?)),
            None => Ok(None),
        }
    }

    /// Stores the serials of the revoked certificates, as last sent by a coordinator.
    pub fn save_revoked_serials(&self, serials: &BTreeSet<String>) -> Result<(), StateDbError> {
        self.meta.insert(REVOKED_KEY, encode(serials))?;
        self.flush()
    }

    /// The last stored revoked serials; none if no coordinator ever sent any.
    pub fn load_revoked_serials(&self) -> Result<BTreeSet<String>, StateDbError> {
        match self.meta.get(REVOKED_KEY)? {
            Some(v) => decode(REVOKED_KEY, &v),
            None => Ok(BTreeSet::new()),
        }
    }

    /// Stores an unsent report under `seq` and the task's last state.
    pub fn push_report(&self, seq: u64, update: &StatusUpdate) -> Result<(), StateDbError> {
        let stored = encode(&StoredUpdate::from(update));
        self.pending.insert(seq.to_be_bytes(), stored.clone())?;
        self.states.insert(update.task_id.as_bytes(), stored)?;
        self.flush()
    }

    /// Forgets reports a coordinator acknowledged.
    pub fn ack_reports(&self, seqs: &[u64]) -> Result<(), StateDbError> {
        let mut batch = sled::Batch::default();
        for s in seqs {
            batch.remove(&s.to_be_bytes());
        }
        self.pending.apply_batch(batch)?;
        self.flush()
    }

    /// Unsent reports, oldest first.
    pub fn load_reports(&self) -> Result<Vec<(u64, StatusUpdate)>, StateDbError> {
        let mut out = Vec::new();
        for kv in self.pending.iter() {
            let (k, v) = kv?;
            let mut seq = [0u8; 8];
            if k.len() == 8 {
                seq.copy_from_slice(&k);
            }
            let u: StoredUpdate = decode(&k, &v)?;
            out.push((u64::from_be_bytes(seq), u.into()));
        }
        Ok(out)
    }

    /// The last reported status of every task.
    pub fn load_states(&self) -> Result<BTreeMap<String, StatusUpdate>, StateDbError> {
        let mut out = BTreeMap::new();
        for kv in self.states.iter() {
            let (k, v) = kv?;
            let u: StoredUpdate = decode(&k, &v)?;
            out.insert(u.task_id.clone(), u.into());
        }
        Ok(out)
    }

    /// Forgets the states of tasks that are no longer assigned.
    pub fn forget_states(&self, task_ids: &[String]) -> Result<(), StateDbError> {
        for id in task_ids {
            self.states.remove(id.as_bytes())?;
        }
        self.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn update(id: &str, state: TaskState) -> StatusUpdate {
        StatusUpdate {
            task_id: id.into(),
            state,
            message: "m".into(),
            exit_code: Some(1),
            image_digest: None,
        }
    }

    #[test]
    fn survives_reopen() {
        let dir = tempfile::tempdir().unwrap();
        {
            let db = StateDb::open(dir.path()).unwrap();
            assert_eq!(db.load_assignments().unwrap(), None);
            db.save_assignments(&[]).unwrap();
            assert!(db.load_revoked_serials().unwrap().is_empty());
            db.save_revoked_serials(&["0a".to_string(), "0b".to_string()].into())
                .unwrap();
            db.push_report(1, &update("a", TaskState::Starting))
                .unwrap();
            db.push_report(2, &update("a", TaskState::Running)).unwrap();
            db.push_report(300, &update("b", TaskState::Failed))
                .unwrap();
            db.ack_reports(&[1]).unwrap();
        }
        let db = StateDb::open(dir.path()).unwrap();
        assert_eq!(db.load_assignments().unwrap(), Some(vec![]));
        assert_eq!(
            db.load_revoked_serials().unwrap(),
            BTreeSet::from(["0a".to_string(), "0b".to_string()])
        );
        let pending = db.load_reports().unwrap();
        assert_eq!(
            pending,
            vec![
                (2, update("a", TaskState::Running)),
                (300, update("b", TaskState::Failed))
            ]
        );
        let states = db.load_states().unwrap();
        assert_eq!(states["a"].state, TaskState::Running);
        db.forget_states(&["a".into()]).unwrap();
        assert!(!db.load_states().unwrap().contains_key("a"));
    }
}
