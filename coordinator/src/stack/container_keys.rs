//! The service keys of issue 14 that shape one container: `devices`, `sysctls`, `shm_size`,
//! `extra_hosts`, `hostname`, `init`, `security_opt` and `pull_policy`, read after
//! `network_mode` and `ipc`, which some of them depend on.

use shoal_model::{ContainerSpec, PullPolicy};

use super::error::{Ctx, Result};
use super::fields::{self, Fields};
use super::size::parse_size_bytes;
use super::yaml::Value;
use super::{devices, extra_hosts, security_opt, sysctls};

/// The longest hostname Linux accepts (`HOST_NAME_MAX`).
const HOSTNAME_MAX: usize = 64;

/// Takes this module's keys out of `f` into `c`.
pub(crate) fn parse(ctx: Ctx<'_>, f: &mut Fields<'_>, c: &mut ContainerSpec) -> Result<()> {
    if let Some(n) = f.take("devices") {
        c.devices = devices::parse(ctx, n, &f.child("devices"))?;
    }
    if let Some(n) = f.take("sysctls") {
        c.sysctls = sysctls::parse(ctx, n, &f.child("sysctls"), c.network, c.ipc_host)?;
    }
    if let Some(n) = f.take("shm_size") {
        let p = f.child("shm_size");
        if c.ipc_host {
            return Err(ctx.error(
                n.loc,
                &p,
                "shm_size cannot be set with `ipc: host`: the container uses the host's /dev/shm",
            ));
        }
        let text = fields::scalar_text(ctx, n, &p)?;
        let bytes = parse_size_bytes(&text).map_err(|e| ctx.error(n.loc, &p, e))?;
        if bytes == 0 {
            return Err(ctx.error(n.loc, &p, "shm_size must be more than 0"));
        }
        c.shm_size = Some(bytes);
    }
    if let Some(n) = f.take("extra_hosts") {
        c.extra_hosts = extra_hosts::parse(ctx, n, &f.child("extra_hosts"))?;
    }
    if let Some(n) = f.take("hostname") {
        let p = f.child("hostname");
        let name = fields::string(ctx, n, &p)?;
        if let Some(problem) = hostname_problem(&name) {
            return Err(ctx.error(n.loc, &p, problem));
        }
        c.hostname = Some(name);
    }
    if let Some(n) = f.take("init") {
        let p = f.child("init");
        if fields::boolean(ctx, n, &p)? {
            return Err(ctx.error(
                n.loc,
                &p,
                "`init: true` is not supported: Shoal ships no init binary to inject (Docker's is \
                 tini); use an image whose entrypoint reaps children, as kolla's images do with \
                 dumb-init",
            ));
        }
    }
    if let Some(n) = f.take("security_opt") {
        c.security = security_opt::parse(ctx, n, &f.child("security_opt"))?;
    }
    if let Some(n) = f.take("pull_policy") {
        let p = f.child("pull_policy");
        c.pull_policy = match fields::string(ctx, n, &p)?.as_str() {
            "missing" | "if_not_present" => PullPolicy::Missing,
            "always" => PullPolicy::Always,
            "never" => PullPolicy::Never,
            "build" => {
                return Err(ctx.error(n.loc, &p, "Shoal builds no images (`pull_policy: build`)"))
            }
            other => {
                return Err(ctx.error(
                    n.loc,
                    &p,
                    format!(
                        "unsupported pull_policy {other:?} (expected always, missing or never)"
                    ),
                ))
            }
        };
    }
    Ok(())
}

/// Why `name` cannot be a hostname, if it cannot.
fn hostname_problem(name: &str) -> Option<String> {
    if name.is_empty() || name.len() > HOSTNAME_MAX {
        return Some(format!(
            "hostname must have 1 to {HOSTNAME_MAX} characters, got {}",
            name.len()
        ));
    }
    let label_ok = |l: &str| {
        !l.is_empty()
            && !l.starts_with('-')
            && !l.ends_with('-')
            && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
    };
    if !name.split('.').all(label_ok) {
        return Some(format!(
            "bad hostname {name:?}: letters, digits and inner hyphens, in dot-separated labels"
        ));
    }
    None
}

/// A list of strings, or an error naming what else was there.
pub(crate) fn seq<'n>(
    ctx: Ctx<'_>,
    node: &'n super::yaml::Node,
    path: &str,
) -> Result<&'n [super::yaml::Node]> {
    match &node.value {
        Value::Seq(items) => Ok(items),
        other => Err(ctx.error(
            node.loc,
            path,
            format!("expected a list, got {}", other.describe()),
        )),
    }
}
