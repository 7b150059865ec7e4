//! A one-node openraft cluster over the sled store survives a restart: the state comes back from
//! the last snapshot plus the committed log after it. (A unit test: the Raft `Command` is private
//! to this crate.)

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use crate::raft::types::{NodeId, Raft, TypeConfig};
use crate::raft::Store;
use crate::state::{Command, Request};
use openraft::error::{InstallSnapshotError, RPCError, RaftError, Unreachable};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use openraft::{BasicNode, Config};
use shoal_model::ServiceSpec;

const TIMEOUT: Option<Duration> = Some(Duration::from_secs(10));

/// A network for a cluster of one: there is never anybody to talk to.
struct NoPeers;

fn unreachable<E: std::error::Error>() -> RPCError<NodeId, BasicNode, E> {
    RPCError::Unreachable(Unreachable::new(&std::io::Error::other(
        "one-node test cluster",
    )))
}

impl RaftNetworkFactory<TypeConfig> for NoPeers {
    type Network = NoPeers;

    async fn new_client(&mut self, _target: NodeId, _node: &BasicNode) -> NoPeers {
        NoPeers
    }
}

impl RaftNetwork<TypeConfig> for NoPeers {
    async fn append_entries(
        &mut self,
        _rpc: AppendEntriesRequest<TypeConfig>,
        _option: RPCOption,
    ) -> Result<AppendEntriesResponse<NodeId>, RPCError<NodeId, BasicNode, RaftError<NodeId>>> {
        Err(unreachable())
    }

    async fn install_snapshot(
        &mut self,
        _rpc: InstallSnapshotRequest<TypeConfig>,
        _option: RPCOption,
    ) -> Result<
        InstallSnapshotResponse<NodeId>,
        RPCError<NodeId, BasicNode, RaftError<NodeId, InstallSnapshotError>>,
    > {
        Err(unreachable())
    }

    async fn vote(
        &mut self,
        _rpc: VoteRequest<NodeId>,
        _option: RPCOption,
    ) -> Result<VoteResponse<NodeId>, RPCError<NodeId, BasicNode, RaftError<NodeId>>> {
        Err(unreachable())
    }
}

async fn start(store: &Store) -> Raft {
    let config = Config {
        cluster_name: "test".into(),
        ..Default::default()
    };
    let config = Arc::new(config.validate().expect("valid raft config"));
    Raft::new(1, config, NoPeers, store.log_store(), store.state_machine())
        .await
        .expect("start raft")
}

fn request(command: Command) -> Request {
    Request {
        request_id: None,
        now: 1_000,
        command,
    }
}

fn create(name: &str) -> Request {
    request(Command::CreateService {
        name: name.into(),
        spec: ServiceSpec::default(),
    })
}

fn services(store: &Store) -> Vec<String> {
    store
        .state_machine()
        .read(|s| s.services.keys().cloned().collect())
}

async fn run_first_life(dir: &Path) -> (u64, u64) {
    let store = Store::open(dir).expect("open store");
    let raft = start(&store).await;
    raft.initialize(BTreeMap::from([(1, BasicNode::default())]))
        .await
        .expect("initialize");
    raft.wait(TIMEOUT)
        .current_leader(1, "leader elected")
        .await
        .expect("leader");

    let init = request(Command::InitCluster {
        cluster_id: "c-1".into(),
    });
    raft.client_write(init.into()).await.expect("write init");
    let written = raft
        .client_write(create("db").into())
        .await
        .expect("write db");
    assert_eq!(written.data[0].version, Some(1));

    raft.trigger().snapshot().await.expect("trigger snapshot");
    let snapshot_at = written.log_id.index;
    raft.wait(TIMEOUT)
        .snapshot(written.log_id, "snapshot built")
        .await
        .expect("snapshot");

    let last = raft
        .client_write(create("web").into())
        .await
        .expect("write web");
    assert_eq!(services(&store), vec!["db", "web"]);
    raft.shutdown().await.expect("shutdown");
    (snapshot_at, last.log_id.index)
}

#[tokio::test]
async fn one_node_cluster_restarts_from_snapshot_and_log() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (snapshot_at, last_index) = run_first_life(dir.path()).await;

    let store = Store::open(dir.path()).expect("reopen store");
    // Before openraft replays the log, the state is the snapshot's.
    assert_eq!(store.state_machine().applied_index(), snapshot_at);
    assert_eq!(services(&store), vec!["db"]);

    let raft = start(&store).await;
    raft.wait(TIMEOUT)
        .applied_index_at_least(Some(last_index), "committed log replayed")
        .await
        .expect("replay");
    assert_eq!(services(&store), vec!["db", "web"]);
    let cluster_id = store.state_machine().read(|s| s.cluster_id.clone());
    assert_eq!(cluster_id.as_deref(), Some("c-1"));
    assert!(store.state_machine().applied_index() >= last_index);
    raft.shutdown().await.expect("shutdown");
}
