//! The coordinator's Prometheus metrics: one [`Metrics`] registry, shared by handle.
//!
//! Counters and histograms are updated where things happen (proposals in
//! [`Coordinator::local`](crate::coordinator::Coordinator::local), the orchestrator runner, the
//! dispatcher, the gRPC layer). Gauges for Raft and cluster state are computed at scrape time
//! from `raft.metrics()` and the state machine, so they cannot drift. Snapshots are counted by
//! [`Metrics::watch_raft`], which follows openraft's metrics.
//!
//! Names: `shoal_` prefix, base units, `_total` on counters (prometheus-client appends it),
//! `_seconds` on latency histograms.

use shoal_ops::grpc_metrics::seconds_histogram;
use std::future::Future;
use std::sync::Arc;

use openraft::ServerState;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use shoal_model::{NodeStatus, TaskState, UpdateState};
use shoal_ops::grpc_metrics::GrpcMetrics;

use crate::coordinator::Coordinator;

/// Every task state, for `shoal_tasks{state}` (a state with no task reads 0, not absent).
const ROLLOUT_STATES: [UpdateState; 5] = [
    UpdateState::Rolling,
    UpdateState::Paused,
    UpdateState::RollingBack,
    UpdateState::Completed,
    UpdateState::RolledBack,
];

const TASK_STATES: [TaskState; 12] = [
    TaskState::New,
    TaskState::Pending,
    TaskState::Assigned,
    TaskState::Preparing,
    TaskState::Starting,
    TaskState::Running,
    TaskState::Restarting,
    TaskState::Complete,
    TaskState::Shutdown,
    TaskState::Failed,
    TaskState::Rejected,
    TaskState::Orphaned,
];

const NODE_STATES: [(NodeStatus, &str); 3] = [
    (NodeStatus::Unknown, "unknown"),
    (NodeStatus::Ready, "ready"),
    (NodeStatus::Down, "down"),
];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StateLabel {
    state: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RoleLabel {
    role: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PeerLabel {
    peer: String,
}

/// Handle on the coordinator's metrics; cheap to clone.
#[derive(Clone)]
pub struct Metrics {
    inner: Arc<Inner>,
}

struct Inner {
    registry: Registry,
    // Raft, refreshed at scrape time.
    is_leader: Gauge,
    term: Gauge,
    last_log_index: Gauge,
    committed_index: Gauge,
    applied_index: Gauge,
    snapshot_index: Gauge,
    replication_lag: Family<PeerLabel, Gauge>,
    // Raft, counted as it happens.
    proposals: Counter,
    proposal_failures: Counter,
    snapshots: Counter,
    snapshot_build_seconds: Histogram,
    snapshot_bytes: Gauge,
    disk_sync_seconds: Histogram,
    leader_changes: Counter,
    append_entries_entries: Histogram,
    append_entries_bytes: Histogram,
    // Cluster state, refreshed at scrape time.
    nodes: Family<StateLabel, Gauge>,
    services: Gauge,
    tasks: Family<StateLabel, Gauge>,
    pending_tasks: Gauge,
    rollouts: Family<StateLabel, Gauge>,
    rollout_slots_in_flight: Gauge,
    rollout_failed_tasks: Gauge,
    // Orchestrator and scheduler.
    placements: Counter,
    placement_failures: Counter,
    nodes_marked_down: Counter,
    nodes_suspect: Gauge,
    orchestrator_passes: Counter,
    orchestrator_pass_failures: Counter,
    orchestrator_pass_seconds: Histogram,
    scheduler_plan_seconds: Histogram,
    // Dispatcher.
    agent_sessions: Gauge,
    agent_registrations: Counter,
    agent_heartbeats: Counter,
    // This coordinator's own certificate (secure clusters only).
    cert_expiry: Family<RoleLabel, Gauge>,
    cert_renewal_failures: Counter,
    // API.
    api: GrpcMetrics,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Metrics without a store behind them (tests); see [`Metrics::for_store`].
    pub fn new() -> Self {
        Self::for_store(seconds_histogram())
    }

    /// Metrics that include `disk_sync_seconds`, the store's own histogram of durable flushes.
    pub fn for_store(disk_sync_seconds: Histogram) -> Self {
        let mut root = Registry::default();
        let r = root.sub_registry_with_prefix("shoal");
        let api = GrpcMetrics::register(r);
        let inner = Inner {
            is_leader: Gauge::default(),
            term: Gauge::default(),
            last_log_index: Gauge::default(),
            committed_index: Gauge::default(),
            applied_index: Gauge::default(),
            snapshot_index: Gauge::default(),
            replication_lag: Family::default(),
            proposals: Counter::default(),
            proposal_failures: Counter::default(),
            snapshots: Counter::default(),
            snapshot_build_seconds: seconds_histogram(),
            snapshot_bytes: Gauge::default(),
            disk_sync_seconds,
            leader_changes: Counter::default(),
            append_entries_entries: Histogram::new(exponential_buckets(1.0, 2.0, 10)),
            append_entries_bytes: Histogram::new(exponential_buckets(1024.0, 4.0, 10)),
            nodes: Family::default(),
            services: Gauge::default(),
            tasks: Family::default(),
            pending_tasks: Gauge::default(),
            rollouts: Family::default(),
            rollout_slots_in_flight: Gauge::default(),
            rollout_failed_tasks: Gauge::default(),
            placements: Counter::default(),
            placement_failures: Counter::default(),
            nodes_marked_down: Counter::default(),
            nodes_suspect: Gauge::default(),
            orchestrator_passes: Counter::default(),
            orchestrator_pass_failures: Counter::default(),
            orchestrator_pass_seconds: seconds_histogram(),
            scheduler_plan_seconds: seconds_histogram(),
            agent_sessions: Gauge::default(),
            agent_registrations: Counter::default(),
            agent_heartbeats: Counter::default(),
            cert_expiry: Family::default(),
            cert_renewal_failures: Counter::default(),
            api,
            registry: Registry::default(),
        };
        let i = &inner;
        r.register(
            "raft_is_leader",
            "1 if this coordinator is the Raft leader",
            i.is_leader.clone(),
        );
        r.register("raft_term", "Current Raft term", i.term.clone());
        r.register(
            "raft_last_log_index",
            "Index of the last entry in this member's Raft log",
            i.last_log_index.clone(),
        );
        r.register(
            "raft_committed_index",
            "Highest Raft log index known to be committed",
            i.committed_index.clone(),
        );
        r.register(
            "raft_applied_index",
            "Highest Raft log index applied to the state machine",
            i.applied_index.clone(),
        );
        r.register(
            "raft_snapshot_index",
            "Last Raft log index included in this member's snapshot",
            i.snapshot_index.clone(),
        );
        r.register(
            "raft_replication_lag_entries",
            "On the leader: log entries a peer is behind the leader's last log index",
            i.replication_lag.clone(),
        );
        r.register(
            "raft_proposals",
            "Entries this coordinator proposed to Raft as leader",
            i.proposals.clone(),
        );
        r.register(
            "raft_proposal_failures",
            "Raft proposals that failed",
            i.proposal_failures.clone(),
        );
        r.register(
            "raft_snapshots",
            "Snapshots this member built or installed since it started",
            i.snapshots.clone(),
        );
        r.register(
            "raft_snapshot_build_duration_seconds",
            "Time to build a snapshot of the state machine",
            i.snapshot_build_seconds.clone(),
        );
        r.register(
            "raft_disk_sync_duration_seconds",
            "Time for one durable flush of the Raft store (sled flush, then fdatasync)",
            i.disk_sync_seconds.clone(),
        );
        r.register(
            "raft_snapshot_size_bytes",
            "Size of the last snapshot this member built",
            i.snapshot_bytes.clone(),
        );
        r.register(
            "raft_leader_changes",
            "Changes of the leader this member knows of (none counts as a change)",
            i.leader_changes.clone(),
        );
        r.register(
            "raft_append_entries_payload_entries",
            "Log entries per AppendEntries this member sent as leader (heartbeats without \
             entries are not counted); bounded by `[raft] max_payload_entries`",
            i.append_entries_entries.clone(),
        );
        r.register(
            "raft_append_entries_payload_bytes",
            "Encoded size of each AppendEntries with entries this member sent as leader",
            i.append_entries_bytes.clone(),
        );
        r.register("nodes", "Registered nodes by state", i.nodes.clone());
        r.register("services", "Services in the cluster", i.services.clone());
        r.register("tasks", "Tasks by state", i.tasks.clone());
        r.register(
            "pending_tasks",
            "Tasks waiting for a placement",
            i.pending_tasks.clone(),
        );
        r.register(
            "service_rollouts",
            "Services by the state of their last rollout (rolling, paused, rolling_back, completed, rolled_back)",
            i.rollouts.clone(),
        );
        r.register(
            "service_rollout_slots_in_flight",
            "Slots of rollouts in progress whose new task has not settled yet",
            i.rollout_slots_in_flight.clone(),
        );
        r.register(
            "service_rollout_failed_tasks",
            "New tasks that failed during the rollouts in progress or paused",
            i.rollout_failed_tasks.clone(),
        );
        r.register(
            "scheduler_placements",
            "Tasks the scheduler placed on a node",
            i.placements.clone(),
        );
        r.register(
            "scheduler_placement_failures",
            "Tasks the scheduler could not place (counted when the reason is new)",
            i.placement_failures.clone(),
        );
        r.register(
            "scheduler_plan_duration_seconds",
            "Time to compute one reconciliation plan, placements included",
            i.scheduler_plan_seconds.clone(),
        );
        r.register(
            "orchestrator_passes",
            "Orchestrator passes run on the leader",
            i.orchestrator_passes.clone(),
        );
        r.register(
            "orchestrator_pass_failures",
            "Orchestrator passes that failed to propose their result",
            i.orchestrator_pass_failures.clone(),
        );
        r.register(
            "orchestrator_pass_duration_seconds",
            "Time of one orchestrator pass, its Raft writes included",
            i.orchestrator_pass_seconds.clone(),
        );
        r.register(
            "dispatcher_nodes_marked_down",
            "Nodes declared down after missing their heartbeats",
            i.nodes_marked_down.clone(),
        );
        r.register(
            "dispatcher_nodes_suspect",
            "Ready nodes silent for more than two heartbeat periods but within their grace",
            i.nodes_suspect.clone(),
        );
        r.register(
            "dispatcher_agent_sessions",
            "Agents with an open assignments stream to this coordinator",
            i.agent_sessions.clone(),
        );
        r.register(
            "dispatcher_registrations",
            "Agent registrations accepted",
            i.agent_registrations.clone(),
        );
        r.register(
            "dispatcher_heartbeats",
            "Agent heartbeats accepted",
            i.agent_heartbeats.clone(),
        );
        r.register(
            "tls_certificate_expiry_timestamp_seconds",
            "When the certificate this coordinator presents expires (Unix time; renewed at two \
             thirds of its lifetime); absent on an insecure cluster",
            i.cert_expiry.clone(),
        );
        r.register(
            "tls_certificate_renewal_failures",
            "Failed attempts to renew this coordinator's certificate since it started",
            i.cert_renewal_failures.clone(),
        );
        Metrics {
            inner: Arc::new(Inner {
                registry: root,
                ..inner
            }),
        }
    }

    /// The gRPC request metrics; wrap each tonic server with `api().layer()`.
    pub fn api(&self) -> &GrpcMetrics {
        &self.inner.api
    }

    pub fn proposal(&self, ok: bool) {
        self.inner.proposals.inc();
        if !ok {
            self.inner.proposal_failures.inc();
        }
    }

    /// An AppendEntries with `entries` log entries, `bytes` long once encoded, was sent.
    pub fn append_entries_sent(&self, entries: usize, bytes: usize) {
        if entries > 0 {
            self.inner.append_entries_entries.observe(entries as f64);
            self.inner.append_entries_bytes.observe(bytes as f64);
        }
    }

    pub fn node_marked_down(&self) {
        self.inner.nodes_marked_down.inc();
    }

    /// Ready nodes the leader suspects now (silent, within their grace).
    pub fn nodes_suspect(&self, n: usize) {
        self.inner
            .nodes_suspect
            .set(i64::try_from(n).unwrap_or(i64::MAX));
    }

    /// One orchestrator pass: its duration, whether it succeeded.
    pub fn orchestrator_pass(&self, seconds: f64, ok: bool) {
        let i = &self.inner;
        i.orchestrator_passes.inc();
        i.orchestrator_pass_seconds.observe(seconds);
        if !ok {
            i.orchestrator_pass_failures.inc();
        }
    }

    /// One plan computed: its duration, the tasks it placed and those it could not.
    pub fn plan(&self, seconds: f64, placed: usize, failed: usize) {
        let i = &self.inner;
        i.scheduler_plan_seconds.observe(seconds);
        i.placements.inc_by(placed as u64);
        i.placement_failures.inc_by(failed as u64);
    }

    pub fn agent_registered(&self) {
        self.inner.agent_registrations.inc();
    }

    pub fn agent_heartbeat(&self) {
        self.inner.agent_heartbeats.inc();
    }

    /// The certificate this coordinator presents now expires at `not_after` (Unix seconds).
    pub fn certificate_expires(&self, not_after: i64) {
        let role = RoleLabel {
            role: "coordinator".into(),
        };
        self.inner.cert_expiry.get_or_create(&role).set(not_after);
    }

    pub fn certificate_renewal_failed(&self) {
        self.inner.cert_renewal_failures.inc();
    }

    /// Counts an open agent session until the guard drops.
    pub fn agent_session(&self) -> SessionGuard {
        self.inner.agent_sessions.inc();
        SessionGuard {
            metrics: self.clone(),
        }
    }

    /// Follows openraft's metrics and the snapshot builder: counts new snapshots (built or
    /// installed) and leader changes, and records how long each snapshot build took.
    pub fn watch_raft(&self, coord: &Coordinator) -> impl Future<Output = ()> + Send + 'static {
        let metrics = self.clone();
        let mut raft = coord.raft.metrics();
        let mut builds = coord.sm.watch_snapshot_builds();
        async move {
            let i = &metrics.inner;
            let (mut snapshot, mut leader) = {
                let m = raft.borrow();
                (m.snapshot.map(|l| l.index), m.current_leader)
            };
            let mut built = builds.borrow().count;
            loop {
                tokio::select! {
                    r = raft.changed() => {
                        if r.is_err() {
                            return; // Raft shut down
                        }
                        let (now, now_leader) = {
                            let m = raft.borrow_and_update();
                            (m.snapshot.map(|l| l.index), m.current_leader)
                        };
                        if now > snapshot {
                            i.snapshots.inc();
                            snapshot = now;
                        }
                        if now_leader != leader {
                            i.leader_changes.inc();
                            leader = now_leader;
                        }
                    }
                    r = builds.changed() => {
                        if r.is_err() {
                            return;
                        }
                        let b = *builds.borrow_and_update();
                        if b.count > built {
                            i.snapshot_build_seconds.observe(b.last_seconds);
                            i.snapshot_bytes.set(as_gauge(b.last_bytes));
                            built = b.count;
                        }
                    }
                }
            }
        }
    }

    /// Refreshes the scrape-time gauges from `coord` and encodes everything as OpenMetrics.
    pub async fn render(&self, coord: &Coordinator) -> Result<String, std::fmt::Error> {
        let committed = coord
            .raft
            .with_raft_state(|st| st.committed.map(|l| l.index).unwrap_or(0))
            .await
            .unwrap_or(0);
        self.refresh(coord, committed);
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.inner.registry)?;
        Ok(out)
    }

    fn refresh(&self, coord: &Coordinator, committed: u64) {
        let i = &self.inner;
        let m = coord.raft.metrics().borrow().clone();
        let leader = m.state == ServerState::Leader;
        let last_log = m.last_log_index.unwrap_or(0);
        i.is_leader.set(i64::from(leader));
        i.term.set(as_gauge(m.current_term));
        i.last_log_index.set(as_gauge(last_log));
        i.committed_index.set(as_gauge(committed));
        i.applied_index
            .set(as_gauge(m.last_applied.map(|l| l.index).unwrap_or(0)));
        i.snapshot_index
            .set(as_gauge(m.snapshot.map(|l| l.index).unwrap_or(0)));
        i.replication_lag.clear();
        if leader {
            for (peer, matched) in m.replication.iter().flatten() {
                if *peer == coord.id {
                    continue;
                }
                let matched = matched.map(|l| l.index).unwrap_or(0);
                i.replication_lag
                    .get_or_create(&PeerLabel {
                        peer: peer.to_string(),
                    })
                    .set(as_gauge(last_log.saturating_sub(matched)));
            }
        }
        let (nodes, services, tasks, pending) = coord.sm.read(|s| {
            let nodes =
                NODE_STATES.map(|(st, _)| s.nodes.values().filter(|n| n.status == st).count());
            let tasks = TASK_STATES.map(|st| s.tasks.values().filter(|t| t.state == st).count());
            let pending = s
                .tasks
                .values()
                .filter(|t| t.state == TaskState::Pending && t.desired_state == TaskState::Running)
                .count();
            (nodes, s.services.len(), tasks, pending)
        });
        let (rollouts, in_flight, failed) = coord.sm.read(|s| {
            let states = ROLLOUT_STATES.map(|st| {
                s.services
                    .values()
                    .filter(|v| v.update.as_ref().is_some_and(|u| u.state == st))
                    .count()
            });
            let open = s
                .services
                .values()
                .filter_map(|v| v.update.as_ref())
                .filter(|u| u.state.is_active() || u.state == UpdateState::Paused);
            let (flight, failed) = open.fold((0, 0), |(a, b), u| {
                (a + u.in_flight.len(), b + u.failed.len())
            });
            (states, flight, failed)
        });
        for (st, n) in ROLLOUT_STATES.iter().zip(rollouts) {
            i.rollouts
                .get_or_create(&StateLabel {
                    state: st.as_str().to_string(),
                })
                .set(n as i64);
        }
        i.rollout_slots_in_flight.set(in_flight as i64);
        i.rollout_failed_tasks.set(failed as i64);
        for ((_, name), n) in NODE_STATES.iter().zip(nodes) {
            i.nodes
                .get_or_create(&StateLabel {
                    state: (*name).to_string(),
                })
                .set(n as i64);
        }
        for (st, n) in TASK_STATES.iter().zip(tasks) {
            i.tasks
                .get_or_create(&StateLabel {
                    state: st.as_str().to_string(),
                })
                .set(n as i64);
        }
        i.services.set(services as i64);
        i.pending_tasks.set(pending as i64);
    }
}

fn as_gauge(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// An open agent session; dropping it closes the session in `shoal_dispatcher_agent_sessions`.
pub struct SessionGuard {
    metrics: Metrics,
}

impl Drop for SessionGuard {
    fn drop(&mut self) {
        self.metrics.inner.agent_sessions.dec();
    }
}
