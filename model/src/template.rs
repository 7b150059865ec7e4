//! Config templates (`x-shoal-template: true`): Jinja2 syntax rendered by minijinja, per task, from
//! the values in [`TemplateVars`]. Pure: no I/O, no clock; the coordinator checks a template with
//! [`check`] when a stack is planned, the agent renders it with [`render`] for each task.
//!
//! Undefined is strict: an unknown variable or attribute is an error, never an empty string.

use std::collections::BTreeMap;

use minijinja::value::Value;
use minijinja::{Environment, ErrorKind, UndefinedBehavior};
use serde::{Deserialize, Serialize};

/// The top-level names a template may use.
pub const VARIABLES: [&str; 5] = ["node", "task", "service", "stack", "members"];

/// Why a template could not be checked or rendered. Names the line; never carries the value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}{message}", line.map(|l| format!("line {l}: ")).unwrap_or_default())]
pub struct TemplateError {
    /// 1-based line of the template the error points at, when known.
    pub line: Option<usize>,
    pub message: String,
}

/// The node a task runs on, as a template sees it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeVars {
    pub name: String,
    /// The node's advertised address (`host:port` of its agent).
    pub address: String,
    /// The host part of `address`.
    pub host: String,
    pub labels: BTreeMap<String, String>,
    /// `worker` or `coordinator`.
    pub role: String,
}

/// One live task of a service: `members("svc")` returns these, sorted by slot.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    /// Name of the node the task is placed on.
    pub node: String,
    /// That node's advertised address (`host:port`).
    pub address: String,
    /// The host part of `address`.
    pub host: String,
    pub slot: u32,
    /// The task is running (not starting, not restarting).
    pub healthy: bool,
}

/// The live tasks of one service, and its stack (`members()` sees its own stack's services only).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceMembers {
    /// The service's stack (empty for a service created outside a stack).
    pub stack: String,
    pub members: Vec<Member>,
}

/// What the coordinator sends an agent to render its tasks' templates: by service name.
pub type MembersByService = BTreeMap<String, ServiceMembers>;

/// The members `members()` sees from a task of `service`: those of its stack's services.
/// `None` when the service is not in `all`.
pub fn stack_members(
    all: &MembersByService,
    service: &str,
) -> Option<(String, BTreeMap<String, Vec<Member>>)> {
    let stack = &all.get(service)?.stack;
    let members = all
        .iter()
        .filter(|(_, s)| &s.stack == stack)
        .map(|(name, s)| (name.clone(), s.members.clone()))
        .collect();
    Some((stack.clone(), members))
}

/// Everything a template of one task may read.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TemplateVars {
    pub node: NodeVars,
    pub task_slot: u32,
    pub task_id: String,
    pub service_name: String,
    pub service_version: u64,
    pub stack: String,
    /// Live members of the stack's services, by service name.
    pub members: BTreeMap<String, Vec<Member>>,
}

/// The host part of a `host:port` address (`[v6]:port` gives `v6`); the whole text otherwise.
pub fn host_of(address: &str) -> String {
    let host = match address.rsplit_once(':') {
        Some((h, port)) if !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit()) => h,
        _ => address,
    };
    host.trim_start_matches('[')
        .trim_end_matches(']')
        .to_string()
}

fn environment() -> Environment<'static> {
    let mut env = Environment::new();
    env.set_undefined_behavior(UndefinedBehavior::Strict);
    env.set_keep_trailing_newline(true);
    env
}

fn error(e: &minijinja::Error) -> TemplateError {
    let mut message = e.kind().to_string();
    if let Some(detail) = e.detail() {
        message = format!("{message}: {detail}");
    }
    TemplateError {
        line: e.line(),
        message,
    }
}

/// Parses `text` and checks that it reads no top-level variable but [`VARIABLES`]: what can be
/// known before any task exists (a service named in `members(...)` is checked when rendering).
pub fn check(text: &str) -> Result<(), TemplateError> {
    let env = environment();
    let tmpl = env.template_from_str(text).map_err(|e| error(&e))?;
    let builtins: Vec<&str> = env.globals().map(|(name, _)| name).collect();
    let mut unknown: Vec<String> = tmpl
        .undeclared_variables(false)
        .into_iter()
        .filter(|v| !VARIABLES.contains(&v.as_str()) && !builtins.contains(&v.as_str()))
        .collect();
    unknown.sort();
    match unknown.first() {
        None => Ok(()),
        Some(first) => Err(TemplateError {
            line: line_of(text, first),
            message: format!(
                "unknown variable `{first}` (known: {})",
                VARIABLES.join(", ")
            ),
        }),
    }
}

/// The first line where `name` appears inside `{{ }}` or `{% %}`, for error messages.
fn line_of(text: &str, name: &str) -> Option<usize> {
    text.lines()
        .position(|l| {
            (l.contains("{{") || l.contains("{%"))
                && l.match_indices(name).any(|(i, _)| {
                    let before = l[..i].chars().next_back();
                    let after = l[i + name.len()..].chars().next();
                    let ident =
                        |c: Option<char>| c.is_some_and(|c| c.is_alphanumeric() || c == '_');
                    !ident(before) && !ident(after)
                })
        })
        .map(|i| i + 1)
}

/// Renders `text` for the task `vars` describes. All or nothing: an error gives no output.
pub fn render(text: &str, vars: &TemplateVars) -> Result<String, TemplateError> {
    let mut env = environment();
    let members = vars.members.clone();
    env.add_function(
        "members",
        move |service: &str| -> Result<Value, minijinja::Error> {
            match members.get(service) {
                Some(m) => Ok(Value::from_serialize(m)),
                None => Err(minijinja::Error::new(
                    ErrorKind::InvalidOperation,
                    format!("members(\"{service}\"): no service `{service}` in this stack"),
                )),
            }
        },
    );
    let tmpl = env.template_from_str(text).map_err(|e| error(&e))?;
    let ctx = minijinja::context! {
        node => Value::from_serialize(&vars.node),
        task => minijinja::context! { slot => vars.task_slot, id => vars.task_id.clone() },
        service => minijinja::context! {
            name => vars.service_name.clone(),
            version => vars.service_version,
        },
        stack => vars.stack.clone(),
    };
    tmpl.render(ctx).map_err(|e| error(&e))
}

#[cfg(test)]
#[path = "template_tests.rs"]
mod tests;
