//! How the agent describes its node to the coordinators: name, labels, capacity, versions.

use shoal_model::{Node, NodeAvailability, NodeResources, NodeStatus};

use crate::config::AgentConfig;

/// Total memory from `/proc/meminfo`'s `MemTotal` line (kB), in bytes.
pub fn parse_mem_total(meminfo: &str) -> Option<u64> {
    meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|kb| kb.parse::<u64>().ok())
        .map(|kb| kb * 1024)
}

/// Wall-clock milliseconds since the Unix epoch.
pub fn now_millis() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// This node as the agent registers it.
pub fn local_node(cfg: &AgentConfig, runtime_version: &str) -> Node {
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get()) as u64;
    let memory = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| parse_mem_total(&m))
        .unwrap_or(0);
    let now = now_millis();
    Node {
        name: cfg.node_name.clone(),
        role: cfg.role,
        labels: cfg.labels.clone(),
        availability: NodeAvailability::Active,
        status: NodeStatus::Ready,
        resources: NodeResources {
            cpu_millis: cpus * 1000,
            memory_bytes: memory,
        },
        address: cfg.advertise.clone(),
        agent_version: env!("CARGO_PKG_VERSION").to_owned(),
        runtime_version: runtime_version.to_owned(),
        registered_at: now,
        last_heartbeat: now,
        down_since: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mem_total() {
        let m = "MemTotal:        8048576 kB\nMemFree:  1 kB\n";
        assert_eq!(parse_mem_total(m), Some(8048576 * 1024));
        assert_eq!(parse_mem_total("nothing"), None);
    }
}
