//! Start, kill and inspect `shoal-agent` processes, each a simulated node with its own
//! containerd namespace and directories.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use crate::{binary, free_addr};

pub struct Agent {
    pub name: String,
    pub namespace: String,
    pub listen: String,
    pub root: PathBuf,
    pub log: PathBuf,
    pub args: Vec<String>,
    /// Extra environment for the agent process (e.g. `NOTIFY_SOCKET`).
    pub env: Vec<(String, String)>,
    child: Option<Child>,
}

impl Agent {
    /// An agent for node `name` on `socket`, talking to `coordinators`, importing `image_tar`.
    pub fn new(
        root: &Path,
        name: &str,
        labels: &[(&str, &str)],
        coordinators: &[String],
        socket: &Path,
        image_tar: &Path,
    ) -> Agent {
        let dir = root.join(format!("agent-{name}"));
        let namespace = format!("shoal-{name}-{}", std::process::id());
        let listen = free_addr();
        let mut args = vec![
            "--node-name".to_string(),
            name.to_string(),
            "--coordinators".into(),
            coordinators.join(","),
            "--containerd-socket".into(),
            socket.display().to_string(),
            "--namespace".into(),
            namespace.clone(),
            "--data-dir".into(),
            dir.join("data").display().to_string(),
            "--log-dir".into(),
            dir.join("logs").display().to_string(),
            "--volumes-dir".into(),
            dir.join("volumes").display().to_string(),
            "--listen".into(),
            listen.clone(),
            "--import-image".into(),
            image_tar.display().to_string(),
            // Secure tests replace this with a join token (see `Agent::secure`).
            "--insecure".into(),
        ];
        for (k, v) in labels {
            args.push("--label".into());
            args.push(format!("{k}={v}"));
        }
        Agent {
            name: name.to_string(),
            namespace,
            listen,
            log: root.join(format!("agent-{name}.log")),
            root: dir,
            args,
            env: Vec::new(),
            child: None,
        }
    }

    /// Joins a secure cluster with `token` instead of running `--insecure`.
    pub fn secure(&mut self, token: &str) {
        self.args.retain(|a| a != "--insecure");
        self.env.retain(|(k, _)| k != "SHOAL_JOIN_TOKEN");
        self.env.push(("SHOAL_JOIN_TOKEN".into(), token.into()));
    }

    /// Serves the agent's `/metrics` on a free local address, returned (call before `start`).
    pub fn serve_metrics(&mut self) -> String {
        let addr = free_addr();
        self.args.extend(["--metrics-listen".into(), addr.clone()]);
        addr
    }

    /// This agent's TLS directory (certificate and key once it joined).
    pub fn tls_dir(&self) -> PathBuf {
        self.root.join("data").join("tls")
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    pub fn start(&mut self) {
        assert!(self.child.is_none(), "agent {} already running", self.name);
        std::fs::create_dir_all(&self.root).expect("agent dir");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("agent log");
        let err = log.try_clone().expect("clone log");
        let child = Command::new(binary("shoal-agent"))
            .args(&self.args)
            .env("RUST_LOG", "info")
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdout(Stdio::from(log))
            .stderr(Stdio::from(err))
            .spawn()
            .expect("spawn shoal-agent");
        self.child = Some(child);
    }

    /// Process id of the running agent, if started.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// SIGKILL the agent (its containers keep running).
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM the agent and wait up to 15 s for its exit (then SIGKILL).
    pub fn terminate(&mut self) -> Option<std::process::ExitStatus> {
        let mut c = self.child.take()?;
        let pid = nix::unistd::Pid::from_raw(c.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
        while std::time::Instant::now() < deadline {
            if let Ok(Some(s)) = c.try_wait() {
                return Some(s);
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        let _ = c.kill();
        c.wait().ok()
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Runs `ctr` against `socket` in `namespace`; returns stdout.
pub fn ctr(socket: &Path, namespace: &str, args: &[&str]) -> String {
    let out = Command::new("ctr")
        .arg("--address")
        .arg(socket)
        .arg("-n")
        .arg(namespace)
        .args(args)
        .output()
        .expect("run ctr");
    String::from_utf8_lossy(&out.stdout).to_string()
}

/// Ids of the running containerd tasks in `namespace`.
pub fn running_tasks(socket: &Path, namespace: &str) -> Vec<String> {
    ctr(socket, namespace, &["tasks", "ls"])
        .lines()
        .skip(1)
        .filter(|l| l.contains("RUNNING"))
        .filter_map(|l| l.split_whitespace().next().map(str::to_string))
        .collect()
}

/// Ids of all containers in `namespace`.
pub fn containers(socket: &Path, namespace: &str) -> Vec<String> {
    ctr(socket, namespace, &["containers", "ls", "-q"])
        .lines()
        .map(str::to_string)
        .filter(|l| !l.is_empty())
        .collect()
}

/// Kills every task in `namespace` (the node "died").
pub fn kill_all_tasks(socket: &Path, namespace: &str) {
    for id in running_tasks(socket, namespace) {
        ctr(socket, namespace, &["tasks", "kill", "-s", "SIGKILL", &id]);
    }
}
