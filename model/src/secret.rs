//! Secrets: a service names the secrets it uses ([`SecretRef`]); the value ([`SecretValue`]) lives
//! only in the replicated state, in the assignments of nodes whose tasks use it, and on the
//! agent's tmpfs. Nothing that prints a value exists: its `Debug` is redacted and it has no
//! `Display`.

use serde::{Deserialize, Serialize};

/// Where secrets appear inside a container when the reference's target is a bare file name.
pub const SECRETS_DIR: &str = "/run/secrets";
/// File mode of a secret file when the reference sets none.
pub const DEFAULT_SECRET_MODE: u32 = 0o400;
/// Largest secret value accepted (as Docker: 500 KiB).
pub const MAX_SECRET_BYTES: usize = 500 * 1024;

/// A service's use of a secret: which one, where it appears in the container, and how.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SecretRef {
    /// Name of the secret in the service's stack.
    pub source: String,
    /// A file name under `/run/secrets/`, or an absolute path.
    pub target: String,
    /// File mode (e.g. `0o400`).
    pub mode: u32,
    #[serde(default)]
    pub uid: u32,
    #[serde(default)]
    pub gid: u32,
    /// Version of the secret's value this reference was stamped with when the stack was applied
    /// (0 until then). A new value gets a new version, so the spec, and the tasks, change.
    #[serde(default)]
    pub version: u64,
}

impl SecretRef {
    /// A reference with the defaults: target = source, mode 0400, owned by root.
    pub fn new(source: impl Into<String>) -> Self {
        let source = source.into();
        SecretRef {
            target: source.clone(),
            source,
            mode: DEFAULT_SECRET_MODE,
            uid: 0,
            gid: 0,
            version: 0,
        }
    }

    /// The absolute path of the secret file inside the container.
    pub fn container_path(&self) -> String {
        if self.target.starts_with('/') {
            self.target.clone()
        } else {
            format!("{SECRETS_DIR}/{}", self.target)
        }
    }
}

/// A secret's value. `Debug` prints `<redacted>`; serialization (Raft log, snapshots, the
/// assignment stream) keeps the bytes.
#[derive(Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(transparent)]
pub struct SecretValue(Vec<u8>);

impl SecretValue {
    pub fn new(bytes: Vec<u8>) -> Self {
        SecretValue(bytes)
    }

    pub fn expose(&self) -> &[u8] {
        &self.0
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl std::fmt::Debug for SecretValue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_the_value() {
        let v = SecretValue::new(b"hunter2".to_vec());
        assert_eq!(format!("{v:?}"), "<redacted>");
        assert_eq!(
            format!("{:?}", vec![("db", v.clone())]),
            "[(\"db\", <redacted>)]"
        );
        assert_eq!(v.expose(), b"hunter2");
    }

    #[test]
    fn targets_default_under_run_secrets() {
        let mut r = SecretRef::new("db_password");
        assert_eq!(r.container_path(), "/run/secrets/db_password");
        r.target = "/etc/app/pw".into();
        assert_eq!(r.container_path(), "/etc/app/pw");
        assert_eq!(r.mode, 0o400);
    }
}
