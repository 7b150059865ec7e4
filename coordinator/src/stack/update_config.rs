//! `deploy.update_config` and `deploy.rollback_config` (Swarm's keys, Swarm's defaults), and
//! Shoal's `deploy.x-shoal-quorum`, `deploy.x-shoal-run` (a job that runs once), and a
//! service's `x-shoal-pre-stop` hook and `x-shoal-first-start` (a quorum cluster's bootstrap).

use shoal_model::{
    FailureAction, FirstStart, PreStop, ServiceMode, ServiceSpec, UpdateConfig, UpdateOrder,
};

use super::duration::parse_duration_ms;
use super::error::{Ctx, Result};
use super::fields::{self, Fields};
use super::yaml::{Node, Value};

/// `deploy.x-shoal-quorum: true`: the service is a quorum cluster (see
/// [`shoal_model::ServiceSpec::quorum`]).
pub(crate) const QUORUM_KEY: &str = "x-shoal-quorum";

/// Reads one `update_config` (`rollback: false`) or `rollback_config` (`rollback: true`);
/// keys left out keep Swarm's defaults. A rollback cannot itself roll back.
pub(crate) fn parse(ctx: Ctx<'_>, node: &Node, path: &str, rollback: bool) -> Result<UpdateConfig> {
    let mut f = Fields::new(ctx, node, path)?;
    let mut cfg = UpdateConfig::default();
    if let Some(n) = f.take("parallelism") {
        cfg.parallelism = fields::unsigned32(ctx, n, &f.child("parallelism"))?;
    }
    for (key, slot) in [
        ("delay", &mut cfg.delay_ms),
        ("monitor", &mut cfg.monitor_ms),
    ] {
        if let Some(n) = f.take(key) {
            let p = f.child(key);
            let text = fields::scalar_text(ctx, n, &p)?;
            *slot = parse_duration_ms(&text).map_err(|e| ctx.error(n.loc, &p, e))?;
        }
    }
    if let Some(n) = f.take("failure_action") {
        let p = f.child("failure_action");
        cfg.failure_action = match fields::string(ctx, n, &p)?.as_str() {
            "pause" => FailureAction::Pause,
            "continue" => FailureAction::Continue,
            "rollback" if !rollback => FailureAction::Rollback,
            "rollback" => {
                return Err(ctx.error(
                    n.loc,
                    &p,
                    "a rollback cannot roll back (expected pause or continue)",
                ))
            }
            other => {
                let expected = if rollback {
                    "pause or continue"
                } else {
                    "pause, continue or rollback"
                };
                return Err(ctx.error(
                    n.loc,
                    &p,
                    format!("unknown failure_action {other:?} (expected {expected})"),
                ));
            }
        };
    }
    if let Some(n) = f.take("max_failure_ratio") {
        let p = f.child("max_failure_ratio");
        let ratio = match &n.value {
            Value::Int(i) => *i as f64,
            Value::Float(x) => *x,
            other => {
                return Err(ctx.error(
                    n.loc,
                    &p,
                    format!("expected a number from 0 to 1, got {}", other.describe()),
                ))
            }
        };
        if !(0.0..=1.0).contains(&ratio) {
            return Err(ctx.error(
                n.loc,
                &p,
                format!("expected a number from 0 to 1, got {ratio}"),
            ));
        }
        // In [0, 1]: the product fits a u32.
        cfg.max_failure_ratio_ppm = (ratio * 1e6).round() as u32;
    }
    if let Some(n) = f.take("order") {
        let p = f.child("order");
        cfg.order = match fields::string(ctx, n, &p)?.as_str() {
            "stop-first" => UpdateOrder::StopFirst,
            "start-first" => UpdateOrder::StartFirst,
            other => {
                return Err(ctx.error(
                    n.loc,
                    &p,
                    format!("unknown order {other:?} (expected stop-first or start-first)"),
                ))
            }
        };
    }
    if cfg.monitor_ms == 0 {
        // As in Swarm (and Docker's reference): a monitor of 0 means the default 5 s.
        cfg.monitor_ms = UpdateConfig::default().monitor_ms;
    }
    f.finish()?;
    Ok(cfg)
}

/// `x-shoal-quorum`: `true` or `false`.
pub(crate) fn quorum(ctx: Ctx<'_>, node: &Node, path: &str) -> Result<bool> {
    fields::boolean(ctx, node, path)
}

/// `deploy.x-shoal-run`: `once` or `on-change` (jobs only).
pub(crate) const RUN_KEY: &str = "x-shoal-run";

/// Whether a job runs once (`once`) or again on each change of its own spec (`on-change`).
pub(crate) fn run_once(ctx: Ctx<'_>, node: &Node, path: &str, is_job: bool) -> Result<bool> {
    let text = fields::string(ctx, node, path)?;
    let once = match text.as_str() {
        "once" => true,
        "on-change" => false,
        other => {
            return Err(ctx.error(
                node.loc,
                path,
                format!("expected `once` or `on-change`, got {other:?}"),
            ))
        }
    };
    if !is_job {
        return Err(ctx.error(
            node.loc,
            path,
            "only jobs (mode replicated-job or global-job) take x-shoal-run",
        ));
    }
    Ok(once)
}

/// A service's `x-shoal-pre-stop`.
pub(crate) const PRE_STOP_KEY: &str = "x-shoal-pre-stop";

/// How long a pre-stop hook may run when `timeout` is left out.
pub(crate) const DEFAULT_PRE_STOP_TIMEOUT_MS: u64 = 30_000;

/// `x-shoal-pre-stop: { command: CMD, timeout: 60s }` (`command` a list, or a string split
/// like a shell would; `timeout` 30 s by default).
pub(crate) fn pre_stop(ctx: Ctx<'_>, node: &Node, path: &str) -> Result<PreStop> {
    let mut f = Fields::new(ctx, node, path)?;
    let Some(n) = f.take("command") else {
        return Err(ctx.error(node.loc, path, "expected `command: CMD`"));
    };
    let p = f.child("command");
    let command = fields::command(ctx, n, &p)?;
    if command.is_empty() {
        return Err(ctx.error(n.loc, &p, "the command is empty"));
    }
    let mut timeout_ms = DEFAULT_PRE_STOP_TIMEOUT_MS;
    if let Some(n) = f.take("timeout") {
        let p = f.child("timeout");
        let text = fields::scalar_text(ctx, n, &p)?;
        timeout_ms = parse_duration_ms(&text).map_err(|e| ctx.error(n.loc, &p, e))?;
    }
    f.finish()?;
    Ok(PreStop {
        command,
        timeout_ms,
    })
}

/// A service's `x-shoal-first-start`.
pub(crate) const FIRST_START_KEY: &str = "x-shoal-first-start";

/// `x-shoal-first-start: { command: CMD, environment: MAP }` for a replicated quorum service.
pub(crate) fn first_start(
    ctx: Ctx<'_>,
    node: &Node,
    path: &str,
    spec: &ServiceSpec,
) -> Result<FirstStart> {
    if spec.mode != ServiceMode::Replicated || !spec.quorum {
        return Err(ctx.error(
            node.loc,
            path,
            "only a replicated quorum service (deploy.x-shoal-quorum: true) has a first start",
        ));
    }
    let mut f = Fields::new(ctx, node, path)?;
    let mut first = FirstStart::default();
    if let Some(n) = f.take("command") {
        first.command = fields::command(ctx, n, &f.child("command"))?;
    }
    if let Some(n) = f.take("environment") {
        first.env = fields::string_map(ctx, n, &f.child("environment"))?;
    }
    if first.command.is_empty() && first.env.is_empty() {
        return Err(ctx.error(node.loc, path, "expected `command` or `environment`"));
    }
    f.finish()?;
    Ok(first)
}
