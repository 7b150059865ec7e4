//! gRPC services a coordinator serves: the peer API (Raft) and the control API.

pub mod certificates;
pub mod control;
pub mod dispatcher;
mod members;
pub mod raft_service;

use crate::coordinator::CoordError;

/// Maps a coordinator error to the gRPC status a client sees.
pub fn status_of(e: CoordError) -> tonic::Status {
    match e {
        CoordError::NoLeader | CoordError::NotLeader | CoordError::Unavailable(_) => {
            tonic::Status::unavailable(e.to_string())
        }
        CoordError::Refused(m) => tonic::Status::failed_precondition(m),
        CoordError::Internal(m) => tonic::Status::internal(m),
    }
}
