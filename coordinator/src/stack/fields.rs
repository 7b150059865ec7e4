//! Reading YAML nodes as typed values, and mappings key by key so unknown keys are caught.

use std::collections::BTreeMap;

use super::error::{Ctx, Result};
use super::shell_words;
use super::yaml::{join, Key, Node, Value};

/// The keys of one mapping, taken one by one; [`Fields::finish`] reports any left over.
///
/// Keys starting with `x-` are extensions and are never reported.
pub(crate) struct Fields<'n> {
    pub ctx: Ctx<'n>,
    pub path: String,
    entries: &'n [(Key, Node)],
    used: Vec<bool>,
}

impl<'n> Fields<'n> {
    pub fn new(ctx: Ctx<'n>, node: &'n Node, path: &str) -> Result<Self> {
        match &node.value {
            Value::Map(entries) => Ok(Self {
                ctx,
                path: path.to_string(),
                entries,
                used: vec![false; entries.len()],
            }),
            other => Err(ctx.error(
                node.loc,
                path,
                format!("expected a mapping, got {}", other.describe()),
            )),
        }
    }

    /// The value under `key`, if present (a `null` value counts as absent).
    pub fn take(&mut self, key: &str) -> Option<&'n Node> {
        let i = self.entries.iter().position(|(k, _)| k.name == key)?;
        self.used[i] = true;
        let node = &self.entries[i].1;
        (node.value != Value::Null).then_some(node)
    }

    /// Path of a child key.
    pub fn child(&self, key: &str) -> String {
        join(&self.path, key)
    }

    /// Errors on the first key neither taken nor an `x-` extension.
    pub fn finish(self) -> Result<()> {
        for ((key, _), used) in self.entries.iter().zip(&self.used) {
            if !used && !key.name.starts_with("x-") {
                return Err(self.ctx.error(
                    key.loc,
                    &join(&self.path, &key.name),
                    format!("unknown or unsupported key `{}`", key.name),
                ));
            }
        }
        Ok(())
    }
}

/// Every `(key, value)` of a mapping, `x-` keys skipped.
pub(crate) fn entries<'n>(
    ctx: Ctx<'_>,
    node: &'n Node,
    path: &str,
) -> Result<Vec<(&'n Key, &'n Node)>> {
    match &node.value {
        Value::Map(entries) => Ok(entries
            .iter()
            .filter(|(k, _)| !k.name.starts_with("x-"))
            .map(|(k, v)| (k, v))
            .collect()),
        other => Err(ctx.error(
            node.loc,
            path,
            format!("expected a mapping, got {}", other.describe()),
        )),
    }
}

pub(crate) fn string(ctx: Ctx<'_>, node: &Node, path: &str) -> Result<String> {
    match &node.value {
        Value::Str(s) => Ok(s.clone()),
        other => Err(ctx.error(
            node.loc,
            path,
            format!("expected a string, got {}", other.describe()),
        )),
    }
}

/// A scalar as text: strings, numbers and booleans (as in `environment` values and labels).
pub(crate) fn scalar_text(ctx: Ctx<'_>, node: &Node, path: &str) -> Result<String> {
    match &node.value {
        Value::Str(s) => Ok(s.clone()),
        Value::Int(i) => Ok(i.to_string()),
        Value::Float(f) => Ok(f.to_string()),
        Value::Bool(b) => Ok(b.to_string()),
        Value::Null => Ok(String::new()),
        other => Err(ctx.error(
            node.loc,
            path,
            format!("expected a scalar, got {}", other.describe()),
        )),
    }
}

pub(crate) fn boolean(ctx: Ctx<'_>, node: &Node, path: &str) -> Result<bool> {
    match &node.value {
        Value::Bool(b) => Ok(*b),
        other => Err(ctx.error(
            node.loc,
            path,
            format!("expected true or false, got {}", other.describe()),
        )),
    }
}

/// A non-negative integer that fits `u64`.
pub(crate) fn unsigned(ctx: Ctx<'_>, node: &Node, path: &str) -> Result<u64> {
    match &node.value {
        Value::Int(i) if *i >= 0 => Ok(*i as u64),
        other => Err(ctx.error(
            node.loc,
            path,
            format!("expected a non-negative integer, got {}", other.describe()),
        )),
    }
}

pub(crate) fn unsigned32(ctx: Ctx<'_>, node: &Node, path: &str) -> Result<u32> {
    let v = unsigned(ctx, node, path)?;
    u32::try_from(v).map_err(|_| ctx.error(node.loc, path, format!("{v} is too large")))
}

/// A list of strings.
pub(crate) fn string_list(ctx: Ctx<'_>, node: &Node, path: &str) -> Result<Vec<String>> {
    match &node.value {
        Value::Seq(items) => items
            .iter()
            .enumerate()
            .map(|(i, item)| string(ctx, item, &format!("{path}[{i}]")))
            .collect(),
        other => Err(ctx.error(
            node.loc,
            path,
            format!("expected a list, got {}", other.describe()),
        )),
    }
}

/// A command: a list of strings, or one string split like a shell would.
pub(crate) fn command(ctx: Ctx<'_>, node: &Node, path: &str) -> Result<Vec<String>> {
    match &node.value {
        Value::Str(s) => shell_words::split(s).map_err(|e| ctx.error(node.loc, path, e)),
        Value::Seq(_) => string_list(ctx, node, path),
        other => Err(ctx.error(
            node.loc,
            path,
            format!(
                "expected a string or a list of strings, got {}",
                other.describe()
            ),
        )),
    }
}

/// A string map in either form: `{K: V}` or `["K=V", "K"]` (a bare `K` maps to an empty value).
pub(crate) fn string_map(
    ctx: Ctx<'_>,
    node: &Node,
    path: &str,
) -> Result<BTreeMap<String, String>> {
    let mut out = BTreeMap::new();
    match &node.value {
        Value::Map(_) => {
            for (k, v) in entries(ctx, node, path)? {
                out.insert(k.name.clone(), scalar_text(ctx, v, &join(path, &k.name))?);
            }
        }
        Value::Seq(items) => {
            for (i, item) in items.iter().enumerate() {
                let p = format!("{path}[{i}]");
                let s = string(ctx, item, &p)?;
                let (k, v) = s.split_once('=').unwrap_or((s.as_str(), ""));
                if k.is_empty() {
                    return Err(ctx.error(item.loc, &p, format!("expected KEY=VALUE, got {s:?}")));
                }
                out.insert(k.to_string(), v.to_string());
            }
        }
        other => {
            return Err(ctx.error(
                node.loc,
                path,
                format!(
                    "expected a mapping or a list of KEY=VALUE, got {}",
                    other.describe()
                ),
            ))
        }
    }
    Ok(out)
}
