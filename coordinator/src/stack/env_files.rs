//! Compose `env_file`: the service's references (read by the parser) and their contents (read by
//! shoalctl on the operator's machine, next to the stack file, and sent with it), merged into
//! the service's environment below `environment`, a later file above an earlier one.

use std::collections::HashMap;

use super::error::{Ctx, Result, StackError};
use super::fields::{self, Fields};
use super::yaml::{Node, Value};
use super::Stack;

/// One `env_file` entry of a service, with the place that names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnvFileRef {
    /// Index of the service in [`Stack::services`].
    pub service: usize,
    /// The path as written (relative to the stack file's directory unless absolute).
    pub path: String,
    /// `required: false` (long form): a missing file is skipped.
    pub required: bool,
    /// Where the entry is, for errors.
    pub(crate) place: StackError,
}

/// `env_file: a.env`, `[a.env, b.env]` or `[{path: a.env, required: false}]`.
pub(crate) fn references(
    ctx: Ctx<'_>,
    node: &Node,
    path: &str,
    service: usize,
) -> Result<Vec<EnvFileRef>> {
    let one = |n: &Node, p: &str| -> Result<EnvFileRef> {
        let (file, required) = match &n.value {
            Value::Str(s) => (s.clone(), true),
            Value::Map(_) => {
                let mut f = Fields::new(ctx, n, p)?;
                let Some(pn) = f.take("path") else {
                    return Err(ctx.error(n.loc, p, "missing required key `path`"));
                };
                let file = fields::string(ctx, pn, &f.child("path"))?;
                let required = match f.take("required") {
                    Some(r) => fields::boolean(ctx, r, &f.child("required"))?,
                    None => true,
                };
                f.finish()?;
                (file, required)
            }
            other => {
                return Err(ctx.error(
                    n.loc,
                    p,
                    format!("expected a file path, got {}", other.describe()),
                ))
            }
        };
        if file.trim().is_empty() {
            return Err(ctx.error(n.loc, p, "env_file path must not be empty"));
        }
        Ok(EnvFileRef {
            service,
            path: file,
            required,
            place: ctx.error(n.loc, p, ""),
        })
    };
    match &node.value {
        Value::Seq(items) => items
            .iter()
            .enumerate()
            .map(|(i, item)| one(item, &format!("{path}[{i}]")))
            .collect(),
        _ => Ok(vec![one(node, path)?]),
    }
}

/// Merges the contents shoalctl sent (by path as written) into the services' environments.
pub fn apply(stack: &mut Stack, contents: &HashMap<String, String>) -> Result<()> {
    let refs = std::mem::take(&mut stack.env_files);
    if let Some(r) = refs
        .iter()
        .find(|r| r.required && !contents.contains_key(&r.path))
    {
        return Err(StackError {
            message: format!(
                "env file {} was not sent: shoalctl reads it next to the stack file",
                r.path
            ),
            ..r.place.clone()
        });
    }
    // Later files win over earlier ones and `environment` over all: insert only absent keys,
    // walking the files backwards.
    for r in refs.iter().rev() {
        let fail = |message: String| StackError {
            message,
            ..r.place.clone()
        };
        let Some(text) = contents.get(&r.path) else {
            continue; // optional and absent (required ones were checked above)
        };
        let vars =
            parse_env_file(text).map_err(|(line, e)| fail(format!("{}:{line}: {e}", r.path)))?;
        let Some((_, spec)) = stack.services.get_mut(r.service) else {
            continue;
        };
        for (k, v) in vars.into_iter().rev() {
            spec.container.env.entry(k).or_insert(v);
        }
    }
    stack.env_files = refs;
    Ok(())
}

/// `KEY=VALUE` lines as Compose reads them: blank lines and `#` comments skipped, an optional
/// `export `, values in double quotes (with `\n`, `\"`, `\\` escapes) or single quotes (as is),
/// or bare (trimmed, a ` #` starting a comment). Errors carry the 1-based line.
pub(crate) fn parse_env_file(
    text: &str,
) -> std::result::Result<Vec<(String, String)>, (usize, String)> {
    let mut out: Vec<(String, String)> = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let line = line.strip_prefix("export ").unwrap_or(line);
        let Some((key, value)) = line.split_once('=') else {
            return Err((i + 1, format!("expected KEY=VALUE, got {line:?}")));
        };
        let key = key.trim();
        if key.is_empty() || key.chars().any(char::is_whitespace) {
            return Err((i + 1, format!("bad variable name {key:?}")));
        }
        let value = value.trim();
        let value = if let Some(inner) = value.strip_prefix('"') {
            let Some(inner) = inner.strip_suffix('"') else {
                return Err((i + 1, "unterminated double quote".to_owned()));
            };
            unescape(inner)
        } else if let Some(inner) = value.strip_prefix('\'') {
            let Some(inner) = inner.strip_suffix('\'') else {
                return Err((i + 1, "unterminated single quote".to_owned()));
            };
            inner.to_owned()
        } else {
            value.split(" #").next().unwrap_or("").trim_end().to_owned()
        };
        out.retain(|(k, _)| k != key);
        out.push((key.to_owned(), value));
    }
    Ok(out)
}

fn unescape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('n') => out.push('\n'),
            Some('t') => out.push('\t'),
            Some(other) => out.push(other),
            None => out.push('\\'),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stack::parse_stack;

    #[test]
    fn env_file_lines() {
        let vars = parse_env_file(
            "# comment\n\nA=1\nexport B = two words \nC=\"x\\ny\"\nD='$literal'\nE=v # note\nA=again\n",
        )
        .unwrap();
        assert_eq!(
            vars,
            vec![
                ("B".to_owned(), "two words".to_owned()),
                ("C".to_owned(), "x\ny".to_owned()),
                ("D".to_owned(), "$literal".to_owned()),
                ("E".to_owned(), "v".to_owned()),
                ("A".to_owned(), "again".to_owned()),
            ]
        );
        assert_eq!(parse_env_file("A=1\nNOEQ\n").unwrap_err().0, 2);
        assert!(parse_env_file("A=\"open\n").is_err());
    }

    #[test]
    fn files_merge_below_environment_later_files_winning() {
        let src = "services:\n  a:\n    image: x\n    environment: {A: stack}\n    env_file:\n      - base.env\n      - path: local.env\n        required: false\n      - over.env\n";
        let mut stack = parse_stack("stack.yaml", src).unwrap();
        let files: HashMap<String, String> = [
            ("base.env", "A=base\nB=base\nC=base\n"),
            ("over.env", "B=over\n"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        apply(&mut stack, &files).unwrap();
        let env = &stack.services[0].1.container.env;
        assert_eq!(env["A"], "stack");
        assert_eq!(env["B"], "over");
        assert_eq!(env["C"], "base");

        let mut stack = parse_stack("stack.yaml", src).unwrap();
        let err = apply(&mut stack, &HashMap::new()).unwrap_err();
        assert_eq!(
            err.to_string(),
            "stack.yaml:6:9: services.a.env_file[0]: env file base.env was not sent: shoalctl \
             reads it next to the stack file"
        );
        let mut stack = parse_stack("stack.yaml", src).unwrap();
        let mut bad = files.clone();
        bad.insert("over.env".into(), "ok=1\nnot a line\n".into());
        let err = apply(&mut stack, &bad).unwrap_err();
        assert_eq!(
            err.to_string(),
            "stack.yaml:9:9: services.a.env_file[2]: over.env:2: expected KEY=VALUE, got \"not a line\""
        );
        let err = parse_stack(
            "stack.yaml",
            "services:\n  a:\n    image: x\n    env_file: 3\n",
        )
        .unwrap_err();
        assert_eq!(err.path, "services.a.env_file");
    }
}
