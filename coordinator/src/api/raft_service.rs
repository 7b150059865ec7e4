//! The peer API: openraft RPCs from other coordinators, and work forwarded to the leader.

use serde::de::DeserializeOwned;
use serde::Serialize;
use shoal_pki::Role;
use shoal_proto::raft::raft_server::Raft as RaftApi;
use shoal_proto::raft::RaftPayload;
use tonic::{Request, Response, Status};

use crate::coordinator::{Coordinator, Forwarded};
use crate::raft::network::CLUSTER_HEADER;

pub struct RaftService {
    pub coord: Coordinator,
}

fn decode<T: DeserializeOwned>(what: &str, p: &RaftPayload) -> Result<T, Status> {
    serde_json::from_slice(&p.data)
        .map_err(|e| Status::invalid_argument(format!("malformed {what} payload: {e}")))
}

fn encode<T: Serialize>(v: &T) -> Result<Response<RaftPayload>, Status> {
    let data = serde_json::to_vec(v).map_err(|e| Status::internal(e.to_string()))?;
    Ok(Response::new(RaftPayload { data }))
}

impl RaftService {
    /// Refuses callers without a coordinator certificate and traffic from another cluster.
    ///
    /// A coordinator with no cluster yet (a fresh data dir: not initialized, not admitted by a
    /// leader adding it) refuses all Raft traffic and records who sent it. Such traffic means a
    /// cluster still counts this address as a member, e.g. a member restarted under its old id
    /// on an emptied data dir: taking part would let it vote with no record of its past votes,
    /// and acknowledging entries from an empty log made the leader's Raft core panic (issue 11).
    fn check_cluster<T>(&self, req: &Request<T>) -> Result<(), Status> {
        self.check_peer(req)?;
        let theirs = req
            .metadata()
            .get(CLUSTER_HEADER)
            .and_then(|v| v.to_str().ok());
        match (self.coord.tag.get(), theirs) {
            (Some(ours), Some(theirs)) if ours != theirs => {
                Err(Status::permission_denied(format!(
                "this coordinator belongs to cluster {ours}; refusing raft traffic from cluster \
                 {theirs}"
            )))
            }
            (Some(_), _) => Ok(()),
            (None, theirs) => {
                if self.coord.contacts.first().is_none() {
                    tracing::warn!(
                        cluster_id = theirs.unwrap_or(""),
                        "refusing raft traffic: this coordinator has no cluster (fresh data dir); \
                         it takes part only once initialized or added by the leader"
                    );
                }
                self.coord.contacts.record(theirs);
                Err(Status::failed_precondition(format!(
                    "member {} has no cluster: its data dir is new or was emptied, and it was \
                     neither initialized nor added by a leader. It refuses Raft traffic. Member \
                     ids are never reused: remove member {} and add this coordinator under a new \
                     id (README.md, \"Replacing a lost coordinator\")",
                    self.coord.id, self.coord.id
                )))
            }
        }
    }

    /// Refuses callers without a coordinator certificate.
    fn check_peer<T>(&self, req: &Request<T>) -> Result<(), Status> {
        self.coord.security.authorize(
            &self.coord.sm,
            req,
            "the raft peer API",
            &[Role::Coordinator],
        )?;
        Ok(())
    }
}

#[tonic::async_trait]
impl RaftApi for RaftService {
    async fn append_entries(
        &self,
        req: Request<RaftPayload>,
    ) -> Result<Response<RaftPayload>, Status> {
        self.check_cluster(&req)?;
        let rpc = decode("append-entries", req.get_ref())?;
        encode(&self.coord.raft.append_entries(rpc).await)
    }

    async fn vote(&self, req: Request<RaftPayload>) -> Result<Response<RaftPayload>, Status> {
        self.check_cluster(&req)?;
        let rpc = decode("vote", req.get_ref())?;
        encode(&self.coord.raft.vote(rpc).await)
    }

    async fn install_snapshot(
        &self,
        req: Request<RaftPayload>,
    ) -> Result<Response<RaftPayload>, Status> {
        self.check_cluster(&req)?;
        let rpc = decode("install-snapshot", req.get_ref())?;
        encode(&self.coord.raft.install_snapshot(rpc).await)
    }

    async fn forward_write(
        &self,
        req: Request<RaftPayload>,
    ) -> Result<Response<RaftPayload>, Status> {
        let work: Forwarded = decode("forwarded", req.get_ref())?;
        // The one call a coordinator with no cluster yet answers: the leader admitting it.
        if matches!(work, Forwarded::Admit { .. }) {
            self.check_peer(&req)?;
        } else {
            self.check_cluster(&req)?;
        }
        encode(&self.coord.local(work).await)
    }

    async fn forward_read(
        &self,
        req: Request<RaftPayload>,
    ) -> Result<Response<RaftPayload>, Status> {
        self.check_cluster(&req)?;
        encode(&self.coord.read_index().await)
    }
}
