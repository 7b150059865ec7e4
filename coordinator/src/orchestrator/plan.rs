//! [`plan`]: desired state versus tasks, as one deterministic [`Reconcile`].

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use shoal_model::{
    Millis, Node, NodeAvailability, NodeLoss, NodeStatus, Service, ServiceMode, Task, TaskState,
};

use super::deps;
use super::rollout;
use crate::scheduler::{
    self, ClusterView, Constraint, NodeTask, NodeView, PendingTask, Requirements,
};
use crate::state::{ClusterState, Reconcile};

/// Terminal tasks kept per slot (or per node for global services) for `service ps`.
pub const KEEP_TERMINAL_PER_SLOT: usize = 5;

fn eligible(node: &Node, constraints: &[Constraint]) -> bool {
    node.status == NodeStatus::Ready
        && node.availability == NodeAvailability::Active
        && constraints
            .iter()
            .all(|c| c.matches(&node.name, node.role, &node.labels))
}

fn new_task(svc: &Service, slot: u32, node: Option<&str>, id: String) -> Task {
    Task {
        id,
        service: svc.name.clone(),
        service_version: svc.version,
        slot,
        node: node.map(str::to_string),
        desired_state: TaskState::Running,
        state: TaskState::Pending,
        message: "pending".into(),
        exit_code: None,
        spec: svc.spec.container.clone(),
        restart_policy: svc.spec.restart_policy.clone(),
        mode: svc.spec.mode,
        created_at: 0,
        updated_at: 0,
        image_digest: None,
    }
}

/// Gives `t` its service's first-start command and environment.
fn first_start(t: &mut Task, svc: &Service) {
    let Some(first) = &svc.spec.first_start else {
        return;
    };
    if !first.command.is_empty() {
        t.spec.command = first.command.clone();
    }
    t.spec
        .env
        .extend(first.env.iter().map(|(k, v)| (k.clone(), v.clone())));
}

/// Why a task on node `n` is orphaned now (its copy is given up and replaced elsewhere), or
/// `None` while it stays: a removed node gives up everything; a node that is down gives up the
/// tasks of services that do not wait for it (see [`NodeLoss`]), and those of services that
/// wait with a deadline once the deadline passed. `now` is the proposer's clock.
fn orphan_reason(state: &ClusterState, t: &Task, n: &str, now: Millis) -> Option<String> {
    let Some(node) = state.nodes.get(n) else {
        return Some(format!("node {n} removed"));
    };
    if node.status != NodeStatus::Down {
        return None;
    }
    let policy = state
        .services
        .get(&t.service)
        .map_or(NodeLoss::Replace, |s| s.spec.node_loss());
    match policy {
        NodeLoss::Replace | NodeLoss::Auto => Some(format!("node {n} is down")),
        NodeLoss::Wait => None,
        NodeLoss::ReplaceAfter(ms) => {
            let since = node.down_since.unwrap_or(0);
            (now >= since.saturating_add(ms))
                .then(|| format!("node {n} is down for more than {ms} ms"))
        }
    }
}

/// Computes one reconciliation pass at `now` (the proposer's clock, used only for node-loss
/// deadlines). `next_id` names new tasks (the caller makes ids unique).
pub fn plan(
    state: &ClusterState,
    now: Millis,
    next_id: &mut dyn FnMut(&str, u32) -> String,
) -> Reconcile {
    let mut r = Reconcile::default();
    // Tasks this pass already ends (orphaned or shut down): not live any more.
    let mut gone: BTreeSet<String> = BTreeSet::new();
    // Of those, the orphaned ones: their copy is given up (the node is gone or not waited for).
    let mut orphaned: BTreeSet<String> = BTreeSet::new();

    for t in state.tasks.values().filter(|t| !t.state.is_terminal()) {
        if let Some(n) = &t.node {
            if let Some(reason) = orphan_reason(state, t, n, now) {
                r.orphan.push((t.id.clone(), reason));
                gone.insert(t.id.clone());
                orphaned.insert(t.id.clone());
                continue;
            }
        }
        if t.desired_state != TaskState::Running {
            continue;
        }
        let reason = match state.services.get(&t.service) {
            None => Some("service removed".to_string()),
            Some(svc) if svc.version != t.service_version && !rollout::holds_old_tasks(svc) => {
                Some(format!("replaced by version {}", svc.version))
            }
            // During a rollout an old task stops when its batch comes (see `rollout`), or now
            // when its slot is scaled away.
            Some(svc)
                if svc.version != t.service_version
                    && svc.spec.mode == ServiceMode::Replicated
                    && t.slot > svc.spec.replicas =>
            {
                Some("scaled down".to_string())
            }
            Some(_) => t
                .node
                .as_ref()
                .and_then(|n| state.nodes.get(n))
                .filter(|n| n.availability == NodeAvailability::Drain)
                .map(|n| format!("node {} drained", n.name)),
        };
        if let Some(reason) = reason {
            r.shutdown.push((t.id.clone(), reason));
            gone.insert(t.id.clone());
        }
    }

    // Tasks by service, built once: the per-service work below stays linear overall.
    let mut by_service: BTreeMap<&str, Vec<&Task>> = BTreeMap::new();
    for t in state.tasks.values() {
        by_service.entry(t.service.as_str()).or_default().push(t);
    }
    let mut pending: Vec<Task> = Vec::new();
    for svc in state.services.values() {
        let constraints: Vec<Constraint> = svc
            .spec
            .constraints
            .iter()
            .filter_map(|c| Constraint::parse(c).ok())
            .collect();
        let tasks: Vec<&Task> = by_service
            .get(svc.name.as_str())
            .into_iter()
            .flatten()
            .copied()
            .filter(|t| t.service_version == svc.version && !gone.contains(&t.id))
            .collect();
        let live = |t: &&Task| t.desired_state == TaskState::Running && !t.state.is_terminal();
        // A rollout's pass: old tasks of the next batch stop, their slots open for new tasks.
        let all: Vec<&Task> = by_service
            .get(svc.name.as_str())
            .into_iter()
            .flatten()
            .copied()
            .collect();
        let blocked = deps::unmet(state, svc, &by_service);
        let step = rollout::step(svc, &all, &gone, &state.nodes, blocked.as_deref(), now);
        for (id, _) in &step.shutdown {
            gone.insert(id.clone());
        }
        r.shutdown.extend(step.shutdown.iter().cloned());
        if let Some(status) = step.status {
            r.updates.push((svc.name.clone(), status));
        }
        if let Some(why) = step.rollback {
            r.rollbacks.push((svc.name.clone(), svc.version, why));
        }
        // Slots a rollout still holds: their old task runs on, no new task yet.
        let held: BTreeSet<String> = if rollout::holds_old_tasks(svc) {
            all.iter()
                .filter(|t| t.service_version != svc.version && !gone.contains(&t.id))
                .filter(|t| t.desired_state == TaskState::Running && !t.state.is_terminal())
                .map(|t| rollout::slot_key(t))
                .filter(|k| !step.open.contains(k))
                .collect()
        } else {
            BTreeSet::new()
        };
        // A service that waits for lost nodes (it keeps data) is also replaced stop-first: a
        // slot (or a global service's node) gets no new task while an older copy of it may
        // still run (shut down but not yet reported stopped, or on a node that is down). So
        // is a stop-first rollout.
        let stop_first = svc.spec.node_loss() != NodeLoss::Replace
            || svc
                .update
                .as_ref()
                .is_some_and(|u| rollout::holds_old_tasks(svc) && rollout::stop_first(svc, u));
        let leaving: Vec<&Task> = if stop_first {
            by_service
                .get(svc.name.as_str())
                .into_iter()
                .flatten()
                .copied()
                .filter(|t| !t.state.is_terminal() && !orphaned.contains(&t.id))
                .filter(|t| {
                    t.service_version != svc.version
                        || gone.contains(&t.id)
                        || t.desired_state != TaskState::Running
                })
                .collect()
        } else {
            Vec::new()
        };
        // A quorum cluster that never formed, with no member alive: slot 1 starts alone, with
        // its first-start command or environment.
        let forming = svc.spec.first_start.is_some()
            && !svc.formed
            && !all
                .iter()
                .any(|t| !t.state.is_terminal() && !gone.contains(&t.id) && t.slot != 1);
        let is_job = matches!(
            svc.spec.mode,
            ServiceMode::ReplicatedJob | ServiceMode::GlobalJob
        );
        // A job slot is done once a task of this version completed or failed for good.
        let satisfied = |t: &&Task| {
            live(t) || (is_job && matches!(t.state, TaskState::Complete | TaskState::Failed))
        };
        match svc.spec.mode {
            ServiceMode::Replicated | ServiceMode::ReplicatedJob => {
                for slot in 1..=svc.spec.replicas {
                    let mut in_slot: Vec<&&Task> = tasks
                        .iter()
                        .filter(|t| t.slot == slot && satisfied(t))
                        .collect();
                    in_slot.sort_by_key(|t| (t.created_at, t.id.clone()));
                    if in_slot.is_empty() {
                        if forming && slot != 1 {
                            tracing::trace!(service = %svc.name, slot, "waiting for the first member");
                        } else if held.contains(&slot.to_string()) {
                            tracing::trace!(service = %svc.name, slot, "old task held by the rollout");
                        } else if leaving.iter().any(|t| t.slot == slot) {
                            tracing::trace!(service = %svc.name, slot, "waiting for the old copy to stop");
                        } else if blocked.is_none() {
                            let mut t = new_task(svc, slot, None, next_id(&svc.name, slot));
                            if forming {
                                first_start(&mut t, svc);
                            }
                            pending.push(t);
                        }
                    } else {
                        // Keep the newest; extra copies of a slot stop.
                        for extra in &in_slot[..in_slot.len() - 1] {
                            if live(extra) {
                                r.shutdown
                                    .push((extra.id.clone(), "duplicate in slot".into()));
                            }
                        }
                    }
                }
                for t in tasks
                    .iter()
                    .filter(|t| live(t) && t.slot > svc.spec.replicas)
                {
                    r.shutdown.push((t.id.clone(), "scaled down".into()));
                }
            }
            ServiceMode::Global | ServiceMode::GlobalJob => {
                for node in state.nodes.values() {
                    let here: Vec<&&Task> = tasks
                        .iter()
                        .filter(|t| t.node.as_deref() == Some(&node.name) && satisfied(t))
                        .collect();
                    let ok = eligible(node, &constraints);
                    let old_copy = leaving
                        .iter()
                        .any(|t| t.node.as_deref() == Some(&node.name));
                    let held_here = held.contains(&node.name);
                    if here.is_empty() && ok && blocked.is_none() && !old_copy && !held_here {
                        pending.push(new_task(svc, 0, Some(&node.name), next_id(&svc.name, 0)));
                    }
                    if !ok && node.status == NodeStatus::Ready {
                        for t in here.iter().filter(|t| live(t)) {
                            r.shutdown.push((
                                t.id.clone(),
                                format!("node {} no longer eligible", node.name),
                            ));
                        }
                    }
                }
            }
        }
        if let Some(reason) = &blocked {
            // Tasks created before a dependency broke keep running; new ones wait.
            tracing::trace!(service = %svc.name, %reason, "dependencies not met");
        }
    }

    // Place new tasks and those still pending from earlier passes.
    let old_pending: Vec<&Task> = state
        .tasks
        .values()
        .filter(|t| t.state == TaskState::Pending && t.desired_state == TaskState::Running)
        .filter(|t| !gone.contains(&t.id))
        .collect();
    let view = cluster_view(state, &gone);
    let mut reqs: BTreeMap<(String, u64), Arc<Requirements>> = BTreeMap::new();
    let mut to_place: Vec<PendingTask> = Vec::new();
    for t in pending.iter().chain(old_pending.iter().copied()) {
        let Some(svc) = state.services.get(&t.service) else {
            continue;
        };
        let req = reqs
            .entry((svc.name.clone(), svc.version))
            .or_insert_with(|| Arc::new(Requirements::from_spec(&svc.spec)))
            .clone();
        to_place.push(PendingTask {
            id: t.id.clone(),
            service: t.service.clone(),
            node: t.node.clone(),
            requirements: req,
        });
    }
    let decisions = scheduler::schedule(&view, &to_place);
    let mut placed: BTreeMap<String, String> = BTreeMap::new();
    let mut failed: BTreeMap<String, String> = BTreeMap::new();
    for d in decisions {
        match d {
            scheduler::Decision::Place { task_id, node } => {
                placed.insert(task_id, node);
            }
            scheduler::Decision::Unplaceable { task_id, reasons } => {
                failed.insert(task_id, format!("no suitable node: {}", reasons.join("; ")));
            }
        }
    }
    for mut t in pending {
        match placed.remove(&t.id) {
            Some(node) => {
                t.message = format!("assigned to {node}");
                t.node = Some(node);
                t.state = TaskState::Assigned;
            }
            None => {
                if let Some(why) = failed.remove(&t.id) {
                    t.message = why;
                }
                // A global task that cannot go on its node waits there, pending.
            }
        }
        r.create.push(t);
    }
    r.assign.extend(placed);
    // Only news: a reason already recorded is not proposed again.
    r.unplaceable.extend(
        failed
            .into_iter()
            .filter(|(id, why)| state.tasks.get(id).is_some_and(|t| &t.message != why)),
    );

    // Forget old terminal tasks beyond the history kept per slot.
    let mut history: BTreeMap<(String, u32, Option<String>), Vec<&Task>> = BTreeMap::new();
    for t in state.tasks.values().filter(|t| t.state.is_terminal()) {
        let node_key = if t.slot == 0 { t.node.clone() } else { None };
        history
            .entry((t.service.clone(), t.slot, node_key))
            .or_default()
            .push(t);
    }
    for (_, mut ts) in history {
        ts.sort_by_key(|t| std::cmp::Reverse((t.updated_at, t.id.clone())));
        for t in ts.into_iter().skip(KEEP_TERMINAL_PER_SLOT) {
            r.forget.push(t.id.clone());
        }
    }
    r
}

fn cluster_view(state: &ClusterState, gone: &BTreeSet<String>) -> ClusterView {
    let mut per_node: BTreeMap<&str, Vec<NodeTask>> = BTreeMap::new();
    for t in state.tasks.values() {
        if t.state.is_terminal() || gone.contains(&t.id) {
            continue;
        }
        let (Some(node), Some(svc)) = (&t.node, state.services.get(&t.service)) else {
            continue;
        };
        if t.state == TaskState::Pending {
            continue;
        }
        per_node.entry(node).or_default().push(NodeTask {
            service: t.service.clone(),
            cpu_millis: svc.spec.cpu_reservation_millis,
            memory_bytes: svc.spec.memory_reservation_bytes,
            host_ports: t.spec.host_ports.clone(),
        });
    }
    ClusterView {
        nodes: state
            .nodes
            .values()
            .map(|n| NodeView::from_node(n, per_node.remove(n.name.as_str()).unwrap_or_default()))
            .collect(),
    }
}
