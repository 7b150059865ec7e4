//! The openraft type configuration for Shoal's coordinators.

use std::io::Cursor;

use crate::state::{Batch, Response};

openraft::declare_raft_types!(
    /// Shoal's Raft: [`Batch`]es of requests as log entries, one [`Response`] per request,
    /// u64 node ids.
    pub TypeConfig:
        D = Batch,
        R = Vec<Response>,
);

pub type NodeId = u64;
pub type Node = openraft::BasicNode;
pub type LogId = openraft::LogId<NodeId>;
pub type Entry = openraft::Entry<TypeConfig>;
pub type Vote = openraft::Vote<NodeId>;
pub type StoredMembership = openraft::StoredMembership<NodeId, Node>;
pub type SnapshotMeta = openraft::SnapshotMeta<NodeId, Node>;
pub type Snapshot = openraft::Snapshot<TypeConfig>;
pub type Raft = openraft::Raft<TypeConfig>;
