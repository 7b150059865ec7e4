//! Shoal's node agent: registers with the coordinators and runs its tasks on containerd.

pub mod api;
pub mod config;
pub mod copies;
pub mod health;
pub mod heartbeat;
pub mod log_rotation;
pub mod metrics;
pub mod mountinfo;
pub mod node_info;
pub mod prepull;
pub mod reconcile;
pub mod reporter;
pub mod revocations;
pub mod runtime;
pub mod runtime_metrics;
pub mod secrets;
pub mod session;
pub mod state_db;
pub mod supervisor;
pub mod templates;
pub mod tls;
