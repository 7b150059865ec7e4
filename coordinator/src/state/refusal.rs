//! [`Refusal`]: why the state machine left the state unchanged, with a kind the control API
//! maps to a gRPC code (`api::status_of`, the one place).

use serde::{Deserialize, Serialize};

/// The kind of a refusal. Stored beside the message in a [`Response`](super::Response)
/// (answers to retried requests live in snapshots): add kinds, never rename them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RefusalKind {
    /// The named service, node or stack does not exist.
    NotFound,
    /// The object to create exists already.
    AlreadyExists,
    /// The command itself is malformed (a bad name, a secret outside a stack).
    Invalid,
    /// The command is well formed but the state does not allow it now.
    Precondition,
}

/// A refused command: its kind and a message naming the problem. Made only at the control API's
/// edge (a coordinator's answer to a peer carries the [`Response`](super::Response) instead).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("{message}")]
pub struct Refusal {
    pub kind: RefusalKind,
    pub message: String,
}

impl Refusal {
    pub fn new(kind: RefusalKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
        }
    }
}
