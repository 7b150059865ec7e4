//! Writes and reads forwarded by a follower while the leader is stalled (issue 11, defect 3):
//! the forward must move to the new leader instead of waiting for the stalled one, and the
//! write is applied once.

#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use shoal_model::api::EventKind;
use shoal_tests::coordinators::{cluster, wait_leader, Coord};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwarded_calls_move_to_the_new_leader() {
    let dir = tempfile::tempdir().unwrap();
    let coords = cluster(dir.path(), 3, &[]).await;
    let refs: Vec<&Coord> = coords.iter().collect();
    for round in 0..2 {
        let leader = wait_leader(&refs, Duration::from_secs(10)).await;
        let lpos = coords.iter().position(|c| c.id == leader).unwrap();
        let follower = &coords[(lpos + 1) % 3];
        // Warm the follower's channel to the leader.
        follower
            .create_service(&format!("req-warm-{round}"), &format!("warm-{round}"))
            .await
            .unwrap();

        coords[lpos].signal(Signal::SIGSTOP);
        let started = Instant::now();
        let name = format!("stalled-{round}");
        let write = tokio::time::timeout(
            Duration::from_secs(20),
            follower.create_service(&format!("req-{name}"), &name),
        )
        .await;
        let write_took = started.elapsed();
        let read_started = Instant::now();
        let read =
            tokio::time::timeout(Duration::from_secs(20), follower.read_service_names()).await;
        let read_took = read_started.elapsed();
        coords[lpos].signal(Signal::SIGCONT);
        // Let the old leader learn of the new one before the next round looks for the leader.
        tokio::time::sleep(Duration::from_secs(1)).await;

        let index = write
            .unwrap_or_else(|_| panic!("the forwarded write hung for 20s"))
            .unwrap_or_else(|e| panic!("the forwarded write failed: {e}"));
        println!("round {round}: forwarded write {write_took:?}, read {read_took:?}");
        assert!(
            write_took < Duration::from_secs(6),
            "the forwarded write took {write_took:?} while a new leader could be elected in ~1s"
        );
        let (names, read_index) = read
            .unwrap_or_else(|_| panic!("the forwarded read hung for 20s"))
            .unwrap();
        assert!(names.contains(&name) && read_index >= index);
        assert!(
            read_took < Duration::from_secs(6),
            "the read took {read_took:?}"
        );
        // Once: the stalled leader's copy of the request (if it got one) does not apply twice.
        let (events, _) = follower.events(0, false).await.unwrap();
        let creates = events
            .iter()
            .filter(|e| e.kind == EventKind::Service && e.action == "create" && e.object == name)
            .count();
        assert_eq!(creates, 1, "{name} created {creates} times");
    }
}
