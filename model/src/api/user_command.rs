//! [`UserCommand`]: the changes an operator may ask for through `Control.Apply`.

use serde::{Deserialize, Serialize};

use crate::{NodeAvailability, ServiceSpec};

/// Every change the control API accepts. Its JSON form (a `type` tag in snake case) is the
/// same as the matching Raft log entries', so clients older than this type keep working.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "type")]
pub enum UserCommand {
    CreateService {
        name: String,
        spec: ServiceSpec,
    },
    UpdateService {
        name: String,
        spec: ServiceSpec,
    },
    RemoveService {
        name: String,
    },
    /// Rolls a service back to its previous spec, with `rollback_config`'s pace.
    RollbackService {
        name: String,
    },
    /// Pauses (`paused: true`) or resumes a service's rollout.
    PauseUpdate {
        name: String,
        paused: bool,
    },
    /// Removes the services and secrets of one stack (stacks are applied with
    /// `Control.StackApply`, which parses the file on the coordinator).
    RemoveStack {
        stack: String,
    },
    /// Operator changes to a node.
    UpdateNode {
        name: String,
        availability: Option<NodeAvailability>,
        add_labels: Vec<(String, String)>,
        remove_labels: Vec<String>,
    },
    /// Forgets a node that is down. Without `force` it is refused while the node may still run
    /// tasks of services that wait for it (services with data).
    RemoveNode {
        name: String,
        #[serde(default)]
        force: bool,
    },
}

/// What an accepted [`UserCommand`] produced.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Applied {
    /// Version of the object the command created or changed, when there is one.
    #[serde(default)]
    pub version: Option<u64>,
    /// Raft log index at which the command was applied.
    #[serde(default)]
    pub log_index: u64,
}
