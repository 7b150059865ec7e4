//! The Raft log entry ([`Request`]) and what applying it returns ([`Response`]).

use serde::{Deserialize, Serialize};
use shoal_pki::{CertAuthority, Role};

use super::pki::{CertRecord, Redacted};
use super::refusal::{Refusal, RefusalKind};
use shoal_model::api::UserCommand;
use shoal_model::{
    Millis, Node, NodeAvailability, SecretValue, ServiceSpec, Task, TaskState, UpdateStatus,
};

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
    pub(crate) command: Command,
}

/// Every change to cluster state. The one closed enum at the Raft boundary.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "type")]
pub(crate) enum Command {
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
    /// Rolls a service back to its previous spec, with `rollback_config`'s pace.
    RollbackService {
        name: String,
    },
    /// Pauses (`paused: true`) or resumes a service's rollout.
    PauseUpdate {
        name: String,
        paused: bool,
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
    /// Rollout progress: the new status of a service's rollout (applied only while the service
    /// is still at the status's version).
    #[serde(default)]
    pub updates: Vec<(String, UpdateStatus)>,
    /// Rollouts that failed with `failure_action: rollback`: (service, version, why).
    #[serde(default)]
    pub rollbacks: Vec<(String, u64, String)>,
}

impl Reconcile {
    pub fn is_empty(&self) -> bool {
        self.create.is_empty()
            && self.assign.is_empty()
            && self.unplaceable.is_empty()
            && self.shutdown.is_empty()
            && self.orphan.is_empty()
            && self.forget.is_empty()
            && self.updates.is_empty()
            && self.rollbacks.is_empty()
    }
}

/// An operator's change becomes the log entry of the same name (and the same JSON form).
impl From<UserCommand> for Command {
    fn from(c: UserCommand) -> Self {
        match c {
            UserCommand::CreateService { name, spec } => Command::CreateService { name, spec },
            UserCommand::UpdateService { name, spec } => Command::UpdateService { name, spec },
            UserCommand::RemoveService { name } => Command::RemoveService { name },
            UserCommand::RollbackService { name } => Command::RollbackService { name },
            UserCommand::PauseUpdate { name, paused } => Command::PauseUpdate { name, paused },
            UserCommand::RemoveStack { stack } => Command::RemoveStack { stack },
            UserCommand::UpdateNode {
                name,
                availability,
                add_labels,
                remove_labels,
            } => Command::UpdateNode {
                name,
                availability,
                add_labels,
                remove_labels,
            },
            UserCommand::RemoveNode { name, force } => Command::RemoveNode { name, force },
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskStatusUpdate {
    pub task_id: String,
    pub state: TaskState,
    pub message: String,
    pub exit_code: Option<i32>,
    /// Digest of the image the task's container was created from, once the agent knows it.
    #[serde(default)]
    pub image_digest: Option<String>,
}

/// What applying a [`Request`] produced.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Response {
    /// `None` on success, else why the command was refused (state unchanged).
    pub error: Option<String>,
    /// The refusal's kind; absent in answers recorded before kinds existed (read as
    /// [`RefusalKind::Precondition`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refusal: Option<RefusalKind>,
    /// Version of the object the command created or changed, when there is one.
    pub version: Option<u64>,
}

impl Response {
    pub fn ok() -> Self {
        Self::default()
    }

    pub fn version(version: u64) -> Self {
        Self {
            version: Some(version),
            ..Self::default()
        }
    }

    /// Refused: the state does not allow the command now.
    pub fn refused(msg: impl Into<String>) -> Self {
        Self::refusal(Refusal::new(RefusalKind::Precondition, msg))
    }

    /// Refused: the object the command names does not exist.
    pub fn not_found(msg: impl Into<String>) -> Self {
        Self::refusal(Refusal::new(RefusalKind::NotFound, msg))
    }

    /// Refused: the object the command would create exists.
    pub fn exists(msg: impl Into<String>) -> Self {
        Self::refusal(Refusal::new(RefusalKind::AlreadyExists, msg))
    }

    /// Refused: the command is malformed.
    pub fn invalid(msg: impl Into<String>) -> Self {
        Self::refusal(Refusal::new(RefusalKind::Invalid, msg))
    }

    pub fn refusal(r: Refusal) -> Self {
        Self {
            error: Some(r.message),
            refusal: Some(r.kind),
            version: None,
        }
    }

    /// The refusal, if the command was refused.
    pub fn refused_with(&self) -> Option<Refusal> {
        self.error
            .as_ref()
            .map(|m| Refusal::new(self.refusal.unwrap_or(RefusalKind::Precondition), m.clone()))
    }
}
