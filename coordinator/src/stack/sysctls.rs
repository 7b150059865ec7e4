//! Compose `sysctls` (mapping or `KEY=VALUE` list), limited as Docker limits them: only kernel
//! parameters that belong to the container's own IPC or network namespace, and neither kind
//! when that namespace is the host's.

use std::collections::BTreeMap;

use shoal_model::NetworkMode;

use super::error::Loc;
use super::error::{Ctx, Result};
use super::fields;
use super::yaml::{join, Node, Value};

/// IPC-namespace parameters Docker accepts by name.
const IPC_NAMES: &[&str] = &[
    "kernel.msgmax",
    "kernel.msgmnb",
    "kernel.msgmni",
    "kernel.sem",
    "kernel.shmall",
    "kernel.shmmax",
    "kernel.shmmni",
    "kernel.shm_rmid_forced",
];

pub(crate) fn parse(
    ctx: Ctx<'_>,
    node: &Node,
    path: &str,
    network: NetworkMode,
    ipc_host: bool,
) -> Result<BTreeMap<String, String>> {
    let mut entries: Vec<(String, String, Loc, String)> = Vec::new();
    match &node.value {
        Value::Map(_) => {
            for (k, v) in fields::entries(ctx, node, path)? {
                let p = join(path, &k.name);
                entries.push((k.name.clone(), fields::scalar_text(ctx, v, &p)?, k.loc, p));
            }
        }
        Value::Seq(items) => {
            for (i, item) in items.iter().enumerate() {
                let p = format!("{path}[{i}]");
                let s = fields::string(ctx, item, &p)?;
                let Some((k, v)) = s.split_once('=') else {
                    return Err(ctx.error(item.loc, &p, format!("expected KEY=VALUE, got {s:?}")));
                };
                entries.push((k.trim().to_owned(), v.trim().to_owned(), item.loc, p));
            }
        }
        other => {
            return Err(ctx.error(
                node.loc,
                path,
                format!(
                    "expected a mapping or a list of KEY=VALUE, got {}",
                    other.describe()
                ),
            ))
        }
    }
    let mut out = BTreeMap::new();
    for (key, value, loc, p) in entries {
        if let Some(problem) = problem(&key, &value, network, ipc_host) {
            return Err(ctx.error(loc, &p, problem));
        }
        out.insert(key, value);
    }
    Ok(out)
}

/// Why `key` cannot be set in this container, if it cannot.
fn problem(key: &str, value: &str, network: NetworkMode, ipc_host: bool) -> Option<String> {
    if key.is_empty() || value.is_empty() {
        return Some(format!("sysctl {key:?} needs a name and a value"));
    }
    let ipc = IPC_NAMES.contains(&key) || key.starts_with("fs.mqueue.");
    let net = key.starts_with("net.");
    if !ipc && !net {
        return Some(format!(
            "sysctl {key} is not namespaced (it would change the host): only net.*, fs.mqueue.* \
             and the kernel.msg*/sem/shm* IPC parameters can be set, as in Docker"
        ));
    }
    if net && network == NetworkMode::Host {
        return Some(format!(
            "sysctl {key} is not allowed with host networking: it would change the host's \
             network namespace (Docker and runc refuse it too)"
        ));
    }
    if ipc && ipc_host {
        return Some(format!(
            "sysctl {key} is not allowed with `ipc: host`: it would change the host's IPC \
             namespace (Docker and runc refuse it too)"
        ));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn namespaced_only_and_never_in_the_hosts_namespaces() {
        let ok = |k: &str, n, i| problem(k, "1", n, i).is_none();
        assert!(ok("net.ipv4.ip_forward", NetworkMode::None, false));
        assert!(ok("kernel.shmmax", NetworkMode::Host, false));
        assert!(ok("fs.mqueue.msg_max", NetworkMode::Host, false));
        assert!(!ok("net.ipv4.ip_forward", NetworkMode::Host, false));
        assert!(!ok("kernel.shmmax", NetworkMode::Host, true));
        assert!(!ok("vm.swappiness", NetworkMode::None, false));
        assert!(!ok("kernel.pid_max", NetworkMode::None, false));
        assert!(problem("net.core.somaxconn", "", NetworkMode::None, false).is_some());
    }
}
