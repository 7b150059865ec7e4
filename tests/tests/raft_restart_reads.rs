//! Linearizable reads right after restarts (issue 11, defect 1): writes acknowledged through the
//! leader, the leader SIGKILLed right after the last acknowledgement and restarted at once (or
//! all three members killed and restarted), then the first default read through the restarted
//! members must see every acknowledged write, and the index it names must cover them.
//! `SHOAL_RESTART_ROUNDS` sets the number of rounds (default 6).

#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant};

use shoal_tests::coordinators::{cluster, wait_leader, Coord};

fn rounds() -> usize {
    std::env::var("SHOAL_RESTART_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(6)
}

/// The first linearizable read through `c` that succeeds (retried while there is no leader).
async fn first_read(c: &Coord) -> (Vec<String>, u64) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let call = tokio::time::timeout(Duration::from_secs(15), c.read_service_names());
        match call.await {
            Ok(Ok(r)) => return r,
            Ok(Err(e)) => assert!(
                Instant::now() < deadline,
                "no read through {} in 30s: {e:#}",
                c.id
            ),
            Err(_) => panic!("a read through {} hung for 15s", c.id),
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Writes `n` services through `c`, one after the other; names and the last index.
async fn write_burst(c: &Coord, round: usize, n: usize) -> (Vec<String>, u64) {
    let mut names = Vec::new();
    let mut last = 0;
    for i in 0..n {
        let name = format!("r{round:02}-{i:02}");
        last = c
            .create_service(&format!("req-{name}"), &name)
            .await
            .unwrap_or_else(|e| panic!("write {name} through {}: {e}", c.id));
        names.push(name);
    }
    (names, last)
}

fn check(reader: &Coord, acked: &[String], last: u64, seen: &(Vec<String>, u64), what: &str) {
    let missing: Vec<&String> = acked.iter().filter(|n| !seen.0.contains(n)).collect();
    assert!(
        missing.is_empty(),
        "{what}: the first read through member {} missed acknowledged writes {missing:?} \
         (reply index {}, last acknowledged index {last})",
        reader.id,
        seen.1
    );
    assert!(
        seen.1 >= last,
        "{what}: the read through member {} names index {} below the last acknowledged write's \
         {last}",
        reader.id,
        seen.1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_after_leader_restart_see_every_acknowledged_write() {
    let dir = tempfile::tempdir().unwrap();
    let mut coords = cluster(dir.path(), 3, &[]).await;
    let mut acked: Vec<String> = Vec::new();
    for round in 0..rounds() {
        let refs: Vec<&Coord> = coords.iter().collect();
        let leader = wait_leader(&refs, Duration::from_secs(20)).await;
        let pos = coords.iter().position(|c| c.id == leader).unwrap();
        let (names, last) = write_burst(&coords[pos], round, 15).await;
        acked.extend(names);
        coords[pos].kill();
        coords[pos].start();
        let seen = first_read(&coords[pos]).await;
        check(&coords[pos], &acked, last, &seen, "leader restart");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_after_all_members_restart_see_every_acknowledged_write() {
    let dir = tempfile::tempdir().unwrap();
    let mut coords = cluster(dir.path(), 3, &[]).await;
    let mut acked: Vec<String> = Vec::new();
    for round in 0..rounds() {
        let refs: Vec<&Coord> = coords.iter().collect();
        let leader = wait_leader(&refs, Duration::from_secs(20)).await;
        let pos = coords.iter().position(|c| c.id == leader).unwrap();
        let (names, last) = write_burst(&coords[pos], round, 10).await;
        acked.extend(names);
        for c in coords.iter_mut() {
            c.kill();
        }
        for c in coords.iter_mut() {
            c.start();
        }
        // The old leader first, then a follower: both answer linearizable reads.
        let other = (pos + 1) % coords.len();
        for i in [pos, other] {
            let seen = first_read(&coords[i]).await;
            check(&coords[i], &acked, last, &seen, "all restarted");
        }
    }
}
