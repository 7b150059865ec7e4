//! [`Event`]: one entry of the cluster's event ring (`shoalctl events`).

use serde::{Deserialize, Serialize};

use crate::Millis;

/// A cluster event, kept in a bounded ring in the replicated state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    pub seq: u64,
    pub at: Millis,
    /// `service`, `node`, `task`, `cluster`.
    pub kind: String,
    pub object: String,
    pub action: String,
    pub message: String,
}
