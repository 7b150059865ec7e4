//! [`Query`]: the reads `Control.Query` answers.

use serde::{Deserialize, Serialize};

/// A read of cluster state; [`Answer::decode`](super::Answer::decode) names the answer each one
/// gets.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "type")]
pub enum Query {
    /// Every service: [`Answer::Services`](super::Answer::Services).
    Services,
    /// One service, if it exists: [`Answer::Service`](super::Answer::Service).
    Service { name: String },
    /// Tasks, optionally of one service and/or on one node: [`Answer::Tasks`](super::Answer::Tasks).
    Tasks {
        service: Option<String>,
        node: Option<String>,
    },
    /// Every node: [`Answer::Nodes`](super::Answer::Nodes).
    Nodes,
    /// Events with a sequence number greater than `after`: [`Answer::Events`](super::Answer::Events).
    Events { after: u64 },
    /// The cluster's id, once initialized: [`Answer::ClusterId`](super::Answer::ClusterId).
    ClusterId,
    /// Every config (never a value): [`Answer::Configs`](super::Answer::Configs).
    Configs,
    /// One config, with its value unless it is sensitive: [`Answer::Config`](super::Answer::Config).
    Config { name: String },
}
