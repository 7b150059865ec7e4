//! Shoal's coordinator: Raft-replicated cluster state, scheduling and the control API.

pub mod api;
pub mod batcher;
pub mod cert_renewal;
pub mod config;
pub mod coordinator;
pub mod identity_file;
pub mod log_filter;
pub mod metrics;
pub mod orchestrator;
pub mod raft;
pub mod scheduler;
pub mod security;
pub mod stack;
pub mod state;
