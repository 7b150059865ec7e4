//! `shoal-coordinator`'s configuration: a TOML file, overridden by command-line flags.

use std::path::{Path, PathBuf};

use serde::Deserialize;

/// Everything a coordinator needs to start. Field names are the TOML keys.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Raft member id; unique in the cluster and never reused.
    pub id: u64,
    pub name: String,
    /// Address the control and peer API listens on.
    pub listen: String,
    /// Address other coordinators and clients reach this one at; defaults to `listen`.
    pub advertise: Option<String>,
    /// Address the agents' dispatcher API listens on.
    pub agent_listen: Option<String>,
    /// Address `/metrics` listens on.
    pub metrics_listen: Option<String>,
    pub data_dir: PathBuf,
    /// Initialize a new cluster with this coordinator as its first member (once; ignored after).
    pub bootstrap: bool,
    /// Existing members to ask for membership when the data dir is new.
    pub join: Vec<String>,
    pub raft: RaftTuning,
    pub agents: AgentTuning,
    pub tls: TlsSettings,
}

/// Certificates and join tokens.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct TlsSettings {
    /// Plaintext and no authorization: for local experiments only.
    pub insecure: bool,
    /// Lifetime of node certificates this coordinator signs (agents renew at two thirds).
    pub cert_ttl_secs: u64,
    /// Lifetime of coordinator certificates: the one a bootstrap makes for itself and those
    /// this coordinator signs for joining or renewing coordinators (renewed at two thirds).
    pub coordinator_cert_ttl_secs: u64,
    /// Join token used when this coordinator's data dir has no certificate yet. Prefer the
    /// `SHOAL_JOIN_TOKEN` environment variable or `--token-file` to keep it out of config files.
    pub join_token: Option<String>,
}

impl Default for TlsSettings {
    fn default() -> Self {
        Self {
            insecure: false,
            cert_ttl_secs: 90 * 24 * 3600,
            coordinator_cert_ttl_secs: shoal_pki::ca::COORDINATOR_CERT_TTL.as_secs(),
            join_token: None,
        }
    }
}

/// How agents are watched.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct AgentTuning {
    /// How often agents heartbeat.
    pub heartbeat_ms: u64,
    /// The least silence (time the leader was listening and heard nothing from the node) that
    /// declares a node down; then the tasks of its stateless services move.
    pub grace_ms: u64,
    /// The most a node's grace is stretched when its heartbeats arrive irregularly (three times
    /// the widest recent gap); a value below `grace_ms` means `grace_ms`.
    pub max_grace_ms: u64,
}

impl Default for AgentTuning {
    fn default() -> Self {
        Self {
            heartbeat_ms: 1_000,
            grace_ms: 5_000,
            max_grace_ms: 20_000,
        }
    }
}

#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct RaftTuning {
    pub heartbeat_ms: u64,
    pub election_timeout_min_ms: u64,
    pub election_timeout_max_ms: u64,
    /// Build a snapshot after this many new log entries.
    pub snapshot_logs: u64,
    /// Log entries kept behind a snapshot before they are purged.
    pub keep_logs_after_snapshot: u64,
    /// Most log entries in one AppendEntries (each entry is a batch of up to 256 requests;
    /// the log store also caps a payload at 256 KiB).
    pub max_payload_entries: u64,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            id: 1,
            name: String::new(),
            listen: "127.0.0.1:7400".into(),
            advertise: None,
            agent_listen: None,
            metrics_listen: None,
            data_dir: PathBuf::from("/var/lib/shoal/coordinator"),
            bootstrap: false,
            join: Vec::new(),
            raft: RaftTuning::default(),
            agents: AgentTuning::default(),
            tls: TlsSettings::default(),
        }
    }
}

impl Default for RaftTuning {
    fn default() -> Self {
        Self {
            heartbeat_ms: 50,
            election_timeout_min_ms: 200,
            election_timeout_max_ms: 400,
            snapshot_logs: 5000,
            keep_logs_after_snapshot: 1000,
            max_payload_entries: 32,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config file {path}: {source}")]
    Parse {
        path: PathBuf,
        source: Box<toml::de::Error>,
    },
    #[error("config: {0}")]
    Invalid(String),
}

impl Config {
    /// Reads a config file; a missing file at the default path is not an error.
    pub fn load(path: &Path, must_exist: bool) -> Result<Config, ConfigError> {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && !must_exist => {
                return Ok(Config::default())
            }
            Err(source) => {
                return Err(ConfigError::Read {
                    path: path.into(),
                    source,
                })
            }
        };
        toml::from_str(&text).map_err(|e| ConfigError::Parse {
            path: path.into(),
            source: Box::new(e),
        })
    }

    pub fn advertise_addr(&self) -> String {
        self.advertise
            .clone()
            .unwrap_or_else(|| self.listen.clone())
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.id == 0 {
            return Err(ConfigError::Invalid(
                "`id` must be a positive integer".into(),
            ));
        }
        let t = &self.raft;
        if t.heartbeat_ms == 0 || t.election_timeout_min_ms <= t.heartbeat_ms {
            return Err(ConfigError::Invalid(
                "raft: `election_timeout_min_ms` must be greater than `heartbeat_ms` > 0".into(),
            ));
        }
        if t.election_timeout_max_ms <= t.election_timeout_min_ms {
            return Err(ConfigError::Invalid(
                "raft: `election_timeout_max_ms` must be greater than `election_timeout_min_ms`"
                    .into(),
            ));
        }
        if self.agents.heartbeat_ms == 0 || self.agents.grace_ms <= self.agents.heartbeat_ms {
            return Err(ConfigError::Invalid(
                "agents: `grace_ms` must be greater than `heartbeat_ms` > 0".into(),
            ));
        }
        if self.tls.cert_ttl_secs < 5 {
            return Err(ConfigError::Invalid(
                "tls: `cert_ttl_secs` must be at least 5".into(),
            ));
        }
        if self.tls.coordinator_cert_ttl_secs < 5 {
            return Err(ConfigError::Invalid(
                "tls: `coordinator_cert_ttl_secs` must be at least 5".into(),
            ));
        }
        if t.snapshot_logs == 0 {
            return Err(ConfigError::Invalid(
                "raft: `snapshot_logs` must be positive".into(),
            ));
        }
        if t.max_payload_entries == 0 {
            return Err(ConfigError::Invalid(
                "raft: `max_payload_entries` must be positive".into(),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_key_is_named() {
        let e = toml::from_str::<Config>("id = 1\nlisten_addr = \"x\"\n").unwrap_err();
        assert!(e.to_string().contains("listen_addr"), "{e}");
    }

    #[test]
    fn partial_file_keeps_defaults() {
        let c: Config = toml::from_str("id = 3\n[raft]\nsnapshot_logs = 10\n").unwrap();
        assert_eq!(c.id, 3);
        assert_eq!(c.raft.snapshot_logs, 10);
        assert_eq!(c.raft.heartbeat_ms, 50);
        assert_eq!(c.tls.coordinator_cert_ttl_secs, 365 * 24 * 3600);
        c.validate().unwrap();
    }

    #[test]
    fn coordinator_certificate_lifetime_is_read_and_checked() {
        let c: Config = toml::from_str("[tls]\ncoordinator_cert_ttl_secs = 30\n").unwrap();
        assert_eq!(c.tls.coordinator_cert_ttl_secs, 30);
        c.validate().unwrap();
        let mut c = Config::default();
        c.tls.coordinator_cert_ttl_secs = 1;
        let e = c.validate().unwrap_err().to_string();
        assert!(e.contains("coordinator_cert_ttl_secs"), "{e}");
    }

    #[test]
    fn bad_timeouts_are_refused() {
        let mut c = Config::default();
        c.raft.election_timeout_min_ms = 10;
        assert!(c.validate().is_err());
        c = Config {
            id: 0,
            ..Config::default()
        };
        assert!(c.validate().unwrap_err().to_string().contains("id"));
    }
}
