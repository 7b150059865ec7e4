//! Membership changes through `shoalctl cluster add/remove`, and a member whose missing log
//! was purged brought up to date by snapshot install.

#![allow(clippy::unwrap_used)]

use std::process::Command;
use std::time::Duration;

use shoal_tests::binary;
use shoal_tests::coordinators::{cluster, wait_leader, Coord};

fn shoalctl(endpoints: &[&Coord], args: &[&str]) -> (bool, String) {
    let list: Vec<String> = endpoints.iter().map(|c| c.addr.clone()).collect();
    let out = Command::new(binary("shoalctl"))
        .env("SHOAL_INSECURE", "true")
        .arg("--coordinators")
        .arg(list.join(","))
        .args(args)
        .output()
        .expect("run shoalctl");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

fn voters(status: &shoal_proto::control::ClusterStatusReply) -> Vec<u64> {
    status
        .members
        .iter()
        .filter(|m| m.role == "voter")
        .map(|m| m.id)
        .collect()
}

async fn write_n(c: &Coord, prefix: &str, n: usize) -> u64 {
    let mut last = 0;
    for i in 0..n {
        let name = format!("{prefix}-{i:04}");
        last = c
            .create_service(&format!("req-{name}"), &name)
            .await
            .expect("write");
    }
    last
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn add_and_remove_members_with_snapshot_catch_up() {
    let dir = tempfile::tempdir().unwrap();
    // Snapshot every 20 entries and keep no log behind it, so new members need a snapshot.
    let tuning = ["--snapshot-logs", "20", "--keep-logs", "0"];
    let mut coords = cluster(dir.path(), 3, &tuning).await;
    let refs: Vec<&Coord> = coords.iter().collect();
    wait_leader(&refs, Duration::from_secs(10)).await;
    let last = write_n(&coords[0], "before", 60).await;
    for c in &coords {
        c.wait_applied(last, Duration::from_secs(10)).await;
    }
    // The log has been purged behind a snapshot on the leader.
    let st = coords[0].status().await.unwrap();
    assert!(st.snapshot_index > 0, "no snapshot was built: {st:?}");

    // A fourth and a fifth member, added with shoalctl.
    for id in [4, 5] {
        let mut c = Coord::new(dir.path(), id);
        c.extra_args = tuning.iter().map(|s| s.to_string()).collect();
        c.start();
        c.wait_serving().await;
        let refs: Vec<&Coord> = coords.iter().collect();
        let (ok, out) = shoalctl(&refs, &["cluster", "add", &id.to_string(), &c.addr]);
        assert!(ok, "cluster add {id} failed: {out}");
        coords.push(c);
    }
    let st = coords[0].status().await.unwrap();
    assert_eq!(voters(&st), vec![1, 2, 3, 4, 5], "{st:?}");
    for c in &coords[3..] {
        c.wait_applied(last, Duration::from_secs(20)).await;
        let s = c.status().await.unwrap();
        assert!(
            s.snapshot_index > 0,
            "member {} was not brought up by a snapshot: {s:?}",
            c.id
        );
        let names = c.local_service_names().await.unwrap();
        assert_eq!(
            names.iter().filter(|n| n.starts_with("before-")).count(),
            60
        );
    }

    // A lagging member: stop 2, write more than a snapshot's worth, restart it.
    coords[1].kill();
    let last = write_n(&coords[0], "while-down", 50).await;
    let st = coords[0].status().await.unwrap();
    assert!(st.purged_index > 0, "leader purged nothing: {st:?}");
    coords[1].start();
    coords[1].wait_applied(last, Duration::from_secs(20)).await;
    let names = coords[1].local_service_names().await.unwrap();
    assert_eq!(
        names
            .iter()
            .filter(|n| n.starts_with("while-down-"))
            .count(),
        50
    );

    // cluster status through shoalctl lists every member with its indices.
    let refs: Vec<&Coord> = coords.iter().collect();
    let (ok, out) = shoalctl(&refs, &["cluster", "status"]);
    assert!(ok, "{out}");
    for c in &coords {
        assert!(out.contains(&c.addr), "status lacks member {}: {out}", c.id);
    }
    assert!(out.contains("leader") && out.contains("LAG"), "{out}");
    let (ok, out) = shoalctl(&refs, &["-o", "json", "cluster", "status"]);
    assert!(ok, "{out}");
    let v: serde_json::Value = serde_json::from_str(&out).expect("json status");
    assert_eq!(v["members"].as_array().unwrap().len(), 5);

    // Remove member 5 through shoalctl.
    let (ok, out) = shoalctl(&refs, &["cluster", "remove", "5"]);
    assert!(ok, "cluster remove failed: {out}");
    let st = coords[0].status().await.unwrap();
    assert_eq!(voters(&st), vec![1, 2, 3, 4]);
    // Writes still commit with four voters.
    write_n(&coords[2], "after-remove", 3).await;
}
