//! `shoalctl apply`, `plan` and `stack`: stack files in, services out.

use std::path::Path;

use anyhow::Context;
use serde_json::{json, Value};
use shoal_proto::control::StackFileRequest;

use crate::client::Client;
use crate::output::table;
use crate::{print_list, query, str_at, Format};

fn request(file: &Path, stack: Option<&str>) -> anyhow::Result<StackFileRequest> {
    let source =
        std::fs::read_to_string(file).with_context(|| format!("cannot read {}", file.display()))?;
    // Secret values are read here, on the operator's machine, and sent beside the YAML.
    let secrets = crate::stack_secrets::resolve(file, &source, |v| std::env::var(v).ok())?;
    let configs = crate::stack_secrets::resolve_configs(file, &source, |v| std::env::var(v).ok())?;
    let stack = crate::stack_name::resolve(stack, file, &source)?;
    Ok(StackFileRequest {
        stack: stack.unwrap_or_default(),
        file: file.display().to_string(),
        source,
        secrets,
        configs,
    })
}

fn print_plan(fmt: Format, v: &Value, applied: bool) {
    if fmt == Format::Json {
        println!("{}", serde_json::to_string_pretty(v).unwrap_or_default());
        return;
    }
    let verb = if applied { "applied" } else { "plan for" };
    println!("{verb} stack {}", str_at(v, "/stack"));
    let services = name_action_rows(&v["services"]);
    print!("{}", table(&["SERVICE", "ACTION"], &services));
    println!();
    for (key, header) in [("secrets", "SECRET"), ("configs", "CONFIG")] {
        let rows = name_action_rows(&v[key]);
        if !rows.is_empty() {
            print!("{}", table(&[header, "ACTION"], &rows));
            println!();
        }
    }
    crate::config_cmd::print_restarts(&v["restarts"]);
    let tasks: Vec<Vec<String>> = v["tasks"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|t| {
                    vec![
                        str_at(t, "/service"),
                        str_at(t, "/slot"),
                        str_at(t, "/node"),
                        str_at(t, "/message"),
                    ]
                })
                .collect()
        })
        .unwrap_or_default();
    print!(
        "{}",
        table(&["TASK OF", "SLOT", "NODE", "WHY NOT PLACED"], &tasks)
    );
}

/// Sends the stack file to `StackApply` (`applied`) or `StackPlan` and prints the answer.
async fn send(
    client: &mut Client,
    file: &Path,
    stack: Option<&str>,
    fmt: Format,
    applied: bool,
) -> anyhow::Result<()> {
    let req = request(file, stack)?;
    let reply = client
        .call(|mut c| {
            let req = req.clone();
            async move {
                if applied {
                    c.stack_apply(req).await
                } else {
                    c.stack_plan(req).await
                }
            }
        })
        .await?;
    let v: Value = serde_json::from_slice(&reply.plan_json).context("malformed reply")?;
    print_plan(fmt, &v, applied);
    Ok(())
}

pub async fn apply(
    client: &mut Client,
    file: &Path,
    stack: Option<&str>,
    fmt: Format,
) -> anyhow::Result<()> {
    send(client, file, stack, fmt, true).await
}

pub async fn plan(
    client: &mut Client,
    file: &Path,
    stack: Option<&str>,
    fmt: Format,
) -> anyhow::Result<()> {
    send(client, file, stack, fmt, false).await
}

pub async fn ls(client: &mut Client, fmt: Format, stale: bool) -> anyhow::Result<()> {
    let v = query(client, json!({"type": "services"}), stale).await?;
    let mut stacks: std::collections::BTreeMap<String, usize> = Default::default();
    for s in v.as_array().into_iter().flatten() {
        if let Some(name) = s["stack"].as_str() {
            *stacks.entry(name.to_string()).or_default() += 1;
        }
    }
    let list: Vec<Value> = stacks
        .into_iter()
        .map(|(n, c)| json!({"name": n, "services": c}))
        .collect();
    print_list(fmt, &json!(list), &["NAME", "SERVICES"], |s| {
        vec![str_at(s, "/name"), str_at(s, "/services")]
    });
    Ok(())
}

/// (name, action) rows of a plan's list of services or secrets.
fn name_action_rows(list: &Value) -> Vec<Vec<String>> {
    list.as_array()
        .map(|a| {
            a.iter()
                .map(|s| vec![str_at(s, "/name"), str_at(s, "/action")])
                .collect()
        })
        .unwrap_or_default()
}
