//! Reads of cluster state, answered by [`ClusterState::query`](super::ClusterState::query).

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "type")]
pub enum Query {
    Services,
    Service {
        name: String,
    },
    Tasks {
        service: Option<String>,
        node: Option<String>,
    },
    Nodes,
    /// Events with a sequence number greater than `after`.
    Events {
        after: u64,
    },
    ClusterId,
    /// Every config: name, stack, version, size and users; never a value.
    Configs,
    /// One config, with its value unless it is sensitive.
    Config {
        name: String,
    },
}
