//! The Raft network: openraft's RPCs carried over gRPC (`proto::raft`), JSON inside `bytes`.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use openraft::error::{
    InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, Unreachable,
};
use openraft::network::{Backoff, RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use serde::de::DeserializeOwned;
use serde::Serialize;
use shoal_proto::raft::raft_client::RaftClient;
use shoal_proto::raft::RaftPayload;
use tonic::transport::{Channel, ClientTlsConfig, Endpoint};

use super::identity::ClusterTag;
use super::types::{Node, NodeId, TypeConfig};
use crate::metrics::Metrics;

/// gRPC metadata key carrying the sender's cluster id on every coordinator-to-coordinator call.
pub const CLUSTER_HEADER: &str = "shoal-cluster-id";

/// Opens (and caches) one lazily connected channel per peer address; over mutual TLS with this
/// coordinator's certificate unless the cluster runs insecure. A renewed certificate replaces
/// the TLS settings and drops the cached channels, so every new connection presents it.
#[derive(Clone, Default)]
pub struct Channels {
    inner: Arc<Mutex<ChannelsInner>>,
}

#[derive(Default)]
struct ChannelsInner {
    tls: Option<ClientTlsConfig>,
    peers: BTreeMap<String, Channel>,
}

impl Channels {
    /// Channels that present `tls` (None: plaintext, insecure mode).
    pub fn new(tls: Option<ClientTlsConfig>) -> Channels {
        Channels {
            inner: Arc::new(Mutex::new(ChannelsInner {
                tls,
                peers: BTreeMap::new(),
            })),
        }
    }

    /// From now on, connect with `tls` (this coordinator's renewed certificate). Cached channels
    /// are dropped: calls already under way finish on their connection, later calls open new
    /// ones.
    pub fn set_tls(&self, tls: ClientTlsConfig) {
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        inner.tls = Some(tls);
        inner.peers.clear();
    }

    pub fn get(&self, addr: &str) -> Result<Channel, tonic::transport::Error> {
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(ch) = inner.peers.get(addr) {
            return Ok(ch.clone());
        }
        let endpoint = match &inner.tls {
            Some(tls) => {
                Endpoint::from_shared(format!("https://{addr}"))?.tls_config(tls.clone())?
            }
            None => Endpoint::from_shared(format!("http://{addr}"))?,
        };
        let ch = endpoint
            .connect_timeout(Duration::from_millis(500))
            .tcp_nodelay(true)
            .http2_keep_alive_interval(Duration::from_secs(5))
            .connect_lazy();
        inner.peers.insert(addr.to_string(), ch.clone());
        Ok(ch)
    }

    pub fn raft_client(&self, addr: &str) -> Result<RaftClient<Channel>, tonic::transport::Error> {
        Ok(RaftClient::new(self.get(addr)?).max_decoding_message_size(256 << 20))
    }
}

/// Builds a client per peer for openraft.
#[derive(Clone)]
pub struct NetworkFactory {
    pub channels: Channels,
    pub tag: ClusterTag,
    /// Where the size of every AppendEntries sent is counted.
    pub metrics: Metrics,
}

impl RaftNetworkFactory<TypeConfig> for NetworkFactory {
    type Network = PeerClient;

    async fn new_client(&mut self, target: NodeId, node: &Node) -> Self::Network {
        PeerClient {
            target,
            addr: node.addr.clone(),
            channels: self.channels.clone(),
            tag: self.tag.clone(),
            metrics: self.metrics.clone(),
        }
    }
}

/// openraft keeps one of these per replication stream for as long as it leads, so it looks up
/// the peer's channel at every call: after a certificate renewal the next call uses a channel
/// that presents the new certificate.
pub struct PeerClient {
    target: NodeId,
    addr: String,
    channels: Channels,
    tag: ClusterTag,
    metrics: Metrics,
}

/// Attaches the cluster id header to a request.
pub fn tagged<T>(tag: &ClusterTag, msg: T) -> tonic::Request<T> {
    let mut req = tonic::Request::new(msg);
    if let Some(id) = tag.get() {
        if let Ok(v) = id.parse() {
            req.metadata_mut().insert(CLUSTER_HEADER, v);
        }
    }
    req
}

#[derive(Clone, Copy)]
enum Rpc {
    /// With the number of log entries carried.
    Append(usize),
    Vote,
    Snapshot,
}

impl PeerClient {
    async fn call<Req, Resp, E>(
        &mut self,
        rpc: Rpc,
        req: &Req,
        ttl: Duration,
    ) -> Result<Resp, RPCError<NodeId, Node, RaftError<NodeId, E>>>
    where
        Req: Serialize,
        Resp: DeserializeOwned,
        E: std::error::Error + DeserializeOwned,
    {
        let mut client = self
            .channels
            .raft_client(&self.addr)
            .map_err(|e| RPCError::Unreachable(Unreachable::new(&e)))?;
        let data = serde_json::to_vec(req).map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        if let Rpc::Append(entries) = rpc {
            self.metrics.append_entries_sent(entries, data.len());
        }
        let msg = tagged(&self.tag, RaftPayload { data });
        let fut = async {
            match rpc {
                Rpc::Append(_) => client.append_entries(msg).await,
                Rpc::Vote => client.vote(msg).await,
                Rpc::Snapshot => client.install_snapshot(msg).await,
            }
        };
        let reply = match tokio::time::timeout(ttl, fut).await {
            Err(_) => {
                let e = std::io::Error::new(std::io::ErrorKind::TimedOut, "raft rpc timed out");
                return Err(RPCError::Network(NetworkError::new(&e)));
            }
            Ok(Err(status)) => {
                tracing::debug!(target_id = self.target, addr = %self.addr, %status, "raft rpc failed");
                return Err(match status.code() {
                    tonic::Code::Unavailable | tonic::Code::Unknown => {
                        RPCError::Unreachable(Unreachable::new(&status))
                    }
                    _ => RPCError::Network(NetworkError::new(&status)),
                });
            }
            Ok(Ok(r)) => r.into_inner(),
        };
        let res: Result<Resp, RaftError<NodeId, E>> = serde_json::from_slice(&reply.data)
            .map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        res.map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e)))
    }
}

impl RaftNetwork<TypeConfig> for PeerClient {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<NodeId>, RPCError<NodeId, Node, RaftError<NodeId>>> {
        self.call(Rpc::Append(rpc.entries.len()), &rpc, option.hard_ttl())
            .await
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<
        InstallSnapshotResponse<NodeId>,
        RPCError<NodeId, Node, RaftError<NodeId, InstallSnapshotError>>,
    > {
        self.call(Rpc::Snapshot, &rpc, option.hard_ttl()).await
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        option: RPCOption,
    ) -> Result<VoteResponse<NodeId>, RPCError<NodeId, Node, RaftError<NodeId>>> {
        self.call(Rpc::Vote, &rpc, option.hard_ttl()).await
    }

    fn backoff(&self) -> Backoff {
        // Retry an unreachable peer quickly: failover and rejoin should take well under a second.
        Backoff::new(std::iter::repeat(Duration::from_millis(100)))
    }
}
