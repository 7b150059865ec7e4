//! Makes a sled flush durable.
//!
//! sled 0.34's `flush` writes its log with `sync_file_range`, which neither flushes the drive's
//! write cache nor records a grown file size, and it writes values too large to keep inline
//! (over a quarter of a 512 KiB segment, such as a batched log entry under load or a snapshot)
//! to files under `blobs/` that it never syncs at all. Only sled's background thread calls
//! `fsync`, every 500 ms. So after sled's flush, [`DiskSync::flush`] calls `fdatasync` on the
//! database file and `fsync` on every blob file it has not synced yet (and then on the blob
//! directory, so that the new names are durable too).
//!
//! Invariant: when [`DiskSync::flush`] returns `Ok`, everything sled had accepted before the
//! call is on stable storage.

use std::collections::BTreeSet;
use std::ffi::OsString;
use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};

/// Why a durable flush failed.
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    #[error("sled flush failed: {0}")]
    Sled(#[from] sled::Error),
    #[error("syncing `{}` failed: {source}", path.display())]
    Io { path: PathBuf, source: io::Error },
}

/// The files of one sled database that a durable flush syncs. Clones share the same state.
#[derive(Clone)]
pub struct DiskSync {
    inner: Arc<Inner>,
}

struct Inner {
    db_path: PathBuf,
    db_file: File,
    blobs_dir: PathBuf,
    /// Blob files already synced (sled never rewrites one; it only creates and removes them).
    synced_blobs: Mutex<BTreeSet<OsString>>,
    /// Seconds per durable flush, for `/metrics`.
    durations: Histogram,
}

impl std::fmt::Debug for DiskSync {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DiskSync")
            .field("db", &self.inner.db_path)
            .finish_non_exhaustive()
    }
}

impl DiskSync {
    /// For the sled database in `dir` (already opened by sled, so `db` and `blobs/` exist).
    /// Syncs `dir` itself once, so that the names sled created there are durable.
    pub fn open(dir: &Path) -> Result<Self, SyncError> {
        let db_path = dir.join("db");
        let db_file = File::open(&db_path).map_err(|source| SyncError::Io {
            path: db_path.clone(),
            source,
        })?;
        sync_dir(dir)?;
        Ok(Self {
            inner: Arc::new(Inner {
                db_path,
                db_file,
                blobs_dir: dir.join("blobs"),
                synced_blobs: Mutex::default(),
                // 25 µs to about 0.8 s.
                durations: Histogram::new(exponential_buckets(0.000_025, 2.0, 16)),
            }),
        })
    }

    /// Flushes sled, then makes what it wrote durable. Blocking: a few disk syncs.
    pub fn flush(&self, tree: &sled::Tree) -> Result<(), SyncError> {
        let started = Instant::now();
        tree.flush()?;
        self.sync()?;
        self.inner
            .durations
            .observe(started.elapsed().as_secs_f64());
        Ok(())
    }

    /// The durations of the durable flushes so far (a shared handle, for `/metrics`).
    pub fn durations(&self) -> Histogram {
        self.inner.durations.clone()
    }

    /// [`Self::flush`] on the blocking thread pool.
    pub async fn flush_async(&self, tree: &sled::Tree) -> Result<(), SyncError> {
        let this = self.clone();
        let tree = tree.clone();
        match tokio::task::spawn_blocking(move || this.flush(&tree)).await {
            Ok(result) => result,
            Err(e) => Err(SyncError::Io {
                path: self.inner.db_path.clone(),
                source: io::Error::other(e),
            }),
        }
    }

    /// `fdatasync` on the database file, then `fsync` on new blob files and their directory.
    fn sync(&self) -> Result<(), SyncError> {
        let inner = &self.inner;
        inner.db_file.sync_data().map_err(|source| SyncError::Io {
            path: inner.db_path.clone(),
            source,
        })?;
        self.sync_new_blobs()
    }

    fn sync_new_blobs(&self) -> Result<(), SyncError> {
        let inner = &self.inner;
        let io_err = |path: &Path| {
            let path = path.to_path_buf();
            move |source| SyncError::Io { path, source }
        };
        let entries = match std::fs::read_dir(&inner.blobs_dir) {
            Ok(entries) => entries,
            // sled creates the directory only when it first needs it.
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(io_err(&inner.blobs_dir)(e)),
        };
        let mut present = BTreeSet::new();
        for entry in entries {
            present.insert(entry.map_err(io_err(&inner.blobs_dir))?.file_name());
        }
        let mut synced = inner.synced_blobs.lock().unwrap_or_else(|p| p.into_inner());
        // Forget blobs sled has removed, so the set stays as small as the directory.
        synced.retain(|name| present.contains(name));
        let mut any_new = false;
        for name in present {
            if synced.contains(&name) {
                continue;
            }
            let path = inner.blobs_dir.join(&name);
            match File::open(&path) {
                Ok(f) => f.sync_all().map_err(io_err(&path))?,
                // Removed by sled's garbage collection since the listing.
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(io_err(&path)(e)),
            }
            synced.insert(name);
            any_new = true;
        }
        if any_new {
            sync_dir(&inner.blobs_dir)?;
        }
        Ok(())
    }
}

/// `fsync` on a directory, so that the entries created in it survive a crash.
fn sync_dir(dir: &Path) -> Result<(), SyncError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|source| SyncError::Io {
            path: dir.to_path_buf(),
            source,
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn large_values_land_in_blob_files_that_get_synced() {
        let dir = tempfile::tempdir().unwrap();
        let db = sled::Config::new().path(dir.path()).open().unwrap();
        let tree = db.open_tree("t").unwrap();
        let sync = DiskSync::open(dir.path()).unwrap();

        tree.insert(b"small", vec![1u8; 100]).unwrap();
        sync.flush(&tree).unwrap();
        assert!(sync.inner.synced_blobs.lock().unwrap().is_empty());

        // Over sled's inline limit: written as a blob file, which sled itself never syncs.
        tree.insert(b"large", vec![2u8; 400 << 10]).unwrap();
        sync.flush(&tree).unwrap();
        let on_disk: BTreeSet<OsString> = std::fs::read_dir(dir.path().join("blobs"))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert!(
            !on_disk.is_empty(),
            "sled wrote no blob for a 400 KiB value"
        );
        assert_eq!(*sync.inner.synced_blobs.lock().unwrap(), on_disk);
    }

    #[test]
    fn missing_database_file_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let err = DiskSync::open(dir.path()).unwrap_err().to_string();
        assert!(err.contains("/db"), "{err}");
    }
}
