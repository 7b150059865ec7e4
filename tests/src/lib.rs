//! Harness for the multi-process tests: start coordinators (and agents) as real processes on
//! loopback, each with its own data dir under a temp dir, and talk to them over gRPC.

pub mod agents;
pub mod containerd;
pub mod containerd_events;
pub mod coordinators;
pub mod disk_load;
pub mod failover;
pub mod image;
pub mod leaks;
pub mod partition;
pub mod probes;
pub mod registry;
pub mod watched;

use std::path::PathBuf;

/// Path of a workspace binary (`cargo build --workspace --bins` must have run).
pub fn binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    // Tests live in target/<profile>/deps/, binaries such as raft-bench in target/<profile>/.
    let dir = exe.parent().expect("exe dir");
    let candidates = [
        dir.join(name),
        dir.parent().map(|d| d.join(name)).unwrap_or_default(),
    ];
    let found = candidates.iter().find(|p| p.exists());
    found
        .unwrap_or_else(|| {
            panic!(
                "{} not found: run `cargo build --workspace --bins` before the tests",
                candidates[1].display()
            )
        })
        .clone()
}

/// Runs `shoalctl --insecure` against `coords`: whether it succeeded, and stdout then stderr.
pub fn shoalctl_insecure(coords: &[String], args: &[&str]) -> (bool, String) {
    let out = std::process::Command::new(binary("shoalctl"))
        .env("SHOAL_INSECURE", "true")
        .arg("--coordinators")
        .arg(coords.join(","))
        .args(args)
        .output()
        .expect("shoalctl runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// Runs the workspace binary `bin` with `args` and none of the operator's settings from the
/// test's environment (`SHOAL_*`, `SHOALCTL_CONFIG`, a home directory), as a new user would.
pub fn run_clean(bin: &str, args: &[&str]) -> std::process::Output {
    let mut cmd = std::process::Command::new(binary(bin));
    for var in [
        "SHOAL_COORDINATORS",
        "SHOAL_TLS_DIR",
        "SHOAL_INSECURE",
        "SHOALCTL_CONFIG",
    ] {
        cmd.env_remove(var);
    }
    cmd.env("HOME", "/nonexistent")
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("run {bin}: {e}"))
}

/// A loopback address with a port that was free a moment ago, never the same twice in one
/// process (the kernel may hand out a just-released port again).
pub fn free_addr() -> String {
    use std::sync::Mutex;
    static GIVEN: Mutex<Vec<u16>> = Mutex::new(Vec::new());
    loop {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        let port = l.local_addr().expect("local addr").port();
        let mut given = GIVEN.lock().unwrap_or_else(|p| p.into_inner());
        if !given.contains(&port) {
            given.push(port);
            return format!("127.0.0.1:{port}");
        }
    }
}

/// Polls `f` every 250 ms until it gives a value; fails the test after `within`.
pub fn wait_until<T>(
    within: std::time::Duration,
    what: &str,
    mut f: impl FnMut() -> Option<T>,
) -> T {
    let start = std::time::Instant::now();
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(start.elapsed() < within, "{what}: not within {within:?}");
        std::thread::sleep(std::time::Duration::from_millis(250));
    }
}
