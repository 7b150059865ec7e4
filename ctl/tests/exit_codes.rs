//! shoalctl's exit codes tell scripts what kind of failure happened: 2 not found, 3 refused,
//! 4 unavailable, against a real coordinator on loopback. Needs `cargo build --workspace --bins`.

use std::process::Output;

use shoal_tests::coordinators::Coord;
use shoal_tests::{free_addr, run_clean};

/// Runs shoalctl with `args` and no SHOAL_* settings from the test's environment.
fn shoalctl(args: &[&str]) -> Output {
    run_clean("shoalctl", args)
}

/// shoalctl against `c` with its admin certificate: the exit code and stderr.
fn against(c: &Coord, args: &[&str]) -> (Option<i32>, String) {
    let admin = c.data_dir.join("admin");
    let admin = admin.to_str().expect("utf-8 path");
    let mut all = vec!["--coordinators", c.addr.as_str(), "--tls-dir", admin];
    all.extend_from_slice(args);
    let out = shoalctl(&all);
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exit_codes_distinguish_not_found_refused_and_unavailable() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut c = Coord::new(dir.path(), 1);
    c.secure = true;
    c.extra_args.push("--bootstrap".into());
    c.start();
    c.wait_serving().await;

    let create = [
        "service",
        "create",
        "web",
        "--image",
        "busybox",
        "--replicas",
        "0",
    ];
    let (code, err) = against(&c, &create);
    assert_eq!(code, Some(0), "{err}");

    // Not found: by the coordinator (a refusal of kind NotFound) or by shoalctl (an answer).
    let (code, err) = against(&c, &["service", "rm", "nosuch"]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("service `nosuch` not found"), "{err}");
    let (code, err) = against(&c, &["node", "rm", "ghost"]);
    assert_eq!(code, Some(2), "{err}");
    let (code, err) = against(&c, &["service", "inspect", "nosuch"]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("service `nosuch` not found"), "{err}");

    // Refused: exists already, or a malformed name.
    let (code, err) = against(&c, &create);
    assert_eq!(code, Some(3), "{err}");
    assert!(err.contains("service `web` already exists"), "{err}");
    let (code, err) = against(
        &c,
        &[
            "service",
            "create",
            "a b",
            "--image",
            "busybox",
            "--replicas",
            "0",
        ],
    );
    assert_eq!(code, Some(3), "{err}");
    assert!(err.contains("invalid"), "{err}");

    // Other failures: a bad argument shoalctl checks itself.
    let (code, err) = against(&c, &["service", "scale", "web"]);
    assert_eq!(code, Some(1), "{err}");
    c.terminate();

    // Unavailable: nobody listens.
    let nobody = free_addr();
    let out = shoalctl(&["--insecure", "--coordinators", &nobody, "service", "ls"]);
    assert_eq!(
        out.status.code(),
        Some(4),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn help_lists_the_exit_codes() {
    let out = shoalctl(&["--help"]);
    let help = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{help}");
    for line in ["2  not found", "3  refused", "4  unavailable"] {
        assert!(help.contains(line), "{line:?} missing from:\n{help}");
    }
}
