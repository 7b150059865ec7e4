//! The replicated cluster state and the only code that changes it.
//!
//! Invariant: [`ClusterState::apply`] is pure and deterministic: no clock, no randomness, no
//! iteration over hash maps. Time arrives inside the [`Request`].

mod command;
mod configs;
#[cfg(test)]
mod configs_tests;
mod machine;
pub mod pki;
mod refusal;
mod rollout;
mod secrets;
#[cfg(test)]
mod secrets_tests;

pub(crate) use command::Command;
pub use command::{Batch, Reconcile, Request, Response, TaskStatusUpdate};
pub use machine::ClusterState;
pub use refusal::{Refusal, RefusalKind};
pub use secrets::{Config, ConfigInput, Secret, StackValue};
pub use shoal_model::api::{ConfigInfo, Event, Query};

/// Applies `command` at time 1 and fails the test if the state machine refused it.
#[cfg(test)]
pub(crate) fn apply_ok(s: &mut ClusterState, command: Command) {
    let r = s.apply(&Request {
        request_id: None,
        now: 1,
        command,
    });
    assert!(r.error.is_none(), "{r:?}");
}
