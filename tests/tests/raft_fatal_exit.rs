//! When the Raft core stops (openraft `Fatal`), the coordinator exits non-zero so that systemd
//! restarts it, and it never answers `leader` meanwhile (issue 11). The fault: the data dir is a
//! 4 MiB tmpfs, filled by writes until the log store fails (ENOSPC), which openraft treats as
//! fatal.

#![allow(clippy::unwrap_used)]

use std::process::Command;
use std::time::{Duration, Instant};

use shoal_model::api::UserCommand;
use shoal_model::ServiceSpec;
use shoal_tests::coordinators::Coord;

/// A tmpfs mounted for this test, unmounted (by its exact path) when dropped.
struct Tmpfs(std::path::PathBuf);

impl Tmpfs {
    fn mount(path: &std::path::Path, size: &str) -> Tmpfs {
        std::fs::create_dir_all(path).unwrap();
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(path)
            .output()
            .expect("run mount");
        assert!(
            out.status.success(),
            "mount tmpfs: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Tmpfs(path.to_path_buf())
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let ok = Command::new("umount")
            .arg(&self.0)
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            // Still busy (a process of this test not reaped yet): detach it rather than leak it.
            let _ = Command::new("umount").arg("-l").arg(&self.0).status();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_raft_core_exits_the_process() {
    let dir = tempfile::tempdir().unwrap();
    // Mounted before the coordinator exists, so unmounted after it is killed (drop order).
    let _fs = Tmpfs::mount(&dir.path().join("c1"), "4m");
    let mut c = Coord::new(dir.path(), 1);
    c.extra_args = vec!["--bootstrap".into()];
    c.start();
    c.wait_serving().await;

    // Services with a large label fill the log until the store cannot write.
    let big = "x".repeat(64 << 10);
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut n = 0;
    let exit = loop {
        if let Some(status) = c.wait_exit(Duration::ZERO) {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "the coordinator still runs after 120 s of writes on a full disk; log tail:\n{}",
            tail(&c.log_text())
        );
        if let Ok(s) = c.status().await {
            if s.state == "stopped" {
                assert!(!s.has_leader, "a stopped core reports a leader: {s:?}");
            }
        }
        let name = format!("big-{n}");
        n += 1;
        let mut spec = ServiceSpec {
            replicas: 0,
            ..Default::default()
        };
        spec.container.image = "busybox".into();
        spec.labels.insert("filler".into(), big.clone());
        let cmd = UserCommand::CreateService {
            name: name.clone(),
            spec,
        };
        if let Ok(mut client) = c.client().await {
            let req = shoal_proto::control_api::apply_request(&name, &cmd);
            let _ = tokio::time::timeout(Duration::from_secs(5), client.apply(req)).await;
        }
    };
    let log = c.log_text();
    for line in log.lines().filter(|l| l.contains("raft core stopped")) {
        println!("{line}");
    }
    println!("{n} writes; exit status {exit:?}");
    assert!(
        !exit.success(),
        "exit status {exit:?} after the raft core stopped; log tail:\n{}",
        tail(&log)
    );
    assert!(
        log.contains("the raft core stopped"),
        "the reason is logged; log tail:\n{}",
        tail(&log)
    );
}

fn tail(s: &str) -> String {
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(30)..].join("\n")
}
