//! shoalctl's exit codes: what kind of failure, for scripts.

use std::process::ExitCode;

/// `shoalctl --help` and README list these.
pub const HELP: &str = "\
Exit codes:
  0  success
  1  any other failure (bad arguments, local files, internal errors)
  2  not found: the service, node, task or stack named does not exist
  3  refused: the cluster understood the request and said no (invalid, conflicting, \
or not allowed in the current state)
  4  unavailable: no coordinator answered, or none had a leader in time";

/// Not found.
pub const NOT_FOUND: u8 = 2;
/// The request was understood and refused.
pub const REFUSED: u8 = 3;
/// No coordinator could serve it.
pub const UNAVAILABLE: u8 = 4;

/// A name the cluster does not know, found out by shoalctl from an answer.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct NotFound(pub String);

/// A call a coordinator answered with an error no other coordinator would answer differently.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct Refused {
    pub code: tonic::Code,
    pub message: String,
}

/// No coordinator answered (or none could serve) after the failover rounds; the text is the
/// last failure's.
#[derive(Debug, thiserror::Error)]
#[error("{0:#}")]
pub struct Unavailable(pub anyhow::Error);

/// The exit code for `e`: from a gRPC status in its chain, or a [`NotFound`] raised here.
pub fn code_of(e: &anyhow::Error) -> ExitCode {
    for cause in e.chain() {
        if cause.downcast_ref::<NotFound>().is_some() {
            return ExitCode::from(NOT_FOUND);
        }
        if let Some(r) = cause.downcast_ref::<Refused>() {
            return ExitCode::from(of_status(r.code));
        }
        if cause.downcast_ref::<Unavailable>().is_some() {
            return ExitCode::from(UNAVAILABLE);
        }
    }
    ExitCode::FAILURE
}

/// The exit code for a gRPC status code.
pub fn of_status(code: tonic::Code) -> u8 {
    use tonic::Code;
    match code {
        Code::NotFound => NOT_FOUND,
        Code::InvalidArgument
        | Code::FailedPrecondition
        | Code::AlreadyExists
        | Code::Aborted
        | Code::OutOfRange
        | Code::PermissionDenied
        | Code::Unauthenticated => REFUSED,
        Code::Unavailable | Code::DeadlineExceeded => UNAVAILABLE,
        _ => 1,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tonic::Code;

    #[test]
    fn statuses_map_to_the_documented_codes() {
        assert_eq!(of_status(Code::NotFound), 2);
        assert_eq!(of_status(Code::FailedPrecondition), 3);
        assert_eq!(of_status(Code::InvalidArgument), 3);
        assert_eq!(of_status(Code::Unavailable), 4);
        assert_eq!(of_status(Code::Internal), 1);
        let e = anyhow::Error::new(Refused {
            code: Code::NotFound,
            message: "service `x` not found".into(),
        })
        .context("remove");
        assert_eq!(code_of(&e), ExitCode::from(2));
        let e = anyhow::Error::new(Unavailable(anyhow::anyhow!("127.0.0.1:1: refused")));
        assert_eq!(e.to_string(), "127.0.0.1:1: refused");
        assert_eq!(code_of(&e), ExitCode::from(4));
        let e = anyhow::Error::new(NotFound("node `n9` not found".into()));
        assert_eq!(code_of(&e), ExitCode::from(2));
        assert_eq!(code_of(&anyhow::anyhow!("bad file")), ExitCode::FAILURE);
    }
}
