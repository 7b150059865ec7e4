//! `shoalctl`: the operator's command line.

mod client;
mod config_cmd;
mod node_cmds;
mod output;
mod pki_cmds;
mod stack_cmds;
mod stack_name;
mod stack_secrets;
mod task_cmds;
mod tls_probe;

use std::path::PathBuf;

use anyhow::{bail, Context};
use clap::{CommandFactory, Parser, Subcommand, ValueEnum};
use serde_json::{json, Value};
use shoal_model::{ContainerSpec, ServiceSpec};
use shoal_proto::control::{
    ApplyRequest, ClusterAddRequest, ClusterInitRequest, ClusterRemoveRequest, ClusterStatusReply,
    ClusterStatusRequest, QueryRequest,
};

use client::Client;
use output::table;

#[derive(Parser, Debug)]
#[command(name = "shoalctl", version, about = "Operate a Shoal cluster")]
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
    /// Configs of the stacks (declared in their top-level `configs:`).
    #[command(subcommand)]
    Config(config_cmd::ConfigCmd),
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

#[derive(Subcommand, Debug)]
enum StackCmd {
    /// List stacks.
    Ls,
    /// Remove a stack's services (their containers stop).
    Rm { name: String },
}

#[derive(Subcommand, Debug)]
enum ClusterCmd {
    /// Every member, the leader, term, log indices and replication lag.
    Status,
    /// Initialize a new cluster on the first coordinator listed.
    Init,
    /// Add a coordinator: it joins as a learner, catches up, then becomes a voter.
    Add { id: u64, addr: String },
    /// Remove a coordinator.
    Remove { id: u64 },
}

#[derive(Subcommand, Debug)]
enum ServiceCmd {
    /// Create a service.
    Create {
        name: String,
        #[arg(long)]
        image: String,
        #[arg(long, default_value_t = 1)]
        replicas: u32,
        /// Idempotency key: retrying with the same id applies the change once.
        #[arg(long)]
        request_id: Option<String>,
        /// Command and arguments.
        #[arg(last = true)]
        command: Vec<String>,
    },
    /// List services.
    Ls,
    /// Show one service.
    Inspect { name: String },
    /// Remove a service.
    Rm { name: String },
    /// A service's tasks, with why pending ones are not placed.
    Ps { name: String },
    /// Set a service's replica count: `shoalctl service scale api=3`.
    Scale { target: String },
}

#[derive(Subcommand, Debug)]
enum NodeCmd {
    /// List nodes.
    Ls,
    /// Show one node.
    Inspect { name: String },
    /// Node labels.
    #[command(subcommand)]
    Label(LabelCmd),
    /// Move the node's replicated tasks elsewhere and stop its global ones.
    Drain { name: String },
    /// Place nothing new on the node.
    Pause { name: String },
    /// Make the node schedulable again.
    Activate { name: String },
    /// Forget a node that is down. Refused while it may still run tasks of services with data,
    /// unless `--force`.
    Rm {
        name: String,
        /// The node is gone for good (powered off, its containers dead): start the tasks of its
        /// services with data elsewhere.
        #[arg(long)]
        force: bool,
    },
}

#[derive(Subcommand, Debug)]
enum LabelCmd {
    /// Add or change a label: `shoalctl node label add NODE role=controller`.
    Add { node: String, label: String },
    /// Remove a label.
    Rm { node: String, key: String },
}

#[derive(Subcommand, Debug)]
enum TaskCmd {
    /// List tasks.
    Ls {
        #[arg(long)]
        service: Option<String>,
        #[arg(long)]
        node: Option<String>,
    },
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
            std::process::ExitCode::FAILURE
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
    let fmt = cli.output;
    match &cli.cmd {
        Cmd::Cluster(c) => cluster(&mut client, c, fmt).await,
        Cmd::Token(c) => pki_cmds::token(&mut client, c).await,
        Cmd::Cert(c) => pki_cmds::cert(&mut client, c).await,
        Cmd::Service(ServiceCmd::Create {
            name,
            image,
            replicas,
            request_id,
            command,
        }) => {
            let spec = ServiceSpec {
                container: ContainerSpec {
                    image: image.clone(),
                    command: command.clone(),
                    ..Default::default()
                },
                replicas: *replicas,
                ..Default::default()
            };
            let cmd = json!({"type": "create_service", "name": name, "spec": spec});
            let id = request_id
                .clone()
                .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
            let reply = apply(&mut client, &id, &cmd).await?;
            print_value(fmt, &reply, || format!("service {name} created"));
            Ok(())
        }
        Cmd::Service(ServiceCmd::Rm { name }) => {
            let cmd = json!({"type": "remove_service", "name": name});
            let reply = apply(&mut client, &uuid::Uuid::new_v4().to_string(), &cmd).await?;
            print_value(fmt, &reply, || format!("service {name} removed"));
            Ok(())
        }
        Cmd::Service(ServiceCmd::Ls) => {
            let v = query(&mut client, json!({"type": "services"}), cli.stale).await?;
            let q = json!({"type": "tasks", "service": null, "node": null});
            let tasks = query(&mut client, q, cli.stale).await?;
            // Running tasks per service (completed ones for jobs), against what is desired.
            let mut running: std::collections::BTreeMap<String, (u64, u64)> = Default::default();
            for t in tasks.as_array().into_iter().flatten() {
                let e = running.entry(str_at(t, "/service")).or_default();
                if t["desired_state"] == "running" {
                    match t["state"].as_str() {
                        Some("running") | Some("complete") => e.0 += 1,
                        _ => {}
                    }
                    if !matches!(
                        t["state"].as_str(),
                        Some("failed" | "orphaned" | "rejected")
                    ) {
                        e.1 += 1;
                    }
                }
            }
            print_list(
                fmt,
                &v,
                &["NAME", "MODE", "REPLICAS", "IMAGE", "VERSION"],
                |s| {
                    let (up, want) = running
                        .get(&str_at(s, "/name"))
                        .copied()
                        .unwrap_or_default();
                    let desired = match s["spec"]["mode"].as_str() {
                        Some("global") | Some("global-job") => want.to_string(),
                        _ => str_at(s, "/spec/replicas"),
                    };
                    vec![
                        str_at(s, "/name"),
                        str_at(s, "/spec/mode"),
                        format!("{up}/{desired}"),
                        str_at(s, "/spec/container/image"),
                        str_at(s, "/version"),
                    ]
                },
            );
            Ok(())
        }
        Cmd::Service(ServiceCmd::Inspect { name }) => {
            let v = query(
                &mut client,
                json!({"type": "service", "name": name}),
                cli.stale,
            )
            .await?;
            if v.is_null() {
                bail!("service `{name}` not found");
            }
            println!("{}", serde_json::to_string_pretty(&v)?);
            Ok(())
        }
        Cmd::Node(NodeCmd::Ls) => {
            let v = query(&mut client, json!({"type": "nodes"}), cli.stale).await?;
            print_list(
                fmt,
                &v,
                &["NAME", "ROLE", "STATUS", "AVAILABILITY", "ADDRESS"],
                |n| {
                    vec![
                        str_at(n, "/name"),
                        str_at(n, "/role"),
                        str_at(n, "/status"),
                        str_at(n, "/availability"),
                        str_at(n, "/address"),
                    ]
                },
            );
            Ok(())
        }
        Cmd::Apply { file, stack } => {
            stack_cmds::apply(&mut client, file, stack.as_deref(), fmt).await
        }
        Cmd::Plan { file, stack } => {
            stack_cmds::plan(&mut client, file, stack.as_deref(), fmt).await
        }
        Cmd::Stack(StackCmd::Ls) => stack_cmds::ls(&mut client, fmt, cli.stale).await,
        Cmd::Config(c) => config_cmd::run(&mut client, c, fmt, cli.stale).await,
        Cmd::Stack(StackCmd::Rm { name }) => {
            let cmd = json!({"type": "remove_stack", "stack": name});
            apply(&mut client, &uuid::Uuid::new_v4().to_string(), &cmd).await?;
            println!("stack {name} removed");
            Ok(())
        }
        Cmd::Service(ServiceCmd::Ps { name }) => {
            let q = json!({"type": "tasks", "service": name, "node": null});
            let v = query(&mut client, q, cli.stale).await?;
            task_cmds::print_tasks(fmt, &v);
            Ok(())
        }
        Cmd::Service(ServiceCmd::Scale { target }) => {
            let (name, n) = target
                .split_once('=')
                .and_then(|(n, r)| Some((n.to_string(), r.parse::<u32>().ok()?)))
                .context("expected NAME=REPLICAS, e.g. api=3")?;
            let v = query(&mut client, json!({"type": "service", "name": name}), false).await?;
            if v.is_null() {
                bail!("service `{name}` not found");
            }
            let mut spec = v["spec"].clone();
            spec["replicas"] = json!(n);
            let cmd = json!({"type": "update_service", "name": name, "spec": spec});
            apply(&mut client, &uuid::Uuid::new_v4().to_string(), &cmd).await?;
            println!("service {name} scaled to {n}");
            Ok(())
        }
        Cmd::Node(NodeCmd::Inspect { name }) => {
            let v = query(&mut client, json!({"type": "nodes"}), cli.stale).await?;
            let node = v
                .as_array()
                .and_then(|a| a.iter().find(|n| n["name"] == json!(name)))
                .with_context(|| format!("node `{name}` not found"))?;
            println!("{}", serde_json::to_string_pretty(node)?);
            Ok(())
        }
        Cmd::Node(NodeCmd::Label(LabelCmd::Add { node, label })) => {
            let (k, v) = label.split_once('=').context("expected KEY=VALUE")?;
            node_cmds::update(&mut client, node, None, vec![(k.into(), v.into())], vec![]).await
        }
        Cmd::Node(NodeCmd::Label(LabelCmd::Rm { node, key })) => {
            node_cmds::update(&mut client, node, None, vec![], vec![key.clone()]).await
        }
        Cmd::Node(NodeCmd::Drain { name }) => {
            node_cmds::update(&mut client, name, Some("drain"), vec![], vec![]).await
        }
        Cmd::Node(NodeCmd::Pause { name }) => {
            node_cmds::update(&mut client, name, Some("pause"), vec![], vec![]).await
        }
        Cmd::Node(NodeCmd::Activate { name }) => {
            node_cmds::update(&mut client, name, Some("active"), vec![], vec![]).await
        }
        Cmd::Node(NodeCmd::Rm { name, force }) => {
            let cmd = json!({"type": "remove_node", "name": name, "force": force});
            apply(&mut client, &uuid::Uuid::new_v4().to_string(), &cmd).await?;
            println!("node {name} removed");
            Ok(())
        }
        Cmd::Logs { task, follow, tail } => {
            task_cmds::logs(&mut client, task, *follow, *tail).await
        }
        Cmd::Exec { task, command } => task_cmds::exec(&mut client, task, command).await,
        Cmd::Task(TaskCmd::Ls { service, node }) => {
            let q = json!({"type": "tasks", "service": service, "node": node});
            let v = query(&mut client, q, cli.stale).await?;
            task_cmds::print_tasks(fmt, &v);
            Ok(())
        }
        Cmd::Events { after, follow } => {
            task_cmds::events(&mut client, *after, *follow, fmt, cli.stale).await
        }
        Cmd::Completion { .. } | Cmd::Man => Ok(()),
    }
}

pub(crate) async fn apply(
    client: &mut Client,
    request_id: &str,
    cmd: &Value,
) -> anyhow::Result<Value> {
    let command_json = serde_json::to_vec(cmd)?;
    let reply = client
        .call(|mut c| {
            let req = ApplyRequest {
                request_id: request_id.to_string(),
                command_json: command_json.clone(),
            };
            async move { c.apply(req).await }
        })
        .await?;
    let mut v: Value = serde_json::from_slice(&reply.response_json).unwrap_or(Value::Null);
    if let Value::Object(m) = &mut v {
        m.insert("log_index".into(), json!(reply.log_index));
    }
    Ok(v)
}

pub(crate) async fn query(client: &mut Client, q: Value, stale: bool) -> anyhow::Result<Value> {
    let query_json = serde_json::to_vec(&q)?;
    let reply = client
        .call(|mut c| {
            let req = QueryRequest {
                query_json: query_json.clone(),
                stale,
            };
            async move { c.query(req).await }
        })
        .await?;
    serde_json::from_slice(&reply.result_json).context("malformed query reply")
}

async fn cluster(client: &mut Client, cmd: &ClusterCmd, fmt: Format) -> anyhow::Result<()> {
    match cmd {
        ClusterCmd::Init => {
            let r = client
                .call(|mut c| async move { c.cluster_init(ClusterInitRequest {}).await })
                .await?;
            println!("{}", r.message);
        }
        ClusterCmd::Add { id, addr } => {
            let (id, addr) = (*id, addr.clone());
            let r = client
                .call(|mut c| {
                    let req = ClusterAddRequest {
                        id,
                        addr: addr.clone(),
                    };
                    async move { c.cluster_add(req).await }
                })
                .await?;
            println!("{}", r.message);
        }
        ClusterCmd::Remove { id } => {
            let id = *id;
            let r = client
                .call(|mut c| async move { c.cluster_remove(ClusterRemoveRequest { id }).await })
                .await?;
            println!("{}", r.message);
        }
        ClusterCmd::Status => {
            let first = client
                .call(|mut c| async move { c.cluster_status(ClusterStatusRequest {}).await })
                .await?;
            // The leader knows every member's replication progress; each member knows its own
            // indices. Ask both.
            let leader = if first.has_leader && first.leader_id != first.node_id {
                let addr = first
                    .members
                    .iter()
                    .find(|m| m.id == first.leader_id)
                    .map(|m| m.addr.clone());
                match addr {
                    Some(a) => member_status(client, &a)
                        .await
                        .unwrap_or_else(|| first.clone()),
                    None => first.clone(),
                }
            } else {
                first.clone()
            };
            let mut rows = Vec::new();
            let mut json_members = Vec::new();
            for m in &leader.members {
                let own = member_status(client, &m.addr).await;
                let role = if leader.has_leader && m.id == leader.leader_id {
                    "leader".to_string()
                } else {
                    m.role.clone()
                };
                let (term, last, committed, applied, state) = match &own {
                    Some(s) => (
                        s.term.to_string(),
                        s.last_log_index.to_string(),
                        s.committed_index.to_string(),
                        s.applied_index.to_string(),
                        s.state.clone(),
                    ),
                    None => (
                        "-".into(),
                        "-".into(),
                        "-".into(),
                        "-".into(),
                        "unreachable".into(),
                    ),
                };
                let lag = if m.lag < 0 {
                    "-".to_string()
                } else {
                    m.lag.to_string()
                };
                json_members.push(json!({
                    "id": m.id, "addr": m.addr, "role": role, "state": state,
                    "term": own.as_ref().map(|s| s.term),
                    "last_log_index": own.as_ref().map(|s| s.last_log_index),
                    "committed_index": own.as_ref().map(|s| s.committed_index),
                    "applied_index": own.as_ref().map(|s| s.applied_index),
                    "lag": (m.lag >= 0).then_some(m.lag),
                }));
                rows.push(vec![
                    m.id.to_string(),
                    m.addr.clone(),
                    role,
                    state,
                    term,
                    last,
                    committed,
                    applied,
                    lag,
                ]);
            }
            match fmt {
                Format::Json => println!(
                    "{}",
                    serde_json::to_string_pretty(&json!({
                        "cluster_id": leader.cluster_id,
                        "leader": leader.has_leader.then_some(leader.leader_id),
                        "term": leader.term,
                        "members": json_members,
                    }))?
                ),
                Format::Table => {
                    println!(
                        "cluster {}  leader {}  term {}",
                        leader.cluster_id,
                        if leader.has_leader {
                            leader.leader_id.to_string()
                        } else {
                            "none".into()
                        },
                        leader.term
                    );
                    print!(
                        "{}",
                        table(
                            &[
                                "ID",
                                "ADDR",
                                "ROLE",
                                "STATE",
                                "TERM",
                                "LAST LOG",
                                "COMMITTED",
                                "APPLIED",
                                "LAG"
                            ],
                            &rows
                        )
                    );
                }
            }
        }
    }
    Ok(())
}

async fn member_status(client: &Client, addr: &str) -> Option<ClusterStatusReply> {
    let mut c = client.at(addr).await.ok()?;
    let call = c.cluster_status(ClusterStatusRequest {});
    let r = tokio::time::timeout(std::time::Duration::from_secs(2), call)
        .await
        .ok()?
        .ok()?;
    Some(r.into_inner())
}

pub(crate) fn str_at(v: &Value, ptr: &str) -> String {
    match v.pointer(ptr) {
        None | Some(Value::Null) => "-".into(),
        Some(Value::String(s)) => s.clone(),
        Some(other) => other.to_string(),
    }
}

fn print_value(fmt: Format, v: &Value, human: impl FnOnce() -> String) {
    match fmt {
        Format::Json => println!("{}", serde_json::to_string_pretty(v).unwrap_or_default()),
        Format::Table => println!("{}", human()),
    }
}

pub(crate) fn print_list(
    fmt: Format,
    v: &Value,
    header: &[&str],
    row: impl Fn(&Value) -> Vec<String>,
) {
    match fmt {
        Format::Json => println!("{}", serde_json::to_string_pretty(v).unwrap_or_default()),
        Format::Table => {
            let rows: Vec<Vec<String>> = v
                .as_array()
                .map(|a| a.iter().map(&row).collect())
                .unwrap_or_default();
            print!("{}", table(header, &rows));
        }
    }
}
