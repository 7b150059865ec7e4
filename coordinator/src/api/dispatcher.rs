//! The dispatcher API that agents call: registration, heartbeats, assignments and status.
//!
//! Only the leader serves agents; other members answer `Unavailable` with the leader's address
//! in the `shoal-leader` header, and the agent moves there.
//!
//! Every message from an agent is a sign of life for [`Liveness`], recorded as it arrives. A
//! heartbeat is nothing more: no Raft write, nothing to wait for (a node that answers again after
//! being declared down is marked ready by the orchestrator loop).

use std::pin::Pin;

use futures::Stream;
use shoal_model::TaskState;
use shoal_pki::Role;
use shoal_proto::convert::{encode_json, node_from_json, StatusUpdate};
use shoal_proto::dispatcher::dispatcher_server::Dispatcher;
use shoal_proto::dispatcher::{
    AssignmentSet, AssignmentsRequest, HeartbeatReply, HeartbeatRequest, RegisterReply,
    RegisterRequest, SecretValue, StatusReply, StatusReport,
};
use tonic::{Request, Response, Status};

use super::status_of;
use crate::coordinator::Coordinator;
use crate::orchestrator::liveness::Liveness;
use crate::state::{ClusterState, Command, StackValue, TaskStatusUpdate};

/// gRPC metadata key naming the leader's address on a redirect.
pub const LEADER_HEADER: &str = "shoal-leader";

pub struct DispatcherService {
    pub coord: Coordinator,
    pub liveness: Liveness,
}

impl DispatcherService {
    fn require_leader(&self) -> Result<(), Status> {
        let m = self.coord.raft.metrics().borrow().clone();
        if m.current_leader == Some(self.coord.id) {
            return Ok(());
        }
        let addr = m.current_leader.and_then(|l| {
            m.membership_config
                .membership()
                .get_node(&l)
                .map(|n| n.addr.clone())
        });
        let mut status = Status::unavailable(match &addr {
            Some(a) => format!("not the leader; leader at {a}"),
            None => "not the leader; no leader elected".to_string(),
        });
        if let Some(v) = addr.and_then(|a| a.parse().ok()) {
            status.metadata_mut().insert(LEADER_HEADER, v);
        }
        Err(status)
    }

    /// An agent speaks for its own node only: the name in its certificate must be `node`.
    fn authorize_node<T>(&self, req: &Request<T>, node: &str) -> Result<(), Status> {
        let caller = self.coord.security.authorize(
            &self.coord.sm,
            req,
            "the dispatcher API",
            &[Role::Agent],
        )?;
        match caller.identity() {
            Some(id) if id.name != node => Err(Status::permission_denied(format!(
                "the certificate of {id} cannot act for node `{node}`"
            ))),
            _ => Ok(()),
        }
    }

    /// Refuses a report that names a task assigned to another node.
    fn check_reported_tasks(&self, node: &str, updates: &[TaskStatusUpdate]) -> Result<(), Status> {
        let foreign = self.coord.sm.read(|s| {
            updates.iter().find_map(|u| {
                let owner = s.tasks.get(&u.task_id)?.node.clone();
                (owner.as_deref() != Some(node)).then(|| (u.task_id.clone(), owner))
            })
        });
        match foreign {
            None => Ok(()),
            Some((task, owner)) => Err(Status::permission_denied(format!(
                "node `{node}` cannot report task {task}: it is assigned to {}",
                owner
                    .map(|o| format!("node `{o}`"))
                    .unwrap_or_else(|| "no node".into())
            ))),
        }
    }

    fn period_ms(&self) -> u64 {
        self.liveness.heartbeat_period.as_millis() as u64
    }
}

/// The tasks an agent must know about: everything assigned to it and not finished.
fn tasks_for(state: &ClusterState, node: &str) -> Vec<shoal_model::Task> {
    state
        .tasks
        .values()
        .filter(|t| t.node.as_deref() == Some(node) && !t.state.is_terminal())
        .filter(|t| t.state >= TaskState::Assigned)
        .cloned()
        .collect()
}

/// The serials of the revoked certificates on record (the state keeps one until it expires;
/// expired ones are dropped when the next certificate is recorded), sorted. Every agent gets them
/// all: its API refuses any of them. Serials only, never keys.
fn revoked_serials(state: &ClusterState) -> Vec<String> {
    state
        .pki
        .as_ref()
        .map(|p| p.revoked.keys().cloned().collect())
        .unwrap_or_default()
}

/// What `node` is sent, from one read of the state: its tasks, the secret and config values they
/// use and the revoked serials. `applied_index` is left for the sender to fill.
fn assignment_set(state: &ClusterState, node: &str) -> AssignmentSet {
    let tasks = tasks_for(state, node);
    AssignmentSet {
        tasks_json: encode_json(&tasks),
        applied_index: 0,
        secrets: values_for(&state.secrets, tasks.iter().flat_map(|t| &t.spec.secrets)),
        configs: values_for(&state.configs, tasks.iter().flat_map(|t| &t.spec.configs)),
        revoked_serials: revoked_serials(state),
        members_json: template_members(state, &tasks),
        images_to_ready: images_to_ready(state, &tasks),
    }
}

/// The images `tasks`' node should pull ahead: for every service that is rolling out (or back)
/// and has an old task among `tasks`, the image of the spec it rolls to, unless its pull policy
/// is `never` or the old task already runs that image. Sorted, each once.
fn images_to_ready(
    state: &ClusterState,
    tasks: &[shoal_model::Task],
) -> Vec<shoal_proto::dispatcher::ImageToReady> {
    use shoal_model::{PullPolicy, UpdateState};
    let mut out = std::collections::BTreeMap::new();
    for t in tasks {
        let Some(svc) = state.services.get(&t.service) else {
            continue;
        };
        let rolling = svc
            .update
            .as_ref()
            .is_some_and(|u| matches!(u.state, UpdateState::Rolling | UpdateState::RollingBack));
        let next = &svc.spec.container;
        if !rolling
            || t.service_version >= svc.version
            || next.image == t.spec.image
            || next.pull_policy == PullPolicy::Never
        {
            continue;
        }
        out.insert(next.image.clone(), next.pull_policy == PullPolicy::Always);
    }
    out.into_iter()
        .map(|(image, always)| shoal_proto::dispatcher::ImageToReady { image, always })
        .collect()
}

/// The values (secrets or configs) that `refs` name, at the versions they name, by name.
/// Only these travel to the node: never a value its tasks do not use.
fn values_for<'a>(
    values: &std::collections::BTreeMap<String, StackValue>,
    refs: impl Iterator<Item = &'a shoal_model::SecretRef>,
) -> std::collections::HashMap<String, SecretValue> {
    let mut out = std::collections::HashMap::new();
    for r in refs {
        if let Some(s) = values.get(&r.source) {
            if s.version == r.version {
                out.insert(
                    r.source.clone(),
                    SecretValue {
                        version: s.version,
                        value: s.value.expose().to_vec(),
                        template: s.template,
                    },
                );
            }
        }
    }
    out
}

/// The members the node's templates may name, JSON-encoded (empty when none of its tasks uses a
/// template config): every service of the stacks of the tasks that do.
fn template_members(state: &ClusterState, tasks: &[shoal_model::Task]) -> Vec<u8> {
    let templated = |t: &&shoal_model::Task| {
        t.spec
            .configs
            .iter()
            .any(|r| state.configs.get(&r.source).is_some_and(|c| c.template))
    };
    let services: std::collections::BTreeSet<&str> = tasks
        .iter()
        .filter(templated)
        .map(|t| t.service.as_str())
        .collect();
    if services.is_empty() {
        return Vec::new();
    }
    encode_json(&super::members::for_services(state, &services))
}

type AssignmentStream = Pin<Box<dyn Stream<Item = Result<AssignmentSet, Status>> + Send>>;

#[tonic::async_trait]
impl Dispatcher for DispatcherService {
    #[tracing::instrument(skip_all)]
    async fn register(
        &self,
        req: Request<RegisterRequest>,
    ) -> Result<Response<RegisterReply>, Status> {
        self.require_leader()?;
        let node = node_from_json(&req.get_ref().node_json)
            .map_err(|e| Status::invalid_argument(e.to_string()))?;
        self.authorize_node(&req, &node.name)?;
        let name = node.name.clone();
        self.liveness.seen(&name);
        let (resp, _) = self
            .coord
            .write(self.coord.request(None, Command::RegisterNode { node }))
            .await
            .map_err(status_of)?;
        if let Some(e) = resp.error {
            return Err(Status::invalid_argument(e));
        }
        self.liveness.seen(&name);
        self.coord.metrics.agent_registered();
        tracing::info!(node = %name, "agent registered");
        Ok(Response::new(RegisterReply {
            heartbeat_period_ms: self.period_ms(),
        }))
    }

    async fn heartbeat(
        &self,
        req: Request<HeartbeatRequest>,
    ) -> Result<Response<HeartbeatReply>, Status> {
        self.require_leader()?;
        self.authorize_node(&req, &req.get_ref().node)?;
        let name = req.into_inner().node;
        if self.coord.sm.read(|s| !s.nodes.contains_key(&name)) {
            return Err(Status::not_found(format!(
                "node `{name}` is not registered"
            )));
        }
        self.liveness.heartbeat(&name);
        self.coord.metrics.agent_heartbeat();
        Ok(Response::new(HeartbeatReply {
            heartbeat_period_ms: self.period_ms(),
        }))
    }

    type AssignmentsStream = AssignmentStream;

    async fn assignments(
        &self,
        req: Request<AssignmentsRequest>,
    ) -> Result<Response<Self::AssignmentsStream>, Status> {
        self.require_leader()?;
        self.authorize_node(&req, &req.get_ref().node)?;
        let node = req.into_inner().node;
        if self.coord.sm.read(|s| !s.nodes.contains_key(&node)) {
            return Err(Status::not_found(format!(
                "node `{node}` is not registered"
            )));
        }
        self.liveness.seen(&node);
        let me = DispatcherService {
            coord: self.coord.clone(),
            liveness: self.liveness.clone(),
        };
        let stream = async_stream(me, node);
        Ok(Response::new(Box::pin(stream)))
    }

    async fn report_status(
        &self,
        req: Request<StatusReport>,
    ) -> Result<Response<StatusReply>, Status> {
        self.authorize_node(&req, &req.get_ref().node)?;
        let StatusReport { node, updates } = req.into_inner();
        // A sign of life, before the Raft write (on a follower it is forwarded, and the table
        // is not read there).
        self.liveness.seen(&node);
        let mut out = Vec::with_capacity(updates.len());
        for u in &updates {
            let u =
                StatusUpdate::try_from(u).map_err(|e| Status::invalid_argument(e.to_string()))?;
            out.push(TaskStatusUpdate {
                task_id: u.task_id,
                state: u.state,
                message: u.message,
                exit_code: u.exit_code,
                image_digest: u.image_digest,
            });
        }
        self.check_reported_tasks(&node, &out)?;
        if !out.is_empty() {
            let cmd = Command::ReportTaskStatus { node, updates: out };
            self.coord
                .write(self.coord.request(None, cmd))
                .await
                .map_err(status_of)?;
        }
        Ok(Response::new(StatusReply {}))
    }
}

/// Sends the node's full task set now and whenever it or the revoked serials change (checked
/// after every applied log entry: a revocation reaches connected agents as soon as the leader
/// applies it), until leadership is lost.
fn async_stream(
    me: DispatcherService,
    node: String,
) -> impl Stream<Item = Result<AssignmentSet, Status>> + Send {
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    tokio::spawn(async move {
        let _session = me.coord.metrics.agent_session();
        let mut applied = me.coord.sm.watch_applied();
        let mut last: Option<AssignmentSet> = None;
        loop {
            if let Err(s) = me.require_leader() {
                let _ = tx.send(Err(s)).await;
                return;
            }
            let set = me.coord.sm.read(|s| assignment_set(s, &node));
            // Compared before the applied index is stamped: a set goes out only when what the
            // agent gets (tasks, secret and config values, revoked serials) changed.
            if last.as_ref() != Some(&set) {
                let sent = AssignmentSet {
                    applied_index: me.coord.sm.applied_index(),
                    ..set.clone()
                };
                if tx.send(Ok(sent)).await.is_err() {
                    return; // the agent went away
                }
                last = Some(set);
            }
            tokio::select! {
                r = applied.changed() => if r.is_err() { return },
                _ = tokio::time::sleep(std::time::Duration::from_millis(500)) => {}
                _ = tx.closed() => return,
            }
        }
    });
    tokio_stream::wrappers::ReceiverStream::new(rx)
}

#[cfg(test)]
mod tests {
    use shoal_model::{SecretRef, Task};

    use shoal_proto::convert::tasks_from_json;

    use super::*;
    use crate::state::apply_ok as apply;
    use crate::state::pki::{CertRecord, Redacted};
    use crate::state::Request;

    fn task(id: &str, node: &str, secrets: Vec<SecretRef>) -> Task {
        let spec = shoal_model::ContainerSpec {
            secrets,
            ..Default::default()
        };
        Task {
            id: id.into(),
            service: "api".into(),
            service_version: 1,
            slot: 1,
            node: Some(node.into()),
            desired_state: TaskState::Running,
            state: TaskState::Assigned,
            message: String::new(),
            exit_code: None,
            spec,
            restart_policy: Default::default(),
            mode: Default::default(),
            created_at: 0,
            updated_at: 0,
            image_digest: None,
        }
    }

    /// A stop-first rollout creates the new task only once the old one stopped: the node gets
    /// the new image to pull ahead while the old one still serves (issue 14, audit row 19).
    #[test]
    fn a_rolling_services_new_image_is_readied_on_the_nodes_of_its_old_tasks() {
        use shoal_model::{PullPolicy, UpdateStatus};
        let mut s = ClusterState::default();
        let mut spec = shoal_model::ServiceSpec::default();
        spec.container.image = "api:2".into();
        s.services.insert(
            "api".into(),
            shoal_model::Service {
                name: "api".into(),
                stack: None,
                spec,
                version: 2,
                created_at: 0,
                updated_at: 0,
                previous_spec: None,
                update: Some(UpdateStatus::new(2, false, 0)),
                formed: false,
            },
        );
        let mut old = task("api.1", "n1", vec![]);
        old.spec.image = "api:1".into();
        s.tasks.insert(old.id.clone(), old);
        let mut new = task("api.2", "n2", vec![]);
        new.spec.image = "api:2".into();
        new.service_version = 2;
        s.tasks.insert(new.id.clone(), new);
        let images = |s: &ClusterState, node: &str| -> Vec<(String, bool)> {
            assignment_set(s, node)
                .images_to_ready
                .into_iter()
                .map(|i| (i.image, i.always))
                .collect()
        };
        // n1 runs the old task: it readies the new image; n2 already runs it.
        assert_eq!(images(&s, "n1"), vec![("api:2".to_string(), false)]);
        assert!(images(&s, "n2").is_empty());
        // `always` is passed on; `never` is not readied.
        let svc = s.services.get_mut("api").unwrap();
        svc.spec.container.pull_policy = PullPolicy::Always;
        assert_eq!(images(&s, "n1"), vec![("api:2".to_string(), true)]);
        let svc = s.services.get_mut("api").unwrap();
        svc.spec.container.pull_policy = PullPolicy::Never;
        assert!(images(&s, "n1").is_empty());
        // No rollout in progress (completed, or paused): nothing to ready.
        let svc = s.services.get_mut("api").unwrap();
        svc.spec.container.pull_policy = PullPolicy::Missing;
        svc.update.as_mut().unwrap().state = shoal_model::UpdateState::Paused;
        assert!(images(&s, "n1").is_empty());
    }

    fn cert(serial: &str, role: Role, name: &str) -> CertRecord {
        CertRecord {
            serial: serial.into(),
            role,
            name: name.into(),
            member_id: None,
            not_after: 4_000_000_000,
        }
    }

    #[test]
    fn every_node_gets_the_revoked_serials_and_no_key() {
        let mut s = ClusterState::default();
        // Insecure cluster (no CA): nothing to refuse.
        assert!(assignment_set(&s, "n1").revoked_serials.is_empty());
        apply(
            &mut s,
            Command::InitPki {
                ca: shoal_pki::CertAuthority {
                    cert_pem: "CA CERT".into(),
                    key_pem: "CA PRIVATE KEY".into(),
                },
                agent_secret: Redacted("agent-secret".into()),
                coordinator_secret: Redacted("coordinator-secret".into()),
                issued: vec![cert("0c", Role::Coordinator, "c1")],
            },
        );
        for c in [
            cert("0b", Role::Admin, "temp"),
            cert("0a", Role::Admin, "ops"),
            cert("0d", Role::Agent, "n2"),
        ] {
            apply(
                &mut s,
                Command::RecordCert {
                    cert: c,
                    join_secret: None,
                },
            );
        }
        assert!(assignment_set(&s, "n1").revoked_serials.is_empty());
        apply(
            &mut s,
            Command::RevokeCert {
                serial: "0b".into(),
            },
        );
        apply(
            &mut s,
            Command::RevokeCert {
                serial: "0d".into(),
            },
        );
        s.tasks
            .insert("t".into(), task("t", "n1", vec![SecretRef::new("pw")]));
        // Sorted, the same for every node, whatever its tasks.
        let n1 = assignment_set(&s, "n1");
        assert_eq!(n1.revoked_serials, ["0b", "0d"]);
        assert_eq!(assignment_set(&s, "n3").revoked_serials, ["0b", "0d"]);
        assert_eq!(tasks_from_json(&n1.tasks_json).unwrap().len(), 1);
        // Serials only: no key, no join secret travels.
        let text = format!("{n1:?} {}", String::from_utf8_lossy(&n1.tasks_json));
        for secret in [
            "CA PRIVATE KEY",
            "CA CERT",
            "agent-secret",
            "coordinator-secret",
        ] {
            assert!(!text.contains(secret), "{secret} sent to an agent");
        }
        // A set that differs only in revocations is a new set (the stream sends it again).
        let before = assignment_set(&s, "n1");
        apply(
            &mut s,
            Command::RevokeCert {
                serial: "0a".into(),
            },
        );
        let after = assignment_set(&s, "n1");
        assert_eq!(before.tasks_json, after.tasks_json);
        assert_ne!(before, after);
        assert_eq!(after.revoked_serials, ["0a", "0b", "0d"]);
    }

    #[test]
    fn a_node_gets_only_the_secrets_its_tasks_use_at_their_version() {
        let mut s = ClusterState::default();
        let cmd = Command::ApplyStack {
            stack: "st".into(),
            services: vec![],
            secrets: vec![
                ("pw".into(), shoal_model::SecretValue::new(b"one".to_vec())),
                (
                    "other".into(),
                    shoal_model::SecretValue::new(b"two".to_vec()),
                ),
            ],
            configs: vec![],
        };
        let r = s.apply(&Request {
            request_id: None,
            now: 1,
            command: cmd,
        });
        assert!(r.error.is_none(), "{r:?}");
        let mut current = SecretRef::new("pw");
        current.version = s.secrets["pw"].version;
        let n1 = vec![task("a", "n1", vec![current.clone()])];
        let got = secrets_for(&s, &n1);
        assert_eq!(got.len(), 1);
        assert_eq!(got["pw"].value, b"one");
        // A node without such tasks gets nothing; a stale version gets nothing.
        assert!(secrets_for(&s, &[task("b", "n2", vec![])]).is_empty());
        let mut stale = current;
        stale.version += 100;
        assert!(secrets_for(&s, &[task("c", "n1", vec![stale])]).is_empty());
    }

    fn secrets_for(
        s: &ClusterState,
        tasks: &[Task],
    ) -> std::collections::HashMap<String, SecretValue> {
        values_for(&s.secrets, tasks.iter().flat_map(|t| &t.spec.secrets))
    }

    #[test]
    fn a_node_gets_only_the_configs_its_tasks_use() {
        let mut s = ClusterState::default();
        let input = |name: &str, v: &str| crate::state::ConfigInput {
            name: name.into(),
            value: shoal_model::SecretValue::new(v.as_bytes().to_vec()),
            sensitive: false,
            template: false,
        };
        apply(
            &mut s,
            Command::ApplyStack {
                stack: "st".into(),
                services: vec![],
                secrets: vec![],
                configs: vec![input("used", "a=1"), input("unused", "b=2")],
            },
        );
        let mut r = shoal_model::config::config_ref("used");
        r.version = s.configs["used"].version;
        let mut t = task("a", "n1", vec![]);
        t.spec.configs = vec![r];
        s.tasks.insert("a".into(), t);
        let set = assignment_set(&s, "n1");
        assert_eq!(set.configs.len(), 1);
        assert_eq!(set.configs["used"].value, b"a=1");
        assert!(set.secrets.is_empty());
        assert!(assignment_set(&s, "n2").configs.is_empty());
    }

    #[test]
    fn a_templated_config_brings_its_flag_and_the_members_and_a_plain_one_does_not() {
        let mut s = ClusterState::default();
        let input = |name: &str, template| crate::state::ConfigInput {
            name: name.into(),
            value: shoal_model::SecretValue::new(b"{{ node.name }}".to_vec()),
            sensitive: false,
            template,
        };
        apply(
            &mut s,
            Command::ApplyStack {
                stack: "st".into(),
                services: vec![],
                secrets: vec![],
                configs: vec![input("tmpl", true), input("plain", false)],
            },
        );
        let with = |name: &str, id: &str, node: &str| {
            let mut r = shoal_model::config::config_ref(name);
            r.version = s.configs[name].version;
            let mut t = task(id, node, vec![]);
            t.spec.configs = vec![r];
            t
        };
        s.services.insert(
            "api".into(),
            shoal_model::Service {
                name: "api".into(),
                stack: Some("st".into()),
                spec: Default::default(),
                version: 1,
                created_at: 0,
                updated_at: 0,
                previous_spec: None,
                update: None,
                formed: false,
            },
        );
        let (a, mut b) = (with("tmpl", "a", "n1"), with("plain", "b", "n2"));
        b.slot = 2;
        s.tasks.insert("a".into(), a);
        s.tasks.insert("b".into(), b);
        let n1 = assignment_set(&s, "n1");
        assert!(n1.configs["tmpl"].template);
        let members: shoal_model::template::MembersByService =
            serde_json::from_slice(&n1.members_json).unwrap();
        // The members of the stack's services: both tasks of `api`, whichever node they are on.
        let api: Vec<(&str, u32)> = members["api"]
            .members
            .iter()
            .map(|m| (m.node.as_str(), m.slot))
            .collect();
        assert_eq!(api, [("n1", 1), ("n2", 2)]);
        assert_eq!(members["api"].stack, "st");
        let n2 = assignment_set(&s, "n2");
        assert!(!n2.configs["plain"].template);
        assert!(n2.members_json.is_empty());
    }
}
