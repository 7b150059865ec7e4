//! The replicated part of the cluster's PKI: the CA (so whichever coordinator leads can sign),
//! the join-token secrets, the certificates issued and those revoked.
//!
//! Pure like the rest of the state: signing happens before a command is proposed; applying
//! one only checks tokens and records serials.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};
use shoal_model::Millis;
use shoal_pki::{CertAuthority, Role};

/// A string that is never printed by `Debug` (token secrets).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Redacted(pub String);

impl fmt::Debug for Redacted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// One certificate the CA signed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CertRecord {
    /// Lower-case hex serial.
    pub serial: String,
    pub role: Role,
    pub name: String,
    /// Raft member id of a coordinator certificate.
    pub member_id: Option<u64>,
    /// Seconds since the Unix epoch.
    pub not_after: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PkiState {
    pub ca: CertAuthority,
    pub agent_secret: Redacted,
    pub coordinator_secret: Redacted,
    /// Serial -> certificate, for certificates not yet expired.
    pub issued: BTreeMap<String, CertRecord>,
    /// Serial -> revoked certificate, until it expires.
    pub revoked: BTreeMap<String, CertRecord>,
}

impl PkiState {
    pub fn secret(&self, role: Role) -> Option<&str> {
        match role {
            Role::Agent => Some(&self.agent_secret.0),
            Role::Coordinator => Some(&self.coordinator_secret.0),
            Role::Admin => None,
        }
    }

    pub fn is_revoked(&self, serial: &str) -> bool {
        self.revoked.contains_key(serial)
    }

    /// Whether `secret` is the current join secret of `role`.
    pub fn token_valid(&self, role: Role, secret: &str) -> bool {
        self.secret(role)
            .is_some_and(|s| shoal_pki::constant_time_eq(s.as_bytes(), secret.as_bytes()))
    }

    /// Records a certificate; with a join secret, only if it is the role's current one.
    pub fn record(
        &mut self,
        now: Millis,
        cert: &CertRecord,
        join_secret: Option<&Redacted>,
    ) -> Result<(), String> {
        if let Some(secret) = join_secret {
            if !self.token_valid(cert.role, &secret.0) {
                return Err(format!(
                    "the {} join token is not valid (wrong, or rotated out)",
                    cert.role
                ));
            }
        }
        self.forget_expired(now);
        self.issued.insert(cert.serial.clone(), cert.clone());
        Ok(())
    }

    /// Revokes every certificate issued to `name` with `role` (and, for coordinators, the
    /// member id when given). Returns how many.
    pub fn revoke(&mut self, role: Role, name: Option<&str>, member_id: Option<u64>) -> usize {
        let serials: Vec<String> = self
            .issued
            .values()
            .filter(|c| c.role == role)
            .filter(|c| name.is_none_or(|n| c.name == n))
            .filter(|c| member_id.is_none_or(|m| c.member_id == Some(m)))
            .map(|c| c.serial.clone())
            .collect();
        for s in &serials {
            if let Some(c) = self.issued.remove(s) {
                self.revoked.insert(s.clone(), c);
            }
        }
        serials.len()
    }

    /// Revokes one certificate; false if no unexpired certificate has that serial.
    pub fn revoke_serial(&mut self, serial: &str) -> bool {
        match self.issued.remove(serial) {
            Some(c) => {
                self.revoked.insert(serial.to_string(), c);
                true
            }
            None => false,
        }
    }

    fn forget_expired(&mut self, now: Millis) {
        let now_s = (now / 1000) as i64;
        self.issued.retain(|_, c| c.not_after >= now_s);
        self.revoked.retain(|_, c| c.not_after >= now_s);
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn pki() -> PkiState {
        PkiState {
            ca: CertAuthority {
                cert_pem: "c".into(),
                key_pem: "k".into(),
            },
            agent_secret: Redacted("a".repeat(32)),
            coordinator_secret: Redacted("c".repeat(32)),
            issued: BTreeMap::new(),
            revoked: BTreeMap::new(),
        }
    }

    fn cert(serial: &str, role: Role, name: &str, not_after: i64) -> CertRecord {
        CertRecord {
            serial: serial.into(),
            role,
            name: name.into(),
            member_id: None,
            not_after,
        }
    }

    #[test]
    fn tokens_are_checked_per_role() {
        let mut p = pki();
        let agent = Redacted("a".repeat(32));
        // The agent secret does not make a coordinator.
        let e = p
            .record(0, &cert("01", Role::Coordinator, "c2", 10), Some(&agent))
            .unwrap_err();
        assert!(e.contains("coordinator join token is not valid"), "{e}");
        assert!(p.issued.is_empty());
        p.record(0, &cert("02", Role::Agent, "n1", 10), Some(&agent))
            .unwrap();
        assert!(p.issued.contains_key("02"));
    }

    #[test]
    fn revoke_moves_only_that_nodes_certificates() {
        let mut p = pki();
        p.record(0, &cert("01", Role::Agent, "n1", 10), None)
            .unwrap();
        p.record(0, &cert("02", Role::Agent, "n2", 10), None)
            .unwrap();
        p.record(0, &cert("03", Role::Coordinator, "n1", 10), None)
            .unwrap();
        assert_eq!(p.revoke(Role::Agent, Some("n1"), None), 1);
        assert!(p.is_revoked("01"));
        assert!(!p.is_revoked("02") && !p.is_revoked("03"));
    }

    #[test]
    fn revoke_by_serial_takes_one_certificate() {
        let mut p = pki();
        p.record(0, &cert("01", Role::Admin, "a", 10), None)
            .unwrap();
        p.record(0, &cert("02", Role::Admin, "b", 10), None)
            .unwrap();
        assert!(p.revoke_serial("01"));
        assert!(!p.revoke_serial("01"), "already revoked");
        assert!(!p.revoke_serial("ff"), "unknown");
        assert!(p.is_revoked("01") && !p.is_revoked("02"));
    }

    #[test]
    fn expired_records_are_forgotten() {
        let mut p = pki();
        p.record(0, &cert("01", Role::Agent, "n1", 5), None)
            .unwrap();
        p.revoke(Role::Agent, Some("n1"), None);
        p.record(6_000, &cert("02", Role::Agent, "n2", 50), None)
            .unwrap();
        assert!(p.revoked.is_empty());
        assert_eq!(p.issued.len(), 1);
    }

    #[test]
    fn debug_hides_secrets_and_the_ca_key() {
        let text = format!("{:?}", pki());
        assert!(
            !text.contains(&"a".repeat(32)) && !text.contains("\"k\""),
            "{text}"
        );
    }
}
