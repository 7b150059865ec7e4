//! Who may call what: the caller's certificate (verified against the cluster CA by TLS) names
//! a role and a name; each API allows some roles, and a revoked certificate is refused.
//!
//! In insecure mode (`--insecure`, local experiments only) there are no certificates and every
//! check passes.

use std::sync::Arc;
use std::time::Duration;

use shoal_pki::files::TlsMaterial;
use shoal_pki::{CertInfo, Identity, Role};
use tonic::Status;

use crate::raft::StateMachineStore;

/// This coordinator's TLS material and certificate policy; `None` material means insecure.
#[derive(Clone)]
pub struct Security {
    pub material: Option<Arc<TlsMaterial>>,
    /// Lifetime of the certificates this coordinator signs for nodes.
    pub cert_ttl: Duration,
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
    pub fn insecure() -> Security {
        Security {
            material: None,
            cert_ttl: Duration::from_secs(0),
        }
    }

    pub fn is_secure(&self) -> bool {
        self.material.is_some()
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
        let info = match shoal_pki::tls::peer_info(req) {
            None => {
                return Err(Status::unauthenticated(format!(
                    "{api} requires a client certificate from the cluster CA (mutual TLS); \
                     none was presented"
                )))
            }
            Some(Err(e)) => return Err(Status::unauthenticated(e.to_string())),
            Some(Ok(info)) => info,
        };
        if sm.read(|s| s.pki.as_ref().is_some_and(|p| p.is_revoked(&info.serial))) {
            return Err(Status::permission_denied(format!(
                "the certificate of {} (serial {}) has been revoked",
                info.identity, info.serial
            )));
        }
        if !allowed.contains(&info.identity.role) {
            let want: Vec<&str> = allowed.iter().map(|r| r.as_str()).collect();
            return Err(Status::permission_denied(format!(
                "{api} requires a{} {} certificate; the caller presented the certificate of {}",
                if want.first().is_some_and(|w| w.starts_with('a')) {
                    "n"
                } else {
                    ""
                },
                want.join(" or "),
                info.identity
            )));
        }
        Ok(Caller::Cert(info))
    }
}
