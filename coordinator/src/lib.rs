//! Shoal's coordinator: Raft-replicated cluster state, scheduling and the control API.

pub mod raft;
pub mod scheduler;
pub mod stack;
pub mod state;
