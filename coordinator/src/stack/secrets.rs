//! The top-level `secrets:` (where each value comes from) and a service's `secrets:` (which
//! secrets it mounts, where and how). Configs (`configs.rs`) are read by the same code: a
//! [`Kind`] says which of the two a reference list is.
//!
//! Values never reach this parser: `shoalctl` reads each `file:` or `environment:` source on the
//! operator's machine and sends the values beside the YAML text (a config's `content:` is in the
//! text itself). A `mode` is written in octal digits, as in Compose: `0400`, `0o400` or `"0440"`.

use std::collections::BTreeMap;

use shoal_model::config::{config_ref, DEFAULT_CONFIG_MODE};
use shoal_model::secret::DEFAULT_SECRET_MODE;
use shoal_model::SecretRef;

use super::error::{Ctx, Result};
use super::fields::{self, Fields};
use super::yaml::{join, Node, Value};

/// Where a declared secret's or config's value comes from (files and variables are resolved by
/// `shoalctl`, not here).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ValueSource {
    /// A file, relative to the stack file's directory unless absolute.
    File(String),
    /// An environment variable of `shoalctl`'s process.
    Environment(String),
    /// The value itself, written in the stack file (configs only).
    Content(String),
}

/// Where a declared secret's value comes from: a file or an environment variable.
pub type SecretSource = ValueSource;

/// Secrets or configs: what differs between their declarations and references.
pub(crate) struct Kind {
    /// `secret` or `config`, for messages.
    pub noun: &'static str,
    /// The top-level key that declares them.
    pub section: &'static str,
    /// A reference with the kind's defaults.
    pub new_ref: fn(String) -> SecretRef,
    pub default_mode: u32,
    /// Whether `content:` is a source.
    pub content: bool,
    /// Where a bare file name as `target` goes.
    pub dir: &'static str,
}

pub(crate) const SECRETS: Kind = Kind {
    noun: "secret",
    section: "secrets",
    new_ref: SecretRef::new,
    default_mode: DEFAULT_SECRET_MODE,
    content: false,
    dir: "/run/secrets",
};

pub(crate) const CONFIGS: Kind = Kind {
    noun: "config",
    section: "configs",
    new_ref: config_ref,
    default_mode: DEFAULT_CONFIG_MODE,
    content: true,
    dir: "",
};

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
        let source = value_source(ctx, v, &mut f, &SECRETS)?;
        f.finish()?;
        out.insert(key.name.clone(), source);
    }
    Ok(out)
}

/// The one source of a declaration: `file`, `environment` or (configs) `content`.
pub(crate) fn value_source(
    ctx: Ctx<'_>,
    node: &Node,
    f: &mut Fields<'_>,
    kind: &Kind,
) -> Result<ValueSource> {
    let mut given: Vec<(&str, &Node)> = Vec::new();
    for key in ["file", "environment", "content"] {
        if key == "content" && !kind.content {
            continue;
        }
        if let Some(n) = f.take(key) {
            given.push((key, n));
        }
    }
    let expected = if kind.content {
        "`file`, `environment` or `content`"
    } else {
        "`file` or `environment`"
    };
    let (key, n) = match given.as_slice() {
        [one] => *one,
        [] => return Err(ctx.error(node.loc, &f.path, format!("expected {expected}"))),
        [.., (_, last)] => {
            return Err(ctx.error(
                last.loc,
                &f.path,
                format!("give one of {expected}, not two"),
            ))
        }
    };
    let p = f.child(key);
    let s = fields::string(ctx, n, &p)?;
    match key {
        "content" => Ok(ValueSource::Content(s)),
        _ if s.is_empty() => {
            let what = if key == "file" {
                "file must not be empty"
            } else {
                "environment must name a variable"
            };
            Err(ctx.error(n.loc, &p, what))
        }
        "file" => Ok(ValueSource::File(s)),
        _ => Ok(ValueSource::Environment(s)),
    }
}

/// Reads a service's `secrets:` or `configs:` list (short form `- NAME`, or long form with
/// `source`, `target`, `uid`, `gid`, `mode`). `declared` holds the names the stack declares.
pub(crate) fn references(
    ctx: Ctx<'_>,
    node: &Node,
    path: &str,
    kind: &Kind,
    declared: &dyn Fn(&str) -> bool,
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
        let mut r = match &item.value {
            Value::Str(s) => (kind.new_ref)(s.clone()),
            Value::Map(_) => long(ctx, item, &p, kind)?,
            other => {
                return Err(ctx.error(
                    item.loc,
                    &p,
                    format!(
                        "expected a {} name or a mapping, got {}",
                        kind.noun,
                        other.describe()
                    ),
                ))
            }
        };
        if !declared(&r.source) {
            return Err(ctx.error(
                item.loc,
                &p,
                format!(
                    "{} `{}` is not declared in the top-level `{}`",
                    kind.noun, r.source, kind.section
                ),
            ));
        }
        check_target(&r.target, kind).map_err(|e| ctx.error(item.loc, &p, e))?;
        if kind.dir.is_empty() && !r.target.starts_with('/') {
            r.target = format!("/{}", r.target);
        }
        if out.iter().any(|o| o.container_path() == r.container_path()) {
            return Err(ctx.error(
                item.loc,
                &p,
                format!("two {} mount at {}", kind.section, r.container_path()),
            ));
        }
        out.push(r);
    }
    Ok(out)
}

fn long(ctx: Ctx<'_>, node: &Node, path: &str, kind: &Kind) -> Result<SecretRef> {
    let mut f = Fields::new(ctx, node, path)?;
    let Some(n) = f.take("source") else {
        return Err(ctx.error(node.loc, path, "missing required key `source`"));
    };
    let mut r = (kind.new_ref)(fields::string(ctx, n, &f.child("source"))?);
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
        None => kind.default_mode,
    };
    f.finish()?;
    Ok(r)
}

/// A relative target is one file name (under `/run/secrets` for secrets, `/` for configs); an
/// absolute one has no `..`.
fn check_target(target: &str, kind: &Kind) -> std::result::Result<(), String> {
    let bad = if let Some(abs) = target.strip_prefix('/') {
        abs.is_empty()
            || abs
                .split('/')
                .any(|c| c.is_empty() || c == "." || c == "..")
    } else {
        target.is_empty() || target.contains('/') || target == "." || target == ".."
    };
    if bad {
        let dir = if kind.dir.is_empty() { "/" } else { kind.dir };
        Err(format!(
            "target {target:?} must be a file name (under {dir}) or an absolute path"
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
