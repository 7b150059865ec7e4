//! Which log events the coordinator drops: openraft's routine per-RPC ERROR lines.
//!
//! openraft 0.9 logs an ERROR for every failed or timed-out replication, vote or leadership
//! confirmation RPC: every 50-100 ms per unreachable peer, as long as a peer is down. Those
//! lines buried real errors (issue 11). A failed replication RPC still shows as openraft's own
//! WARN ("error replication to target=..."); a failed vote or read-confirmation RPC shows in the
//! network layer's debug log (`raft/network.rs`) and in its effect (no leader, a read refused).
//! Every other openraft ERROR passes.
//!
//! The sites are named by file and line in openraft 0.9.25 (pinned by Cargo.lock); after an
//! upgrade of openraft, check them again (`routine_sites_are_in_the_locked_openraft` below).

use tracing::{Level, Metadata};

/// `(file, line)` of openraft 0.9.25's routine per-RPC ERROR events.
const ROUTINE_OPENRAFT_ERRORS: [(&str, u32); 4] = [
    // ReplicationError::RPCError: "RPCError" (also logged as WARN at line 258).
    ("src/replication/mod.rs", 284),
    // "timeout while confirming leadership for read request".
    ("src/core/raft_core.rs", 383),
    // Vote RPC "timeout".
    ("src/core/raft_core.rs", 1099),
    // "while requesting vote".
    ("src/core/raft_core.rs", 1112),
];

/// False for the events the coordinator drops (see the module).
pub fn keep(meta: &Metadata<'_>) -> bool {
    if *meta.level() != Level::ERROR || !meta.target().starts_with("openraft") {
        return true;
    }
    let (Some(file), Some(line)) = (meta.file(), meta.line()) else {
        return true;
    };
    !ROUTINE_OPENRAFT_ERRORS
        .iter()
        .any(|(f, l)| *l == line && file.ends_with(f))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The lines still hold the routine events in the openraft source this build uses.
    #[test]
    fn routine_sites_are_in_the_locked_openraft() {
        let Some(home) = std::env::var_os("CARGO_HOME")
            .map(std::path::PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|h| std::path::Path::new(&h).join(".cargo")))
        else {
            return;
        };
        let Ok(registries) = std::fs::read_dir(home.join("registry/src")) else {
            return;
        };
        for reg in registries.flatten() {
            let dir = reg.path().join("openraft-0.9.25");
            if !dir.is_dir() {
                continue;
            }
            for (file, line) in ROUTINE_OPENRAFT_ERRORS {
                let text = std::fs::read_to_string(dir.join(file)).unwrap();
                let at = text.lines().nth(line as usize - 1).unwrap();
                assert!(at.contains("tracing::error!"), "{file}:{line} is `{at}`");
            }
        }
    }
}
