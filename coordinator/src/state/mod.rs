//! The replicated cluster state and the only code that changes it.
//!
//! Invariant: [`ClusterState::apply`] is pure and deterministic: no clock, no randomness, no
//! iteration over hash maps. Time arrives inside the [`Request`].

mod command;
mod machine;
pub mod pki;
mod query;
mod secrets;
#[cfg(test)]
mod secrets_tests;

pub use command::{Batch, Command, Event, Reconcile, Request, Response, TaskStatusUpdate};
pub use machine::ClusterState;
pub use query::Query;
pub use secrets::Secret;
