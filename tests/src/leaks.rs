//! Looking for values where they must not be (secrets, sensitive configs): every file under a
//! directory, a byte search, log text without colour codes; and the guard that unmounts the
//! agents' secrets tmpfs when a test ends.

use std::path::{Path, PathBuf};
use std::process::Command;

/// Every regular file under `dir` (not following symlinks), skipping `skip`.
pub fn files_under(dir: &Path, skip: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let p = e.path();
        if p == skip {
            continue;
        }
        let Ok(ft) = e.file_type() else { continue };
        if ft.is_dir() {
            files_under(&p, skip, out);
        } else if ft.is_file() {
            out.push(p);
        }
    }
}

pub fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

/// Whether `dir` is a tmpfs mount point.
pub fn is_tmpfs(dir: &Path) -> bool {
    let Ok(dir) = dir.canonicalize() else {
        return false;
    };
    std::fs::read_to_string("/proc/mounts")
        .unwrap_or_default()
        .lines()
        .any(|l| {
            let f: Vec<&str> = l.split(' ').collect();
            f.len() > 2 && Path::new(f[1]) == dir && f[2] == "tmpfs"
        })
}

/// The text without terminal colour sequences (`ESC [ ... m`).
pub fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c == 'm' {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// Unmounts the agents' secrets tmpfs when the test ends, however it ends.
pub struct Unmount(pub Vec<PathBuf>);

impl Drop for Unmount {
    fn drop(&mut self) {
        for d in &self.0 {
            let _ = Command::new("umount")
                .arg("-l")
                .arg(d)
                .stderr(std::process::Stdio::null())
                .status();
        }
    }
}
