//! `depends_on:` (list and map form) and the checks across services: targets exist, no cycles.

use std::collections::BTreeMap;

use shoal_model::{DependsCondition, ServiceMode, ServiceSpec};

use super::error::{Ctx, Loc, Result};
use super::fields::{self, Fields};
use super::yaml::{join, Node, Value};

pub const SERVICE_STARTED: DependsCondition = DependsCondition::ServiceStarted;
pub const SERVICE_HEALTHY: DependsCondition = DependsCondition::ServiceHealthy;
pub const SERVICE_COMPLETED_SUCCESSFULLY: DependsCondition =
    DependsCondition::ServiceCompletedSuccessfully;

/// One dependency as written, with its place for later errors.
#[derive(Debug, Clone)]
pub(crate) struct DependsOn {
    pub service: String,
    pub condition: DependsCondition,
    pub loc: Loc,
    pub path: String,
}

pub(crate) fn parse(ctx: Ctx<'_>, node: &Node, path: &str) -> Result<Vec<DependsOn>> {
    let mut out = Vec::new();
    match &node.value {
        Value::Seq(items) => {
            for (i, item) in items.iter().enumerate() {
                let p = format!("{path}[{i}]");
                out.push(DependsOn {
                    service: fields::string(ctx, item, &p)?,
                    condition: SERVICE_STARTED,
                    loc: item.loc,
                    path: p,
                });
            }
        }
        Value::Map(_) => {
            for (k, v) in fields::entries(ctx, node, path)? {
                let p = join(path, &k.name);
                let mut f = Fields::new(ctx, v, &p)?;
                let condition = match f.take("condition") {
                    Some(n) => {
                        let cp = f.child("condition");
                        let c = fields::string(ctx, n, &cp)?;
                        c.parse().map_err(|e: String| ctx.error(n.loc, &cp, e))?
                    }
                    None => SERVICE_STARTED,
                };
                for flag in ["restart", "required"] {
                    if let Some(n) = f.take(flag) {
                        fields::boolean(ctx, n, &f.child(flag))?;
                    }
                }
                f.finish()?;
                out.push(DependsOn {
                    service: k.name.clone(),
                    condition,
                    loc: k.loc,
                    path: p,
                });
            }
        }
        other => {
            return Err(ctx.error(
                node.loc,
                path,
                format!("expected a list or a mapping, got {}", other.describe()),
            ))
        }
    }
    Ok(out)
}

/// Checks every target exists, each condition can ever hold (`service_healthy` needs a health
/// check, `service_completed_successfully` a job), and the graph has no cycle.
/// `specs` holds the services in the same order as `services`.
pub(crate) fn check(
    ctx: Ctx<'_>,
    services: &[(String, Vec<DependsOn>)],
    specs: &[(String, ServiceSpec)],
) -> Result<()> {
    let index: BTreeMap<&str, usize> = services
        .iter()
        .enumerate()
        .map(|(i, (name, _))| (name.as_str(), i))
        .collect();
    for (name, deps) in services {
        for d in deps {
            if d.service == *name {
                return Err(ctx.error(
                    d.loc,
                    &d.path,
                    format!("service `{name}` depends on itself"),
                ));
            }
            if !index.contains_key(d.service.as_str()) {
                return Err(ctx.error(
                    d.loc,
                    &d.path,
                    format!(
                        "depends on `{}`, which is not a service of this stack",
                        d.service
                    ),
                ));
            }
            let target = index
                .get(d.service.as_str())
                .and_then(|&i| specs.get(i))
                .map(|(_, s)| s);
            if let Some(target) = target {
                if d.condition == SERVICE_HEALTHY && target.container.healthcheck.is_none() {
                    return Err(ctx.error(
                        d.loc,
                        &d.path,
                        format!(
                            "waits for `{}` to be healthy, but it has no healthcheck",
                            d.service
                        ),
                    ));
                }
                let is_job = matches!(
                    target.mode,
                    ServiceMode::ReplicatedJob | ServiceMode::GlobalJob
                );
                if d.condition == SERVICE_COMPLETED_SUCCESSFULLY && !is_job {
                    return Err(ctx.error(
                        d.loc,
                        &d.path,
                        format!(
                            "waits for `{}` to complete, but only jobs (replicated-job, \
                             global-job) complete",
                            d.service
                        ),
                    ));
                }
            }
        }
    }
    // Depth-first search with colours; report the edge that closes the first cycle found.
    #[derive(Clone, Copy, PartialEq)]
    enum Colour {
        White,
        Grey,
        Black,
    }
    let mut colour = vec![Colour::White; services.len()];
    for start in 0..services.len() {
        if colour[start] != Colour::White {
            continue;
        }
        let mut stack: Vec<(usize, usize)> = vec![(start, 0)];
        colour[start] = Colour::Grey;
        while let Some(&mut (node, ref mut next)) = stack.last_mut() {
            let deps = &services[node].1;
            if *next == deps.len() {
                colour[node] = Colour::Black;
                stack.pop();
                continue;
            }
            let edge = &deps[*next];
            *next += 1;
            let Some(&target) = index.get(edge.service.as_str()) else {
                continue;
            };
            match colour[target] {
                Colour::White => {
                    colour[target] = Colour::Grey;
                    stack.push((target, 0));
                }
                Colour::Grey => {
                    let from = stack.iter().position(|(n, _)| *n == target).unwrap_or(0);
                    let mut cycle: Vec<&str> = stack[from..]
                        .iter()
                        .map(|(n, _)| services[*n].0.as_str())
                        .collect();
                    cycle.push(services[target].0.as_str());
                    return Err(ctx.error(
                        edge.loc,
                        &edge.path,
                        format!("dependency cycle: {}", cycle.join(" -> ")),
                    ));
                }
                Colour::Black => {}
            }
        }
    }
    Ok(())
}
