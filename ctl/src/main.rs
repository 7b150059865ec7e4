//! `shoalctl`: the operator's command line.

mod api;
mod client;
mod cluster;
mod config_cmd;
mod events;
mod exit;
#[cfg(test)]
mod fixtures;
mod node;
mod output;
mod pki_cmds;
mod service;
mod service_update;
mod stack;
mod stack_env_files;
mod stack_name;
mod stack_secrets;
mod task;
mod tls_probe;

use std::path::PathBuf;

use anyhow::{bail, Context};
use clap::{CommandFactory, Parser, Subcommand, ValueEnum};

use client::Client;
use cluster::ClusterCmd;
use node::NodeCmd;
use service::ServiceCmd;
use stack::StackCmd;
use task::TaskCmd;

#[derive(Parser, Debug)]
#[command(name = "shoalctl", version, about = "Operate a Shoal cluster", after_help = exit::HELP)]
struct Cli {
    /// Coordinator endpoints (host:port), comma separated; tried in order, with failover.
    #[arg(long, env = "SHOAL_COORDINATORS", value_delimiter = ',', global = true)]
    coordinators: Vec<String>,
    /// Config file listing `coordinators = [...]`.
    #[arg(long, env = "SHOALCTL_CONFIG", global = true)]
    config: Option<PathBuf>,
    /// Output format.
    #[arg(long, short, value_enum, default_value_t = Format::Table, global = true)]
    output: Format,
    /// Serve reads from the first reachable coordinator's local state, without a leader check.
    #[arg(long, global = true)]
    stale: bool,
    /// Directory with the admin certificate (ca.pem, cert.pem, key.pem).
    #[arg(long, env = "SHOAL_TLS_DIR", global = true)]
    tls_dir: Option<PathBuf>,
    /// Talk plaintext to a cluster started with --insecure (`SHOAL_INSECURE`: 1/0, true/false,
    /// yes/no, on/off).
    #[arg(long, env = "SHOAL_INSECURE", global = true,
          value_parser = clap::builder::BoolishValueParser::new())]
    insecure: bool,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Clone, Copy, Debug, ValueEnum, PartialEq, Eq)]
pub(crate) enum Format {
    Table,
    Json,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// The Raft cluster of coordinators.
    #[command(subcommand)]
    Cluster(ClusterCmd),
    /// Configs of the stacks (declared in their top-level `configs:`).
    #[command(subcommand)]
    Config(config_cmd::ConfigCmd),
    /// Services.
    #[command(subcommand)]
    Service(ServiceCmd),
    /// Worker nodes.
    #[command(subcommand)]
    Node(NodeCmd),
    /// Tasks.
    #[command(subcommand)]
    Task(TaskCmd),
    /// Cluster events.
    Events {
        /// Only events after this sequence number.
        #[arg(long, default_value_t = 0)]
        after: u64,
        /// Keep streaming new events.
        #[arg(long, short)]
        follow: bool,
    },
    /// Apply a stack file: create, update and remove its services, all at once.
    ///
    /// The stack is named as Compose names a project: --stack, else the file's top-level
    /// `name:`, else the name of the file's directory, lowercased with only `a-z`, `0-9`, `_`
    /// and `-` kept (`My_App.v2/stack.yaml` is stack `my_appv2`).
    Apply {
        #[arg(long, short = 'f')]
        file: PathBuf,
        /// Stack name (default: the file's `name:`, else its directory's name, as Compose does).
        #[arg(long)]
        stack: Option<String>,
    },
    /// Show what applying a stack file would do, and where each task would run, changing nothing.
    ///
    /// The stack is named as for `apply`: --stack, else the file's `name:`, else the file's
    /// directory name, normalized as Compose does.
    Plan {
        #[arg(long, short = 'f')]
        file: PathBuf,
        /// Stack name (default: the file's `name:`, else its directory's name, as Compose does).
        #[arg(long)]
        stack: Option<String>,
    },
    /// Stacks.
    #[command(subcommand)]
    Stack(StackCmd),
    /// Join tokens for agents and coordinators.
    #[command(subcommand)]
    Token(pki_cmds::TokenCmd),
    /// Admin certificates.
    #[command(subcommand)]
    Cert(pki_cmds::CertCmd),
    /// A task's output (stdout and stderr), from the agent that runs it.
    Logs {
        task: String,
        #[arg(long, short)]
        follow: bool,
        /// Only the last N lines.
        #[arg(long)]
        tail: Option<u64>,
    },
    /// Run a command inside a task's container; prints its output, exits with its exit code.
    Exec {
        task: String,
        #[arg(last = true, required = true)]
        command: Vec<String>,
    },
    /// Print a shell completion script: `source <(shoalctl completion bash)` (or zsh), or
    /// `shoalctl completion fish | source`.
    Completion {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print shoalctl's man page (roff): `shoalctl man > shoalctl.1`, or `shoalctl man | man -l -`.
    Man,
}

#[derive(serde::Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    #[serde(default)]
    coordinators: Vec<String>,
}

fn endpoints(cli: &Cli) -> anyhow::Result<Vec<String>> {
    if !cli.coordinators.is_empty() {
        return Ok(cli.coordinators.clone());
    }
    let path = match &cli.config {
        Some(p) => p.clone(),
        None => {
            let home = std::env::var_os("HOME")
                .map(PathBuf::from)
                .unwrap_or_default();
            let user = home.join(".config/shoal/shoalctl.toml");
            if user.exists() {
                user
            } else {
                PathBuf::from("/etc/shoal/shoalctl.toml")
            }
        }
    };
    if !path.exists() {
        if cli.config.is_some() {
            bail!("config file {} does not exist", path.display());
        }
        return Ok(Vec::new());
    }
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("cannot read {}", path.display()))?;
    let cfg: FileConfig =
        toml::from_str(&text).with_context(|| format!("config file {}", path.display()))?;
    Ok(cfg.coordinators)
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    shoal_pki::install_crypto();
    match run(cli).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("shoalctl: error: {e:#}");
            exit::code_of(&e)
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    // These two need no cluster.
    match &cli.cmd {
        Cmd::Completion { shell } => {
            clap_complete::generate(
                *shell,
                &mut Cli::command(),
                "shoalctl",
                &mut std::io::stdout(),
            );
            return Ok(());
        }
        Cmd::Man => {
            let mut page = Vec::new();
            clap_mangen::Man::new(Cli::command()).render(&mut page)?;
            std::io::Write::write_all(&mut std::io::stdout(), &page)?;
            return Ok(());
        }
        _ => {}
    }
    let tls = pki_cmds::load_admin_tls(cli.tls_dir.as_deref(), cli.insecure)?;
    let mut client = Client::new(endpoints(&cli)?, tls)?;
    let (fmt, stale) = (cli.output, cli.stale);
    let out = match &cli.cmd {
        Cmd::Cluster(c) => cluster::run(&mut client, c, fmt).await?,
        Cmd::Service(c) => service::run(&mut client, c, fmt, stale).await?,
        Cmd::Node(c) => node::run(&mut client, c, fmt, stale).await?,
        Cmd::Task(c) => task::run(&mut client, c, fmt, stale).await?,
        Cmd::Stack(c) => stack::run(&mut client, c, fmt, stale).await?,
        Cmd::Config(c) => config_cmd::run(&mut client, c, fmt, stale).await?,
        Cmd::Apply { file, stack } => {
            stack::send(&mut client, file, stack.as_deref(), fmt, true).await?
        }
        Cmd::Plan { file, stack } => {
            stack::send(&mut client, file, stack.as_deref(), fmt, false).await?
        }
        Cmd::Events { after, follow } => {
            events::run(&mut client, *after, *follow, fmt, stale).await?
        }
        Cmd::Token(c) => return pki_cmds::token(&mut client, c).await,
        Cmd::Cert(c) => return pki_cmds::cert(&mut client, c).await,
        Cmd::Logs { task, follow, tail } => {
            return task::logs(&mut client, task, *follow, *tail).await
        }
        Cmd::Exec { task, command } => return task::exec(&mut client, task, command).await,
        Cmd::Completion { .. } | Cmd::Man => return Ok(()),
    };
    std::io::Write::write_all(&mut std::io::stdout(), out.as_bytes())?;
    Ok(())
}
