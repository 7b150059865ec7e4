//! A member restarted on an emptied data dir (issue 11, defect 2): it must not take part in
//! Raft under its old id, the leader keeps serving (its Raft core does not die), a `--join`
//! under the old id and a `--bootstrap` beside the existing cluster are refused, and the
//! documented replacement (remove the old id, join under a new one) works.

#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant};

use shoal_tests::coordinators::{cluster, secure_cluster, wait_leader, Coord};

/// Writes through `c` for `span`; every write must be acknowledged.
async fn keep_writing(c: &Coord, prefix: &str, span: Duration) -> usize {
    let until = Instant::now() + span;
    let mut n = 0;
    while Instant::now() < until {
        let name = format!("{prefix}-{n:03}");
        let r = tokio::time::timeout(
            Duration::from_secs(10),
            c.create_service(&format!("req-{name}"), &name),
        )
        .await;
        match r {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => panic!(
                "write {name} through {} failed: {e}\nlog:\n{}",
                c.id,
                c.log_text()
            ),
            Err(_) => panic!("write {name} through {} hung", c.id),
        }
        n += 1;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    n
}

/// Exactly one member that answers reports itself leader, and every member that answers
/// agrees on who it is.
async fn one_leader(coords: &[&Coord]) {
    let mut leaders = Vec::new();
    let mut named = Vec::new();
    for c in coords {
        if let Ok(s) = c.status().await {
            if s.state == "leader" {
                leaders.push(c.id);
            }
            if s.has_leader {
                named.push(s.leader_id);
            }
        }
    }
    assert_eq!(leaders.len(), 1, "members reporting leader: {leaders:?}");
    assert!(
        named.iter().all(|l| *l == leaders[0]),
        "members name leaders {named:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wiped_member_never_rejoins_under_its_old_id() {
    let dir = tempfile::tempdir().unwrap();
    let mut coords = cluster(dir.path(), 3, &[]).await;
    let refs: Vec<&Coord> = coords.iter().collect();
    let leader = wait_leader(&refs, Duration::from_secs(10)).await;
    let lpos = coords.iter().position(|c| c.id == leader).unwrap();
    keep_writing(&coords[lpos], "before", Duration::from_millis(500)).await;

    // A follower loses its data dir and is started again with the same id, no flags.
    let fpos = (lpos + 1) % 3;
    coords[fpos].kill();
    coords[fpos].wipe();
    coords[fpos].start();
    // Whether it refuses to start or sits outside Raft, the leader keeps serving.
    keep_writing(&coords[lpos], "wiped", Duration::from_secs(3)).await;
    let refs: Vec<&Coord> = coords.iter().collect();
    one_leader(&refs).await;
    if coords[fpos].is_running() {
        let s = coords[fpos].status().await.unwrap();
        assert_ne!(s.state, "leader");
        assert!(
            s.cluster_id.is_empty(),
            "the wiped member took part in the cluster: {s:?}"
        );
    }
    coords[fpos].kill();

    // The same with `--join` under the old id: refused, loudly, and the leader is unharmed.
    coords[fpos].wipe();
    let old_args = coords[fpos].extra_args.clone();
    coords[fpos].extra_args = vec!["--join".into(), coords[lpos].addr.clone()];
    coords[fpos].start();
    let exit = coords[fpos].wait_exit(Duration::from_secs(30));
    let log = coords[fpos].log_text();
    assert!(
        exit.is_some_and(|s| !s.success()),
        "a --join under a member id still in the cluster must fail; exit {exit:?}; log:\n{log}"
    );
    assert!(
        log.contains("cluster remove"),
        "the refusal names the replacement procedure:\n{log}"
    );
    keep_writing(&coords[lpos], "joined-old", Duration::from_secs(2)).await;

    // `--bootstrap` on the emptied dir beside the running cluster: refused, not a second cluster.
    coords[fpos].wipe();
    coords[fpos].extra_args = vec!["--bootstrap".into()];
    coords[fpos].start();
    let exit = coords[fpos].wait_exit(Duration::from_secs(30));
    let log = coords[fpos].log_text();
    assert!(
        exit.is_some_and(|s| !s.success()),
        "a --bootstrap beside a running cluster must fail; exit {exit:?}; log:\n{log}"
    );
    keep_writing(&coords[lpos], "bootstrapped", Duration::from_secs(2)).await;
    coords[fpos].extra_args = old_args;

    // The documented replacement: remove the old id, join a new member on a fresh dir.
    let old_id = coords[fpos].id;
    let mut client = coords[lpos].client().await.unwrap();
    client
        .cluster_remove(shoal_proto::control::ClusterRemoveRequest { id: old_id })
        .await
        .unwrap();
    let mut new = Coord::new(dir.path(), 4);
    new.extra_args = vec!["--join".into(), coords[lpos].addr.clone()];
    new.start();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let s = coords[lpos].status().await.unwrap();
        if s.members.iter().any(|m| m.id == 4 && m.role == "voter") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "member 4 did not become a voter; log:\n{}",
            new.log_text()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    keep_writing(&coords[lpos], "replaced", Duration::from_secs(1)).await;
    let (names, _) = new.read_service_names().await.unwrap();
    assert!(names.iter().any(|n| n.starts_with("replaced-")));
    let others: Vec<&Coord> = coords
        .iter()
        .filter(|c| c.id != old_id)
        .chain(std::iter::once(&new))
        .collect();
    one_leader(&others).await;
}

/// The secure form of "a lost data dir under `--bootstrap`": the restarted member makes a new
/// CA, so the cluster's Raft traffic never gets through to it (their TLS clients refuse its
/// certificate); those refusals must stop it from bootstrapping a second cluster.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wiped_bootstrap_member_of_a_secure_cluster_refuses_a_second_cluster() {
    let dir = tempfile::tempdir().unwrap();
    let (mut coords, _admin_dir) = secure_cluster(dir.path(), 3, |_| {}).await;
    // Member 1 started with `--bootstrap` and keeps it, as a config with `bootstrap = true` would.
    assert!(coords[0].extra_args.iter().any(|a| a == "--bootstrap"));
    coords[0].kill();
    coords[0].wipe();
    coords[0].start();
    let exit = coords[0].wait_exit(Duration::from_secs(30));
    let log = coords[0].log_text();
    assert!(
        exit.is_some_and(|s| !s.success()),
        "a --bootstrap on a lost data dir beside a secure cluster must fail; exit {exit:?}; \
         log:\n{log}"
    );
    assert!(
        log.contains("refusing to bootstrap a new cluster") && log.contains("cluster remove"),
        "the refusal says why and what to do:\n{log}"
    );
    assert!(
        !coords[0].data_dir.exists(),
        "the refused bootstrap left its new CA behind"
    );
    let refs: Vec<&Coord> = coords[1..].iter().collect();
    let leader = wait_leader(&refs, Duration::from_secs(10)).await;
    let l = coords.iter().position(|c| c.id == leader).unwrap();
    keep_writing(&coords[l], "after", Duration::from_secs(2)).await;
}
