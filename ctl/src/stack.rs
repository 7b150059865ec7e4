//! `shoalctl apply`, `plan` and `stack`: stack files in, services out.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::Context;
use clap::Subcommand;
use serde::Serialize;
use shoal_model::api::{Preview, ServiceChange, UserCommand, CONTROL_API_VERSION};
use shoal_model::Service;
use shoal_proto::control::StackFileRequest;
use shoal_proto::control_api;

use crate::client::Client;
use crate::output::{self, cell, table};
use crate::{api, Format};

#[derive(Subcommand, Debug)]
pub enum StackCmd {
    /// List stacks.
    Ls,
    /// Remove a stack's services (their containers stop).
    Rm { name: String },
}

pub async fn run(
    client: &mut Client,
    cmd: &StackCmd,
    fmt: Format,
    stale: bool,
) -> anyhow::Result<String> {
    match cmd {
        StackCmd::Ls => Ok(render_stacks(fmt, &api::services(client, stale).await?)),
        StackCmd::Rm { name } => {
            let cmd = UserCommand::RemoveStack {
                stack: name.clone(),
            };
            api::apply_new(client, &cmd).await?;
            Ok(format!("stack {name} removed\n"))
        }
    }
}

fn request(file: &Path, stack: Option<&str>) -> anyhow::Result<StackFileRequest> {
    let source =
        std::fs::read_to_string(file).with_context(|| format!("cannot read {}", file.display()))?;
    // Secret values are read here, on the operator's machine, and sent beside the YAML.
    let secrets = crate::stack_secrets::resolve(file, &source, |v| std::env::var(v).ok())?;
    // So are the services' env_files, next to the stack file.
    let env_files = crate::stack_env_files::resolve(file, &source)?;
    let configs = crate::stack_secrets::resolve_configs(file, &source, |v| std::env::var(v).ok())?;
    let stack = crate::stack_name::resolve(stack, file, &source)?;
    Ok(StackFileRequest {
        stack: stack.unwrap_or_default(),
        file: file.display().to_string(),
        source,
        secrets,
        api_version: CONTROL_API_VERSION,
        env_files,
        configs,
    })
}

/// Sends the stack file to `StackApply` (`applied`) or `StackPlan` and renders the answer.
pub async fn send(
    client: &mut Client,
    file: &Path,
    stack: Option<&str>,
    fmt: Format,
    applied: bool,
) -> anyhow::Result<String> {
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
    let preview = control_api::preview_of(&reply).context("malformed reply")?;
    Ok(render_plan(fmt, &preview, applied))
}

/// What `apply` did or `plan` would do.
pub fn render_plan(fmt: Format, p: &Preview, applied: bool) -> String {
    if fmt == Format::Json {
        return output::json(p);
    }
    let verb = if applied { "applied" } else { "plan for" };
    let mut out = format!("{verb} stack {}\n", p.stack);
    out += &table(&["SERVICE", "ACTION"], &name_action_rows(&p.services));
    out.push('\n');
    for (list, header) in [(&p.secrets, "SECRET"), (&p.configs, "CONFIG")] {
        let rows = name_action_rows(list);
        if !rows.is_empty() {
            out += &table(&[header, "ACTION"], &rows);
            out.push('\n');
        }
    }
    out += &crate::config_cmd::render_restarts(&p.restarts);
    let tasks: Vec<Vec<String>> = p
        .tasks
        .iter()
        .map(|t| {
            vec![
                t.service.clone(),
                t.slot.to_string(),
                cell(t.node.as_deref()),
                t.message.clone(),
            ]
        })
        .collect();
    out += &table(&["TASK OF", "SLOT", "NODE", "WHY NOT PLACED"], &tasks);
    out
}

/// (name, action) rows of a plan's list of services or secrets.
fn name_action_rows(list: &[ServiceChange]) -> Vec<Vec<String>> {
    list.iter()
        .map(|s| match &s.rollout {
            // How an update rolls: `update: 1 at a time, stop-first, monitor 5000 ms`.
            Some(how) => vec![s.name.clone(), format!("{}: {how}", s.action)],
            None => vec![s.name.clone(), s.action.clone()],
        })
        .collect()
}

/// One row of `stack ls`.
#[derive(Serialize)]
struct StackRow<'a> {
    name: &'a str,
    services: usize,
}

/// `stack ls`: stacks by name with their number of services.
pub fn render_stacks(fmt: Format, services: &[Service]) -> String {
    let mut stacks: BTreeMap<&str, usize> = BTreeMap::new();
    for s in services {
        if let Some(name) = &s.stack {
            *stacks.entry(name).or_default() += 1;
        }
    }
    let rows: Vec<StackRow<'_>> = stacks
        .into_iter()
        .map(|(name, services)| StackRow { name, services })
        .collect();
    output::list(fmt, &rows, &["NAME", "SERVICES"], |s| {
        vec![s.name.to_string(), s.services.to_string()]
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::service;
    use shoal_model::api::TaskPreview;

    fn preview() -> Preview {
        Preview {
            stack: "demo".into(),
            services: vec![
                ServiceChange {
                    name: "db".into(),
                    action: "create".into(),
                    rollout: None,
                },
                ServiceChange {
                    name: "web".into(),
                    action: "unchanged".into(),
                    rollout: None,
                },
            ],
            secrets: vec![],
            configs: vec![],
            restarts: vec![],
            tasks: vec![
                TaskPreview {
                    service: "db".into(),
                    slot: 1,
                    node: Some("n1".into()),
                    state: "assigned".into(),
                    message: String::new(),
                },
                TaskPreview {
                    service: "db".into(),
                    slot: 2,
                    node: None,
                    state: "pending".into(),
                    message: "no node satisfies role==db".into(),
                },
            ],
        }
    }

    #[test]
    fn a_plan_lists_services_then_tasks() {
        assert_eq!(
            render_plan(Format::Table, &preview(), false),
            "plan for stack demo\n\
             SERVICE  ACTION\n\
             db       create\n\
             web      unchanged\n\
             \n\
             TASK OF  SLOT  NODE  WHY NOT PLACED\n\
             db       1     n1    \n\
             db       2     -     no node satisfies role==db\n"
        );
        let mut p = preview();
        p.secrets = vec![ServiceChange {
            name: "pw".into(),
            action: "create".into(),
            rollout: None,
        }];
        p.tasks.clear();
        assert_eq!(
            render_plan(Format::Table, &p, true),
            "applied stack demo\n\
             SERVICE  ACTION\n\
             db       create\n\
             web      unchanged\n\
             \n\
             SECRET  ACTION\n\
             pw      create\n\
             \n\
             TASK OF  SLOT  NODE  WHY NOT PLACED\n"
        );
        let json: Preview =
            serde_json::from_str(&render_plan(Format::Json, &preview(), true)).expect("json");
        assert_eq!(json, preview());
    }

    #[test]
    fn stacks_count_their_services() {
        let mut a = service("a", 1);
        a.stack = Some("demo".into());
        let mut b = service("b", 1);
        b.stack = Some("demo".into());
        let loose = service("c", 1);
        assert_eq!(
            render_stacks(Format::Table, &[a.clone(), b.clone(), loose.clone()]),
            "NAME  SERVICES\ndemo  2\n"
        );
        assert_eq!(
            render_stacks(Format::Json, &[a, b, loose]),
            "[\n  {\n    \"name\": \"demo\",\n    \"services\": 2\n  }\n]\n"
        );
    }
}
