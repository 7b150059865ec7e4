//! Join tokens: `SHOAL-1-<role>-<sha256 of the CA certificate>-<secret>`.
//!
//! The digest lets a joining node pin the CA before it trusts anything the coordinator says;
//! the secret proves the holder may join with that role. Rotating a role's token replaces its
//! secret; the CA digest stays.

use std::fmt;

use crate::identity::Role;
use crate::PkiError;

const PREFIX: &str = "SHOAL-1-";

#[derive(Clone, PartialEq, Eq)]
pub struct JoinToken {
    pub role: Role,
    /// Hex sha256 of the CA certificate (DER).
    pub ca_digest: String,
    pub secret: String,
}

impl fmt::Debug for JoinToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JoinToken")
            .field("role", &self.role)
            .field("ca_digest", &self.ca_digest)
            .field("secret", &"<redacted>")
            .finish()
    }
}

impl JoinToken {
    pub fn new(role: Role, ca_digest: &str, secret: &str) -> JoinToken {
        JoinToken {
            role,
            ca_digest: ca_digest.to_string(),
            secret: secret.to_string(),
        }
    }

    /// A fresh random secret (128 bits, hex).
    pub fn new_secret() -> String {
        let a = uuid::Uuid::new_v4();
        let b = uuid::Uuid::new_v4();
        // Two v4 UUIDs carry 244 random bits; keep 128 of them.
        let mut bytes = [0u8; 16];
        for (i, (x, y)) in a.as_bytes().iter().zip(b.as_bytes()).enumerate() {
            bytes[i] = x ^ y.rotate_left(3);
        }
        hex::encode(bytes)
    }

    /// The token as the operator copies it.
    pub fn encode(&self) -> String {
        format!("{PREFIX}{}-{}-{}", self.role, self.ca_digest, self.secret)
    }

    /// Parses a token, naming what is wrong with a malformed one.
    pub fn parse(text: &str) -> Result<JoinToken, PkiError> {
        let text = text.trim();
        let rest = text.strip_prefix(PREFIX).ok_or_else(|| {
            PkiError::Token(format!(
                "a join token starts with `{PREFIX}` (get one with `shoalctl token show agent|coordinator`)"
            ))
        })?;
        let mut parts = rest.splitn(3, '-');
        let (Some(role), Some(digest), Some(secret)) = (parts.next(), parts.next(), parts.next())
        else {
            return Err(PkiError::Token(
                "expected SHOAL-1-<role>-<ca digest>-<secret>".into(),
            ));
        };
        let role = match Role::parse(role) {
            Some(r @ (Role::Agent | Role::Coordinator)) => r,
            _ => {
                return Err(PkiError::Token(format!(
                    "`{role}` is not a joinable role (agent or coordinator)"
                )))
            }
        };
        if digest.len() != 64 || !digest.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(PkiError::Token(
                "the CA digest must be 64 hex digits (sha256)".into(),
            ));
        }
        if secret.len() < 16 || !secret.bytes().all(|b| b.is_ascii_alphanumeric()) {
            return Err(PkiError::Token("the secret is malformed".into()));
        }
        Ok(JoinToken::new(role, &digest.to_ascii_lowercase(), secret))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn round_trip() {
        let t = JoinToken::new(Role::Agent, &"ab".repeat(32), &JoinToken::new_secret());
        assert_eq!(JoinToken::parse(&t.encode()).unwrap(), t);
        assert!(!format!("{t:?}").contains(&t.secret));
    }

    #[test]
    fn secrets_differ() {
        assert_ne!(JoinToken::new_secret(), JoinToken::new_secret());
        assert_eq!(JoinToken::new_secret().len(), 32);
    }

    #[test]
    fn malformed_tokens_are_named() {
        let d = "ab".repeat(32);
        for (text, want) in [
            ("nope", "starts with"),
            ("SHOAL-1-agent", "expected"),
            (
                format!("SHOAL-1-admin-{d}-0123456789abcdef").leak() as &str,
                "not a joinable role",
            ),
            ("SHOAL-1-agent-abc-0123456789abcdef", "64 hex"),
            (format!("SHOAL-1-agent-{d}-x").leak() as &str, "secret"),
        ] {
            let e = JoinToken::parse(text).unwrap_err().to_string();
            assert!(e.contains(want), "{text}: {e}");
        }
    }
}
