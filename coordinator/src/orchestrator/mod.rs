//! The orchestrator: keeps every service's tasks converged on the leader.
//!
//! [`plan`] is pure: cluster state in, one [`Reconcile`] out (tasks to create, place, stop,
//! orphan and forget). [`runner`] is the thin async loop that calls it on the leader and
//! proposes the result through Raft; [`liveness`] tracks agent heartbeats.

mod deps;
pub mod liveness;
mod plan;
pub mod preview;
mod rollout;
pub mod runner;

pub use plan::{plan, KEEP_TERMINAL_PER_SLOT};

#[cfg(test)]
mod rollout_tests;
#[cfg(test)]
mod tests;
