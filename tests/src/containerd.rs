//! A private containerd for tests: own socket, root and state under a temp dir, killed on drop.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

/// A containerd process that only this test talks to.
pub struct TestContainerd {
    dir: tempfile::TempDir,
    child: Option<Child>,
    socket: PathBuf,
}

/// Whether this machine can run the containerd tests (root, containerd, runc, ctr).
/// Whether the containerd tests can run here; when not, asserts that the operator asked to
/// skip them (`SHOAL_SKIP_CONTAINERD_TESTS=1`), so a missing containerd never passes silently.
pub fn available_or_skip() -> bool {
    if available() {
        return true;
    }
    assert!(
        std::env::var_os("SHOAL_SKIP_CONTAINERD_TESTS").is_some(),
        "containerd tests need root, containerd, runc and ctr \
         (set SHOAL_SKIP_CONTAINERD_TESTS=1 to skip them)"
    );
    false
}

pub fn available() -> bool {
    let root = nix::unistd::Uid::effective().is_root();
    let found = |bin: &str| {
        Command::new("sh")
            .arg("-c")
            .arg(format!("command -v {bin}"))
            .stdout(Stdio::null())
            .status()
            .map(|s| s.success())
            .unwrap_or(false)
    };
    root && found("containerd") && found("runc") && found("ctr")
}

impl TestContainerd {
    /// Starts containerd and waits until its socket answers.
    pub fn start() -> Result<Self> {
        let dir = tempfile::Builder::new()
            .prefix("shoal-cd")
            .tempdir()
            .context("temp dir for containerd")?;
        let base = dir.path();
        let socket = base.join("c.sock");
        let config = base.join("config.toml");
        // gRPC on the unix socket only: no CRI (it opens a TCP streaming server), no debug or
        // metrics listeners.
        std::fs::write(
            &config,
            format!(
                r#"version = 2
root = "{root}"
state = "{state}"
disabled_plugins = ["io.containerd.grpc.v1.cri"]

[grpc]
  address = "{sock}"

[ttrpc]
  address = "{sock}.ttrpc"

[debug]
  address = ""

[metrics]
  address = ""

[plugins."io.containerd.internal.v1.opt"]
  path = "{opt}"
"#,
                root = base.join("root").display(),
                state = base.join("state").display(),
                sock = socket.display(),
                opt = base.join("opt").display(),
            ),
        )?;
        let child = spawn(base, &socket)?;
        let mut me = Self {
            dir,
            child: Some(child),
            socket,
        };
        me.wait_ready(Duration::from_secs(20))?;
        Ok(me)
    }

    /// Stops containerd (SIGTERM; its containers keep running under their shims) and starts it
    /// again on the same socket, root and state.
    pub fn restart(&mut self) -> Result<()> {
        self.stop_process();
        self.child = Some(spawn(self.dir.path(), &self.socket)?);
        self.wait_ready(Duration::from_secs(20))
    }

    /// Stops the containerd process only, leaving containers alone.
    fn stop_process(&mut self) {
        if let Some(mut child) = self.child.take() {
            if let Ok(pid) = i32::try_from(child.id()) {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::Signal::SIGTERM,
                );
            }
            let start = Instant::now();
            while start.elapsed() < Duration::from_secs(5) {
                if matches!(child.try_wait(), Ok(Some(_))) {
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    fn wait_ready(&mut self, limit: Duration) -> Result<()> {
        let start = Instant::now();
        while start.elapsed() < limit {
            if let Some(child) = self.child.as_mut() {
                if let Some(status) = child.try_wait()? {
                    bail!("containerd exited early ({status}): {}", self.log());
                }
            }
            if std::os::unix::net::UnixStream::connect(&self.socket).is_ok()
                && self.ctr(&["version"]).status.success()
            {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        bail!("containerd not ready after {limit:?}: {}", self.log())
    }

    /// containerd's gRPC socket.
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// A scratch directory that lives as long as this containerd.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// containerd's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("containerd.log")).unwrap_or_default()
    }

    /// Runs `ctr --address SOCK ARGS...`.
    pub fn ctr(&self, args: &[&str]) -> Output {
        Command::new("ctr")
            .arg("--address")
            .arg(&self.socket)
            .args(args)
            .output()
            .unwrap_or_else(|e| Output {
                status: std::os::unix::process::ExitStatusExt::from_raw(127 << 8),
                stdout: Vec::new(),
                stderr: e.to_string().into_bytes(),
            })
    }

    /// `ctr` stdout as text; fails if ctr fails.
    pub fn ctr_ok(&self, args: &[&str]) -> Result<String> {
        let out = self.ctr(args);
        if !out.status.success() {
            bail!(
                "ctr {args:?} failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Kills every task left in any namespace, so no container outlives the test.
    fn kill_leftovers(&self) {
        let Ok(namespaces) = self.ctr_ok(&["namespaces", "ls", "-q"]) else {
            return;
        };
        for ns in namespaces.lines().map(str::trim).filter(|s| !s.is_empty()) {
            let Ok(tasks) = self.ctr_ok(&["-n", ns, "tasks", "ls", "-q"]) else {
                continue;
            };
            for id in tasks.lines().map(str::trim).filter(|s| !s.is_empty()) {
                let _ = self.ctr(&["-n", ns, "tasks", "kill", "-a", "-s", "SIGKILL", id]);
                let _ = self.ctr(&["-n", ns, "tasks", "rm", "-f", id]);
            }
        }
    }
}

impl TestContainerd {
    /// The shims of this containerd (their `-address` is this test's own socket) that outlived
    /// it, and the containers they hold: killed by PID. `kill_leftovers` misses some (seen after
    /// `e2e_stack`: three shims still running their `sleep`).
    fn kill_stray_shims(&self) {
        let socket = self.socket.to_string_lossy().into_owned();
        let Ok(procs) = std::fs::read_dir("/proc") else {
            return;
        };
        for entry in procs.flatten() {
            let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
                continue;
            };
            let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else {
                continue;
            };
            let args: Vec<String> = cmdline
                .split(|b| *b == 0)
                .map(|a| String::from_utf8_lossy(a).into_owned())
                .collect();
            let ours = args
                .first()
                .is_some_and(|a| a.ends_with("containerd-shim-runc-v2"))
                && args
                    .windows(2)
                    .any(|w| w[0] == "-address" && w[1] == socket);
            if !ours {
                continue;
            }
            let children = std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
                .unwrap_or_default();
            for child in children
                .split_whitespace()
                .filter_map(|c| c.parse::<i32>().ok())
            {
                kill9(child);
            }
            kill9(pid);
        }
    }

    /// Mounts left under this test's directory (container root file systems, shm), deepest
    /// first, so that the directory can be removed.
    fn unmount_leftovers(&self) {
        let dir = self.dir.path().to_string_lossy().into_owned();
        let Ok(mounts) = std::fs::read_to_string("/proc/self/mountinfo") else {
            return;
        };
        let mut points: Vec<&str> = mounts
            .lines()
            .filter_map(|l| l.split(' ').nth(4))
            .filter(|p| p.starts_with(&format!("{dir}/")))
            .collect();
        points.sort_by_key(|p| std::cmp::Reverse(p.len()));
        for p in points {
            let _ = Command::new("umount").arg("-l").arg(p).status();
        }
    }
}

fn kill9(pid: i32) {
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGKILL,
    );
}

impl Drop for TestContainerd {
    fn drop(&mut self) {
        self.kill_leftovers();
        self.stop_process();
        self.kill_stray_shims();
        self.unmount_leftovers();
    }
}

/// Starts a containerd process on `socket` with root, state and config under `base`.
fn spawn(base: &Path, socket: &Path) -> Result<Child> {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(base.join("containerd.log"))?;
    Command::new("containerd")
        .arg("--address")
        .arg(socket)
        .arg("--root")
        .arg(base.join("root"))
        .arg("--state")
        .arg(base.join("state"))
        .arg("--config")
        .arg(base.join("config.toml"))
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .spawn()
        .context("spawning containerd")
}
