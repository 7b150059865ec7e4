//! What a new user meets in the first ten minutes, against real coordinators on loopback:
//! a TLS mismatch explained, event times readable, a stack named after its directory, shell
//! completion and man pages. Needs `cargo build --workspace --bins` first.

use std::path::Path;
use std::process::{Command, Output};

use shoal_tests::coordinators::Coord;
use shoal_tests::run_clean;

/// Runs a workspace binary with no SHOAL_* settings from the test's environment.
fn run(bin: &str, args: &[&str]) -> Output {
    run_clean(bin, args)
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// A bootstrapped secure coordinator; its admin certificate is in `<data dir>/admin`.
async fn secure_coordinator(root: &Path) -> Coord {
    let mut c = Coord::new(root, 1);
    c.secure = true;
    c.extra_args.push("--bootstrap".into());
    c.start();
    c.wait_serving().await;
    c
}

fn shoalctl_tls(c: &Coord, args: &[&str]) -> Output {
    let admin = c.data_dir.join("admin");
    let admin = admin.to_str().expect("utf-8 path");
    let mut all = vec!["--coordinators", c.addr.as_str(), "--tls-dir", admin];
    all.extend_from_slice(args);
    run("shoalctl", &all)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tls_mismatch_says_what_is_wrong_and_what_to_do() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut secure = secure_coordinator(dir.path()).await;
    let mut plain = Coord::new(dir.path(), 2);
    plain.start();
    plain.wait_serving().await;

    // Plaintext (--insecure) against the TLS cluster.
    let out = run(
        "shoalctl",
        &[
            "--insecure",
            "--coordinators",
            &secure.addr,
            "cluster",
            "status",
        ],
    );
    let err = text(&out.stderr);
    assert!(!out.status.success(), "{err}");
    let first = err.lines().next().unwrap_or_default();
    assert!(
        first.starts_with(&format!(
            "shoalctl: error: {} speaks TLS (a secure cluster)",
            secure.addr
        )),
        "{err}"
    );
    assert!(first.contains("drop --insecure"), "{err}");
    assert!(first.contains("SHOAL_TLS_DIR"), "{err}");

    // TLS with the admin certificate against a cluster started with --insecure.
    let admin = secure.data_dir.join("admin");
    let out = run(
        "shoalctl",
        &[
            "--tls-dir",
            admin.to_str().expect("utf-8 path"),
            "--coordinators",
            &plain.addr,
            "node",
            "ls",
        ],
    );
    let err = text(&out.stderr);
    assert!(!out.status.success(), "{err}");
    let first = err.lines().next().unwrap_or_default();
    assert!(
        first.starts_with(&format!(
            "shoalctl: error: {} speaks plaintext HTTP/2",
            plain.addr
        )),
        "{err}"
    );
    assert!(first.contains("add --insecure"), "{err}");

    // Matching settings work against both.
    let ok = shoalctl_tls(&secure, &["cluster", "status"]);
    assert!(ok.status.success(), "{}", text(&ok.stderr));
    let ok = run(
        "shoalctl",
        &[
            "--insecure",
            "--coordinators",
            &plain.addr,
            "cluster",
            "status",
        ],
    );
    assert!(ok.status.success(), "{}", text(&ok.stderr));
    secure.terminate();
    plain.terminate();
}

/// `2026-12-07T15:52:26Z`: RFC 3339, UTC, whole seconds.
fn is_utc_second(s: &str) -> bool {
    let b = s.as_bytes();
    let digits = |r: std::ops::Range<usize>| r.into_iter().all(|i| b[i].is_ascii_digit());
    b.len() == 20
        && digits(0..4)
        && b[4] == b'-'
        && digits(5..7)
        && b[7] == b'-'
        && digits(8..10)
        && b[10] == b'T'
        && digits(11..13)
        && b[13] == b':'
        && digits(14..16)
        && b[16] == b':'
        && digits(17..19)
        && b[19] == b'Z'
}

/// Seconds since the epoch as `YYYY-MM-DDTHH:MM:SSZ`, by `date` (an independent formatter).
fn date_of(secs: i64) -> String {
    let out = Command::new("date")
        .args(["-u", "-d", &format!("@{secs}"), "+%Y-%m-%dT%H:%M:%SZ"])
        .output()
        .expect("date");
    text(&out.stdout).trim().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_show_utc_times_and_json_keeps_milliseconds() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut c = secure_coordinator(dir.path()).await;
    let created = shoalctl_tls(
        &c,
        &[
            "service",
            "create",
            "web",
            "--image",
            "busybox:latest",
            "--replicas",
            "0",
        ],
    );
    assert!(created.status.success(), "{}", text(&created.stderr));

    let json = shoalctl_tls(&c, &["-o", "json", "events"]);
    assert!(json.status.success(), "{}", text(&json.stderr));
    let events: serde_json::Value = serde_json::from_slice(&json.stdout).expect("events JSON");
    let web = events
        .as_array()
        .and_then(|a| a.iter().find(|e| e["object"] == "web"))
        .unwrap_or_else(|| panic!("no event about service web: {events}"));
    let at_ms = web["at"].as_i64().expect("`at` stays milliseconds in JSON");
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_millis() as i64;
    assert!((now_ms - at_ms).abs() < 120_000, "{at_ms} vs now {now_ms}");

    let table = shoalctl_tls(&c, &["events"]);
    assert!(table.status.success(), "{}", text(&table.stderr));
    let out = text(&table.stdout);
    let mut lines = out.lines();
    let header = lines.next().unwrap_or_default();
    assert!(header.contains("AT (UTC)"), "{out}");
    let row = lines
        .find(|l| l.split_whitespace().any(|w| w == "web"))
        .unwrap_or_else(|| panic!("no row about web:\n{out}"));
    let at = row.split_whitespace().nth(1).unwrap_or_default();
    assert!(is_utc_second(at), "{at} in:\n{out}");
    assert!(
        !out.contains(&at_ms.to_string()),
        "raw milliseconds in:\n{out}"
    );
    // The table's time is the JSON's, to the second.
    assert_eq!(at, date_of(at_ms.div_euclid(1000)));
    c.terminate();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stack_without_name_is_named_after_its_directory() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut c = secure_coordinator(dir.path()).await;
    let project = dir.path().join("My_Demo.v2");
    std::fs::create_dir_all(&project).expect("project dir");
    let file = project.join("compose.yaml");
    std::fs::write(
        &file,
        "services:\n  web:\n    image: busybox:latest\n    command: [sleep, \"3600\"]\n",
    )
    .expect("write stack");
    let file = file.to_str().expect("utf-8 path");

    let plan = shoalctl_tls(&c, &["plan", "-f", file]);
    assert!(plan.status.success(), "{}", text(&plan.stderr));
    assert!(
        text(&plan.stdout).starts_with("plan for stack my_demov2\n"),
        "{}",
        text(&plan.stdout)
    );
    // --stack still wins.
    let plan = shoalctl_tls(&c, &["plan", "-f", file, "--stack", "other"]);
    assert!(
        text(&plan.stdout).starts_with("plan for stack other\n"),
        "{}{}",
        text(&plan.stdout),
        text(&plan.stderr)
    );
    let apply = shoalctl_tls(&c, &["apply", "-f", file]);
    assert!(apply.status.success(), "{}", text(&apply.stderr));
    let ls = shoalctl_tls(&c, &["-o", "json", "stack", "ls"]);
    let stacks: serde_json::Value = serde_json::from_slice(&ls.stdout).expect("stacks JSON");
    assert_eq!(
        stacks,
        serde_json::json!([{"name": "my_demov2", "services": 1}])
    );
    // The help says so.
    let help = run("shoalctl", &["plan", "--help"]);
    assert!(
        text(&help.stdout).contains("directory"),
        "{}",
        text(&help.stdout)
    );
    c.terminate();
}

#[test]
fn completion_scripts_for_bash_zsh_and_fish() {
    let bash = run("shoalctl", &["completion", "bash"]);
    assert!(bash.status.success(), "{}", text(&bash.stderr));
    // bash loads it and registers a completion for shoalctl.
    let script = tempfile::NamedTempFile::new().expect("temp file");
    std::fs::write(script.path(), &bash.stdout).expect("write script");
    let loaded = Command::new("bash")
        .arg("-c")
        .arg(format!(
            "source {} && complete -p shoalctl",
            script.path().display()
        ))
        .output()
        .expect("bash");
    assert!(loaded.status.success(), "{}", text(&loaded.stderr));
    assert!(text(&loaded.stdout).contains("shoalctl"));
    // Subcommands are completed.
    assert!(text(&bash.stdout).contains("service"));

    let zsh = run("shoalctl", &["completion", "zsh"]);
    assert!(zsh.status.success());
    assert!(
        text(&zsh.stdout).starts_with("#compdef shoalctl"),
        "{}",
        text(&zsh.stdout)
    );
    let fish = run("shoalctl", &["completion", "fish"]);
    assert!(fish.status.success());
    assert!(text(&fish.stdout).contains("complete -c shoalctl"));

    let bad = run("shoalctl", &["completion", "tcsh"]);
    assert!(!bad.status.success());
}

#[test]
fn a_man_page_per_binary() {
    for (bin, args, flag) in [
        ("shoalctl", &["man"][..], "\\-\\-insecure"),
        ("shoal-coordinator", &["--man"][..], "\\-\\-data\\-dir"),
        ("shoal-agent", &["--man"][..], "\\-\\-containerd\\-socket"),
    ] {
        let out = run(bin, args);
        assert!(out.status.success(), "{bin}: {}", text(&out.stderr));
        let page = text(&out.stdout);
        assert!(page.contains(&format!(".TH {bin} 1")), "{bin}:\n{page}");
        assert!(page.contains(".SH NAME"), "{bin}:\n{page}");
        assert!(page.contains(flag), "{bin} documents {flag}:\n{page}");
    }
    // Subcommands are listed in shoalctl's page.
    let page = text(&run("shoalctl", &["man"]).stdout);
    assert!(page.contains("completion"), "{page}");
}
