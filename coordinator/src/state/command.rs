//! The Raft log entry ([`Request`]) and what applying it returns ([`Response`]).

use serde::{Deserialize, Serialize};
use shoal_pki::{CertAuthority, Role};

use super::pki::{CertRecord, Redacted};
use shoal_model::{Millis, Node, NodeAvailability, SecretValue, ServiceSpec, Task, TaskState};

/// One Raft log entry: requests proposed together by the leader, applied in order, each on its
/// own (one [`Response`] per request). A lone write is a batch of one.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Batch(pub Vec<Request>);

impl From<Request> for Batch {
    fn from(request: Request) -> Self {
        Batch(vec![request])
    }
}

/// One write: a command, with the proposer's clock and an idempotency key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Request {
    /// A retried request with the same id is applied once; later copies return the first answer.
    pub request_id: Option<String>,
    /// The proposer's wall clock when it proposed; the state machine's only notion of time.
    pub now: Millis,
    pub command: Command,
}

/// Every change to cluster state. The one closed enum at the Raft boundary.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "type")]
pub enum Command {
    /// Marks the state with the id of the cluster it belongs to; applied once at bootstrap.
    InitCluster {
        cluster_id: String,
    },
    CreateService {
        name: String,
        spec: ServiceSpec,
    },
    UpdateService {
        name: String,
        spec: ServiceSpec,
    },
    RemoveService {
        name: String,
    },
    RegisterNode {
        node: Node,
    },
    NodeHeartbeat {
        name: String,
    },
    ReportTaskStatus {
        node: String,
        updates: Vec<TaskStatusUpdate>,
    },
    /// Creates, updates and removes the services, secrets and configs of one stack at once.
    ApplyStack {
        stack: String,
        services: Vec<(String, ServiceSpec)>,
        /// The stack's secrets with their values (`Debug` redacts them).
        #[serde(default)]
        secrets: Vec<(String, SecretValue)>,
        /// The stack's configs with their values (`Debug` redacts them).
        #[serde(default)]
        configs: Vec<super::secrets::ConfigInput>,
    },
    RemoveStack {
        stack: String,
    },
    /// Operator changes to a node.
    UpdateNode {
        name: String,
        availability: Option<NodeAvailability>,
        add_labels: Vec<(String, String)>,
        remove_labels: Vec<String>,
    },
    /// Forgets a node that is down. Without `force` it is refused while the node may still run
    /// tasks of services that wait for it (services with data): `force` is the operator's word
    /// that the node is gone, and those tasks are replaced elsewhere.
    RemoveNode {
        name: String,
        #[serde(default)]
        force: bool,
    },
    /// The leader heard nothing from the node within its grace period.
    MarkNodeDown {
        name: String,
    },
    /// Orchestrator output: one reconciliation pass.
    Reconcile(Box<Reconcile>),
    /// Installs the cluster CA and the first join-token secrets; applied once at bootstrap.
    InitPki {
        ca: CertAuthority,
        agent_secret: Redacted,
        coordinator_secret: Redacted,
        issued: Vec<CertRecord>,
    },
    /// Records a certificate the CA signed. With a join secret it is refused (and the
    /// certificate never handed out) unless the secret is the role's current one.
    RecordCert {
        cert: CertRecord,
        join_secret: Option<Redacted>,
    },
    /// Replaces a role's join-token secret; the old token stops working.
    RotateToken {
        role: Role,
        secret: Redacted,
    },
    /// Revokes one certificate by serial.
    RevokeCert {
        serial: String,
    },
    /// Revokes the certificates of a coordinator that left the cluster.
    RevokeMember {
        member_id: u64,
    },
}

/// What one orchestrator pass decided; applied as one log entry.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reconcile {
    /// New tasks (state pending, or assigned when the scheduler already placed them).
    pub create: Vec<Task>,
    /// (task id, node) placements for pending tasks.
    pub assign: Vec<(String, String)>,
    /// (task id, reasons) for pending tasks that cannot be placed.
    pub unplaceable: Vec<(String, String)>,
    /// Tasks whose desired state becomes shutdown, with the reason.
    pub shutdown: Vec<(String, String)>,
    /// Tasks that become orphaned (their node is down), with the reason.
    pub orphan: Vec<(String, String)>,
    /// Terminal tasks to forget.
    pub forget: Vec<String>,
}

impl Reconcile {
    pub fn is_empty(&self) -> bool {
        self.create.is_empty()
            && self.assign.is_empty()
            && self.unplaceable.is_empty()
            && self.shutdown.is_empty()
            && self.orphan.is_empty()
            && self.forget.is_empty()
    }
}

impl Command {
    /// Commands an operator may send through the control API (the others come from agents and
    /// from the coordinators themselves).
    pub fn is_user_command(&self) -> bool {
        matches!(
            self,
            Command::CreateService { .. }
                | Command::UpdateService { .. }
                | Command::RemoveService { .. }
                | Command::ApplyStack { .. }
                | Command::RemoveStack { .. }
                | Command::UpdateNode { .. }
                | Command::RemoveNode { .. }
        )
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskStatusUpdate {
    pub task_id: String,
    pub state: TaskState,
    pub message: String,
    pub exit_code: Option<i32>,
}

/// What applying a [`Request`] produced.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Response {
    /// `None` on success, else why the command was refused (state unchanged).
    pub error: Option<String>,
    /// Version of the object the command created or changed, when there is one.
    pub version: Option<u64>,
}

impl Response {
    pub fn ok() -> Self {
        Self::default()
    }

    pub fn version(version: u64) -> Self {
        Self {
            error: None,
            version: Some(version),
        }
    }

    pub fn refused(msg: impl Into<String>) -> Self {
        Self {
            error: Some(msg.into()),
            version: None,
        }
    }
}

/// A cluster event, kept in a bounded ring in the state for `shoalctl events`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    pub seq: u64,
    pub at: Millis,
    /// `service`, `node`, `task`, `cluster`.
    pub kind: String,
    pub object: String,
    pub action: String,
    pub message: String,
}
