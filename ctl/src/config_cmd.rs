//! `shoalctl config ls` and `config inspect`: a stack's configs as the cluster holds them (a
//! sensitive config's value is never sent by the coordinator), and the plan's list of tasks a
//! config change restarts.

use clap::Subcommand;
use shoal_model::api::{Answer, ConfigInfo, Query, TaskRestart};

use crate::client::Client;
use crate::exit::NotFound;
use crate::output::{self, cell, table, utc_time};
use crate::{api, Format};

#[derive(Subcommand, Debug)]
pub enum ConfigCmd {
    /// List the configs of every stack: version, size, the services using each.
    Ls,
    /// Show one config with its content (unless it is marked `x-shoal-sensitive`).
    Inspect { name: String },
}

pub async fn run(
    client: &mut Client,
    cmd: &ConfigCmd,
    fmt: Format,
    stale: bool,
) -> anyhow::Result<String> {
    match cmd {
        ConfigCmd::Ls => {
            let q = Query::Configs;
            match api::ask(client, &q, stale).await? {
                Answer::Configs(list) => Ok(render_configs(fmt, &list)),
                other => Err(api::unexpected(&q, &other)),
            }
        }
        ConfigCmd::Inspect { name } => {
            let q = Query::Config { name: name.clone() };
            match api::ask(client, &q, stale).await? {
                Answer::Config(Some(c)) => Ok(match fmt {
                    Format::Json => output::json(&c),
                    Format::Table => inspect_text(&c),
                }),
                Answer::Config(None) => Err(NotFound(format!("config `{name}` not found")).into()),
                other => Err(api::unexpected(&q, &other)),
            }
        }
    }
}

/// `config ls`.
pub fn render_configs(fmt: Format, list: &[ConfigInfo]) -> String {
    let header = [
        "NAME",
        "STACK",
        "VERSION",
        "SIZE",
        "SENSITIVE",
        "UPDATED",
        "USED BY",
    ];
    output::list(fmt, list, &header, |c| {
        vec![
            c.name.clone(),
            c.stack.clone(),
            c.version.to_string(),
            c.size.to_string(),
            c.sensitive.to_string(),
            utc_time(c.updated_at),
            services(c),
        ]
    })
}

fn services(c: &ConfigInfo) -> String {
    if c.services.is_empty() {
        "-".into()
    } else {
        c.services.join(",")
    }
}

/// One config as text: its fields, then its content (or why it is not shown).
fn inspect_text(c: &ConfigInfo) -> String {
    let mut out = String::new();
    for (label, text) in [
        ("name", c.name.clone()),
        ("stack", c.stack.clone()),
        ("version", c.version.to_string()),
        ("size", format!("{} bytes", c.size)),
        ("created", utc_time(c.created_at)),
        ("updated", utc_time(c.updated_at)),
        ("used by", services(c)),
    ] {
        out.push_str(&format!("{label:<9}{text}\n"));
    }
    match &c.content {
        Some(text) => {
            out.push_str("content:\n");
            out.push_str(text);
            if !text.ends_with('\n') {
                out.push('\n');
            }
        }
        None if c.sensitive => out.push_str("content: <sensitive: not shown>\n"),
        None => out.push_str("content: <not UTF-8 text: not shown>\n"),
    }
    out
}

/// The plan's tasks that a config change would restart, if any, as a table and a blank line.
pub fn render_restarts(restarts: &[TaskRestart]) -> String {
    let rows: Vec<Vec<String>> = restarts
        .iter()
        .map(|r| {
            vec![
                r.task.clone(),
                r.service.clone(),
                r.slot.to_string(),
                cell(r.node.as_deref()),
                r.configs.join(","),
            ]
        })
        .collect();
    if rows.is_empty() {
        return String::new();
    }
    let header = [
        "RESTARTS TASK",
        "SERVICE",
        "SLOT",
        "NODE",
        "CHANGED CONFIGS",
    ];
    table(&header, &rows) + "\n"
}

#[cfg(test)]
mod tests {
    use super::*;

    fn haproxy() -> ConfigInfo {
        ConfigInfo {
            name: "haproxy.cfg".into(),
            stack: "cloud".into(),
            version: 3,
            size: 7,
            sensitive: false,
            created_at: 0,
            updated_at: 0,
            services: vec!["haproxy".into()],
            content: Some("global\n".into()),
        }
    }

    #[test]
    fn inspect_shows_content_or_says_why_not() {
        let plain = haproxy();
        let text = inspect_text(&plain);
        assert!(text.contains("used by  haproxy\n"), "{text}");
        assert!(text.ends_with("content:\nglobal\n"), "{text}");
        let sensitive = ConfigInfo {
            sensitive: true,
            content: None,
            ..plain
        };
        let text = inspect_text(&sensitive);
        assert!(
            text.ends_with("content: <sensitive: not shown>\n"),
            "{text}"
        );
    }

    #[test]
    fn restarts_name_the_task_and_the_changed_configs() {
        assert_eq!(render_restarts(&[]), "");
        let text = render_restarts(&[TaskRestart {
            task: "db.1.x".into(),
            service: "db".into(),
            slot: 1,
            node: Some("n1".into()),
            configs: vec!["galera.cnf".into()],
        }]);
        assert!(text.contains("RESTARTS TASK"), "{text}");
        assert!(text.contains("galera.cnf"), "{text}");
    }
}
