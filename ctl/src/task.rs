//! `shoalctl task`, `logs` and `exec`: tasks as the coordinators see them, and what runs inside
//! them, from the agent of their node.

use std::io::Write;

use anyhow::Context;
use clap::Subcommand;
use shoal_model::Task;
use shoal_proto::agent::agent_client::AgentClient;
use shoal_proto::agent::{ExecRequest, LogsRequest};

use crate::client::Client;
use crate::exit::NotFound;
use crate::output::{self, cell, name_of};
use crate::{api, Format};

#[derive(Subcommand, Debug)]
pub enum TaskCmd {
    /// List tasks.
    Ls {
        #[arg(long)]
        service: Option<String>,
        #[arg(long)]
        node: Option<String>,
    },
    /// Show one task as JSON (with the image digest its container runs).
    Inspect { id: String },
}

pub async fn run(
    client: &mut Client,
    cmd: &TaskCmd,
    fmt: Format,
    stale: bool,
) -> anyhow::Result<String> {
    match cmd {
        TaskCmd::Ls { service, node } => {
            let tasks = api::tasks(client, service.as_deref(), node.as_deref(), stale).await?;
            Ok(render_tasks(fmt, &tasks))
        }
        TaskCmd::Inspect { id } => {
            let tasks = api::tasks(client, None, None, stale).await?;
            let task = tasks
                .iter()
                .find(|t| t.id == *id)
                .ok_or_else(|| NotFound(format!("task `{id}` not found")))?;
            render_task(task)
        }
    }
}

/// `task inspect`: the task as pretty JSON.
pub fn render_task(task: &Task) -> anyhow::Result<String> {
    Ok(serde_json::to_string_pretty(task)? + "\n")
}

/// `task ls` and `service ps`.
pub fn render_tasks(fmt: Format, tasks: &[Task]) -> String {
    let header = [
        "ID", "SERVICE", "SLOT", "NODE", "DESIRED", "STATE", "EXIT", "MESSAGE",
    ];
    output::list(fmt, tasks, &header, |t| {
        vec![
            t.id.clone(),
            t.service.clone(),
            t.slot.to_string(),
            cell(t.node.as_deref()),
            name_of(&t.desired_state),
            name_of(&t.state),
            cell(t.exit_code),
            t.message.clone(),
        ]
    })
}

/// The agent API address of the node running `task`.
async fn agent_for(
    client: &mut Client,
    task: &str,
) -> anyhow::Result<(AgentClient<tonic::transport::Channel>, String)> {
    let tasks = api::tasks(client, None, None, false).await?;
    let t = tasks
        .iter()
        .find(|t| t.id == task)
        .ok_or_else(|| NotFound(format!("task `{task}` not found")))?;
    let node = t
        .node
        .as_deref()
        .with_context(|| format!("task `{task}` is not on a node"))?;
    let nodes = api::nodes(client, false).await?;
    let addr = nodes
        .iter()
        .find(|n| n.name == node)
        .map(|n| n.address.clone())
        .filter(|a| !a.is_empty())
        .with_context(|| format!("node `{node}` has no agent address"))?;
    let ch = client
        .channel(&addr, shoal_pki::Role::Agent)
        .await
        .with_context(|| format!("cannot reach the agent of node {node} at {addr}"))?;
    Ok((AgentClient::new(ch), addr))
}

pub async fn logs(
    client: &mut Client,
    task: &str,
    follow: bool,
    tail: Option<u64>,
) -> anyhow::Result<()> {
    let (mut agent, addr) = agent_for(client, task).await?;
    let req = LogsRequest {
        task_id: task.to_string(),
        follow,
        tail: tail.unwrap_or(0),
    };
    let mut stream = match agent.logs(req).await {
        Ok(r) => r.into_inner(),
        Err(s) => {
            return Err(client
                .explain(&addr, anyhow::anyhow!("{}", s.message()))
                .await)
        }
    };
    let mut out = std::io::stdout();
    while let Some(chunk) = stream
        .message()
        .await
        .map_err(|s| anyhow::anyhow!("{}", s.message()))?
    {
        out.write_all(&chunk.data)?;
        out.flush()?;
    }
    Ok(())
}

pub async fn exec(client: &mut Client, task: &str, command: &[String]) -> anyhow::Result<()> {
    let (mut agent, addr) = agent_for(client, task).await?;
    let req = ExecRequest {
        task_id: task.to_string(),
        command: command.to_vec(),
    };
    let r = match agent.exec(req).await {
        Ok(r) => r.into_inner(),
        Err(s) => {
            return Err(client
                .explain(&addr, anyhow::anyhow!("{}", s.message()))
                .await)
        }
    };
    std::io::stdout().write_all(&r.stdout)?;
    std::io::stderr().write_all(&r.stderr)?;
    if r.exit_code != 0 {
        std::process::exit(r.exit_code);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::task;
    use shoal_model::TaskState;

    #[test]
    fn tasks_table_shows_absent_values_as_dashes() {
        let mut placed = task("web", 1, TaskState::Failed);
        placed.exit_code = Some(137);
        placed.message = "killed".into();
        let mut pending = task("web", 2, TaskState::Pending);
        pending.node = None;
        pending.message = "no node has 2 GiB free".into();
        assert_eq!(
            render_tasks(Format::Table, &[placed, pending]),
            "ID     SERVICE  SLOT  NODE  DESIRED  STATE    EXIT  MESSAGE\n\
             web.1  web      1     n1    running  failed   137   killed\n\
             web.2  web      2     -     running  pending  -     no node has 2 GiB free\n"
        );
    }

    #[test]
    fn tasks_as_json_keep_every_field() {
        let out = render_tasks(Format::Json, &[task("web", 1, TaskState::Running)]);
        let v: serde_json::Value = serde_json::from_str(&out).expect("json");
        assert_eq!(v[0]["state"], "running");
        assert_eq!(v[0]["exit_code"], serde_json::Value::Null);
        assert_eq!(v[0]["spec"]["image"], "demo");
    }
}
