//! The orchestrator loop: on the leader, declare silent nodes down (and nodes that answer again
//! up) from the [`Liveness`] verdicts, and propose each reconciliation pass through Raft.

use std::time::Duration;

use shoal_model::NodeStatus;

use super::liveness::{Liveness, Verdict};
use super::plan;
use crate::coordinator::Coordinator;
use crate::state::Command;

/// How often the loop runs when nothing else wakes it.
const TICK: Duration = Duration::from_millis(250);
/// Shortest time between two passes.
const MIN_GAP: Duration = Duration::from_millis(50);

pub async fn run(
    coord: Coordinator,
    liveness: Liveness,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let mut applied = coord.sm.watch_applied();
    let mut metrics = coord.raft.metrics();
    let mut was_leader = false;
    loop {
        tokio::select! {
            _ = tokio::time::sleep(TICK) => {}
            _ = applied.changed() => {}
            _ = metrics.changed() => {}
            _ = stop.changed() => return,
        }
        let is_leader = coord.raft.metrics().borrow().current_leader == Some(coord.id);
        if is_leader != was_leader {
            liveness.became_leader(is_leader);
            was_leader = is_leader;
            tracing::info!(leader = is_leader, "orchestrator leadership changed");
        }
        if !is_leader {
            continue;
        }
        // At most one pass per MIN_GAP: under a burst of writes, one pass sees them all.
        tokio::time::sleep(MIN_GAP).await;
        let started = std::time::Instant::now();
        let result = pass(&coord, &liveness).await;
        coord
            .metrics
            .orchestrator_pass(started.elapsed().as_secs_f64(), result.is_ok());
        if let Err(e) = result {
            tracing::warn!(error = %e, "orchestrator pass failed");
            tokio::time::sleep(TICK).await;
        }
    }
}

async fn pass(
    coord: &Coordinator,
    liveness: &Liveness,
) -> Result<(), crate::coordinator::CoordError> {
    let judged = coord.sm.read(|s| {
        let nodes: Vec<(String, NodeStatus)> = s
            .nodes
            .values()
            .map(|n| (n.name.clone(), n.status))
            .collect();
        let verdicts = liveness.judge(nodes.iter().map(|(n, _)| n.as_str()));
        nodes.into_iter().zip(verdicts).collect::<Vec<_>>()
    });
    let mut suspect = 0;
    for ((name, status), j) in judged {
        let silence_ms = j.silence.as_millis() as u64;
        let grace_ms = j.grace.as_millis() as u64;
        match (status, j.verdict) {
            (NodeStatus::Ready, Verdict::Down) => {
                tracing::warn!(node = %name, silence_ms, grace_ms, "node silent past its grace; marking it down");
                coord
                    .write(coord.request(None, Command::MarkNodeDown { name }))
                    .await?;
                coord.metrics.node_marked_down();
            }
            (NodeStatus::Ready, Verdict::Suspect) => {
                suspect += 1;
                tracing::debug!(node = %name, silence_ms, grace_ms, "node suspect");
            }
            (NodeStatus::Down, Verdict::Alive) if j.heard => {
                // The node answers again: one Raft write, here, never in the heartbeat path.
                tracing::info!(node = %name, "node answers again; marking it ready");
                coord
                    .write(coord.request(None, Command::NodeHeartbeat { name }))
                    .await?;
            }
            _ => {}
        }
    }
    coord.metrics.nodes_suspect(suspect);
    let mut next_id = |service: &str, slot: u32| {
        let uid = uuid::Uuid::new_v4().simple().to_string();
        format!("{service}.{slot}.{}", &uid[..10])
    };
    let planned = std::time::Instant::now();
    let now = crate::coordinator::now_millis();
    let r = coord.sm.read(|s| plan(s, now, &mut next_id));
    let placed = r.assign.len()
        + r.create
            .iter()
            .filter(|t| t.state == shoal_model::TaskState::Assigned)
            .count();
    let failed = r.unplaceable.len()
        + r.create
            .iter()
            .filter(|t| t.state == shoal_model::TaskState::Pending)
            .count();
    coord
        .metrics
        .plan(planned.elapsed().as_secs_f64(), placed, failed);
    if !r.is_empty() {
        tracing::debug!(
            create = r.create.len(),
            assign = r.assign.len(),
            shutdown = r.shutdown.len(),
            orphan = r.orphan.len(),
            "orchestrator pass"
        );
        coord
            .write(coord.request(None, Command::Reconcile(Box::new(r))))
            .await?;
    }
    Ok(())
}
