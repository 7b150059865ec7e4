//! openraft wiring: the type config, the sled-backed storage and the gRPC network.

mod disk_sync;
#[cfg(test)]
mod golden_tests;
pub mod identity;
mod log_cache;
pub mod log_store;
pub mod network;
#[cfg(test)]
mod restart_tests;
pub mod state_machine;
pub mod store;
pub mod types;

pub use log_store::LogStore;
pub use state_machine::StateMachineStore;
pub use store::{Store, StoreError};
