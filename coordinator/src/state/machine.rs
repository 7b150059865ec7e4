//! [`ClusterState`]: the deterministic state machine replicated by Raft.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use shoal_model::{Node, NodeStatus, SecretValue, Service, ServiceSpec, Task, TaskState};

use shoal_pki::Role;

use super::pki::PkiState;
use super::secrets::{self, Config, ConfigInput, Secret, ValueKind, ValuesPlan};
use super::{Command, Event, Query, Reconcile, Request, Response};
use shoal_model::api::{Answer, EventKind};

/// How many events the state keeps.
pub const EVENT_RING: usize = 10_000;
/// How many request ids the state remembers for deduplication.
pub const DEDUP_WINDOW: usize = 100_000;

/// A request id in the dedup table, shared by `dedup` and `dedup_order`: copying the state for a
/// snapshot then bumps reference counts instead of copying 2 x 100,000 strings (measured: the
/// copy took longer than encoding the whole state to JSON). Serialized as a plain string.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct DedupId(Arc<str>);

impl std::borrow::Borrow<str> for DedupId {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl Serialize for DedupId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for DedupId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d).map(|id| DedupId(id.into()))
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterState {
    pub cluster_id: Option<String>,
    pub nodes: BTreeMap<String, Node>,
    pub services: BTreeMap<String, Service>,
    pub tasks: BTreeMap<String, Task>,
    pub events: VecDeque<Event>,
    /// The cluster CA, join tokens and certificate records (none in insecure mode).
    #[serde(default)]
    pub pki: Option<PkiState>,
    pub next_event_seq: u64,
    /// Stack secrets by name, with their values. No query returns them.
    #[serde(default)]
    pub secrets: BTreeMap<String, Secret>,
    /// Last secret version handed out.
    #[serde(default)]
    secret_seq: u64,
    /// Stack configs by name, with their values. Only `Query::Config` shows one, if not sensitive.
    #[serde(default)]
    pub configs: BTreeMap<String, Config>,
    /// Last config version handed out.
    #[serde(default)]
    config_seq: u64,
    /// Request id -> (order of arrival, first response).
    dedup: BTreeMap<DedupId, (u64, Response)>,
    /// Arrival order -> request id, to forget the oldest first.
    dedup_order: BTreeMap<u64, DedupId>,
    dedup_seq: u64,
}

impl ClusterState {
    /// Applies one request. The only function that changes cluster state.
    pub fn apply(&mut self, req: &Request) -> Response {
        if let Some(id) = &req.request_id {
            if let Some((_, first)) = self.dedup.get(id.as_str()) {
                return first.clone();
            }
        }
        let resp = self.apply_command(req.now, &req.command);
        if let Some(id) = &req.request_id {
            self.remember(id.clone(), resp.clone());
        }
        resp
    }

    fn remember(&mut self, id: String, resp: Response) {
        let id = DedupId(id.into());
        self.dedup_seq += 1;
        self.dedup.insert(id.clone(), (self.dedup_seq, resp));
        self.dedup_order.insert(self.dedup_seq, id);
        while self.dedup_order.len() > DEDUP_WINDOW {
            if let Some((_, old)) = self.dedup_order.pop_first() {
                self.dedup.remove(&old);
            }
        }
    }

    fn apply_command(&mut self, now: u64, cmd: &Command) -> Response {
        match cmd {
            Command::InitCluster { cluster_id } => match &self.cluster_id {
                Some(existing) if existing != cluster_id => {
                    Response::refused(format!("cluster already initialized as `{existing}`"))
                }
                _ => {
                    self.cluster_id = Some(cluster_id.clone());
                    self.event(
                        now,
                        EventKind::Cluster,
                        cluster_id,
                        "init",
                        "cluster initialized",
                    );
                    Response::ok()
                }
            },
            Command::CreateService { name, spec } => {
                if let Err(e) = validate_name("service", name) {
                    return Response::invalid(e);
                }
                if let Err(e) = no_secrets(name, spec) {
                    return Response::invalid(e);
                }
                if self.services.contains_key(name) {
                    return Response::exists(format!("service `{name}` already exists"));
                }
                let svc = Service {
                    name: name.clone(),
                    stack: None,
                    spec: spec.clone(),
                    version: 1,
                    created_at: now,
                    updated_at: now,
                    previous_spec: None,
                    update: None,
                    formed: false,
                };
                self.services.insert(name.clone(), svc);
                self.event(now, EventKind::Service, name, "create", "service created");
                Response::version(1)
            }
            Command::UpdateService { name, spec } => {
                if let Err(e) = no_secrets(name, spec) {
                    return Response::invalid(e);
                }
                let Some(svc) = self.services.get(name) else {
                    return Response::not_found(format!("service `{name}` not found"));
                };
                if svc.spec == *spec {
                    return Response::version(svc.version);
                }
                Response::version(self.change_spec(now, name, spec))
            }
            Command::RollbackService { name } => {
                self.rollback(now, name, "rollback requested by an operator")
            }
            Command::PauseUpdate { name, paused } => self.pause_update(now, name, *paused),
            Command::RemoveService { name } => {
                if self.services.remove(name).is_none() {
                    return Response::not_found(format!("service `{name}` not found"));
                }
                self.event(now, EventKind::Service, name, "remove", "service removed");
                Response::ok()
            }
            Command::RegisterNode { node } => {
                if let Err(e) = validate_name("node", &node.name) {
                    return Response::invalid(e);
                }
                let mut node = node.clone();
                node.status = NodeStatus::Ready;
                node.last_heartbeat = now;
                node.down_since = None;
                if let Some(old) = self.nodes.get(&node.name) {
                    // Operator-set fields survive re-registration.
                    node.availability = old.availability;
                    node.registered_at = old.registered_at;
                } else {
                    node.registered_at = now;
                }
                let name = node.name.clone();
                self.nodes.insert(name.clone(), node);
                self.event(now, EventKind::Node, &name, "register", "node ready");
                Response::ok()
            }
            Command::NodeHeartbeat { name } => match self.nodes.get_mut(name) {
                None => Response::refused(format!("node `{name}` is not registered")),
                Some(n) => {
                    n.last_heartbeat = now;
                    let was_down = n.status != NodeStatus::Ready;
                    n.status = NodeStatus::Ready;
                    n.down_since = None;
                    if was_down {
                        self.event(now, EventKind::Node, name, "up", "node ready");
                    }
                    Response::ok()
                }
            },
            Command::ReportTaskStatus { node, updates } => {
                for u in updates {
                    let Some(task) = self.tasks.get_mut(&u.task_id) else {
                        continue;
                    };
                    if task.node.as_deref() != Some(node.as_str())
                        || u.state.progress() < task.state.progress()
                    {
                        // Reports from another node, or stale ones, change nothing (running and
                        // restarting are one step and alternate; see `TaskState::progress`).
                        continue;
                    }
                    if u.image_digest.is_some() {
                        task.image_digest = u.image_digest.clone();
                    }
                    if u.state == task.state && u.message == task.message {
                        continue;
                    }
                    task.state = u.state;
                    task.message = u.message.clone();
                    task.exit_code = u.exit_code;
                    task.updated_at = now;
                    let ran = u.state == TaskState::Running
                        && (task.spec.healthcheck.is_none() || u.message == "healthy");
                    if ran {
                        if let Some(svc) = self.services.get_mut(&task.service) {
                            svc.formed = true;
                        }
                    }
                    let msg = format!("{}: {}", u.state, u.message);
                    let id = u.task_id.clone();
                    self.event(now, EventKind::Task, &id, u.state.as_str(), &msg);
                }
                Response::ok()
            }
            Command::ApplyStack {
                stack,
                services,
                secrets,
                configs,
            } => self.apply_stack(now, stack, services, secrets, configs),
            Command::RemoveStack { stack } => {
                let names: Vec<String> = self
                    .services
                    .values()
                    .filter(|s| s.stack.as_deref() == Some(stack.as_str()))
                    .map(|s| s.name.clone())
                    .collect();
                let secrets = secrets::of_stack(&self.secrets, stack);
                let configs = secrets::of_stack(&self.configs, stack);
                if names.is_empty() && secrets.is_empty() && configs.is_empty() {
                    return Response::not_found(format!("stack `{stack}` not found"));
                }
                let removed = format!("stack {stack} removed");
                for name in secrets {
                    self.secrets.remove(&name);
                    self.event(now, EventKind::Secret, &name, "remove", &removed);
                }
                for name in configs {
                    self.configs.remove(&name);
                    self.event(now, EventKind::Config, &name, "remove", &removed);
                }
                for name in names {
                    self.services.remove(&name);
                    self.event(
                        now,
                        EventKind::Service,
                        &name,
                        "remove",
                        &format!("stack {stack} removed"),
                    );
                }
                Response::ok()
            }
            Command::UpdateNode {
                name,
                availability,
                add_labels,
                remove_labels,
            } => {
                let Some(node) = self.nodes.get_mut(name) else {
                    return Response::not_found(format!("node `{name}` not found"));
                };
                if let Some(a) = availability {
                    node.availability = *a;
                }
                for (k, v) in add_labels {
                    node.labels.insert(k.clone(), v.clone());
                }
                for k in remove_labels {
                    node.labels.remove(k);
                }
                let msg = format!(
                    "availability {:?}, labels {:?}",
                    node.availability, node.labels
                );
                self.event(now, EventKind::Node, name, "update", &msg);
                Response::ok()
            }
            Command::RemoveNode { name, force } => match self.nodes.get(name) {
                None => Response::not_found(format!("node `{name}` not found")),
                Some(n) if n.status == NodeStatus::Ready => Response::refused(format!(
                    "node `{name}` is ready: drain it and stop its agent before removing it"
                )),
                Some(_) if !force && !self.waiting_on(name).is_empty() => {
                    let waiting = self.waiting_on(name);
                    Response::refused(format!(
                        "node `{name}` may still run {} task(s) of services with data ({}); \
                         make sure it is gone (powered off, its containers dead), then remove it \
                         with `shoalctl node rm --force {name}`: they are then started elsewhere",
                        waiting.len(),
                        waiting.join(", ")
                    ))
                }
                Some(_) => {
                    self.nodes.remove(name);
                    let revoked = self
                        .pki
                        .as_mut()
                        .map(|p| p.revoke(Role::Agent, Some(name), None))
                        .unwrap_or(0);
                    let msg = format!("node removed; {revoked} certificate(s) revoked");
                    self.event(now, EventKind::Node, name, "remove", &msg);
                    Response::ok()
                }
            },
            Command::MarkNodeDown { name } => match self.nodes.get_mut(name) {
                None => Response::not_found(format!("node `{name}` not found")),
                Some(n) => {
                    if n.status != NodeStatus::Down {
                        n.status = NodeStatus::Down;
                        n.down_since = Some(now);
                        self.event(now, EventKind::Node, name, "down", "missed heartbeats");
                    }
                    Response::ok()
                }
            },
            Command::Reconcile(r) => {
                self.reconcile(now, r);
                Response::ok()
            }
            Command::InitPki {
                ca,
                agent_secret,
                coordinator_secret,
                issued,
            } => {
                if self.pki.is_some() {
                    return Response::refused("the cluster CA is already set");
                }
                let mut pki = PkiState {
                    ca: ca.clone(),
                    agent_secret: agent_secret.clone(),
                    coordinator_secret: coordinator_secret.clone(),
                    issued: Default::default(),
                    revoked: Default::default(),
                };
                for c in issued {
                    let _ = pki.record(now, c, None);
                }
                self.pki = Some(pki);
                self.event(now, EventKind::Cluster, "ca", "init", "cluster CA created");
                Response::ok()
            }
            Command::RecordCert { cert, join_secret } => {
                let Some(pki) = self.pki.as_mut() else {
                    return Response::refused("this cluster has no CA (insecure mode)");
                };
                if let Err(e) = pki.record(now, cert, join_secret.as_ref()) {
                    return Response::refused(e);
                }
                let what = if join_secret.is_some() {
                    "joined"
                } else {
                    "renewed"
                };
                self.event(
                    now,
                    EventKind::Certificate,
                    &cert.name,
                    "issue",
                    &format!("{} certificate {} ({what})", cert.role, cert.serial),
                );
                Response::ok()
            }
            Command::RotateToken { role, secret } => {
                let Some(pki) = self.pki.as_mut() else {
                    return Response::refused("this cluster has no CA (insecure mode)");
                };
                match role {
                    Role::Agent => pki.agent_secret = secret.clone(),
                    Role::Coordinator => pki.coordinator_secret = secret.clone(),
                    Role::Admin => {
                        return Response::refused("admins join with certificates, not tokens")
                    }
                }
                self.event(
                    now,
                    EventKind::Cluster,
                    "token",
                    "rotate",
                    &format!("{role} join token rotated"),
                );
                Response::ok()
            }
            Command::RevokeCert { serial } => {
                let Some(pki) = self.pki.as_mut() else {
                    return Response::refused("this cluster has no CA (insecure mode)");
                };
                let Some(cert) = pki.issued.get(serial).cloned() else {
                    return Response::refused(format!(
                        "no unexpired certificate with serial {serial} is on record"
                    ));
                };
                pki.revoke_serial(serial);
                self.event(
                    now,
                    EventKind::Certificate,
                    &cert.name,
                    "revoke",
                    &format!("{} certificate {serial} revoked", cert.role),
                );
                Response::ok()
            }
            Command::RevokeMember { member_id } => {
                let n = self
                    .pki
                    .as_mut()
                    .map(|p| p.revoke(Role::Coordinator, None, Some(*member_id)))
                    .unwrap_or(0);
                self.event(
                    now,
                    EventKind::Cluster,
                    &member_id.to_string(),
                    "revoke",
                    &format!("{n} coordinator certificate(s) revoked"),
                );
                Response::ok()
            }
        }
    }

    fn apply_stack(
        &mut self,
        now: u64,
        stack: &str,
        services: &[(String, ServiceSpec)],
        secret_values: &[(String, SecretValue)],
        config_values: &[ConfigInput],
    ) -> Response {
        if let Err(e) = validate_name("stack", stack) {
            return Response::invalid(e);
        }
        let secret_inputs: Vec<ConfigInput> = secret_values
            .iter()
            .map(|(name, value)| ConfigInput {
                name: name.clone(),
                value: value.clone(),
                sensitive: true,
                template: false,
            })
            .collect();
        let mut services = services.to_vec();
        let planned = secrets::plan_values(
            &secrets::SECRETS,
            &self.secrets,
            self.secret_seq,
            stack,
            &secret_inputs,
        )
        .and_then(|s| {
            let c = secrets::plan_values(
                &secrets::CONFIGS,
                &self.configs,
                self.config_seq,
                stack,
                config_values,
            )?;
            secrets::stamp(&secrets::SECRETS, stack, &s.versions, &mut services)?;
            secrets::stamp(&secrets::CONFIGS, stack, &c.versions, &mut services)?;
            Ok((s, c))
        });
        let (secret_plan, config_plan) = match planned {
            Ok(p) => p,
            Err(e) => return Response::refused(e),
        };
        let services = services.as_slice();
        for (name, _) in services {
            if let Err(e) = validate_name("service", name) {
                return Response::invalid(e);
            }
            if let Some(existing) = self.services.get(name) {
                if existing.stack.as_deref() != Some(stack) {
                    return Response::refused(format!(
                        "service `{name}` already exists outside stack `{stack}`; nothing applied"
                    ));
                }
            }
        }
        let keep: std::collections::BTreeSet<&str> =
            services.iter().map(|(n, _)| n.as_str()).collect();
        let stale: Vec<String> = self
            .services
            .values()
            .filter(|s| s.stack.as_deref() == Some(stack) && !keep.contains(s.name.as_str()))
            .map(|s| s.name.clone())
            .collect();
        self.secret_seq = secret_plan.last_seq;
        self.config_seq = config_plan.last_seq;
        self.store_values(now, stack, &secrets::SECRETS, &secret_plan);
        self.store_values(now, stack, &secrets::CONFIGS, &config_plan);
        for name in stale {
            self.services.remove(&name);
            self.event(
                now,
                EventKind::Service,
                &name,
                "remove",
                &format!("not in stack {stack}"),
            );
        }
        for (name, spec) in services {
            match self.services.get_mut(name) {
                Some(svc) if &svc.spec == spec => {}
                Some(_) => {
                    self.change_spec(now, name, spec);
                }
                None => {
                    let svc = Service {
                        name: name.clone(),
                        stack: Some(stack.to_string()),
                        spec: spec.clone(),
                        version: 1,
                        created_at: now,
                        updated_at: now,
                        previous_spec: None,
                        update: None,
                        formed: false,
                    };
                    self.services.insert(name.clone(), svc);
                    self.event(
                        now,
                        EventKind::Service,
                        name,
                        "create",
                        &format!("stack {stack}"),
                    );
                }
            }
        }
        Response::ok()
    }

    /// Live tasks on `node` that wait for it when it is down (their service keeps data, see
    /// [`shoal_model::ServiceSpec::node_loss`]), by id.
    fn waiting_on(&self, node: &str) -> Vec<String> {
        self.tasks
            .values()
            .filter(|t| t.node.as_deref() == Some(node) && !t.state.is_terminal())
            .filter(|t| {
                self.services
                    .get(&t.service)
                    .is_some_and(|s| s.spec.node_loss() != shoal_model::NodeLoss::Replace)
            })
            .map(|t| t.id.clone())
            .collect()
    }

    fn reconcile(&mut self, now: u64, r: &Reconcile) {
        for t in &r.create {
            if self.tasks.contains_key(&t.id) {
                continue;
            }
            let mut t = t.clone();
            t.created_at = now;
            t.updated_at = now;
            let msg = match &t.node {
                Some(n) => format!("created on {n}"),
                None => "created".to_string(),
            };
            self.event(now, EventKind::Task, &t.id, t.state.as_str(), &msg);
            self.tasks.insert(t.id.clone(), t);
        }
        for (id, node) in &r.assign {
            let Some(t) = self.tasks.get_mut(id) else {
                continue;
            };
            if t.state != TaskState::Pending || t.desired_state != TaskState::Running {
                continue;
            }
            t.node = Some(node.clone());
            t.state = TaskState::Assigned;
            t.message = format!("assigned to {node}");
            t.updated_at = now;
            self.event(
                now,
                EventKind::Task,
                id,
                "assigned",
                &format!("assigned to {node}"),
            );
        }
        for (id, reasons) in &r.unplaceable {
            let Some(t) = self.tasks.get_mut(id) else {
                continue;
            };
            if t.state == TaskState::Pending && t.message != *reasons {
                t.message = reasons.clone();
                t.updated_at = now;
            }
        }
        for (id, reason) in &r.shutdown {
            let Some(t) = self.tasks.get_mut(id) else {
                continue;
            };
            if t.desired_state == TaskState::Shutdown {
                continue;
            }
            t.desired_state = TaskState::Shutdown;
            t.updated_at = now;
            if t.state < TaskState::Assigned {
                t.state = TaskState::Shutdown;
            }
            t.message = reason.clone();
            self.event(now, EventKind::Task, id, "shutdown", reason);
        }
        for (id, reason) in &r.orphan {
            let Some(t) = self.tasks.get_mut(id) else {
                continue;
            };
            if t.state.is_terminal() {
                continue;
            }
            t.state = TaskState::Orphaned;
            t.message = reason.clone();
            t.updated_at = now;
            self.event(now, EventKind::Task, id, "orphaned", reason);
        }
        for id in &r.forget {
            if self.tasks.get(id).is_some_and(|t| t.state.is_terminal()) {
                self.tasks.remove(id);
            }
        }
        self.record_rollouts(now, r);
    }

    pub(super) fn event(
        &mut self,
        at: u64,
        kind: EventKind,
        object: &str,
        action: &str,
        message: &str,
    ) {
        self.next_event_seq += 1;
        self.events.push_back(Event {
            seq: self.next_event_seq,
            at,
            kind,
            object: object.to_string(),
            action: action.to_string(),
            message: message.to_string(),
        });
        while self.events.len() > EVENT_RING {
            self.events.pop_front();
        }
    }

    /// Stores one kind of a stack's values and records what changed as events.
    fn store_values(&mut self, now: u64, stack: &str, kind: &ValueKind, plan: &ValuesPlan) {
        for (name, action, message) in secrets::store((kind.values)(self), plan, stack, now) {
            let event_kind = if kind.noun == "config" {
                EventKind::Config
            } else {
                EventKind::Secret
            };
            self.event(now, event_kind, &name, action, &message);
        }
    }

    /// Answers a read as JSON.
    pub fn query(&self, q: &Query) -> Answer {
        match q {
            Query::Services => Answer::Services(self.services.values().cloned().collect()),
            Query::Service { name } => {
                Answer::Service(self.services.get(name).cloned().map(Box::new))
            }
            Query::Tasks { service, node } => Answer::Tasks(
                self.tasks
                    .values()
                    .filter(|t| service.as_ref().is_none_or(|s| &t.service == s))
                    .filter(|t| node.as_ref().is_none_or(|n| t.node.as_ref() == Some(n)))
                    .cloned()
                    .collect(),
            ),
            Query::Nodes => Answer::Nodes(self.nodes.values().cloned().collect()),
            Query::Events { after } => Answer::Events(
                self.events
                    .iter()
                    .filter(|e| e.seq > *after)
                    .cloned()
                    .collect(),
            ),
            Query::ClusterId => Answer::ClusterId(self.cluster_id.clone()),
            Query::Configs => Answer::Configs(
                self.configs
                    .values()
                    .map(|c| super::configs::info(c, &self.services, false))
                    .collect(),
            ),
            Query::Config { name } => Answer::Config(
                self.configs
                    .get(name)
                    .map(|c| super::configs::info(c, &self.services, true)),
            ),
        }
    }
}

/// Secrets and configs belong to stacks: a service created outside a stack cannot use one.
fn no_secrets(name: &str, spec: &ServiceSpec) -> Result<(), String> {
    let c = &spec.container;
    let used = (c.secrets.first().map(|r| ("secret", r)))
        .or_else(|| c.configs.first().map(|r| ("config", r)));
    match used {
        None => Ok(()),
        Some((noun, r)) => Err(format!(
            "service `{name}` uses {noun} `{}`: {noun}s are only available to stack services \
             (shoalctl apply -f STACK)",
            r.source
        )),
    }
}

/// The one name rule (`shoal_model::check_name`), as a refusal message.
pub(super) fn validate_name(what: &str, name: &str) -> Result<(), String> {
    shoal_model::check_name(what, name).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::{Refusal, RefusalKind};
    use shoal_model::ServiceSpec;

    fn req(id: Option<&str>, now: u64, command: Command) -> Request {
        Request {
            request_id: id.map(str::to_string),
            now,
            command,
        }
    }

    fn create(name: &str) -> Command {
        Command::CreateService {
            name: name.into(),
            spec: ServiceSpec::default(),
        }
    }

    #[test]
    fn create_then_duplicate_is_refused_without_change() {
        let mut s = ClusterState::default();
        assert_eq!(s.apply(&req(None, 1, create("db"))), Response::version(1));
        let before = s.clone();
        let r = s.apply(&req(None, 2, create("db")));
        assert_eq!(r.error.as_deref(), Some("service `db` already exists"));
        // The refused command leaves everything but nothing changed.
        assert_eq!(s, before);
    }

    #[test]
    fn retried_request_is_applied_once() {
        let mut s = ClusterState::default();
        let first = s.apply(&req(Some("r1"), 1, create("api")));
        let again = s.apply(&req(Some("r1"), 2, create("api")));
        assert_eq!(first, again);
        assert!(again.error.is_none());
        let creates = s.events.iter().filter(|e| e.object == "api").count();
        assert_eq!(creates, 1);
    }

    #[test]
    fn same_requests_give_same_state() {
        let cmds: Vec<Request> = (0..50)
            .map(|i| req(Some(&format!("r{i}")), i, create(&format!("s{}", i % 7))))
            .collect();
        let mut a = ClusterState::default();
        let mut b = ClusterState::default();
        let ra: Vec<_> = cmds.iter().map(|c| a.apply(c)).collect();
        let rb: Vec<_> = cmds.iter().map(|c| b.apply(c)).collect();
        assert_eq!(ra, rb);
        assert_eq!(a, b);
        assert_eq!(
            serde_json::to_string(&a).unwrap(),
            serde_json::to_string(&b).unwrap()
        );
    }

    #[test]
    fn bad_names_are_refused() {
        let mut s = ClusterState::default();
        for bad in ["", "-x", "a b", "x/y", &"a".repeat(64)] {
            let r = s.apply(&req(None, 1, create(bad)));
            let refusal = r.refused_with().expect("refused");
            assert_eq!(refusal.kind, RefusalKind::Invalid, "{bad:?}");
            assert!(refusal.message.contains("invalid"), "{bad:?}");
        }
        assert!(s.services.is_empty());
    }

    #[test]
    fn update_bumps_version_and_remove_forgets() {
        let mut s = ClusterState::default();
        s.apply(&req(None, 1, create("mq")));
        let spec = ServiceSpec {
            replicas: 3,
            ..Default::default()
        };
        let r = s.apply(&req(
            None,
            2,
            Command::UpdateService {
                name: "mq".into(),
                spec,
            },
        ));
        assert_eq!(r.version, Some(2));
        assert_eq!(s.services["mq"].spec.replicas, 3);
        assert!(s
            .apply(&req(None, 3, Command::RemoveService { name: "mq".into() }))
            .error
            .is_none());
        let r = s.apply(&req(None, 4, Command::RemoveService { name: "mq".into() }));
        assert_eq!(
            r.refused_with(),
            Some(Refusal::new(
                RefusalKind::NotFound,
                "service `mq` not found"
            ))
        );
        s.apply(&req(None, 5, create("mq")));
        let r = s.apply(&req(None, 6, create("mq")));
        assert_eq!(
            r.refused_with().map(|r| r.kind),
            Some(RefusalKind::AlreadyExists)
        );
        // Successful answers serialize as before kinds existed (they live in snapshots).
        assert_eq!(
            serde_json::to_string(&Response::version(2)).expect("json"),
            r#"{"error":null,"version":2}"#
        );
        let old: Response = serde_json::from_str(r#"{"error":"no","version":null}"#).expect("old");
        assert_eq!(
            old.refused_with().map(|r| r.kind),
            Some(RefusalKind::Precondition)
        );
    }

    #[test]
    fn cluster_id_is_set_once() {
        let mut s = ClusterState::default();
        let init = |id: &str| Command::InitCluster {
            cluster_id: id.into(),
        };
        assert!(s.apply(&req(None, 1, init("a"))).error.is_none());
        assert!(s.apply(&req(None, 2, init("a"))).error.is_none());
        assert!(s.apply(&req(None, 3, init("b"))).error.is_some());
        assert_eq!(s.cluster_id.as_deref(), Some("a"));
    }

    #[test]
    fn event_ring_is_bounded() {
        let mut s = ClusterState::default();
        for i in 0..(EVENT_RING as u64 + 10) {
            s.apply(&req(None, i, Command::RemoveService { name: "x".into() }));
            s.event(i, EventKind::Other, "x", "tick", "");
        }
        assert_eq!(s.events.len(), EVENT_RING);
        assert_eq!(s.events.back().unwrap().seq, s.next_event_seq);
    }
}
