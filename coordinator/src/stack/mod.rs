//! Stack files: a Compose-shaped YAML file (with Swarm's `deploy:` keys) read and validated into
//! domain types, with no I/O. Every error names the file, line, column and key.
//!
//! Shoal's additions live under `x-shoal-*` keys (the `x-shoal-http` and `x-shoal-tcp` health
//! probes, see `healthcheck.rs`); any other `x-` key is an extension and is ignored wherever it
//! appears, so YAML anchors can be parked under `x-` keys and merged with `<<: *anchor`.
//!
//! Secrets are Compose's: the top-level `secrets:` says where each value comes from (`file` or
//! `environment`, read by `shoalctl`, which sends the values beside the text), and a service's
//! `secrets:` mounts them as files (see `secrets.rs`). Configs are Compose's too, read by the same
//! code: the top-level `configs:` (`file`, `environment` or inline `content`), a service's
//! `configs:` mounting them read-only (see `configs.rs`).
//!
//! Host networking is the only network: `ports` lists the host ports a service binds (short form
//! `"5000"`, or long form with `mode: host`), which the scheduler keeps apart.

mod configs;
mod container_keys;
mod depends;
mod deploy;
mod devices;
mod duration;
mod env_files;
mod error;
mod extra_hosts;
mod fields;
mod healthcheck;
mod mounts;
mod ports;
mod secrets;
mod security_opt;
mod service;
mod shell_words;
mod size;
mod sysctls;
mod update_config;
mod yaml;

#[cfg(test)]
mod configs_tests;
#[cfg(test)]
mod container_keys_tests;
#[cfg(test)]
mod secrets_tests;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod update_config_tests;

use std::collections::BTreeMap;

use shoal_model::ServiceSpec;

pub use configs::ConfigDecl;
pub use depends::{SERVICE_COMPLETED_SUCCESSFULLY, SERVICE_HEALTHY, SERVICE_STARTED};
pub use env_files::{apply as apply_env_files, EnvFileRef};
pub use error::StackError;
pub use secrets::{SecretSource, ValueSource};

use error::{Ctx, Result};
use fields::Fields;
use yaml::join;

/// A parsed, validated stack file.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Stack {
    /// Top-level `name:`, if given.
    pub name: Option<String>,
    /// Services in file order.
    pub services: Vec<(String, ServiceSpec)>,
    /// Named volumes declared in the top-level `volumes:`, by name.
    pub volumes: BTreeMap<String, VolumeSpec>,
    /// Secrets declared in the top-level `secrets:`, by name, with where their values come from.
    pub secrets: BTreeMap<String, SecretSource>,
    /// The services' `env_file` entries, in file order; their contents come from shoalctl and
    /// are merged by [`apply_env_files`].
    pub env_files: Vec<EnvFileRef>,
    /// Configs declared in the top-level `configs:`, by name.
    pub configs: BTreeMap<String, ConfigDecl>,
}

/// A named volume declaration. Only the `local` driver exists: a directory on each node.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct VolumeSpec {
    /// `external: true`: the operator creates it; Shoal never removes it.
    pub external: bool,
    pub labels: BTreeMap<String, String>,
}

/// Parses and validates a stack file. `file` is only used in error messages.
pub fn parse_stack(file: &str, source: &str) -> std::result::Result<Stack, StackError> {
    let ctx = Ctx { file };
    let root = yaml::load(ctx, source)?;
    let mut top = Fields::new(ctx, &root, "")?;
    let mut stack = Stack::default();

    if let Some(n) = top.take("name") {
        let name = fields::string(ctx, n, "name")?;
        check_name(ctx, n.loc, "name", &name)?;
        stack.name = Some(name);
    }
    if let Some(n) = top.take("version") {
        fields::scalar_text(ctx, n, "version")?;
    }
    if let Some(n) = top.take("volumes") {
        stack.volumes = volumes(ctx, n, "volumes")?;
    }
    if let Some(n) = top.take("secrets") {
        stack.secrets = secrets::declarations(ctx, n, "secrets")?;
    }
    if let Some(n) = top.take("configs") {
        stack.configs = configs::declarations(ctx, n, "configs")?;
    }
    let Some(services_node) = top.take("services") else {
        return Err(ctx.error(root.loc, "", "missing required key `services`"));
    };
    let mut deps = Vec::new();
    for (key, node) in fields::entries(ctx, services_node, "services")? {
        let path = join("services", &key.name);
        check_name(ctx, key.loc, &path, &key.name)?;
        let declared = service::Declared {
            secrets: &stack.secrets,
            configs: &stack.configs,
        };
        let parsed = service::parse(ctx, node, &path, &stack.volumes, &declared)?;
        deps.push((key.name.clone(), parsed.depends_on));
        for mut r in parsed.env_files {
            r.service = stack.services.len();
            stack.env_files.push(r);
        }
        stack.services.push((key.name.clone(), parsed.spec));
    }
    top.finish()?;
    depends::check(ctx, &deps, &stack.services)?;
    Ok(stack)
}

fn volumes(ctx: Ctx<'_>, node: &yaml::Node, path: &str) -> Result<BTreeMap<String, VolumeSpec>> {
    let mut out = BTreeMap::new();
    for (key, v) in fields::entries(ctx, node, path)? {
        let p = join(path, &key.name);
        check_name(ctx, key.loc, &p, &key.name)?;
        let mut spec = VolumeSpec::default();
        if v.value != yaml::Value::Null {
            let mut f = Fields::new(ctx, v, &p)?;
            if let Some(n) = f.take("driver") {
                let dp = f.child("driver");
                let driver = fields::string(ctx, n, &dp)?;
                if driver != "local" {
                    return Err(ctx.error(
                        n.loc,
                        &dp,
                        format!("unsupported driver {driver:?} (only local)"),
                    ));
                }
            }
            if let Some(n) = f.take("external") {
                spec.external = fields::boolean(ctx, n, &f.child("external"))?;
            }
            if let Some(n) = f.take("labels") {
                spec.labels = fields::string_map(ctx, n, &f.child("labels"))?;
            }
            f.finish()?;
        }
        out.insert(key.name.clone(), spec);
    }
    Ok(out)
}

/// Names of stacks, services, volumes, secrets and configs: the one name rule
/// (`shoal_model::check_name`).
fn check_name(ctx: Ctx<'_>, loc: error::Loc, path: &str, name: &str) -> Result<()> {
    shoal_model::check_name("stack object", name).map_err(|_| {
        ctx.error(
            loc,
            path,
            format!(
                "invalid name {name:?} (1-63 letters, digits, `_`, `.`, `-`, starting with \
                 a letter or digit)"
            ),
        )
    })
}
