//! `shoalctl task`, `logs`, `exec` and `events`.

use std::io::Write;
use std::time::Duration;

use anyhow::{bail, Context};
use serde_json::{json, Value};
use shoal_proto::agent::agent_client::AgentClient;
use shoal_proto::agent::{ExecRequest, LogsRequest};

use crate::client::Client;
use crate::{print_list, query, str_at, Format};

pub fn print_tasks(fmt: Format, v: &Value) {
    let header = [
        "ID", "SERVICE", "SLOT", "NODE", "DESIRED", "STATE", "EXIT", "MESSAGE",
    ];
    print_list(fmt, v, &header, |t| {
        vec![
            str_at(t, "/id"),
            str_at(t, "/service"),
            str_at(t, "/slot"),
            str_at(t, "/node"),
            str_at(t, "/desired_state"),
            str_at(t, "/state"),
            str_at(t, "/exit_code"),
            str_at(t, "/message"),
        ]
    });
}

/// The agent API address of the node running `task`.
async fn agent_for(
    client: &mut Client,
    task: &str,
) -> anyhow::Result<(AgentClient<tonic::transport::Channel>, String)> {
    let tasks = query(
        client,
        json!({"type": "tasks", "service": null, "node": null}),
        false,
    )
    .await?;
    let t = tasks
        .as_array()
        .and_then(|a| a.iter().find(|t| t["id"] == json!(task)))
        .with_context(|| format!("task `{task}` not found"))?;
    let node = t["node"]
        .as_str()
        .with_context(|| format!("task `{task}` is not on a node"))?;
    let nodes = query(client, json!({"type": "nodes"}), false).await?;
    let addr = nodes
        .as_array()
        .and_then(|a| a.iter().find(|n| n["name"] == json!(node)))
        .and_then(|n| n["address"].as_str())
        .filter(|a| !a.is_empty())
        .with_context(|| format!("node `{node}` has no agent address"))?
        .to_string();
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

pub async fn events(
    client: &mut Client,
    mut after: u64,
    follow: bool,
    fmt: Format,
    stale: bool,
) -> anyhow::Result<()> {
    // Tables show UTC times; `-o json` keeps the milliseconds.
    let header = ["SEQ", "AT (UTC)", "KIND", "OBJECT", "ACTION", "MESSAGE"];
    let row = |e: &Value| {
        vec![
            str_at(e, "/seq"),
            crate::output::utc_time(&e["at"]),
            str_at(e, "/kind"),
            str_at(e, "/object"),
            str_at(e, "/action"),
            str_at(e, "/message"),
        ]
    };
    let v = query(client, json!({"type": "events", "after": after}), stale).await?;
    if !follow {
        print_list(fmt, &v, &header, row);
        return Ok(());
    }
    // Follow: one line per event (JSON lines with -o json), polling the state's event ring.
    let mut batch = v;
    loop {
        for e in batch.as_array().into_iter().flatten() {
            after = after.max(e["seq"].as_u64().unwrap_or(after));
            match fmt {
                Format::Json => println!("{e}"),
                Format::Table => println!("{}", row(e).join("  ")),
            }
        }
        std::io::stdout().flush()?;
        tokio::time::sleep(Duration::from_millis(300)).await;
        batch = match query(client, json!({"type": "events", "after": after}), stale).await {
            Ok(b) => b,
            Err(e) => {
                eprintln!("shoalctl: {e:#}; retrying");
                continue;
            }
        };
        if batch.as_array().is_none() {
            bail!("malformed events reply");
        }
    }
}
