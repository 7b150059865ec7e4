//! One entry of `services:`, read into a [`ServiceSpec`].

use std::collections::BTreeMap;

use shoal_model::{ContainerSpec, NetworkMode, ServiceSpec, Ulimit};

use super::container_keys;
use super::depends::{self, DependsOn};
use super::deploy;
use super::duration::parse_duration_ms;
use super::env_files::{self, EnvFileRef};
use super::error::{Ctx, Result};
use super::fields::{self, Fields};
use super::healthcheck;
use super::mounts;
use super::ports;
use super::secrets::{self, CONFIGS, SECRETS};
use super::update_config;
use super::yaml::{join, Node, Value};
use super::VolumeSpec;

/// The stack's top-level declarations a service may reference.
pub(crate) struct Declared<'a> {
    pub secrets: &'a BTreeMap<String, super::SecretSource>,
    pub configs: &'a BTreeMap<String, super::ConfigDecl>,
}

/// A service as read, with the places of its `depends_on` entries for later checks.
pub(crate) struct ParsedService {
    pub spec: ServiceSpec,
    pub depends_on: Vec<DependsOn>,
    /// `env_file` entries (their service index is set by the caller).
    pub env_files: Vec<EnvFileRef>,
}

pub(crate) fn parse(
    ctx: Ctx<'_>,
    node: &Node,
    path: &str,
    volumes: &BTreeMap<String, VolumeSpec>,
    declared: &Declared<'_>,
) -> Result<ParsedService> {
    let mut f = Fields::new(ctx, node, path)?;
    let mut c = ContainerSpec::default();

    match f.take("image") {
        Some(n) => c.image = fields::string(ctx, n, &f.child("image"))?,
        None => return Err(ctx.error(node.loc, path, "missing required key `image`")),
    }
    if c.image.trim().is_empty() {
        return Err(ctx.error(node.loc, &f.child("image"), "image must not be empty"));
    }
    if let Some(n) = f.take("command") {
        c.command = fields::command(ctx, n, &f.child("command"))?;
    }
    if let Some(n) = f.take("entrypoint") {
        c.entrypoint = fields::command(ctx, n, &f.child("entrypoint"))?;
    }
    if let Some(n) = f.take("environment") {
        c.env = fields::string_map(ctx, n, &f.child("environment"))?;
    }
    let env_files = match f.take("env_file") {
        Some(n) => env_files::references(ctx, n, &f.child("env_file"), 0)?,
        None => Vec::new(),
    };
    if let Some(n) = f.take("user") {
        c.user = Some(fields::scalar_text(ctx, n, &f.child("user"))?);
    }
    if let Some(n) = f.take("group_add") {
        c.group_add = group_add(ctx, n, &f.child("group_add"))?;
    }
    if let Some(n) = f.take("working_dir") {
        c.working_dir = Some(fields::string(ctx, n, &f.child("working_dir"))?);
    }
    if let Some(n) = f.take("network_mode") {
        let p = f.child("network_mode");
        c.network = match fields::string(ctx, n, &p)?.as_str() {
            "host" => NetworkMode::Host,
            "none" => NetworkMode::None,
            other => {
                return Err(ctx.error(
                    n.loc,
                    &p,
                    format!("unsupported network_mode {other:?} (expected host or none)"),
                ))
            }
        };
    }
    if let Some(n) = f.take("volumes") {
        c.mounts
            .extend(mounts::volumes(ctx, n, &f.child("volumes"), volumes)?);
    }
    if let Some(n) = f.take("secrets") {
        let is_declared = |name: &str| declared.secrets.contains_key(name);
        c.secrets = secrets::references(ctx, n, &f.child("secrets"), &SECRETS, &is_declared)?;
    }
    if let Some(n) = f.take("configs") {
        let is_declared = |name: &str| declared.configs.contains_key(name);
        c.configs = secrets::references(ctx, n, &f.child("configs"), &CONFIGS, &is_declared)?;
    }
    if let Some(n) = f.take("tmpfs") {
        c.mounts.extend(mounts::tmpfs(ctx, n, &f.child("tmpfs"))?);
    }
    if let Some(n) = f.take("privileged") {
        c.privileged = fields::boolean(ctx, n, &f.child("privileged"))?;
    }
    if let Some(n) = f.take("cap_add") {
        c.cap_add = fields::string_list(ctx, n, &f.child("cap_add"))?;
    }
    if let Some(n) = f.take("cap_drop") {
        c.cap_drop = fields::string_list(ctx, n, &f.child("cap_drop"))?;
    }
    if let Some(n) = f.take("pid") {
        c.pid_host = host_namespace(ctx, n, &f.child("pid"))?;
    }
    if let Some(n) = f.take("ipc") {
        c.ipc_host = host_namespace(ctx, n, &f.child("ipc"))?;
    }
    if let Some(n) = f.take("cgroup") {
        c.cgroup_host = host_namespace(ctx, n, &f.child("cgroup"))?;
    }
    container_keys::parse(ctx, &mut f, &mut c)?;
    if let Some(n) = f.take("ulimits") {
        c.ulimits = ulimits(ctx, n, &f.child("ulimits"))?;
    }
    if let Some(n) = f.take("healthcheck") {
        c.healthcheck = healthcheck::parse(ctx, n, &f.child("healthcheck"))?;
    }
    if let Some(n) = f.take(update_config::PRE_STOP_KEY) {
        let p = f.child(update_config::PRE_STOP_KEY);
        c.pre_stop = Some(update_config::pre_stop(ctx, n, &p)?);
    }
    if let Some(n) = f.take("stop_signal") {
        c.stop_signal = Some(fields::string(ctx, n, &f.child("stop_signal"))?);
    }
    if let Some(n) = f.take("stop_grace_period") {
        let p = f.child("stop_grace_period");
        let s = fields::string(ctx, n, &p)?;
        c.stop_grace_ms = Some(parse_duration_ms(&s).map_err(|e| ctx.error(n.loc, &p, e))?);
    }
    if let Some(n) = f.take("labels") {
        c.labels = fields::string_map(ctx, n, &f.child("labels"))?;
    }
    if let Some(n) = f.take("ports") {
        c.host_ports = ports::parse(ctx, n, &f.child("ports"))?;
    }
    let depends_on = match f.take("depends_on") {
        Some(n) => depends::parse(ctx, n, &f.child("depends_on"))?,
        None => Vec::new(),
    };
    let restart = match f.take("restart") {
        Some(n) => Some(deploy::restart_shorthand(ctx, n, &f.child("restart"))?),
        None => None,
    };

    let mut spec = ServiceSpec {
        replicas: 1,
        ..ServiceSpec::default()
    };
    if let Some(r) = restart {
        spec.restart_policy = r;
    }
    if let Some(n) = f.take("deploy") {
        deploy::parse(ctx, n, &f.child("deploy"), &mut spec, &mut c)?;
    }
    if let Some(n) = f.take(update_config::FIRST_START_KEY) {
        let p = f.child(update_config::FIRST_START_KEY);
        spec.first_start = Some(update_config::first_start(ctx, n, &p, &spec)?);
    }
    f.finish()?;

    spec.container = c;
    spec.depends_on = depends_on
        .iter()
        .map(|d| (d.service.clone(), d.condition))
        .collect();
    Ok(ParsedService {
        spec,
        depends_on,
        env_files,
    })
}

fn host_namespace(ctx: Ctx<'_>, n: &Node, path: &str) -> Result<bool> {
    match fields::string(ctx, n, path)?.as_str() {
        "host" => Ok(true),
        "" | "private" => Ok(false),
        other => Err(ctx.error(
            n.loc,
            path,
            format!("unsupported value {other:?} (expected host)"),
        )),
    }
}

/// `group_add: [kolla, 42400]`: group names or numbers.
fn group_add(ctx: Ctx<'_>, node: &Node, path: &str) -> Result<Vec<String>> {
    let Value::Seq(items) = &node.value else {
        return Err(ctx.error(
            node.loc,
            path,
            format!("expected a list, got {}", node.value.describe()),
        ));
    };
    items
        .iter()
        .enumerate()
        .map(|(i, item)| {
            let p = format!("{path}[{i}]");
            let g = fields::scalar_text(ctx, item, &p)?;
            if g.is_empty() || g.contains(':') {
                return Err(ctx.error(item.loc, &p, format!("bad group {g:?}")));
            }
            Ok(g)
        })
        .collect()
}

fn ulimits(ctx: Ctx<'_>, node: &Node, path: &str) -> Result<Vec<Ulimit>> {
    let mut out = Vec::new();
    for (k, v) in fields::entries(ctx, node, path)? {
        let p = join(path, &k.name);
        let (soft, hard) = match &v.value {
            Value::Map(_) => {
                let mut f = Fields::new(ctx, v, &p)?;
                let soft = f.take("soft");
                let hard = f.take("hard");
                let (Some(soft), Some(hard)) = (soft, hard) else {
                    return Err(ctx.error(v.loc, &p, "expected both `soft` and `hard`"));
                };
                let soft = fields::unsigned(ctx, soft, &f.child("soft"))?;
                let hard = fields::unsigned(ctx, hard, &f.child("hard"))?;
                f.finish()?;
                if soft > hard {
                    return Err(ctx.error(
                        v.loc,
                        &p,
                        format!("soft limit {soft} exceeds hard limit {hard}"),
                    ));
                }
                (soft, hard)
            }
            _ => {
                let n = fields::unsigned(ctx, v, &p)?;
                (n, n)
            }
        };
        out.push(Ulimit {
            name: k.name.clone(),
            soft,
            hard,
        });
    }
    Ok(out)
}
