//! `deploy:` of a service (Swarm's keys): mode, replicas, placement, resources, restart policy;
//! and Shoal's `x-shoal-node-loss` (what happens to the tasks of a node that stops answering).
//! `update_config`, `rollback_config` and `x-shoal-quorum` are read in `update_config.rs`.

use shoal_model::{
    ContainerSpec, NodeLoss, RestartCondition, RestartPolicy, ServiceMode, ServiceSpec,
};

use super::duration::parse_duration_ms;
use super::error::{Ctx, Result};
use super::fields::{self, Fields};
use super::size::{parse_cpus_millis, parse_size_bytes};
use super::update_config;
use super::yaml::{Node, Value};
use crate::scheduler::constraint::{check_satisfiable, Constraint};
use crate::scheduler::MAX_SPREAD_PREFERENCES;

pub(crate) fn parse(
    ctx: Ctx<'_>,
    node: &Node,
    path: &str,
    spec: &mut ServiceSpec,
    container: &mut ContainerSpec,
) -> Result<()> {
    let mut f = Fields::new(ctx, node, path)?;
    if let Some(n) = f.take("mode") {
        let p = f.child("mode");
        spec.mode = match fields::string(ctx, n, &p)?.as_str() {
            "replicated" => ServiceMode::Replicated,
            "global" => ServiceMode::Global,
            "replicated-job" => ServiceMode::ReplicatedJob,
            "global-job" => ServiceMode::GlobalJob,
            other => {
                return Err(ctx.error(
                    n.loc,
                    &p,
                    format!(
                        "unknown mode {other:?} (expected replicated, global, replicated-job or global-job)"
                    ),
                ))
            }
        };
    }
    if let Some(n) = f.take("replicas") {
        let p = f.child("replicas");
        if matches!(spec.mode, ServiceMode::Global | ServiceMode::GlobalJob) {
            return Err(ctx.error(n.loc, &p, "replicas cannot be set for a global service"));
        }
        spec.replicas = fields::unsigned32(ctx, n, &p)?;
    }
    if matches!(spec.mode, ServiceMode::Global | ServiceMode::GlobalJob) {
        spec.replicas = 0;
    }
    if let Some(n) = f.take("placement") {
        placement(ctx, n, &f.child("placement"), spec)?;
    }
    if let Some(n) = f.take("resources") {
        resources(ctx, n, &f.child("resources"), spec, container)?;
    }
    if let Some(n) = f.take("restart_policy") {
        spec.restart_policy = restart_policy(ctx, n, &f.child("restart_policy"))?;
    }
    if let Some(n) = f.take("labels") {
        spec.labels = fields::string_map(ctx, n, &f.child("labels"))?;
    }
    if let Some(n) = f.take(NODE_LOSS_KEY) {
        spec.on_node_loss = node_loss(ctx, n, &f.child(NODE_LOSS_KEY))?;
    }
    if let Some(n) = f.take("update_config") {
        spec.update_config = update_config::parse(ctx, n, &f.child("update_config"), false)?;
    }
    if let Some(n) = f.take("rollback_config") {
        spec.rollback_config = update_config::parse(ctx, n, &f.child("rollback_config"), true)?;
    }
    if let Some(n) = f.take(update_config::RUN_KEY) {
        let p = f.child(update_config::RUN_KEY);
        spec.run_once = update_config::run_once(ctx, n, &p, spec.mode.is_job())?;
    }
    if let Some(n) = f.take(update_config::QUORUM_KEY) {
        let p = f.child(update_config::QUORUM_KEY);
        spec.quorum = update_config::quorum(ctx, n, &p)?;
        if spec.quorum && spec.mode.is_job() {
            return Err(ctx.error(n.loc, &p, "a job cannot be a quorum cluster"));
        }
    }
    f.finish()
}

fn placement(ctx: Ctx<'_>, node: &Node, path: &str, spec: &mut ServiceSpec) -> Result<()> {
    let mut f = Fields::new(ctx, node, path)?;
    if let Some(n) = f.take("constraints") {
        let p = f.child("constraints");
        let texts = fields::string_list(ctx, n, &p)?;
        let items = match &n.value {
            Value::Seq(items) => items.as_slice(),
            _ => &[],
        };
        let mut parsed = Vec::with_capacity(texts.len());
        for (i, text) in texts.iter().enumerate() {
            let loc = items.get(i).map_or(n.loc, |item| item.loc);
            parsed.push(
                Constraint::parse(text).map_err(|e| ctx.error(loc, &format!("{p}[{i}]"), e))?,
            );
        }
        check_satisfiable(&parsed).map_err(|e| ctx.error(n.loc, &p, e))?;
        spec.constraints = parsed.into_iter().map(|c| c.text).collect();
    }
    if let Some(n) = f.take("preferences") {
        let p = f.child("preferences");
        let Value::Seq(items) = &n.value else {
            return Err(ctx.error(
                n.loc,
                &p,
                format!("expected a list, got {}", n.value.describe()),
            ));
        };
        if items.len() > MAX_SPREAD_PREFERENCES {
            return Err(ctx.error(
                n.loc,
                &p,
                format!("at most {MAX_SPREAD_PREFERENCES} preferences are supported"),
            ));
        }
        for (i, item) in items.iter().enumerate() {
            let ip = format!("{p}[{i}]");
            let mut pf = Fields::new(ctx, item, &ip)?;
            let Some(sn) = pf.take("spread") else {
                return Err(ctx.error(item.loc, &ip, "expected `spread: node.labels.KEY`"));
            };
            let sp = pf.child("spread");
            let s = fields::string(ctx, sn, &sp)?;
            match s.trim().strip_prefix("node.labels.") {
                Some(key) if !key.is_empty() => spec.spread_labels.push(key.to_string()),
                _ => {
                    return Err(ctx.error(
                        sn.loc,
                        &sp,
                        format!("expected node.labels.KEY, got {s:?}"),
                    ))
                }
            }
            pf.finish()?;
        }
    }
    if let Some(n) = f.take("max_replicas_per_node") {
        let p = f.child("max_replicas_per_node");
        let max = fields::unsigned32(ctx, n, &p)?;
        if max == 0 {
            return Err(ctx.error(n.loc, &p, "max_replicas_per_node must be at least 1"));
        }
        spec.max_replicas_per_node = Some(max);
    }
    f.finish()
}

fn resources(
    ctx: Ctx<'_>,
    node: &Node,
    path: &str,
    spec: &mut ServiceSpec,
    container: &mut ContainerSpec,
) -> Result<()> {
    let mut f = Fields::new(ctx, node, path)?;
    if let Some(n) = f.take("reservations") {
        let (cpu, mem) = cpus_memory(ctx, n, &f.child("reservations"))?;
        spec.cpu_reservation_millis = cpu.unwrap_or(0);
        spec.memory_reservation_bytes = mem.unwrap_or(0);
    }
    if let Some(n) = f.take("limits") {
        let (cpu, mem) = cpus_memory(ctx, n, &f.child("limits"))?;
        container.cpu_limit_millis = cpu;
        container.memory_limit = mem;
    }
    f.finish()
}

fn cpus_memory(ctx: Ctx<'_>, node: &Node, path: &str) -> Result<(Option<u64>, Option<u64>)> {
    let mut f = Fields::new(ctx, node, path)?;
    let cpus = match f.take("cpus") {
        Some(n) => {
            let p = f.child("cpus");
            let text = fields::scalar_text(ctx, n, &p)?;
            Some(parse_cpus_millis(&text).map_err(|e| ctx.error(n.loc, &p, e))?)
        }
        None => None,
    };
    let memory = match f.take("memory") {
        Some(n) => {
            let p = f.child("memory");
            let text = fields::scalar_text(ctx, n, &p)?;
            Some(parse_size_bytes(&text).map_err(|e| ctx.error(n.loc, &p, e))?)
        }
        None => None,
    };
    f.finish()?;
    Ok((cpus, memory))
}

fn restart_policy(ctx: Ctx<'_>, node: &Node, path: &str) -> Result<RestartPolicy> {
    let mut f = Fields::new(ctx, node, path)?;
    let mut policy = RestartPolicy::default();
    if let Some(n) = f.take("condition") {
        let p = f.child("condition");
        let c = fields::string(ctx, n, &p)?;
        policy.condition = c.parse().map_err(|e: String| ctx.error(n.loc, &p, e))?;
    }
    for (key, slot) in [
        ("delay", &mut policy.delay_ms),
        ("window", &mut policy.window_ms),
    ] {
        if let Some(n) = f.take(key) {
            let p = f.child(key);
            let s = fields::string(ctx, n, &p)?;
            *slot = parse_duration_ms(&s).map_err(|e| ctx.error(n.loc, &p, e))?;
        }
    }
    if let Some(n) = f.take("max_attempts") {
        policy.max_attempts = Some(fields::unsigned32(ctx, n, &f.child("max_attempts"))?);
    }
    f.finish()?;
    Ok(policy)
}

/// Compose's service-level `restart:` (`no`, `always`, `unless-stopped`, `on-failure[:N]`).
pub(crate) fn restart_shorthand(ctx: Ctx<'_>, node: &Node, path: &str) -> Result<RestartPolicy> {
    let s = fields::string(ctx, node, path)?;
    let mut policy = RestartPolicy::default();
    match s.as_str() {
        "no" => policy.condition = RestartCondition::Never,
        "always" | "unless-stopped" => policy.condition = RestartCondition::Any,
        "on-failure" => policy.condition = RestartCondition::OnFailure,
        other => match other.strip_prefix("on-failure:").map(str::parse::<u32>) {
            Some(Ok(n)) => {
                policy.condition = RestartCondition::OnFailure;
                policy.max_attempts = Some(n);
            }
            _ => {
                return Err(ctx.error(
                    node.loc,
                    path,
                    format!("unknown restart {other:?} (expected no, always, unless-stopped or on-failure[:N])"),
                ))
            }
        },
    }
    Ok(policy)
}

/// `deploy.x-shoal-node-loss`: `replace`, `wait`, or a duration (wait at most that long).
pub(crate) const NODE_LOSS_KEY: &str = "x-shoal-node-loss";

fn node_loss(ctx: Ctx<'_>, n: &Node, path: &str) -> Result<NodeLoss> {
    let text = fields::scalar_text(ctx, n, path)?;
    match text.trim() {
        "replace" => Ok(NodeLoss::Replace),
        "wait" => Ok(NodeLoss::Wait),
        other => match parse_duration_ms(other) {
            Ok(0) => Ok(NodeLoss::Replace),
            Ok(ms) => Ok(NodeLoss::ReplaceAfter(ms)),
            Err(_) => Err(ctx.error(
                n.loc,
                path,
                format!(
                    "expected `replace`, `wait` or a duration such as `10m` (wait at most that \
                     long for a lost node), got {other:?}"
                ),
            )),
        },
    }
}
