//! [`Answer`]: what a [`Query`] returns, one variant per query.

use serde::{Deserialize, Deserializer, Serialize};

use super::{ConfigInfo, Event, Query};
use crate::{Node, Service, Task};

/// The answer to a [`Query`]. On the wire it is the bare value (no tag): the asker knows which
/// query it sent, and [`Answer::decode`] reads the value back as that query's variant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum Answer {
    Services(Vec<Service>),
    Service(Option<Box<Service>>),
    Tasks(Vec<Task>),
    Nodes(Vec<Node>),
    Events(Vec<Event>),
    ClusterId(Option<String>),
    Configs(Vec<ConfigInfo>),
    Config(Option<ConfigInfo>),
}

impl Answer {
    /// Reads the answer to `query` from any serde format.
    pub fn decode<'de, D: Deserializer<'de>>(query: &Query, d: D) -> Result<Answer, D::Error> {
        Ok(match query {
            Query::Services => Answer::Services(Deserialize::deserialize(d)?),
            Query::Service { .. } => Answer::Service(Deserialize::deserialize(d)?),
            Query::Tasks { .. } => Answer::Tasks(Deserialize::deserialize(d)?),
            Query::Nodes => Answer::Nodes(Deserialize::deserialize(d)?),
            Query::Events { .. } => Answer::Events(Deserialize::deserialize(d)?),
            Query::ClusterId => Answer::ClusterId(Deserialize::deserialize(d)?),
            Query::Configs => Answer::Configs(Deserialize::deserialize(d)?),
            Query::Config { .. } => Answer::Config(Deserialize::deserialize(d)?),
        })
    }

    /// The variant's name, for an error about an unexpected answer.
    pub fn kind(&self) -> &'static str {
        match self {
            Answer::Services(_) => "services",
            Answer::Service(_) => "service",
            Answer::Tasks(_) => "tasks",
            Answer::Nodes(_) => "nodes",
            Answer::Events(_) => "events",
            Answer::ClusterId(_) => "cluster_id",
            Answer::Configs(_) => "configs",
            Answer::Config(_) => "config",
        }
    }
}
