//! The agent's configuration: a TOML file (default `/etc/shoal/agent.toml`) with flags overriding it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use shoal_model::NodeRole;

use crate::runtime::Registries;

/// Where the agent looks for its config file when `--config` is not given.
pub const DEFAULT_CONFIG_PATH: &str = "/etc/shoal/agent.toml";

/// Everything that can be wrong with the configuration.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    // The cause is part of the message (not a `source`), so that error chains do not repeat it.
    #[error("config file `{path}`: {error}")]
    Read {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("config file `{path}`: {error}")]
    Parse {
        path: PathBuf,
        error: toml::de::Error,
    },
    #[error("label `{0}`: expected `key=value` with a non-empty key")]
    BadLabel(String),
    #[error("role `{0}`: expected `worker` or `coordinator`")]
    BadRole(String),
    #[error("node name: none configured and the hostname cannot be read: {0}")]
    NoHostname(String),
    #[error("advertise address `{0}`: expected host:port that other nodes can reach (not 0.0.0.0 or [::])")]
    BadAdvertise(String),
}

/// Command-line flags; each one overrides the config file.
#[derive(Debug, Clone, Default, clap::Parser)]
#[command(name = "shoal-agent", version, about = "Shoal's node agent")]
pub struct Flags {
    /// Config file (TOML); a missing default file is fine, a missing explicit one is not.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Node name (default: the hostname).
    #[arg(long)]
    pub node_name: Option<String>,
    /// Node label `key=value`; repeatable, adds to (and overrides) the file's labels.
    #[arg(long = "label")]
    pub labels: Vec<String>,
    /// Node role: `worker` or `coordinator`.
    #[arg(long)]
    pub role: Option<String>,
    /// Coordinator API addresses, `host:port`, comma separated.
    #[arg(long, value_delimiter = ',')]
    pub coordinators: Vec<String>,
    /// containerd's gRPC socket.
    #[arg(long)]
    pub containerd_socket: Option<PathBuf>,
    /// containerd namespace of the agent's containers.
    #[arg(long)]
    pub namespace: Option<String>,
    /// The agent's own state (sled db, helper programs).
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Containers' stdout/stderr files.
    #[arg(long)]
    pub log_dir: Option<PathBuf>,
    /// Named volumes.
    #[arg(long)]
    pub volumes_dir: Option<PathBuf>,
    /// Secret files: a tmpfs the agent mounts here (default `<data-dir>/secrets`).
    #[arg(long)]
    pub secrets_dir: Option<PathBuf>,
    /// Address of the agent API (logs, exec).
    #[arg(long)]
    pub listen: Option<String>,
    /// Address (host:port) other nodes and coordinators use to reach this agent: registered with
    /// the coordinators, used by `logs`/`exec`. Default: the `--listen` address.
    #[arg(long)]
    pub advertise: Option<String>,
    /// Address of the Prometheus `/metrics` endpoint (off when neither this nor the file sets it).
    #[arg(long)]
    pub metrics_listen: Option<String>,
    /// OCI/docker-save image tar imported at start; repeatable.
    #[arg(long = "import-image")]
    pub import_images: Vec<PathBuf>,
    /// Log as JSON lines.
    #[arg(long)]
    pub log_json: bool,
    /// A container's stdout or stderr file larger than this is rotated.
    #[arg(long)]
    pub log_max_bytes: Option<u64>,
    /// Rotated log files kept per stream.
    #[arg(long)]
    pub log_keep: Option<u32>,
    /// No TLS, no certificates: for a cluster started with --insecure (warns at every start).
    #[arg(long)]
    pub insecure: bool,
    /// Agent join token (`shoalctl token show agent`), used when the data dir has no certificate.
    #[arg(long, env = "SHOAL_JOIN_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// File holding the agent join token.
    #[arg(long)]
    pub token_file: Option<PathBuf>,
}

/// The config file's shape; every field is optional.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FileConfig {
    pub node_name: Option<String>,
    pub labels: BTreeMap<String, String>,
    pub role: Option<String>,
    pub coordinators: Vec<String>,
    pub containerd_socket: Option<PathBuf>,
    pub namespace: Option<String>,
    pub data_dir: Option<PathBuf>,
    pub log_dir: Option<PathBuf>,
    pub volumes_dir: Option<PathBuf>,
    pub secrets_dir: Option<PathBuf>,
    pub listen: Option<String>,
    pub advertise: Option<String>,
    pub metrics_listen: Option<String>,
    pub import_images: Vec<PathBuf>,
    pub log_json: bool,
    pub log_max_bytes: Option<u64>,
    pub log_keep: Option<u32>,
    /// `[registries."host:port"]`: `insecure`, `username`, `password`.
    pub registries: Registries,
    pub insecure: bool,
    pub token_file: Option<PathBuf>,
}

/// The resolved configuration the agent runs with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentConfig {
    pub node_name: String,
    pub labels: BTreeMap<String, String>,
    pub role: NodeRole,
    pub coordinators: Vec<String>,
    pub containerd_socket: PathBuf,
    pub namespace: String,
    pub data_dir: PathBuf,
    pub log_dir: PathBuf,
    pub volumes_dir: PathBuf,
    /// Where the agent mounts its tmpfs for secret files.
    pub secrets_dir: PathBuf,
    pub listen: String,
    /// The address registered with the coordinators (default: `listen`).
    pub advertise: String,
    /// Prometheus `/metrics` address; `None`: no metrics endpoint.
    pub metrics_listen: Option<String>,
    pub import_images: Vec<PathBuf>,
    pub log_json: bool,
    pub log_max_bytes: u64,
    pub log_keep: u32,
    pub registries: Registries,
    /// Plaintext, no certificates.
    pub insecure: bool,
    /// The agent join token, if one was given (flag, environment or file).
    pub join_token: Option<String>,
}

impl FileConfig {
    /// Parses a config file's text; `path` only names it in errors.
    pub fn parse(text: &str, path: &Path) -> Result<Self, ConfigError> {
        toml::from_str(text).map_err(|error| ConfigError::Parse {
            path: path.to_path_buf(),
            error,
        })
    }

    /// Reads `path`; a missing file is an error only when `required`.
    pub fn load(path: &Path, required: bool) -> Result<Self, ConfigError> {
        match std::fs::read_to_string(path) {
            Ok(text) => Self::parse(&text, path),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && !required => Ok(Self::default()),
            Err(error) => Err(ConfigError::Read {
                path: path.to_path_buf(),
                error,
            }),
        }
    }
}

fn parse_role(s: &str) -> Result<NodeRole, ConfigError> {
    match s {
        "worker" => Ok(NodeRole::Worker),
        "coordinator" => Ok(NodeRole::Coordinator),
        other => Err(ConfigError::BadRole(other.to_owned())),
    }
}

fn parse_label(s: &str) -> Result<(String, String), ConfigError> {
    match s.split_once('=') {
        Some((k, v)) if !k.trim().is_empty() => Ok((k.trim().to_owned(), v.trim().to_owned())),
        _ => Err(ConfigError::BadLabel(s.to_owned())),
    }
}

fn hostname() -> Result<String, ConfigError> {
    nix::unistd::gethostname()
        .map_err(|e| ConfigError::NoHostname(e.to_string()))
        .map(|h| h.to_string_lossy().into_owned())
}

impl AgentConfig {
    /// Merges the file and the flags (flags win) and fills in defaults.
    pub fn resolve(file: FileConfig, flags: &Flags) -> Result<Self, ConfigError> {
        let node_name = match flags.node_name.clone().or(file.node_name) {
            Some(n) => n,
            None => hostname()?,
        };
        let mut labels = file.labels;
        for l in &flags.labels {
            let (k, v) = parse_label(l)?;
            labels.insert(k, v);
        }
        let role = match flags.role.as_deref().or(file.role.as_deref()) {
            Some(r) => parse_role(r)?,
            None => NodeRole::Worker,
        };
        let coordinators: Vec<String> = if flags.coordinators.is_empty() {
            file.coordinators
        } else {
            flags.coordinators.clone()
        };
        let data_dir = flags
            .data_dir
            .clone()
            .or(file.data_dir)
            .unwrap_or_else(|| PathBuf::from("/var/lib/shoal/agent"));
        let mut import_images = file.import_images;
        import_images.extend(flags.import_images.iter().cloned());
        let listen = flags
            .listen
            .clone()
            .or(file.listen)
            .unwrap_or_else(|| "127.0.0.1:7500".to_owned());
        Ok(Self {
            node_name,
            labels,
            role,
            coordinators: coordinators
                .into_iter()
                .map(|c| c.trim().to_owned())
                .filter(|c| !c.is_empty())
                .collect(),
            containerd_socket: flags
                .containerd_socket
                .clone()
                .or(file.containerd_socket)
                .unwrap_or_else(|| PathBuf::from("/run/containerd/containerd.sock")),
            namespace: flags
                .namespace
                .clone()
                .or(file.namespace)
                .unwrap_or_else(|| "shoal".to_owned()),
            log_dir: flags
                .log_dir
                .clone()
                .or(file.log_dir)
                .unwrap_or_else(|| PathBuf::from("/var/log/shoal")),
            volumes_dir: flags
                .volumes_dir
                .clone()
                .or(file.volumes_dir)
                .unwrap_or_else(|| PathBuf::from("/var/lib/shoal/volumes")),
            secrets_dir: flags
                .secrets_dir
                .clone()
                .or(file.secrets_dir)
                .unwrap_or_else(|| data_dir.join("secrets")),
            advertise: match flags.advertise.clone().or(file.advertise) {
                Some(a) => check_advertise(a)?,
                None => listen.clone(),
            },
            listen,
            metrics_listen: flags.metrics_listen.clone().or(file.metrics_listen),
            data_dir,
            import_images,
            log_json: flags.log_json || file.log_json,
            log_max_bytes: flags
                .log_max_bytes
                .or(file.log_max_bytes)
                .unwrap_or(50 << 20),
            log_keep: flags.log_keep.or(file.log_keep).unwrap_or(3),
            registries: file.registries,
            insecure: flags.insecure || file.insecure,
            join_token: match flags.token_file.clone().or(file.token_file) {
                Some(p) => Some(
                    std::fs::read_to_string(&p)
                        .map_err(|error| ConfigError::Read { path: p, error })?
                        .trim()
                        .to_owned(),
                ),
                None => flags.token.clone(),
            },
        })
    }

    /// Reads the config file named by the flags (or the default one) and merges the flags.
    pub fn load(flags: &Flags) -> Result<Self, ConfigError> {
        let file = match &flags.config {
            Some(p) => FileConfig::load(p, true)?,
            None => FileConfig::load(Path::new(DEFAULT_CONFIG_PATH), false)?,
        };
        Self::resolve(file, flags)
    }
}

/// An advertised address: `host:port` with a port number, and not a wildcard address.
fn check_advertise(addr: String) -> Result<String, ConfigError> {
    let ok = addr.rsplit_once(':').is_some_and(|(host, port)| {
        let host = host.trim_start_matches('[').trim_end_matches(']');
        !host.is_empty()
            && port.parse::<u16>().is_ok_and(|p| p != 0)
            && host
                .parse::<std::net::IpAddr>()
                .map_or(true, |ip| !ip.is_unspecified())
    });
    if ok {
        Ok(addr)
    } else {
        Err(ConfigError::BadAdvertise(addr))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    fn flags(args: &[&str]) -> Flags {
        Flags::parse_from(std::iter::once("shoal-agent").chain(args.iter().copied()))
    }

    #[test]
    fn defaults() {
        let c =
            AgentConfig::resolve(FileConfig::default(), &flags(&["--node-name", "n1"])).unwrap();
        assert_eq!(c.node_name, "n1");
        assert_eq!(c.namespace, "shoal");
        assert_eq!(c.listen, "127.0.0.1:7500");
        assert_eq!(
            c.containerd_socket,
            PathBuf::from("/run/containerd/containerd.sock")
        );
        assert_eq!(c.data_dir, PathBuf::from("/var/lib/shoal/agent"));
        assert_eq!(c.role, NodeRole::Worker);
        assert!(c.coordinators.is_empty());
        assert_eq!((c.log_max_bytes, c.log_keep), (50 << 20, 3));
        assert_eq!(c.metrics_listen, None);
    }

    #[test]
    fn the_advertised_address_defaults_to_listen_and_is_checked() {
        let c = AgentConfig::resolve(FileConfig::default(), &flags(&["--listen", "0.0.0.0:7600"]))
            .unwrap();
        assert_eq!(c.advertise, "0.0.0.0:7600");
        let file =
            FileConfig::parse("advertise = \"10.0.0.5:7500\"\n", Path::new("a.toml")).unwrap();
        let c = AgentConfig::resolve(file, &flags(&[])).unwrap();
        assert_eq!(
            (c.listen.as_str(), c.advertise.as_str()),
            ("127.0.0.1:7500", "10.0.0.5:7500")
        );
        let c = AgentConfig::resolve(
            FileConfig::default(),
            &flags(&["--advertise", "node1:7500"]),
        )
        .unwrap();
        assert_eq!(c.advertise, "node1:7500");
        for bad in [
            "0.0.0.0:7500",
            "[::]:7500",
            "node1",
            "node1:http",
            ":7500",
            "n:0",
        ] {
            let e = AgentConfig::resolve(FileConfig::default(), &flags(&["--advertise", bad]))
                .unwrap_err();
            assert_eq!(
                e.to_string(),
                format!("advertise address `{bad}`: expected host:port that other nodes can reach (not 0.0.0.0 or [::])")
            );
        }
    }

    #[test]
    fn the_example_file_parses_and_flags_override_it() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../systemd/agent.toml.example");
        let file = FileConfig::load(&path, true).unwrap();
        assert_eq!(file.metrics_listen.as_deref(), Some("127.0.0.1:9500"));
        let c = AgentConfig::resolve(file, &flags(&["--metrics-listen", "127.0.0.1:0"])).unwrap();
        assert_eq!(c.metrics_listen.as_deref(), Some("127.0.0.1:0"));
        assert_eq!(c.listen, "127.0.0.1:7500");
    }

    #[test]
    fn flags_override_the_file() {
        let file = FileConfig::parse(
            r#"
node_name = "from-file"
namespace = "ns-file"
coordinators = ["a:1"]
labels = { rack = "r1", role = "compute" }
"#,
            Path::new("agent.toml"),
        )
        .unwrap();
        let c = AgentConfig::resolve(
            file,
            &flags(&[
                "--node-name",
                "n2",
                "--label",
                "role=controller",
                "--coordinators",
                "b:2,c:3",
                "--role",
                "coordinator",
            ]),
        )
        .unwrap();
        assert_eq!(c.node_name, "n2");
        assert_eq!(c.namespace, "ns-file");
        assert_eq!(c.coordinators, vec!["b:2", "c:3"]);
        assert_eq!(c.labels["role"], "controller");
        assert_eq!(c.labels["rack"], "r1");
        assert_eq!(c.role, NodeRole::Coordinator);
    }

    #[test]
    fn unknown_fields_and_bad_values_are_named() {
        let e = FileConfig::parse("nodename = \"x\"", Path::new("/etc/a.toml"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("/etc/a.toml") && e.contains("nodename"), "{e}");
        let e = AgentConfig::resolve(FileConfig::default(), &flags(&["--label", "novalue"]))
            .unwrap_err()
            .to_string();
        assert!(e.contains("novalue"), "{e}");
        let e = AgentConfig::resolve(FileConfig::default(), &flags(&["--role", "boss"]))
            .unwrap_err()
            .to_string();
        assert!(e.contains("boss"), "{e}");
    }

    #[test]
    fn registries() {
        let text = r#"
            [registries."127.0.0.1:5000"]
            insecure = true
            username = "u"
            password = "p"
            [registries."quay.io"]
        "#;
        let file = FileConfig::parse(text, Path::new("a.toml")).unwrap();
        let r = &file.registries["127.0.0.1:5000"];
        assert!(r.insecure);
        assert_eq!(
            (r.username.as_deref(), r.password.as_deref()),
            (Some("u"), Some("p"))
        );
        assert!(!file.registries["quay.io"].insecure);
        let bad = "[registries.\"x\"]\ninsecur = true\n";
        let e = FileConfig::parse(bad, Path::new("a.toml")).unwrap_err();
        assert!(e.to_string().contains("insecur"), "{e}");
    }

    #[test]
    fn explicit_missing_file_is_an_error() {
        let e = AgentConfig::load(&flags(&["--config", "/nonexistent/agent.toml"]))
            .unwrap_err()
            .to_string();
        assert!(e.contains("/nonexistent/agent.toml"), "{e}");
    }
}
