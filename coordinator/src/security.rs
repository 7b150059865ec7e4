//! Who may call what: the caller's certificate (verified against the cluster CA by TLS) names
//! a role and a name; each API allows some roles, and a revoked certificate is refused.
//!
//! In insecure mode (`--insecure`, local experiments only) there are no certificates and every
//! check passes.

use std::time::Duration;

use shoal_pki::{CertInfo, Identity, Role};
use tonic::Status;

use crate::raft::StateMachineStore;

/// Whether callers are checked, and the certificate policy.
#[derive(Clone)]
pub struct Security {
    /// False in insecure mode (`--insecure`): no TLS, every check passes.
    pub secure: bool,
    /// Lifetime of the certificates this coordinator signs for nodes.
    pub cert_ttl: Duration,
    /// Lifetime of the certificates this coordinator signs for coordinators.
    pub coordinator_cert_ttl: Duration,
}

/// The caller of a request, as far as authorization is concerned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Caller {
    /// Insecure mode: nobody is checked.
    Anyone,
    Cert(CertInfo),
}

impl Caller {
    pub fn identity(&self) -> Option<&Identity> {
        match self {
            Caller::Anyone => None,
            Caller::Cert(c) => Some(&c.identity),
        }
    }
}

impl Security {
    pub fn is_secure(&self) -> bool {
        self.secure
    }

    /// The caller's verified certificate, if its role is one of `allowed` and it is not
    /// revoked. `api` names what was called, for the error.
    pub fn authorize<T>(
        &self,
        sm: &StateMachineStore,
        req: &tonic::Request<T>,
        api: &str,
        allowed: &[Role],
    ) -> Result<Caller, Status> {
        if !self.is_secure() {
            return Ok(Caller::Anyone);
        }
        let info = shoal_pki::tls::caller(req, api)?;
        if sm.read(|s| s.pki.as_ref().is_some_and(|p| p.is_revoked(&info.serial))) {
            return Err(shoal_pki::tls::revoked(&info));
        }
        shoal_pki::tls::check_role(&info, api, allowed)?;
        Ok(Caller::Cert(info))
    }
}
