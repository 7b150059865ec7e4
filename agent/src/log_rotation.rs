//! Size-based rotation of the containers' stdout/stderr files (copy, then truncate in place).
//!
//! containerd's shim appends each file with `O_APPEND`, so truncating the file under it is safe:
//! its next write lands at the new end. Output written between the copy and the truncation is
//! lost, as with logrotate's `copytruncate`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use tracing::{info, warn};

/// How logs are rotated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RotationPolicy {
    /// A file larger than this is rotated.
    pub max_bytes: u64,
    /// Rotated files kept: `x.1` (newest) .. `x.N`.
    pub keep: u32,
}

fn numbered(path: &Path, n: u32) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(format!(".{n}"));
    PathBuf::from(s)
}

/// Rotates `path` if it is larger than the policy allows; returns whether it did.
pub fn rotate_if_large(path: &Path, policy: RotationPolicy) -> std::io::Result<bool> {
    let len = match std::fs::metadata(path) {
        Ok(m) => m.len(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(e),
    };
    if len <= policy.max_bytes {
        return Ok(false);
    }
    if policy.keep > 0 {
        for n in (1..policy.keep).rev() {
            let from = numbered(path, n);
            if from.exists() {
                std::fs::rename(&from, numbered(path, n + 1))?;
            }
        }
        std::fs::copy(path, numbered(path, 1))?;
    }
    std::fs::OpenOptions::new()
        .write(true)
        .open(path)?
        .set_len(0)?;
    Ok(true)
}

/// Rotates every `<log_dir>/<task>/{stdout,stderr}.log` that grew too large.
pub fn rotate_dir(log_dir: &Path, policy: RotationPolicy) {
    let Ok(tasks) = std::fs::read_dir(log_dir) else {
        return;
    };
    for task in tasks.flatten() {
        for name in ["stdout.log", "stderr.log"] {
            let path = task.path().join(name);
            match rotate_if_large(&path, policy) {
                Ok(true) => info!(path = %path.display(), "log rotated"),
                Ok(false) => {}
                Err(error) => warn!(path = %path.display(), %error, "cannot rotate log"),
            }
        }
    }
}

/// Checks the log dir every `every`, forever.
pub async fn run(log_dir: PathBuf, policy: RotationPolicy, every: Duration) {
    let mut tick = tokio::time::interval(every);
    loop {
        tick.tick().await;
        let dir = log_dir.clone();
        if let Err(error) = tokio::task::spawn_blocking(move || rotate_dir(&dir, policy)).await {
            warn!(%error, "log rotation task failed");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rotates_keeps_n_and_truncates_in_place() {
        let dir = tempfile::tempdir().unwrap();
        let task = dir.path().join("t1");
        std::fs::create_dir_all(&task).unwrap();
        let log = task.join("stdout.log");
        let policy = RotationPolicy {
            max_bytes: 10,
            keep: 2,
        };
        // An appending writer that stays open, like the containerd shim.
        let mut w = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .unwrap();
        use std::io::Write;
        for round in 1..=3 {
            writeln!(w, "round {round} output").unwrap();
            rotate_dir(dir.path(), policy);
            assert_eq!(std::fs::metadata(&log).unwrap().len(), 0);
        }
        assert_eq!(
            std::fs::read_to_string(numbered(&log, 1)).unwrap(),
            "round 3 output\n"
        );
        assert_eq!(
            std::fs::read_to_string(numbered(&log, 2)).unwrap(),
            "round 2 output\n"
        );
        assert!(!numbered(&log, 3).exists());
        // Small files stay; the writer keeps writing from the start of the truncated file.
        writeln!(w, "small").unwrap();
        rotate_dir(dir.path(), policy);
        assert_eq!(std::fs::read_to_string(&log).unwrap(), "small\n");
    }
}
