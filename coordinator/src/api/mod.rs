//! gRPC services a coordinator serves: the peer API (Raft) and the control API.

pub mod certificates;
pub mod control;
pub mod dispatcher;
mod members;
pub mod raft_service;

use crate::coordinator::CoordError;
use crate::state::RefusalKind;

/// Maps a coordinator error to the gRPC status a client sees.
pub fn status_of(e: CoordError) -> tonic::Status {
    match e {
        CoordError::NoLeader | CoordError::NotLeader | CoordError::Unavailable(_) => {
            tonic::Status::unavailable(e.to_string())
        }
        CoordError::Refused(m) => tonic::Status::failed_precondition(m),
        CoordError::Command(r) => match r.kind {
            RefusalKind::NotFound => tonic::Status::not_found(r.message),
            RefusalKind::AlreadyExists => tonic::Status::already_exists(r.message),
            RefusalKind::Invalid => tonic::Status::invalid_argument(r.message),
            RefusalKind::Precondition => tonic::Status::failed_precondition(r.message),
        },
        CoordError::Internal(m) => tonic::Status::internal(m),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::Refusal;
    use tonic::Code;

    #[test]
    fn each_refusal_kind_has_its_grpc_code() {
        let code = |kind| status_of(Refusal::new(kind, "x").into()).code();
        assert_eq!(code(RefusalKind::NotFound), Code::NotFound);
        assert_eq!(code(RefusalKind::AlreadyExists), Code::AlreadyExists);
        assert_eq!(code(RefusalKind::Invalid), Code::InvalidArgument);
        assert_eq!(code(RefusalKind::Precondition), Code::FailedPrecondition);
        assert_eq!(status_of(CoordError::NoLeader).code(), Code::Unavailable);
        assert_eq!(
            status_of(CoordError::Refused("membership".into())).code(),
            Code::FailedPrecondition
        );
        let s = status_of(Refusal::new(RefusalKind::NotFound, "service `x` not found").into());
        assert_eq!(s.message(), "service `x` not found");
    }
}
