//! Bounded disk-write load for tests: writer threads in the test's own directory, each writing
//! 1 MiB blocks with an `fsync` every 8 MiB, stopped (and their files removed) on drop.

use std::io::{Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// One block written per call.
const BLOCK: usize = 1 << 20;
/// Blocks between two `fsync`s.
const BLOCKS_PER_SYNC: u64 = 8;
/// A writer goes back to the start of its file at this size: the disk use stays bounded.
const MAX_FILE: u64 = 256 << 20;

/// Running writer threads; stop them with [`DiskLoad::stop`] or by dropping the value.
pub struct DiskLoad {
    stop: Arc<AtomicBool>,
    written: Arc<AtomicU64>,
    threads: Vec<JoinHandle<()>>,
    files: Vec<PathBuf>,
}

impl DiskLoad {
    /// Starts `writers` threads writing under `dir`; each stops by itself after `at_most`.
    pub fn start(dir: &Path, writers: usize, at_most: Duration) -> std::io::Result<DiskLoad> {
        std::fs::create_dir_all(dir)?;
        let stop = Arc::new(AtomicBool::new(false));
        let written = Arc::new(AtomicU64::new(0));
        let mut threads = Vec::new();
        let mut files = Vec::new();
        for i in 0..writers {
            let path = dir.join(format!("disk-load-{i}.bin"));
            let mut file = std::fs::File::create(&path)?;
            files.push(path);
            let stop = stop.clone();
            let written = written.clone();
            threads.push(std::thread::spawn(move || {
                let block = vec![0x5au8; BLOCK];
                let started = Instant::now();
                let mut n: u64 = 0;
                while !stop.load(Ordering::Relaxed) && started.elapsed() < at_most {
                    if file.write_all(&block).is_err() {
                        return;
                    }
                    n += 1;
                    written.fetch_add(BLOCK as u64, Ordering::Relaxed);
                    if n.is_multiple_of(BLOCKS_PER_SYNC) {
                        let _ = file.sync_all();
                    }
                    if n * BLOCK as u64 >= MAX_FILE {
                        n = 0;
                        let _ = file.seek(SeekFrom::Start(0));
                    }
                }
            }));
        }
        Ok(DiskLoad {
            stop,
            written,
            threads,
            files,
        })
    }

    /// Bytes written so far by all writers.
    pub fn written(&self) -> u64 {
        self.written.load(Ordering::Relaxed)
    }

    /// Stops the writers, waits for them and removes their files; returns the bytes written.
    pub fn stop(&mut self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
        for f in self.files.drain(..) {
            let _ = std::fs::remove_file(f);
        }
        self.written()
    }
}

impl Drop for DiskLoad {
    fn drop(&mut self) {
        self.stop();
    }
}
