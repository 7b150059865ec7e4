//! `volumes:` and `tmpfs:` of a service, in short (`src:dst[:opts]`) and long syntax.
//!
//! A source starting with `/` is a host bind; any other source is a named volume that must be
//! declared in the top-level `volumes:`. Relative binds and anonymous volumes are rejected.

use std::collections::BTreeMap;

use shoal_model::{Mount, MountKind};

use super::error::{Ctx, Result};
use super::fields::{self, Fields};
use super::yaml::{Node, Value};
use super::VolumeSpec;

const PROPAGATIONS: &[&str] = &[
    "rshared", "shared", "rslave", "slave", "rprivate", "private",
];

pub(crate) fn volumes(
    ctx: Ctx<'_>,
    node: &Node,
    path: &str,
    declared: &BTreeMap<String, VolumeSpec>,
) -> Result<Vec<Mount>> {
    let Value::Seq(items) = &node.value else {
        return Err(ctx.error(
            node.loc,
            path,
            format!("expected a list, got {}", node.value.describe()),
        ));
    };
    let mut out = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let p = format!("{path}[{i}]");
        let mount = match &item.value {
            Value::Str(s) => short(ctx, item, &p, s)?,
            Value::Map(_) => long(ctx, item, &p)?,
            other => {
                return Err(ctx.error(
                    item.loc,
                    &p,
                    format!(
                        "expected \"SOURCE:TARGET[:OPTIONS]\" or a mapping, got {}",
                        other.describe()
                    ),
                ))
            }
        };
        if mount.kind == MountKind::Volume && !declared.contains_key(&mount.source) {
            return Err(ctx.error(
                item.loc,
                &p,
                format!(
                    "named volume `{}` is not declared in the top-level `volumes`",
                    mount.source
                ),
            ));
        }
        if !mount.target.starts_with('/') {
            return Err(ctx.error(
                item.loc,
                &p,
                format!("target {:?} must be an absolute path", mount.target),
            ));
        }
        out.push(mount);
    }
    Ok(out)
}

fn kind_of_source(ctx: Ctx<'_>, node: &Node, path: &str, source: &str) -> Result<MountKind> {
    if source.starts_with('/') {
        Ok(MountKind::Bind)
    } else if source.starts_with('.') || source.starts_with('~') || source.contains('/') {
        Err(ctx.error(
            node.loc,
            path,
            format!("bind source {source:?} must be an absolute path"),
        ))
    } else {
        Ok(MountKind::Volume)
    }
}

fn short(ctx: Ctx<'_>, node: &Node, path: &str, s: &str) -> Result<Mount> {
    let parts: Vec<&str> = s.split(':').collect();
    let (source, target, opts) = match parts.as_slice() {
        [_] => {
            return Err(ctx.error(
                node.loc,
                path,
                format!("{s:?}: anonymous volumes are not supported; use SOURCE:TARGET"),
            ))
        }
        [src, dst] => (*src, *dst, ""),
        [src, dst, opts] => (*src, *dst, *opts),
        _ => {
            return Err(ctx.error(
                node.loc,
                path,
                format!("expected SOURCE:TARGET[:OPTIONS], got {s:?}"),
            ))
        }
    };
    if source.is_empty() || target.is_empty() {
        return Err(ctx.error(
            node.loc,
            path,
            format!("expected SOURCE:TARGET[:OPTIONS], got {s:?}"),
        ));
    }
    let kind = kind_of_source(ctx, node, path, source)?;
    let mut mount = Mount {
        kind,
        source: source.to_string(),
        target: target.to_string(),
        read_only: false,
        propagation: None,
        // Docker creates a missing host directory for the short syntax.
        create_host_path: kind == MountKind::Bind,
    };
    for opt in opts.split(',').filter(|o| !o.is_empty()) {
        match opt {
            "ro" => mount.read_only = true,
            "rw" => mount.read_only = false,
            "z" | "Z" | "nocopy" | "cached" | "delegated" | "consistent" => {}
            p if PROPAGATIONS.contains(&p) => {
                if kind != MountKind::Bind {
                    return Err(ctx.error(
                        node.loc,
                        path,
                        format!("propagation {p:?} applies to binds only"),
                    ));
                }
                mount.propagation = Some(p.to_string());
            }
            other => {
                return Err(ctx.error(node.loc, path, format!("unknown volume option {other:?}")))
            }
        }
    }
    Ok(mount)
}

fn long(ctx: Ctx<'_>, node: &Node, path: &str) -> Result<Mount> {
    let mut f = Fields::new(ctx, node, path)?;
    let source = match f.take("source") {
        Some(n) => Some(fields::string(ctx, n, &f.child("source"))?),
        None => None,
    };
    let Some(target_node) = f.take("target") else {
        return Err(ctx.error(node.loc, path, "missing required key `target`"));
    };
    let target = fields::string(ctx, target_node, &f.child("target"))?;
    let kind = match f.take("type") {
        Some(n) => {
            let p = f.child("type");
            match fields::string(ctx, n, &p)?.as_str() {
                "bind" => MountKind::Bind,
                "volume" => MountKind::Volume,
                "tmpfs" => MountKind::Tmpfs,
                other => {
                    return Err(ctx.error(
                        n.loc,
                        &p,
                        format!(
                            "unsupported mount type {other:?} (expected bind, volume or tmpfs)"
                        ),
                    ))
                }
            }
        }
        None => match &source {
            Some(s) => kind_of_source(ctx, node, path, s)?,
            None => return Err(ctx.error(node.loc, path, "missing `type` or `source`")),
        },
    };
    let source = match (kind, source) {
        (MountKind::Tmpfs, _) => String::new(),
        (MountKind::Bind, Some(s)) if s.starts_with('/') => s,
        (MountKind::Bind, Some(s)) => {
            return Err(ctx.error(
                node.loc,
                path,
                format!("bind source {s:?} must be an absolute path"),
            ))
        }
        (MountKind::Volume, Some(s)) if !s.is_empty() && !s.contains('/') => s,
        (MountKind::Volume, Some(s)) => {
            return Err(ctx.error(node.loc, path, format!("volume name {s:?} is not valid")))
        }
        (_, None) => return Err(ctx.error(node.loc, path, "missing required key `source`")),
    };
    let read_only = match f.take("read_only") {
        Some(n) => fields::boolean(ctx, n, &f.child("read_only"))?,
        None => false,
    };
    let mut propagation = None;
    let mut create_host_path = false;
    if let Some(n) = f.take("bind") {
        let p = f.child("bind");
        if kind != MountKind::Bind {
            return Err(ctx.error(n.loc, &p, "`bind` options apply to type bind only"));
        }
        let mut b = Fields::new(ctx, n, &p)?;
        if let Some(pn) = b.take("propagation") {
            let pp = b.child("propagation");
            let value = fields::string(ctx, pn, &pp)?;
            if !PROPAGATIONS.contains(&value.as_str()) {
                return Err(ctx.error(pn.loc, &pp, format!("unknown propagation {value:?}")));
            }
            propagation = Some(value);
        }
        if let Some(cn) = b.take("create_host_path") {
            create_host_path = fields::boolean(ctx, cn, &b.child("create_host_path"))?;
        }
        if let Some(sn) = b.take("selinux") {
            fields::string(ctx, sn, &b.child("selinux"))?;
        }
        b.finish()?;
    }
    if let Some(n) = f.take("volume") {
        let mut v = Fields::new(ctx, n, &f.child("volume"))?;
        if let Some(nn) = v.take("nocopy") {
            fields::boolean(ctx, nn, &v.child("nocopy"))?;
        }
        v.finish()?;
    }
    if let Some(n) = f.take("consistency") {
        fields::string(ctx, n, &f.child("consistency"))?;
    }
    f.finish()?;
    Ok(Mount {
        kind,
        source,
        target,
        read_only,
        propagation,
        create_host_path,
    })
}

/// `tmpfs: /run` or `tmpfs: [/run, /tmp]`; size options are not supported yet.
pub(crate) fn tmpfs(ctx: Ctx<'_>, node: &Node, path: &str) -> Result<Vec<Mount>> {
    let targets = match &node.value {
        Value::Str(s) => vec![(s.clone(), node)],
        Value::Seq(items) => items
            .iter()
            .enumerate()
            .map(|(i, item)| Ok((fields::string(ctx, item, &format!("{path}[{i}]"))?, item)))
            .collect::<Result<Vec<_>>>()?,
        other => {
            return Err(ctx.error(
                node.loc,
                path,
                format!("expected a path or a list, got {}", other.describe()),
            ))
        }
    };
    targets
        .into_iter()
        .map(|(t, n)| {
            if t.contains(':') {
                return Err(ctx.error(
                    n.loc,
                    path,
                    format!("{t:?}: tmpfs options are not supported"),
                ));
            }
            if !t.starts_with('/') {
                return Err(ctx.error(
                    n.loc,
                    path,
                    format!("tmpfs target {t:?} must be an absolute path"),
                ));
            }
            Ok(Mount {
                kind: MountKind::Tmpfs,
                source: String::new(),
                target: t,
                read_only: false,
                propagation: None,
                create_host_path: false,
            })
        })
        .collect()
}
