//! openraft wiring: the type config, the sled-backed storage and the gRPC network.

pub mod identity;
pub mod network;
pub mod types;
