//! `ports:` of a host-network service: the host ports it binds, so the scheduler keeps users apart.
//!
//! Short form `"5000"` or `"5000:5000"` (published and target must agree on the host network), and
//! long form `{target, published, protocol, mode: host}`. Swarm's ingress mode is not supported.

use super::error::{Ctx, Result};
use super::fields::{self, Fields};
use super::yaml::{Node, Value};

pub(crate) fn parse(ctx: Ctx<'_>, node: &Node, path: &str) -> Result<Vec<u16>> {
    let Value::Seq(items) = &node.value else {
        return Err(ctx.error(
            node.loc,
            path,
            format!("expected a list, got {}", node.value.describe()),
        ));
    };
    let mut out: Vec<u16> = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let p = format!("{path}[{i}]");
        let port = match &item.value {
            Value::Map(_) => long(ctx, item, &p)?,
            Value::Int(_) => port_number(ctx, item, &p, fields::unsigned(ctx, item, &p)?)?,
            Value::Str(s) => short(ctx, item, &p, s)?,
            other => {
                return Err(ctx.error(
                    item.loc,
                    &p,
                    format!("expected a port, got {}", other.describe()),
                ))
            }
        };
        if out.contains(&port) {
            return Err(ctx.error(item.loc, &p, format!("port {port} is listed twice")));
        }
        out.push(port);
    }
    Ok(out)
}

fn port_number(ctx: Ctx<'_>, node: &Node, path: &str, n: u64) -> Result<u16> {
    match u16::try_from(n) {
        Ok(p) if p > 0 => Ok(p),
        _ => Err(ctx.error(node.loc, path, format!("port {n} is out of range 1-65535"))),
    }
}

fn short(ctx: Ctx<'_>, node: &Node, path: &str, s: &str) -> Result<u16> {
    let spec = s.split('/').next().unwrap_or(s);
    let parts: Vec<&str> = spec.split(':').collect();
    let nums: Vec<u64> = parts
        .iter()
        .map(|p| p.parse::<u64>())
        .collect::<std::result::Result<_, _>>()
        .map_err(|_| {
            ctx.error(
                node.loc,
                path,
                format!("expected PORT or PORT:PORT, got {s:?}"),
            )
        })?;
    match nums.as_slice() {
        [p] => port_number(ctx, node, path, *p),
        [published, target] if published == target => port_number(ctx, node, path, *published),
        [_, _] => Err(ctx.error(
            node.loc,
            path,
            format!(
                "{s:?}: host networking cannot remap ports; published and target must be equal"
            ),
        )),
        _ => Err(ctx.error(
            node.loc,
            path,
            format!("expected PORT or PORT:PORT, got {s:?}"),
        )),
    }
}

fn long(ctx: Ctx<'_>, node: &Node, path: &str) -> Result<u16> {
    let mut f = Fields::new(ctx, node, path)?;
    let target = match f.take("target") {
        Some(n) => Some(fields::unsigned(ctx, n, &f.child("target"))?),
        None => None,
    };
    let published = match f.take("published") {
        Some(n) => {
            let p = f.child("published");
            Some(match &n.value {
                Value::Str(s) => s.parse::<u64>().map_err(|_| {
                    ctx.error(n.loc, &p, format!("expected a port number, got {s:?}"))
                })?,
                _ => fields::unsigned(ctx, n, &p)?,
            })
        }
        None => None,
    };
    if let Some(n) = f.take("mode") {
        let p = f.child("mode");
        let mode = fields::string(ctx, n, &p)?;
        if mode != "host" {
            return Err(ctx.error(
                n.loc,
                &p,
                format!("unsupported port mode {mode:?} (only host)"),
            ));
        }
    }
    if let Some(n) = f.take("protocol") {
        let p = f.child("protocol");
        let proto = fields::string(ctx, n, &p)?;
        if proto != "tcp" && proto != "udp" {
            return Err(ctx.error(n.loc, &p, format!("unsupported protocol {proto:?}")));
        }
    }
    f.take("name");
    f.finish()?;
    let port = match (published, target) {
        (Some(p), Some(t)) if p != t => {
            return Err(ctx.error(
                node.loc,
                path,
                "host networking cannot remap ports; published and target must be equal",
            ))
        }
        (Some(p), _) | (None, Some(p)) => p,
        (None, None) => return Err(ctx.error(node.loc, path, "expected `target` or `published`")),
    };
    port_number(ctx, node, path, port)
}
