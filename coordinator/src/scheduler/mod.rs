//! The scheduler: a pure, deterministic function from a cluster view and pending tasks to
//! placement decisions. No I/O, no clock, no randomness; ties break on node name.
//!
//! Filters, in order: node ready, node active, constraints, resource reservations, host ports,
//! max replicas per node. Ranking among the nodes left: fewest tasks of the same service, then
//! fewest tasks of the service in the node's bucket of each spread label, then fewest tasks in
//! total, then node name. Decisions made earlier in a call count for later ones.

pub mod constraint;
mod filters;
mod placer;
mod rank;
mod view;

#[cfg(test)]
mod tests;

pub use constraint::{Constraint, ConstraintField, ConstraintOp};
pub use view::{ClusterView, Decision, NodeTask, NodeView, PendingTask, Requirements};

/// Spread preferences beyond this many are ignored by the scheduler (the stack parser rejects them).
pub const MAX_SPREAD_PREFERENCES: usize = 4;

/// Decides a node for each pending task, in order; one [`Decision`] per task, same order.
pub fn schedule(view: &ClusterView, pending: &[PendingTask]) -> Vec<Decision> {
    let mut placer = placer::Placer::new(view);
    pending.iter().map(|task| placer.place(task)).collect()
}
