//! Network partitions of one coordinator on loopback, without stopping the process: the
//! coordinator runs in a cgroup of its own (v2: `/sys/fs/cgroup/unified` on this hybrid
//! hierarchy, `/sys/fs/cgroup` on a pure v2 machine), and an `iptables` rule drops every packet
//! its sockets send (`-m cgroup --path`). Its requests never leave and its answers never arrive
//! (new connections do not complete), in both directions, while it keeps running and believes
//! it leads.
//!
//! Needs root and `iptables` (scripts/install-deps.sh). Every rule is added and deleted by its
//! exact specification; the cgroup is removed when the [`Cgroup`] is dropped.

use std::path::PathBuf;
use std::process::Command;

/// The cgroup v2 hierarchy: `unified` on a hybrid machine (such as this one), else the root of
/// a pure v2 machine.
fn cgroup2_root() -> PathBuf {
    let hybrid = PathBuf::from("/sys/fs/cgroup/unified");
    if hybrid.join("cgroup.procs").exists() {
        hybrid
    } else {
        PathBuf::from("/sys/fs/cgroup")
    }
}

/// A cgroup made for one test process.
pub struct Cgroup {
    /// Relative to the cgroup v2 root, as `iptables -m cgroup --path` wants it.
    rel: String,
    dir: PathBuf,
}

impl Cgroup {
    /// Creates `shoal-test-<pid>-<name>` under the cgroup v2 root.
    pub fn new(name: &str) -> anyhow::Result<Cgroup> {
        let rel = format!("shoal-test-{}-{name}", std::process::id());
        let dir = cgroup2_root().join(&rel);
        std::fs::create_dir_all(&dir)
            .map_err(|e| anyhow::anyhow!("cannot create cgroup {}: {e}", dir.display()))?;
        Ok(Cgroup { rel, dir })
    }

    /// `cmd` wrapped so that the process moves itself into this cgroup before it runs the
    /// program (so every socket it opens belongs to the cgroup): `sh` writes its own pid to
    /// `cgroup.procs`, then `exec`s the program with the same pid, arguments and environment.
    pub fn wrap(&self, cmd: &Command) -> Command {
        let procs = self.dir.join("cgroup.procs");
        let mut sh = Command::new("/bin/sh");
        sh.arg("-c")
            .arg(format!(
                "echo $$ > '{}' && exec \"$0\" \"$@\"",
                procs.display()
            ))
            .arg(cmd.get_program())
            .args(cmd.get_args());
        for (k, v) in cmd.get_envs() {
            match v {
                Some(v) => sh.env(k, v),
                None => sh.env_remove(k),
            };
        }
        sh
    }
}

impl Drop for Cgroup {
    fn drop(&mut self) {
        // Empty once its processes are gone (the coordinator is killed before this is dropped).
        let _ = std::fs::remove_dir(&self.dir);
    }
}

/// A partition in force: every packet sent by the cgroup's processes is dropped until this is
/// dropped.
pub struct Partition {
    rel: String,
}

fn iptables(action: &str, rel: &str) -> anyhow::Result<()> {
    let out = Command::new("iptables")
        .args([
            "-w", action, "OUTPUT", "-m", "cgroup", "--path", rel, "-j", "DROP",
        ])
        .output()
        .map_err(|e| anyhow::anyhow!("cannot run iptables (scripts/install-deps.sh): {e}"))?;
    if !out.status.success() {
        anyhow::bail!(
            "iptables {action} for cgroup {rel} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(())
}

/// Cuts the processes of `cg` off the network until the returned value is dropped.
pub fn isolate(cg: &Cgroup) -> anyhow::Result<Partition> {
    iptables("-I", &cg.rel)?;
    Ok(Partition {
        rel: cg.rel.clone(),
    })
}

impl Drop for Partition {
    fn drop(&mut self) {
        if let Err(e) = iptables("-D", &self.rel) {
            eprintln!("partition: {e}");
        }
    }
}
