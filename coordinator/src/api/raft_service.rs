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
    /// Refuses callers without a coordinator certificate and traffic from another cluster; a
    /// member that has no cluster id yet adopts the
    /// sender's (it is being added to that cluster).
    fn check_cluster<T>(&self, req: &Request<T>) -> Result<(), Status> {
        self.coord.security.authorize(
            &self.coord.sm,
            req,
            "the raft peer API",
            &[Role::Coordinator],
        )?;
        let Some(theirs) = req
            .metadata()
            .get(CLUSTER_HEADER)
            .and_then(|v| v.to_str().ok())
        else {
            return Ok(());
        };
        match self.coord.tag.get() {
            Some(ours) if ours == theirs => Ok(()),
            Some(ours) => Err(Status::permission_denied(format!(
                "this coordinator belongs to cluster {ours}; refusing raft traffic from cluster \
                 {theirs}"
            ))),
            None => {
                self.coord
                    .record_cluster_id(theirs)
                    .map_err(|e| Status::internal(e.to_string()))?;
                tracing::info!(cluster_id = theirs, "joined cluster");
                Ok(())
            }
        }
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
        self.check_cluster(&req)?;
        let work: Forwarded = decode("forwarded", req.get_ref())?;
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
