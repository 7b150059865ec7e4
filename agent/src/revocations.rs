//! The serials of the revoked certificates, as the coordinators last sent them with the
//! assignment set: the agent API refuses a caller presenting one of them ([`crate::api`]).
//!
//! Each set carries the whole list (every revoked certificate not yet expired), which replaces the
//! previous one. It is kept in memory for the API and in the state db, so that an agent restarted
//! while no coordinator answers still refuses the certificates it was told are revoked.

use std::collections::BTreeSet;
use std::sync::atomic::Ordering;
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

use tracing::{info, warn};

use crate::metrics::REVOKED_SERIALS;
use crate::state_db::StateDb;

/// Shared handle: the session replaces the list, the agent API reads it. Cheap to clone.
#[derive(Clone, Default)]
pub struct Revocations {
    serials: Arc<RwLock<BTreeSet<String>>>,
    /// Where the list is kept across restarts; `None` in tests.
    db: Option<StateDb>,
}

impl std::fmt::Debug for Revocations {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Revocations").field(&*self.read()).finish()
    }
}

impl Revocations {
    /// The list last stored in `db`, if any. An unreadable record is logged and read as empty:
    /// the next assignment set from a coordinator brings the list again.
    pub fn load(db: Option<StateDb>) -> Self {
        let serials = match db.as_ref().map(StateDb::load_revoked_serials) {
            Some(Ok(serials)) => serials,
            Some(Err(error)) => {
                warn!(
                    %error,
                    "cannot load the stored revoked certificate serials; none refused until a \
                     coordinator sends them"
                );
                BTreeSet::new()
            }
            None => BTreeSet::new(),
        };
        info!(
            revoked_serials = serials.len(),
            "revoked certificate serials loaded"
        );
        REVOKED_SERIALS.store(serials.len() as u64, Ordering::Relaxed);
        Self {
            serials: Arc::new(RwLock::new(serials)),
            db,
        }
    }

    fn read(&self) -> RwLockReadGuard<'_, BTreeSet<String>> {
        // A panic while holding the lock cannot leave the set half-updated: replace is one store.
        self.serials.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> RwLockWriteGuard<'_, BTreeSet<String>> {
        self.serials.write().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether the certificate with this (lower-case hex) serial is revoked.
    pub fn is_revoked(&self, serial: &str) -> bool {
        self.read().contains(serial)
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.read().len()
    }

    #[cfg(test)]
    fn is_empty(&self) -> bool {
        self.read().is_empty()
    }

    /// Replaces the list with the one a coordinator just sent; stores it when it changed. Takes
    /// effect in memory first, so the API refuses a newly revoked serial even if the db fails.
    pub fn replace(&self, serials: impl IntoIterator<Item = String>) {
        let new: BTreeSet<String> = serials.into_iter().collect();
        // Held while storing, so that the db never ends up with an older list than memory.
        let mut current = self.write();
        if *current == new {
            return;
        }
        let added: Vec<&str> = new.difference(&current).map(String::as_str).collect();
        info!(
            revoked_serials = new.len(),
            added = ?added,
            "revoked certificate serials updated"
        );
        REVOKED_SERIALS.store(new.len() as u64, Ordering::Relaxed);
        *current = new;
        if let Some(db) = &self.db {
            if let Err(error) = db.save_revoked_serials(&current) {
                warn!(%error, "cannot store the revoked certificate serials");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaced_whole_and_kept_across_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        {
            let db = StateDb::open(dir.path()).unwrap();
            let r = Revocations::load(Some(db));
            assert!(r.is_empty());
            r.replace(["0a".to_string(), "0b".to_string()]);
            assert!(r.is_revoked("0a") && r.is_revoked("0b"));
            // The next list replaces this one (an expired certificate leaves the list).
            r.replace(["0b".to_string(), "0c".to_string()]);
            assert!(!r.is_revoked("0a"));
            assert!(r.is_revoked("0b") && r.is_revoked("0c"));
        }
        // A new process with no coordinator: the stored list.
        let r = Revocations::load(Some(StateDb::open(dir.path()).unwrap()));
        assert_eq!(r.len(), 2);
        assert!(r.is_revoked("0b") && r.is_revoked("0c") && !r.is_revoked("0a"));
    }

    #[test]
    fn clones_share_the_list() {
        let session = Revocations::load(None);
        let api = session.clone();
        session.replace(["ff".to_string()]);
        assert!(api.is_revoked("ff"));
        session.replace(Vec::new());
        assert!(!api.is_revoked("ff"));
    }
}
