//! Three real coordinators on loopback: writes through every member, the leader SIGKILLed while
//! a client keeps writing, every acknowledged write read back from every survivor exactly once,
//! and the killed member restarted on its data dir catching up.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use shoal_tests::coordinators::{cluster, wait_leader, Coord};

/// Writes `name` with a fixed request id, failing over between `addrs` until acknowledged.
async fn write_until_acked(coords: &[&Coord], request_id: &str, name: &str) -> (u64, usize) {
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut i = 0;
    loop {
        let c = coords[i % coords.len()];
        match c.create_service(request_id, name).await {
            Ok(index) => return (index, i),
            Err(e) => {
                assert!(
                    e.code() != tonic::Code::FailedPrecondition,
                    "write {name} refused: {}",
                    e.message()
                );
                assert!(
                    Instant::now() < deadline,
                    "write {name} not acknowledged in 20s: {e}"
                );
                i += 1;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leader_kill_loses_no_acknowledged_write() {
    let dir = tempfile::tempdir().unwrap();
    let mut coords = cluster(dir.path(), 3, &[]).await;
    let leader = wait_leader(&coords.iter().collect::<Vec<_>>(), Duration::from_secs(10)).await;

    // Writes through each member (followers forward to the leader).
    let mut acked: BTreeMap<String, u64> = BTreeMap::new();
    for c in &coords {
        let name = format!("via-{}", c.id);
        let index = c
            .create_service(&format!("req-{name}"), &name)
            .await
            .expect("write");
        acked.insert(name, index);
    }

    // A client keeps writing through every member while the leader is killed.
    let mut seq = 0u32;
    let mut kill_at = None;
    let mut first_after_kill = None;
    let leader_pos = coords.iter().position(|c| c.id == leader).unwrap();
    while seq < 120 {
        if seq == 40 {
            coords[leader_pos].kill();
            kill_at = Some(Instant::now());
        }
        let alive: Vec<&Coord> = coords
            .iter()
            .filter(|c| kill_at.is_none() || c.id != leader)
            .collect();
        // Start at a different member each time: some writes go through followers.
        let start = seq as usize % alive.len();
        let order: Vec<&Coord> = alive
            .iter()
            .cycle()
            .skip(start)
            .take(alive.len())
            .copied()
            .collect();
        let name = format!("w-{seq:04}");
        let (index, _) = write_until_acked(&order, &format!("req-{name}"), &name).await;
        if let (Some(at), None) = (kill_at, first_after_kill) {
            first_after_kill = Some(at.elapsed());
        }
        acked.insert(name, index);
        seq += 1;
    }
    let failover = first_after_kill.expect("a write after the kill");
    println!("failover: first write acknowledged {failover:?} after SIGKILL of leader {leader}");

    let survivors: Vec<&Coord> = coords.iter().filter(|c| c.id != leader).collect();
    let new_leader = wait_leader(&survivors, Duration::from_secs(10)).await;
    assert_ne!(new_leader, leader);

    let max_index = *acked.values().max().unwrap();
    for c in &survivors {
        c.wait_applied(max_index, Duration::from_secs(10)).await;
        let names = c.local_service_names().await.unwrap();
        for name in acked.keys() {
            assert!(
                names.contains(name),
                "member {} lacks acknowledged write {name}",
                c.id
            );
        }
        // Every write was applied exactly once: one create event per service.
        let creates = c.create_counts().await.unwrap();
        for name in acked.keys() {
            assert_eq!(
                creates.get(name),
                Some(&1),
                "member {}: {name} created {:?} times",
                c.id,
                creates.get(name)
            );
        }
        assert_eq!(
            creates.len(),
            acked.len(),
            "member {} has writes nobody acknowledged",
            c.id
        );
    }

    // The killed member restarts on its data dir and catches up.
    coords[leader_pos].start();
    coords[leader_pos].wait_serving().await;
    coords[leader_pos]
        .wait_applied(max_index, Duration::from_secs(20))
        .await;
    let names = coords[leader_pos].local_service_names().await.unwrap();
    for name in acked.keys() {
        assert!(names.contains(name), "restarted member lacks {name}");
    }
    // A linearizable read through the restarted member sees everything too.
    let (all, _) = coords[leader_pos].services(false).await.unwrap();
    assert_eq!(all.len(), acked.len());
}
