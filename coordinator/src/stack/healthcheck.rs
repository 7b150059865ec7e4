//! `healthcheck:` of a service.
//!
//! `test` takes Compose's forms: `["CMD", "prog", "arg"]` (exec), `["CMD-SHELL", "cmd"]` or a plain
//! string (run with `/bin/sh -c`), `["NONE"]` (no check). Shoal adds two probes run by the agent
//! from the host instead of `test`: `x-shoal-http: http://127.0.0.1:8080/` (GET, 2xx/3xx healthy)
//! and `x-shoal-tcp: 127.0.0.1:3306` (a TCP connect). Exactly one of the three may be given.
//! Defaults are Docker's: interval 30s, timeout 30s, retries 3, start_period 0s.

use shoal_model::container::HealthProbe;
use shoal_model::HealthCheck;

use super::duration::parse_duration_ms;
use super::error::{Ctx, Result};
use super::fields::{self, Fields};
use super::yaml::{Node, Value};

/// `None` when the check is disabled (`disable: true` or `test: ["NONE"]`).
pub(crate) fn parse(ctx: Ctx<'_>, node: &Node, path: &str) -> Result<Option<HealthCheck>> {
    let mut f = Fields::new(ctx, node, path)?;
    let mut probes: Vec<Option<HealthProbe>> = Vec::new();
    if let Some(n) = f.take("test") {
        probes.push(test(ctx, n, &f.child("test"))?);
    }
    if let Some(n) = f.take("x-shoal-http") {
        let p = f.child("x-shoal-http");
        let url = fields::string(ctx, n, &p)?;
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            return Err(ctx.error(
                n.loc,
                &p,
                format!("expected an http:// or https:// url, got {url:?}"),
            ));
        }
        probes.push(Some(HealthProbe::Http { url }));
    }
    if let Some(n) = f.take("x-shoal-tcp") {
        let p = f.child("x-shoal-tcp");
        let address = fields::string(ctx, n, &p)?;
        let port_ok = address
            .rsplit_once(':')
            .is_some_and(|(_, port)| port.parse::<u16>().is_ok_and(|p| p > 0));
        if !port_ok {
            return Err(ctx.error(n.loc, &p, format!("expected HOST:PORT, got {address:?}")));
        }
        probes.push(Some(HealthProbe::Tcp { address }));
    }
    let mut duration = |key: &str, default: u64| -> Result<u64> {
        match f.take(key) {
            Some(n) => {
                let p = f.child(key);
                let s = fields::string(ctx, n, &p)?;
                parse_duration_ms(&s).map_err(|e| ctx.error(n.loc, &p, e))
            }
            None => Ok(default),
        }
    };
    let interval_ms = duration("interval", 30_000)?;
    let timeout_ms = duration("timeout", 30_000)?;
    let start_period_ms = duration("start_period", 0)?;
    duration("start_interval", 0)?;
    let retries = match f.take("retries") {
        Some(n) => fields::unsigned32(ctx, n, &f.child("retries"))?,
        None => 3,
    };
    let disable = match f.take("disable") {
        Some(n) => fields::boolean(ctx, n, &f.child("disable"))?,
        None => false,
    };
    f.finish()?;
    if probes.len() > 1 {
        return Err(ctx.error(
            node.loc,
            path,
            "give only one of `test`, `x-shoal-http` and `x-shoal-tcp`",
        ));
    }
    if disable {
        return Ok(None);
    }
    let Some(probe) = probes.pop() else {
        return Err(ctx.error(
            node.loc,
            path,
            "missing `test` (or `x-shoal-http` / `x-shoal-tcp`)",
        ));
    };
    Ok(probe.map(|probe| HealthCheck {
        probe,
        interval_ms,
        timeout_ms,
        retries,
        start_period_ms,
    }))
}

fn test(ctx: Ctx<'_>, node: &Node, path: &str) -> Result<Option<HealthProbe>> {
    let shell = |cmd: String| HealthProbe::Exec {
        command: vec!["/bin/sh".into(), "-c".into(), cmd],
    };
    match &node.value {
        Value::Str(s) => Ok(Some(shell(s.clone()))),
        Value::Seq(_) => {
            let words = fields::string_list(ctx, node, path)?;
            match words.split_first() {
                Some((kind, rest)) if kind == "CMD" && !rest.is_empty() => {
                    Ok(Some(HealthProbe::Exec {
                        command: rest.to_vec(),
                    }))
                }
                Some((kind, rest)) if kind == "CMD-SHELL" && !rest.is_empty() => {
                    Ok(Some(shell(rest.join(" "))))
                }
                Some((kind, [])) if kind == "NONE" => Ok(None),
                _ => Err(ctx.error(
                    node.loc,
                    path,
                    "expected [\"CMD\", PROG, ARGS...], [\"CMD-SHELL\", COMMAND] or [\"NONE\"]",
                )),
            }
        }
        other => Err(ctx.error(
            node.loc,
            path,
            format!("expected a string or a list, got {}", other.describe()),
        )),
    }
}
