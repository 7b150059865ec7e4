//! Who a certificate speaks for: a role and a name, carried in the subject (OU = role,
//! CN = name), and read back from a peer's certificate.

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use x509_parser::prelude::{FromDer, X509Certificate};

use crate::PkiError;

/// What a certificate may do in the cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Takes part in Raft and serves the APIs.
    Coordinator,
    /// Runs tasks for one node.
    Agent,
    /// Calls the control API (`shoalctl`).
    Admin,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Coordinator => "coordinator",
            Role::Agent => "agent",
            Role::Admin => "admin",
        }
    }

    pub fn parse(s: &str) -> Option<Role> {
        match s {
            "coordinator" => Some(Role::Coordinator),
            "agent" => Some(Role::Agent),
            "admin" => Some(Role::Admin),
            _ => None,
        }
    }

    /// The DNS name in the subject-alternative-name of a server certificate of this role; the
    /// name clients verify (addresses vary, roles do not).
    pub fn server_name(self) -> &'static str {
        match self {
            Role::Coordinator => "shoal-coordinator",
            Role::Agent => "shoal-agent",
            Role::Admin => "shoal-admin",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The role and name a certificate was issued to.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Identity {
    pub role: Role,
    pub name: String,
}

impl Identity {
    pub fn new(role: Role, name: impl Into<String>) -> Identity {
        Identity {
            role,
            name: name.into(),
        }
    }
}

impl fmt::Display for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} `{}`", self.role, self.name)
    }
}

/// What Shoal reads from a certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertInfo {
    pub identity: Identity,
    /// Lower-case hex of the serial number.
    pub serial: String,
    /// Start of validity, seconds since the Unix epoch.
    pub not_before: i64,
    /// Expiry, seconds since the Unix epoch.
    pub not_after: i64,
}

impl CertInfo {
    /// Reads the identity, serial and expiry of a DER certificate.
    pub fn from_der(der: &[u8]) -> Result<CertInfo, PkiError> {
        let (_, cert) = X509Certificate::from_der(der)
            .map_err(|e| PkiError::Cert(format!("cannot parse the certificate: {e}")))?;
        let subject = cert.subject();
        let first = |it: &mut dyn Iterator<
            Item = &x509_parser::x509::AttributeTypeAndValue<'_>,
        >| { it.next().and_then(|a| a.as_str().ok()).map(str::to_string) };
        let name = first(&mut subject.iter_common_name())
            .ok_or_else(|| PkiError::Cert("the certificate has no common name".into()))?;
        let role_s = first(&mut subject.iter_organizational_unit())
            .ok_or_else(|| PkiError::Cert("the certificate names no role (OU)".into()))?;
        let role = Role::parse(&role_s)
            .ok_or_else(|| PkiError::Cert(format!("unknown role `{role_s}` in the certificate")))?;
        Ok(CertInfo {
            identity: Identity { role, name },
            serial: hex::encode(cert.raw_serial()),
            not_before: cert.validity().not_before.timestamp(),
            not_after: cert.validity().not_after.timestamp(),
        })
    }

    /// When a holder should renew: two thirds into the lifetime it was issued with.
    pub fn renew_at(&self) -> i64 {
        let issued = self.not_before + crate::ca::BACKDATE.as_secs() as i64;
        let lifetime = (self.not_after - issued).max(0);
        issued + lifetime * 2 / 3
    }

    /// How long from `now` (Unix seconds) until [`Self::renew_at`]; zero once it has passed.
    pub fn until_renewal(&self, now: i64) -> Duration {
        until(self.renew_at(), now)
    }

    /// Reads the first certificate of a PEM text.
    pub fn from_pem(pem: &str) -> Result<CertInfo, PkiError> {
        let der = crate::tls::first_cert_der(pem)?;
        CertInfo::from_der(&der)
    }
}

/// From `now` until `at` (both Unix seconds); zero once `at` has passed.
fn until(at: i64, now: i64) -> Duration {
    Duration::from_secs(at.saturating_sub(now).max(0) as u64)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::until;

    #[test]
    fn waits_until_the_time_and_not_before_now() {
        assert_eq!(until(1_000, 400), Duration::from_secs(600));
        assert_eq!(until(1_000, 1_000), Duration::ZERO);
        assert_eq!(until(1_000, 5_000), Duration::ZERO);
    }
}
