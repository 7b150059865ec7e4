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
use shoal_model::api::Answer;

/// How long a write or read waits for a leader before giving up.
const LEADER_WAIT: Duration = Duration::from_secs(10);
/// How long one forwarded write or read-index request may take before it is resent (to
/// whichever member leads by then). Request ids make resending safe.
const FORWARD_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a forwarded membership change may take (adding a member waits up to 60 s for it
/// to catch up).
const FORWARD_CHANGE_TIMEOUT: Duration = Duration::from_secs(75);
/// How long the leader waits for one of its writes to commit. A leader cut off from its
/// followers keeps believing it leads; its callers get `Unavailable` and retry elsewhere.
const COMMIT_WAIT: Duration = Duration::from_secs(10);

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
    /// The state machine refused the command; its kind decides the gRPC code.
    #[error(transparent)]
    Command(#[from] crate::state::Refusal),
    #[error("{0}")]
    Unavailable(String),
    #[error("internal error: {0}")]
    Internal(String),
}

/// Work forwarded from a follower to the leader.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum Forwarded {
    Write(Box<Request>),
    AddMember {
        id: NodeId,
        addr: String,
    },
    RemoveMember {
        id: NodeId,
    },
    /// From the leader to a fresh coordinator it is adding: take part in cluster `cluster_id`
    /// as member `id`. Until then a fresh coordinator refuses Raft traffic.
    Admit {
        id: NodeId,
        cluster_id: String,
    },
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
    /// Raft traffic refused while this member had no cluster (it may not initialize one then).
    pub contacts: Contacts,
}

/// Raft traffic that reached a coordinator with no cluster: proof that a cluster counts this
/// address as one of its members. Such a coordinator refuses to initialize a new cluster.
#[derive(Clone, Default)]
pub struct Contacts {
    first: Arc<std::sync::Mutex<Option<String>>>,
}

impl Contacts {
    /// Records a refused Raft call from cluster `cluster_id` (`None`: no cluster id sent).
    pub fn record(&self, cluster_id: Option<&str>) {
        let mut first = self.first.lock().unwrap_or_else(|p| p.into_inner());
        if first.is_none() {
            *first = Some(cluster_id.unwrap_or("(unnamed)").to_string());
        }
    }

    /// The cluster id of the first refused Raft call, if any came.
    pub fn first(&self) -> Option<String> {
        self.first.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

pub fn now_millis() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

impl Coordinator {
    /// Builds a request for `command` stamped with this coordinator's clock.
    pub(crate) fn request(&self, request_id: Option<String>, command: Command) -> Request {
        let request_id = request_id.or_else(|| Some(uuid::Uuid::new_v4().to_string()));
        Request {
            request_id,
            now: now_millis(),
            command,
        }
    }

    /// The log entry that hands a CA made at `--bootstrap` (with the first join-token secrets
    /// and the certificates already issued) to the replicated state.
    pub fn init_pki_request(
        &self,
        ca: shoal_pki::CertAuthority,
        agent_secret: crate::state::pki::Redacted,
        coordinator_secret: crate::state::pki::Redacted,
        issued: Vec<crate::state::pki::CertRecord>,
    ) -> Request {
        self.request(
            None,
            Command::InitPki {
                ca,
                agent_secret,
                coordinator_secret,
                issued,
            },
        )
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
                    Some(node) => {
                        let ttl = match work {
                            Forwarded::AddMember { .. } | Forwarded::RemoveMember { .. } => {
                                FORWARD_CHANGE_TIMEOUT
                            }
                            _ => FORWARD_TIMEOUT,
                        };
                        self.while_leader(leader, ttl, self.forward(&node.addr, &work))
                            .await
                    }
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

    /// Runs `call` (a request to `leader`) for at most `ttl`, and gives up as soon as this
    /// member learns of another leader (or of none): the caller resends to the new one.
    async fn while_leader<T>(
        &self,
        leader: NodeId,
        ttl: Duration,
        call: impl std::future::Future<Output = Result<T, CoordError>>,
    ) -> Result<T, CoordError> {
        let mut rx = self.raft.metrics();
        let moved = async move {
            loop {
                if rx.borrow_and_update().current_leader != Some(leader) {
                    return;
                }
                if rx.changed().await.is_err() {
                    return;
                }
            }
        };
        tokio::select! {
            r = tokio::time::timeout(ttl, call) => r.unwrap_or_else(|_| {
                Err(CoordError::Unavailable(format!(
                    "leader {leader} did not answer within {ttl:?}"
                )))
            }),
            () = moved => {
                tracing::debug!(leader, "leadership moved during a forwarded call; resending");
                Err(CoordError::Unavailable(format!(
                    "leadership moved away from member {leader} during the call"
                )))
            }
        }
    }

    /// Does leader-only work on this member. Fails with `NotLeader` if it is not the leader.
    pub async fn local(&self, work: Forwarded) -> Result<ForwardedReply, CoordError> {
        match work {
            Forwarded::Write(req) => {
                let result = tokio::time::timeout(COMMIT_WAIT, self.batcher.write(*req)).await;
                self.metrics.proposal(matches!(result, Ok(Some(Ok(_)))));
                match result {
                    Ok(Some(Ok((response, log_index)))) => Ok(ForwardedReply::Written {
                        response,
                        log_index,
                    }),
                    Ok(Some(Err(e))) => Err(write_error(&e)),
                    Ok(None) => Err(CoordError::Unavailable(
                        "this coordinator is shutting down".into(),
                    )),
                    Err(_) => Err(CoordError::Unavailable(format!(
                        "not committed within {COMMIT_WAIT:?} (this leader may be cut off); \
                         retry with the same request id"
                    ))),
                }
            }
            Forwarded::AddMember { id, addr } => self.add_member(id, addr).await,
            Forwarded::RemoveMember { id } => self.remove_member(id).await,
            Forwarded::Admit { id, cluster_id } => self.admitted(id, &cluster_id).await,
        }
    }

    /// On a fresh coordinator: the leader of `cluster_id` is adding it as member `id`.
    async fn admitted(&self, id: NodeId, cluster_id: &str) -> Result<ForwardedReply, CoordError> {
        if id != self.id {
            return Err(CoordError::Refused(format!(
                "this coordinator is member {}, not {id}; nothing changed",
                self.id
            )));
        }
        match self.tag.get() {
            Some(ours) if ours == cluster_id => {}
            Some(ours) => {
                return Err(CoordError::Refused(format!(
                    "this coordinator belongs to cluster {ours}, not {cluster_id}; nothing changed"
                )))
            }
            None => {
                let initialized = self
                    .raft
                    .is_initialized()
                    .await
                    .map_err(|e| CoordError::Internal(e.to_string()))?;
                if initialized {
                    return Err(CoordError::Refused(
                        "this coordinator already has Raft state; nothing changed".into(),
                    ));
                }
                self.record_cluster_id(cluster_id)?;
                tracing::info!(
                    cluster_id,
                    member = id,
                    "admitted to the cluster by its leader"
                );
            }
        }
        Ok(ForwardedReply::Done {
            message: format!("member {id} admitted to cluster {cluster_id}"),
        })
    }

    /// Tells the fresh coordinator at `addr` that it is being added as member `id`.
    async fn admit(&self, id: NodeId, addr: &str) -> Result<(), CoordError> {
        let cluster_id = self
            .tag
            .get()
            .ok_or_else(|| CoordError::Internal("the leader has no cluster id".into()))?;
        let work = Forwarded::Admit { id, cluster_id };
        match tokio::time::timeout(FORWARD_TIMEOUT, self.forward(addr, &work)).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(CoordError::Refused(format!(
                "the coordinator at {addr} refused to be added as member {id}: {e}"
            ))),
            Err(_) => Err(CoordError::Unavailable(format!(
                "the coordinator at {addr} did not answer the admission; nothing changed"
            ))),
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
    pub async fn read(&self, q: &Query, stale: bool) -> Result<(Answer, u64), CoordError> {
        if !stale {
            self.linearize().await?;
        }
        // The index of the very state read, not of a later one.
        Ok(self.sm.read_at(|s| s.query(q)))
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
                    Some(node) => match self
                        .while_leader(l, FORWARD_TIMEOUT, self.leader_read_index(&node.addr))
                        .await
                    {
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
        if let Some(theirs) = self.contacts.first() {
            return Err(CoordError::Refused(format!(
                "refusing to initialize a new cluster: members of cluster {theirs} sent Raft \
                 traffic to this address, so that cluster still counts a member here. A second \
                 cluster would split the control plane. If this coordinator lost its data dir, \
                 replace it as README.md says (\"Replacing a lost coordinator\": `shoalctl \
                 cluster remove <old id>`, then start it with a new --id and --join); nothing \
                 changed"
            )));
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
                "duplicate member id {id}: already a member at {}; nothing changed. Member ids \
                 are never reused: a coordinator that lost its data dir joins under a new id \
                 after `shoalctl cluster remove {id}` (README.md, \"Replacing a lost \
                 coordinator\")",
                node.addr
            )));
        }
        if let Some((other, _)) = membership.nodes().find(|(_, n)| n.addr == addr) {
            return Err(CoordError::Refused(format!(
                "address {addr} already belongs to member {other}; nothing changed"
            )));
        }
        self.probe_new_member(id, &addr).await?;
        self.admit(id, &addr).await?;
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

    /// True once the Raft core has stopped (its metrics sender is gone).
    pub fn raft_stopped(&self) -> bool {
        self.raft.metrics().has_changed().is_err()
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
        // A Raft core that stopped (openraft `Fatal`) leads nothing, whatever it last reported.
        let running = m.running_state.is_ok() && !self.raft_stopped();
        let state = if running {
            format!("{:?}", m.state).to_lowercase()
        } else {
            "stopped".into()
        };
        let leader = m.current_leader.filter(|_| running);
        ClusterStatusReply {
            node_id: self.id,
            leader_id: leader.unwrap_or(0),
            has_leader: leader.is_some(),
            term: m.current_term,
            last_log_index: last_log,
            committed_index: committed,
            applied_index: m.last_applied.map(|l| l.index).unwrap_or(0),
            state,
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
