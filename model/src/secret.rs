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

/// A service's use of a secret (or, as [`crate::ConfigRef`], of a config): which one, where it
/// appears in the container, and how.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SecretRef {
    /// Name of the secret in the service's stack.
    pub source: String,
    /// A file name under `/run/secrets/`, or an absolute path.
    pub target: String,
    /// File mode (e.g. `0o400`); serialized as an octal string (`"0400"`) so `inspect` reads well.
    #[serde(with = "octal_mode")]
    pub mode: u32,
    #[serde(default)]
    pub uid: u32,
    #[serde(default)]
    pub gid: u32,
    /// Version of the value this reference was stamped with when the stack was applied
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

/// A file mode as an octal string (`"0440"`); a plain number is also read.
mod octal_mode {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(mode: &u32, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format!("{mode:04o}"))
    }

    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Mode {
        Text(String),
        Number(u32),
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
        match Mode::deserialize(d)? {
            Mode::Number(n) => Ok(n),
            Mode::Text(t) => u32::from_str_radix(&t, 8)
                .map_err(|_| serde::de::Error::custom(format!("mode {t:?} is not octal"))),
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
    fn modes_travel_as_octal_text() {
        let mut r = SecretRef::new("pw");
        r.mode = 0o440;
        let json = serde_json::to_value(&r).unwrap();
        assert_eq!(json["mode"], "0440");
        let back: SecretRef = serde_json::from_value(json).unwrap();
        assert_eq!(back, r);
        let mut json = serde_json::to_value(&r).unwrap();
        json["mode"] = serde_json::json!(256);
        assert_eq!(
            serde_json::from_value::<SecretRef>(json).unwrap().mode,
            0o400
        );
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
