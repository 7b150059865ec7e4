//! `shoalctl config ls` and `config inspect`: a stack's configs as the cluster holds them (a
//! sensitive config's value is never sent by the coordinator), and the plan's list of tasks a
//! config change restarts.

use anyhow::bail;
use clap::Subcommand;
use serde_json::{json, Value};

use crate::client::Client;
use crate::output::{table, utc_time};
use crate::{print_list, query, str_at, Format};

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
) -> anyhow::Result<()> {
    match cmd {
        ConfigCmd::Ls => {
            let v = query(client, json!({"type": "configs"}), stale).await?;
            let header = [
                "NAME",
                "STACK",
                "VERSION",
                "SIZE",
                "SENSITIVE",
                "UPDATED",
                "USED BY",
            ];
            print_list(fmt, &v, &header, |c| {
                vec![
                    str_at(c, "/name"),
                    str_at(c, "/stack"),
                    str_at(c, "/version"),
                    str_at(c, "/size"),
                    str_at(c, "/sensitive"),
                    utc_time(&c["updated_at"]),
                    services(c),
                ]
            });
        }
        ConfigCmd::Inspect { name } => {
            let v = query(client, json!({"type": "config", "name": name}), stale).await?;
            if v.is_null() {
                bail!("config `{name}` not found");
            }
            match fmt {
                Format::Json => println!("{}", serde_json::to_string_pretty(&v)?),
                Format::Table => print!("{}", inspect_text(&v)),
            }
        }
    }
    Ok(())
}

fn services(c: &Value) -> String {
    let names: Vec<&str> = c["services"]
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    if names.is_empty() {
        "-".into()
    } else {
        names.join(",")
    }
}

/// One config as text: its fields, then its content (or why it is not shown).
fn inspect_text(c: &Value) -> String {
    let mut out = String::new();
    for (label, text) in [
        ("name", str_at(c, "/name")),
        ("stack", str_at(c, "/stack")),
        ("version", str_at(c, "/version")),
        ("size", format!("{} bytes", str_at(c, "/size"))),
        ("created", utc_time(&c["created_at"])),
        ("updated", utc_time(&c["updated_at"])),
        ("used by", services(c)),
    ] {
        out.push_str(&format!("{label:<9}{text}\n"));
    }
    match c["content"].as_str() {
        Some(text) => {
            out.push_str("content:\n");
            out.push_str(text);
            if !text.ends_with('\n') {
                out.push('\n');
            }
        }
        None if c["sensitive"] == json!(true) => {
            out.push_str("content: <sensitive: not shown>\n");
        }
        None => out.push_str("content: <not UTF-8 text: not shown>\n"),
    }
    out
}

/// The plan's tasks that a config change would restart, if any.
pub fn print_restarts(restarts: &Value) {
    let rows: Vec<Vec<String>> = restarts
        .as_array()
        .map(|a| {
            a.iter()
                .map(|r| {
                    let configs: Vec<&str> = r["configs"]
                        .as_array()
                        .map(|c| c.iter().filter_map(Value::as_str).collect())
                        .unwrap_or_default();
                    vec![
                        str_at(r, "/task"),
                        str_at(r, "/service"),
                        str_at(r, "/slot"),
                        str_at(r, "/node"),
                        configs.join(","),
                    ]
                })
                .collect()
        })
        .unwrap_or_default();
    if !rows.is_empty() {
        let header = [
            "RESTARTS TASK",
            "SERVICE",
            "SLOT",
            "NODE",
            "CHANGED CONFIGS",
        ];
        print!("{}", table(&header, &rows));
        println!();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inspect_shows_content_or_says_why_not() {
        let plain = json!({"name": "haproxy.cfg", "stack": "cloud", "version": 3, "size": 7,
            "sensitive": false, "created_at": 0, "updated_at": 0, "services": ["haproxy"],
            "content": "global\n"});
        let text = inspect_text(&plain);
        assert!(text.contains("used by  haproxy\n"), "{text}");
        assert!(text.ends_with("content:\nglobal\n"), "{text}");
        let mut sensitive = plain.clone();
        sensitive["sensitive"] = json!(true);
        sensitive.as_object_mut().map(|o| o.remove("content"));
        let text = inspect_text(&sensitive);
        assert!(
            text.ends_with("content: <sensitive: not shown>\n"),
            "{text}"
        );
    }
}
