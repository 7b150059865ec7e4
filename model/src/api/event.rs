//! [`Event`]: one entry of the cluster's event ring (`shoalctl events`).

use serde::{Deserialize, Serialize};

use crate::Millis;

/// What an [`Event`] is about. Stored in snapshots by its snake-case name: add kinds, never
/// rename them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    Cluster,
    Service,
    Node,
    Task,
    Secret,
    Config,
    Certificate,
    /// A kind this build does not know (written by a newer one).
    #[serde(other)]
    Other,
}

/// A cluster event, kept in a bounded ring in the replicated state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    pub seq: u64,
    pub at: Millis,
    pub kind: EventKind,
    pub object: String,
    pub action: String,
    pub message: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_keep_their_names_and_unknown_ones_read_as_other() {
        let json = |k: EventKind| serde_json::to_string(&k).expect("serializes");
        assert_eq!(json(EventKind::Certificate), "\"certificate\"");
        assert_eq!(json(EventKind::Service), "\"service\"");
        let k: EventKind = serde_json::from_str("\"volume\"").expect("decodes");
        assert_eq!(k, EventKind::Other);
    }
}
