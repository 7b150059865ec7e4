//! Shoal's gRPC services, generated from `proto/*.proto`, and their conversions to domain types.
//!
//! Only this crate names protobuf types; the rest of Shoal converts at the edge.

#![allow(clippy::all, rust_2018_idioms)]

pub mod control {
    tonic::include_proto!("shoal.control.v1");
}
pub mod raft {
    tonic::include_proto!("shoal.raft.v1");
}
pub mod dispatcher {
    tonic::include_proto!("shoal.dispatcher.v1");
}
pub mod agent {
    tonic::include_proto!("shoal.agent.v1");
}

pub mod certificates {
    tonic::include_proto!("shoal.certificates.v1");
}

pub mod control_api;
pub mod convert;
mod redacted;
