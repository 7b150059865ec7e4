//! The top-level `secrets:` (where each value comes from) and a service's `secrets:` (which
//! secrets it mounts, where and how).
//!
//! Values never reach this parser: `shoalctl` reads each `file:` or `environment:` source on the
//! operator's machine and sends the values beside the YAML text. A `mode` is written in octal
//! digits, as in Compose: `0400`, `0o400` or `"0440"`.

use std::collections::BTreeMap;

use shoal_model::secret::DEFAULT_SECRET_MODE;
use shoal_model::SecretRef;

use super::error::{Ctx, Result};
use super::fields::{self, Fields};
use super::yaml::{join, Node, Value};

/// Where a declared secret's value comes from (resolved by `shoalctl`, not here).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretSource {
    /// A file, relative to the stack file's directory unless absolute.
    File(String),
    /// An environment variable of `shoalctl`'s process.
    Environment(String),
}

/// Reads the top-level `secrets:` mapping.
pub(crate) fn declarations(
    ctx: Ctx<'_>,
    node: &Node,
    path: &str,
) -> Result<BTreeMap<String, SecretSource>> {
    let mut out = BTreeMap::new();
    for (key, v) in fields::entries(ctx, node, path)? {
        let p = join(path, &key.name);
        super::check_name(ctx, key.loc, &p, &key.name)?;
        let mut f = Fields::new(ctx, v, &p)?;
        let file = f.take("file");
        let env = f.take("environment");
        let source = match (file, env) {
            (Some(n), None) => {
                let s = fields::string(ctx, n, &f.child("file"))?;
                if s.is_empty() {
                    return Err(ctx.error(n.loc, &f.child("file"), "file must not be empty"));
                }
                SecretSource::File(s)
            }
            (None, Some(n)) => {
                let s = fields::string(ctx, n, &f.child("environment"))?;
                if s.is_empty() {
                    return Err(ctx.error(
                        n.loc,
                        &f.child("environment"),
                        "environment must name a variable",
                    ));
                }
                SecretSource::Environment(s)
            }
            (Some(_), Some(n)) => {
                return Err(ctx.error(n.loc, &p, "give either `file` or `environment`, not both"))
            }
            (None, None) => {
                return Err(ctx.error(v.loc, &p, "expected `file` or `environment`"));
            }
        };
        f.finish()?;
        out.insert(key.name.clone(), source);
    }
    Ok(out)
}

/// Reads a service's `secrets:` list (short form `- NAME`, or long form with `source`,
/// `target`, `uid`, `gid`, `mode`).
pub(crate) fn references(
    ctx: Ctx<'_>,
    node: &Node,
    path: &str,
    declared: &BTreeMap<String, SecretSource>,
) -> Result<Vec<SecretRef>> {
    let Value::Seq(items) = &node.value else {
        return Err(ctx.error(
            node.loc,
            path,
            format!("expected a list, got {}", node.value.describe()),
        ));
    };
    let mut out: Vec<SecretRef> = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let p = format!("{path}[{i}]");
        let r = match &item.value {
            Value::Str(s) => SecretRef::new(s.clone()),
            Value::Map(_) => long(ctx, item, &p)?,
            other => {
                return Err(ctx.error(
                    item.loc,
                    &p,
                    format!(
                        "expected a secret name or a mapping, got {}",
                        other.describe()
                    ),
                ))
            }
        };
        if !declared.contains_key(&r.source) {
            return Err(ctx.error(
                item.loc,
                &p,
                format!(
                    "secret `{}` is not declared in the top-level `secrets`",
                    r.source
                ),
            ));
        }
        check_target(&r.target).map_err(|e| ctx.error(item.loc, &p, e))?;
        if out.iter().any(|o| o.container_path() == r.container_path()) {
            return Err(ctx.error(
                item.loc,
                &p,
                format!("two secrets mount at {}", r.container_path()),
            ));
        }
        out.push(r);
    }
    Ok(out)
}

fn long(ctx: Ctx<'_>, node: &Node, path: &str) -> Result<SecretRef> {
    let mut f = Fields::new(ctx, node, path)?;
    let Some(n) = f.take("source") else {
        return Err(ctx.error(node.loc, path, "missing required key `source`"));
    };
    let mut r = SecretRef::new(fields::string(ctx, n, &f.child("source"))?);
    if let Some(n) = f.take("target") {
        r.target = fields::string(ctx, n, &f.child("target"))?;
    }
    if let Some(n) = f.take("uid") {
        r.uid = id(ctx, n, &f.child("uid"))?;
    }
    if let Some(n) = f.take("gid") {
        r.gid = id(ctx, n, &f.child("gid"))?;
    }
    r.mode = match f.take("mode") {
        Some(n) => mode(ctx, n, &f.child("mode"))?,
        None => DEFAULT_SECRET_MODE,
    };
    f.finish()?;
    Ok(r)
}

/// A relative target is one file name under `/run/secrets`; an absolute one has no `..`.
fn check_target(target: &str) -> std::result::Result<(), String> {
    let bad = if let Some(abs) = target.strip_prefix('/') {
        abs.is_empty()
            || abs
                .split('/')
                .any(|c| c.is_empty() || c == "." || c == "..")
    } else {
        target.is_empty() || target.contains('/') || target == "." || target == ".."
    };
    if bad {
        Err(format!(
            "target {target:?} must be a file name (under /run/secrets) or an absolute path"
        ))
    } else {
        Ok(())
    }
}

/// A numeric uid or gid, as an integer or a string of digits (Compose writes strings).
fn id(ctx: Ctx<'_>, n: &Node, path: &str) -> Result<u32> {
    let text = fields::scalar_text(ctx, n, path)?;
    text.parse::<u32>()
        .map_err(|_| ctx.error(n.loc, path, format!("expected a numeric id, got {text:?}")))
}

/// A file mode in octal digits: `0400`, `440`, `"0440"`, `"0o440"`; at most `0777`.
fn mode(ctx: Ctx<'_>, n: &Node, path: &str) -> Result<u32> {
    let text = match &n.value {
        // YAML 1.2 reads `0400` as the decimal 400 and `0o400` as 256: go by the notation.
        Value::Int(i) if *i >= 0 => match n.raw.as_deref() {
            Some(raw) => raw.strip_prefix("0o").unwrap_or(raw).to_string(),
            None => i.to_string(),
        },
        Value::Str(s) => s.strip_prefix("0o").unwrap_or(s).to_string(),
        other => {
            return Err(ctx.error(
                n.loc,
                path,
                format!(
                    "expected an octal mode such as 0400, got {}",
                    other.describe()
                ),
            ))
        }
    };
    match u32::from_str_radix(&text, 8) {
        Ok(m) if m <= 0o777 && !text.is_empty() => Ok(m),
        _ => Err(ctx.error(
            n.loc,
            path,
            format!("expected an octal mode such as 0400 (at most 0777), got {text:?}"),
        )),
    }
}
