//! [`Coordinator`]: one member's handle on the replicated state. Writes go through Raft (and
//! to the leader, wherever they arrive); reads are linearizable unless asked to be stale.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use openraft::error::{ClientWriteError, RaftError};
use openraft::{BasicNode, ChangeMembers, ServerState};
use serde::{Deserialize, Serialize};
use shoal_proto::control::control_client::ControlClient;
use shoal_proto::control::{ClusterStatusReply, ClusterStatusRequest, Member};
use shoal_proto::raft::RaftPayload;
use tokio::time::Instant;

use crate::batcher::Batcher;
use crate::identity_file::{self, Identity};
use crate::metrics::Metrics;
use crate::raft::identity::ClusterTag;
use crate::raft::network::{tagged, Channels};
use crate::raft::types::{NodeId, Raft};
use crate::raft::{StateMachineStore, Store};
use crate::state::{ClusterState, Command, Query, Request, Response};

/// How long a write or read waits for a leader before giving up.
const LEADER_WAIT: Duration = Duration::from_secs(10);

/// Why a call on the replicated state failed. Serializable: it travels back over forwarding.
#[derive(Debug, Clone, thiserror::Error, Serialize, Deserialize)]
pub enum CoordError {
    #[error("no leader is elected; the cluster may have lost its quorum")]
    NoLeader,
    /// Only the leader may do this; the caller forwards.
    #[error("this coordinator is not the leader")]
    NotLeader,
    #[error("{0}")]
    Refused(String),
    #[error("{0}")]
    Unavailable(String),
    #[error("internal error: {0}")]
    Internal(String),
}

/// Work forwarded from a follower to the leader.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum Forwarded {
    Write(Box<Request>),
    AddMember { id: NodeId, addr: String },
    RemoveMember { id: NodeId },
}

/// The leader's answer to [`Forwarded`].
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum ForwardedReply {
    Written { response: Response, log_index: u64 },
    Done { message: String },
}

#[derive(Clone)]
pub struct Coordinator {
    pub id: NodeId,
    pub addr: String,
    pub raft: Raft,
    pub store: Arc<Store>,
    pub sm: StateMachineStore,
    pub channels: Channels,
    pub tag: ClusterTag,
    pub metrics: Metrics,
    pub security: crate::security::Security,
    /// Groups concurrent writes into log entries (used only while this member leads).
    pub batcher: Batcher,
}

pub fn now_millis() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

impl Coordinator {
    /// Builds a request for `command` stamped with this coordinator's clock.
    pub fn request(&self, request_id: Option<String>, command: Command) -> Request {
        let request_id = request_id.or_else(|| Some(uuid::Uuid::new_v4().to_string()));
        Request {
            request_id,
            now: now_millis(),
            command,
        }
    }

    /// Appends a request to the Raft log and waits until it is applied, forwarding it to the
    /// leader when this member is a follower. Safe to retry: requests carry an idempotency key.
    pub async fn write(&self, req: Request) -> Result<(Response, u64), CoordError> {
        match self.on_leader(Forwarded::Write(Box::new(req))).await? {
            ForwardedReply::Written {
                response,
                log_index,
            } => Ok((response, log_index)),
            ForwardedReply::Done { message } => Err(CoordError::Internal(message)),
        }
    }

    /// Runs `work` on the leader: here if this member leads, else forwarded over the peer API.
    pub async fn on_leader(&self, work: Forwarded) -> Result<ForwardedReply, CoordError> {
        let deadline = Instant::now() + LEADER_WAIT;
        loop {
            let metrics = self.raft.metrics().borrow().clone();
            let result = match metrics.current_leader {
                Some(leader) if leader == self.id => self.local(work.clone()).await,
                Some(leader) => match metrics.membership_config.membership().get_node(&leader) {
                    Some(node) => self.forward(&node.addr, &work).await,
                    None => Err(CoordError::NoLeader),
                },
                None => Err(CoordError::NoLeader),
            };
            match result {
                Err(CoordError::NoLeader | CoordError::NotLeader | CoordError::Unavailable(_))
                    if Instant::now() < deadline =>
                {
                    tracing::debug!("leader unknown or unreachable; retrying");
                    let mut rx = self.raft.metrics();
                    let _ = tokio::time::timeout(Duration::from_millis(50), rx.changed()).await;
                }
                other => return other,
            }
        }
    }

    /// Does leader-only work on this member. Fails with `NotLeader` if it is not the leader.
    pub async fn local(&self, work: Forwarded) -> Result<ForwardedReply, CoordError> {
        match work {
            Forwarded::Write(req) => {
                let result = self.batcher.write(*req).await;
                self.metrics.proposal(matches!(result, Some(Ok(_))));
                match result {
                    Some(Ok((response, log_index))) => Ok(ForwardedReply::Written {
                        response,
                        log_index,
                    }),
                    Some(Err(e)) => Err(write_error(&e)),
                    None => Err(CoordError::Unavailable(
                        "this coordinator is shutting down".into(),
                    )),
                }
            }
            Forwarded::AddMember { id, addr } => self.add_member(id, addr).await,
            Forwarded::RemoveMember { id } => self.remove_member(id).await,
        }
    }

    async fn forward(&self, addr: &str, work: &Forwarded) -> Result<ForwardedReply, CoordError> {
        let mut client = self
            .channels
            .raft_client(addr)
            .map_err(|e| CoordError::Unavailable(e.to_string()))?;
        let data = serde_json::to_vec(work).map_err(|e| CoordError::Internal(e.to_string()))?;
        let reply = client
            .forward_write(tagged(&self.tag, RaftPayload { data }))
            .await
            .map_err(|s| CoordError::Unavailable(format!("leader at {addr}: {}", s.message())))?;
        serde_json::from_slice::<Result<ForwardedReply, CoordError>>(&reply.into_inner().data)
            .map_err(|e| CoordError::Internal(format!("bad forward reply: {e}")))?
    }

    /// Answers a query: after a linearizability check with the leader unless `stale`.
    pub async fn read(
        &self,
        q: &Query,
        stale: bool,
    ) -> Result<(serde_json::Value, u64), CoordError> {
        if !stale {
            self.linearize().await?;
        }
        Ok((self.sm.read(|s| s.query(q)), self.sm.applied_index()))
    }

    /// Reads local state through `f` after a linearizability check.
    pub async fn read_with<R>(&self, f: impl FnOnce(&ClusterState) -> R) -> Result<R, CoordError> {
        self.linearize().await?;
        Ok(self.sm.read(f))
    }

    /// Waits until this member's state machine has applied everything the leader had
    /// committed when the call began.
    async fn linearize(&self) -> Result<(), CoordError> {
        let deadline = Instant::now() + LEADER_WAIT;
        loop {
            let metrics = self.raft.metrics().borrow().clone();
            let err = match metrics.current_leader {
                Some(l) if l == self.id => match self.raft.ensure_linearizable().await {
                    Ok(_) => return Ok(()),
                    Err(e) => {
                        if e.forward_to_leader().is_some() {
                            CoordError::NotLeader
                        } else {
                            CoordError::Internal(e.to_string())
                        }
                    }
                },
                Some(l) => match metrics.membership_config.membership().get_node(&l) {
                    Some(node) => match self.leader_read_index(&node.addr).await {
                        Ok(index) => return self.wait_applied(index, deadline).await,
                        Err(e) => e,
                    },
                    None => CoordError::NoLeader,
                },
                None => CoordError::NoLeader,
            };
            if Instant::now() >= deadline {
                return Err(err);
            }
            let mut rx = self.raft.metrics();
            let _ = tokio::time::timeout(Duration::from_millis(50), rx.changed()).await;
        }
    }

    /// Asks the leader for a read index: it confirms its leadership and returns its commit index.
    async fn leader_read_index(&self, addr: &str) -> Result<u64, CoordError> {
        let mut client = self
            .channels
            .raft_client(addr)
            .map_err(|e| CoordError::Unavailable(e.to_string()))?;
        let reply = client
            .forward_read(tagged(&self.tag, RaftPayload { data: Vec::new() }))
            .await
            .map_err(|s| CoordError::Unavailable(format!("leader at {addr}: {}", s.message())))?;
        serde_json::from_slice::<Result<u64, CoordError>>(&reply.into_inner().data)
            .map_err(|e| CoordError::Internal(format!("bad read-index reply: {e}")))?
    }

    /// On the leader: confirms leadership with a quorum and returns the index a read must see.
    pub async fn read_index(&self) -> Result<u64, CoordError> {
        match self.raft.ensure_linearizable().await {
            Ok(log_id) => Ok(log_id.map(|l| l.index).unwrap_or(0)),
            Err(e) if e.forward_to_leader().is_some() => Err(CoordError::NotLeader),
            Err(e) => Err(CoordError::Internal(e.to_string())),
        }
    }

    async fn wait_applied(&self, index: u64, deadline: Instant) -> Result<(), CoordError> {
        let mut rx = self.sm.watch_applied();
        loop {
            if *rx.borrow_and_update() >= index {
                return Ok(());
            }
            match tokio::time::timeout_at(deadline, rx.changed()).await {
                Ok(Ok(())) => {}
                _ => {
                    return Err(CoordError::Unavailable(format!(
                        "this member did not catch up to index {index} in time"
                    )))
                }
            }
        }
    }

    /// Initializes a new single-member cluster and records a fresh cluster id.
    pub async fn init_cluster(&self) -> Result<String, CoordError> {
        let initialized = self
            .raft
            .is_initialized()
            .await
            .map_err(|e| CoordError::Internal(e.to_string()))?;
        if initialized || self.tag.get().is_some() {
            return Err(CoordError::Refused(
                "this coordinator already belongs to a cluster; nothing changed".into(),
            ));
        }
        let cluster_id = uuid::Uuid::new_v4().to_string();
        self.record_cluster_id(&cluster_id)?;
        let members = BTreeMap::from([(
            self.id,
            BasicNode {
                addr: self.addr.clone(),
            },
        )]);
        self.raft
            .initialize(members)
            .await
            .map_err(|e| CoordError::Internal(e.to_string()))?;
        let req = self.request(
            None,
            Command::InitCluster {
                cluster_id: cluster_id.clone(),
            },
        );
        self.write(req).await?;
        tracing::info!(cluster_id = %cluster_id, node_id = self.id, "cluster initialized");
        Ok(cluster_id)
    }

    /// Persists the cluster id in the data dir's identity file, then tags RPCs with it.
    pub fn record_cluster_id(&self, cluster_id: &str) -> Result<(), CoordError> {
        let id = Identity {
            node_id: self.id,
            cluster_id: Some(cluster_id.to_string()),
        };
        identity_file::write(self.store.path(), &id)
            .map_err(|e| CoordError::Internal(e.to_string()))?;
        self.tag.set(cluster_id);
        Ok(())
    }

    async fn add_member(&self, id: NodeId, addr: String) -> Result<ForwardedReply, CoordError> {
        let metrics = self.raft.metrics().borrow().clone();
        if metrics.current_leader != Some(self.id) {
            return Err(CoordError::NotLeader);
        }
        let membership = metrics.membership_config.membership().clone();
        if let Some(node) = membership.get_node(&id) {
            return Err(CoordError::Refused(format!(
                "duplicate member id {id}: already a member at {}; nothing changed",
                node.addr
            )));
        }
        if let Some((other, _)) = membership.nodes().find(|(_, n)| n.addr == addr) {
            return Err(CoordError::Refused(format!(
                "address {addr} already belongs to member {other}; nothing changed"
            )));
        }
        self.probe_new_member(id, &addr).await?;
        let node = BasicNode { addr: addr.clone() };
        let learner = tokio::time::timeout(
            Duration::from_secs(60),
            self.raft.add_learner(id, node, true),
        );
        match learner.await {
            Err(_) => {
                return Err(CoordError::Unavailable(format!(
                    "member {id} at {addr} did not catch up within 60s; it stays a learner"
                )))
            }
            Ok(Err(e)) => return Err(write_error(&e)),
            Ok(Ok(_)) => {}
        }
        tracing::info!(member = id, %addr, "learner caught up; promoting to voter");
        self.raft
            .change_membership(ChangeMembers::AddVoterIds(BTreeSet::from([id])), false)
            .await
            .map_err(|e| write_error(&e))?;
        Ok(ForwardedReply::Done {
            message: format!("member {id} at {addr} added as a voter"),
        })
    }

    /// Checks that `addr` serves a fresh coordinator with id `id` before adding it.
    async fn probe_new_member(&self, id: NodeId, addr: &str) -> Result<(), CoordError> {
        let unreachable = |e: String| {
            CoordError::Unavailable(format!(
                "cannot reach new member {id} at {addr}: {e}; nothing changed"
            ))
        };
        let channel = self
            .channels
            .get(addr)
            .map_err(|e| unreachable(e.to_string()))?;
        let mut client = ControlClient::new(channel);
        let call = client.cluster_status(ClusterStatusRequest {});
        let status = match tokio::time::timeout(Duration::from_secs(3), call).await {
            Err(_) => return Err(unreachable("timed out".into())),
            Ok(Err(s)) => return Err(unreachable(s.message().to_string())),
            Ok(Ok(r)) => r.into_inner(),
        };
        if status.node_id != id {
            return Err(CoordError::Refused(format!(
                "the coordinator at {addr} is configured as member {}, not {id}; nothing changed",
                status.node_id
            )));
        }
        let ours = self.tag.get().unwrap_or_default();
        if !status.cluster_id.is_empty() && status.cluster_id != ours {
            return Err(CoordError::Refused(format!(
                "the coordinator at {addr} belongs to another cluster ({}); refusing to add it \
                 to cluster {ours}; nothing changed",
                status.cluster_id
            )));
        }
        Ok(())
    }

    async fn remove_member(&self, id: NodeId) -> Result<ForwardedReply, CoordError> {
        let metrics = self.raft.metrics().borrow().clone();
        if metrics.current_leader != Some(self.id) {
            return Err(CoordError::NotLeader);
        }
        let membership = metrics.membership_config.membership().clone();
        let voters: BTreeSet<NodeId> = membership.voter_ids().collect();
        let change = if voters.contains(&id) {
            if voters.len() == 1 {
                return Err(CoordError::Refused(format!(
                    "cannot remove member {id}: it is the last voter; nothing changed"
                )));
            }
            ChangeMembers::RemoveVoters(BTreeSet::from([id]))
        } else if membership.get_node(&id).is_some() {
            ChangeMembers::RemoveNodes(BTreeSet::from([id]))
        } else {
            return Err(CoordError::Refused(format!(
                "member {id} is not in the cluster; nothing changed"
            )));
        };
        self.raft
            .change_membership(change, false)
            .await
            .map_err(|e| write_error(&e))?;
        // Its certificates stop working: a removed member cannot come back with them.
        let revoke = self.request(None, Command::RevokeMember { member_id: id });
        match self.batcher.write(revoke).await {
            Some(Ok(_)) => {}
            Some(Err(e)) => {
                tracing::warn!(member = id, error = %e, "cannot revoke the removed member's certificates")
            }
            None => tracing::warn!(member = id, "shutting down: certificates not revoked"),
        }
        Ok(ForwardedReply::Done {
            message: format!("member {id} removed"),
        })
    }

    /// This member's view of the cluster.
    pub async fn status(&self) -> ClusterStatusReply {
        let m = self.raft.metrics().borrow().clone();
        let committed = self
            .raft
            .with_raft_state(|st| st.committed.map(|l| l.index).unwrap_or(0))
            .await
            .unwrap_or(0);
        let last_log = m.last_log_index.unwrap_or(0);
        let membership = m.membership_config.membership();
        let voters: BTreeSet<NodeId> = membership.voter_ids().collect();
        let replication = m.replication.clone().unwrap_or_default();
        let members = membership
            .nodes()
            .map(|(id, node)| {
                let matched = if *id == self.id && m.state == ServerState::Leader {
                    Some(last_log)
                } else {
                    replication.get(id).map(|l| l.map(|l| l.index).unwrap_or(0))
                };
                Member {
                    id: *id,
                    addr: node.addr.clone(),
                    role: if voters.contains(id) {
                        "voter"
                    } else {
                        "learner"
                    }
                    .into(),
                    matched_index: matched.unwrap_or(0),
                    lag: matched
                        .map(|x| last_log.saturating_sub(x) as i64)
                        .unwrap_or(-1),
                }
            })
            .collect();
        ClusterStatusReply {
            node_id: self.id,
            leader_id: m.current_leader.unwrap_or(0),
            has_leader: m.current_leader.is_some(),
            term: m.current_term,
            last_log_index: last_log,
            committed_index: committed,
            applied_index: m.last_applied.map(|l| l.index).unwrap_or(0),
            state: format!("{:?}", m.state).to_lowercase(),
            members,
            cluster_id: self.tag.get().unwrap_or_default(),
            snapshot_index: m.snapshot.map(|l| l.index).unwrap_or(0),
            purged_index: m.purged.map(|l| l.index).unwrap_or(0),
        }
    }
}

fn write_error(e: &RaftError<NodeId, ClientWriteError<NodeId, BasicNode>>) -> CoordError {
    if e.forward_to_leader().is_some() {
        return CoordError::NotLeader;
    }
    match e {
        RaftError::APIError(ClientWriteError::ChangeMembershipError(c)) => {
            CoordError::Refused(format!("membership change refused: {c}"))
        }
        other => CoordError::Internal(other.to_string()),
    }
}
