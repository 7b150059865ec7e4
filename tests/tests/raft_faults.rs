//! Repeated faults against three coordinators with clients writing and reading all along, and a
//! checker over the whole history (issue 11): every acknowledged write is in every member's
//! final state exactly once, nothing appears that no client sent, and every linearizable read
//! saw every write acknowledged before the read began (and names an index covering them).
//!
//! Faults, in turn: kill the leader and restart it at once; SIGSTOP the leader for 3 s; kill all
//! three and restart them; wipe a follower's data dir and restart it under its old id (it must
//! stay out), then replace it as README.md says (remove the old id, join a new member); partition
//! the leader for 3 s while it keeps running (`shoal_tests::partition`: iptables drops every
//! packet of its cgroup).
//!
//! Short form (the normal `cargo test`): one round of each fault. Long form:
//! `SHOAL_FAULT_ROUNDS=100 cargo test -p shoal-tests --test raft_faults -- --nocapture`.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use shoal_model::api::Query;
use shoal_proto::control::control_client::ControlClient;
use shoal_proto::control::{ClusterRemoveRequest, ClusterStatusRequest};
use shoal_proto::control_api;
use shoal_tests::coordinators::{
    cluster_with, create_service_request, service_names, wait_leader, Coord,
};
use shoal_tests::partition::{isolate, Cgroup};
use tonic::transport::Channel;

const WRITERS: usize = 3;
const READERS: usize = 2;
/// One attempt of a client call; a stalled member must not hold a client longer.
const ATTEMPT: Duration = Duration::from_secs(5);

fn rounds() -> usize {
    std::env::var("SHOAL_FAULT_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5)
}

#[derive(Debug)]
struct WriteRec {
    name: String,
    acked: Option<(Instant, u64)>,
}

#[derive(Debug)]
struct ReadRec {
    invoked: Instant,
    via: String,
    names: BTreeSet<String>,
    index: u64,
}

#[derive(Default)]
struct History {
    writes: Vec<WriteRec>,
    reads: Vec<ReadRec>,
}

type Shared<T> = Arc<Mutex<T>>;

async fn connect(addr: &str) -> anyhow::Result<ControlClient<Channel>> {
    let ch = shoal_pki::tls::endpoint(addr, None)?
        .connect_timeout(Duration::from_millis(500))
        .timeout(ATTEMPT)
        .connect()
        .await?;
    Ok(ControlClient::new(ch))
}

async fn apply_create(addr: &str, request_id: &str, name: &str) -> anyhow::Result<u64> {
    let req = create_service_request(request_id, name);
    let call = async {
        Ok(connect(addr)
            .await?
            .apply(req)
            .await?
            .into_inner()
            .log_index)
    };
    tokio::time::timeout(ATTEMPT, call).await?
}

async fn read_names(addr: &str, stale: bool) -> anyhow::Result<(BTreeSet<String>, u64)> {
    let req = control_api::query_request(&Query::Services, stale);
    let call = async {
        let r = connect(addr).await?.query(req).await?.into_inner();
        let answer = control_api::answer_of(&Query::Services, &r)?;
        anyhow::Ok((service_names(&answer), r.applied_index))
    };
    tokio::time::timeout(ATTEMPT, call).await?
}

/// Writes one new service after another, each retried with its request id until acknowledged
/// (or given up after 30 s: then its outcome is unknown), through the members in turn.
async fn writer(
    n: usize,
    addrs: Shared<Vec<String>>,
    hist: Shared<History>,
    stop: Arc<AtomicBool>,
) {
    let mut seq = 0usize;
    let mut turn = n;
    while !stop.load(Ordering::Relaxed) {
        let name = format!("w{n}-{seq:05}");
        let pos = {
            let mut h = hist.lock().unwrap();
            h.writes.push(WriteRec {
                name: name.clone(),
                acked: None,
            });
            h.writes.len() - 1
        };
        let give_up = Instant::now() + Duration::from_secs(30);
        while Instant::now() < give_up {
            let addr = {
                let a = addrs.lock().unwrap();
                a[turn % a.len()].clone()
            };
            turn += 1;
            match apply_create(&addr, &format!("req-{name}"), &name).await {
                Ok(index) => {
                    hist.lock().unwrap().writes[pos].acked = Some((Instant::now(), index));
                    break;
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        }
        seq += 1;
    }
}

/// Linearizable reads through the members in turn; only answered reads are recorded.
async fn reader(
    n: usize,
    addrs: Shared<Vec<String>>,
    hist: Shared<History>,
    stop: Arc<AtomicBool>,
) {
    let mut turn = n;
    while !stop.load(Ordering::Relaxed) {
        let addr = {
            let a = addrs.lock().unwrap();
            a[turn % a.len()].clone()
        };
        turn += 1;
        let invoked = Instant::now();
        if let Ok((names, index)) = read_names(&addr, false).await {
            hist.lock().unwrap().reads.push(ReadRec {
                invoked,
                via: addr,
                names,
                index,
            });
        }
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
}

fn addrs_of(coords: &[Coord]) -> Vec<String> {
    coords.iter().map(|c| c.addr.clone()).collect()
}

async fn leader_pos(coords: &[Coord]) -> usize {
    let refs: Vec<&Coord> = coords.iter().collect();
    let leader = wait_leader(&refs, Duration::from_secs(30)).await;
    coords.iter().position(|c| c.id == leader).unwrap()
}

/// Waits until a write is acknowledged after `since` (the cluster serves again); how long.
async fn recovered(hist: &Shared<History>, since: Instant) -> Duration {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let first = hist
            .lock()
            .unwrap()
            .writes
            .iter()
            .filter_map(|w| w.acked.map(|(t, _)| t))
            .filter(|t| *t > since)
            .min();
        if let Some(t) = first {
            return t - since;
        }
        assert!(
            Instant::now() < deadline,
            "no write acknowledged within 30s after a fault"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A coordinator in a cgroup of its own, so that a partition can cut it off.
fn new_coord(root: &std::path::Path, id: u64) -> Coord {
    let mut c = Coord::new(root, id);
    c.cgroup = Some(Cgroup::new(&format!("faults-c{id}")).expect("cgroup for a coordinator"));
    c
}

/// Three coordinators formed through the API, as `cluster` does, each in its own cgroup.
async fn three(root: &std::path::Path) -> Vec<Coord> {
    cluster_with(root, 3, new_coord).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn faults_lose_no_write_and_serve_no_stale_read() {
    let dir = tempfile::tempdir().unwrap();
    let mut coords = three(dir.path()).await;
    let mut next_id = 4;
    let addrs: Shared<Vec<String>> = Arc::new(Mutex::new(addrs_of(&coords)));
    let hist: Shared<History> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let mut tasks = Vec::new();
    for n in 0..WRITERS {
        tasks.push(tokio::spawn(writer(
            n,
            addrs.clone(),
            hist.clone(),
            stop.clone(),
        )));
    }
    for n in 0..READERS {
        tasks.push(tokio::spawn(reader(
            n,
            addrs.clone(),
            hist.clone(),
            stop.clone(),
        )));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;

    for round in 0..rounds() {
        let pos = leader_pos(&coords).await;
        let fault = round % 5;
        let at = Instant::now();
        let what = match fault {
            0 => {
                coords[pos].kill();
                coords[pos].start();
                "kill leader, restart at once"
            }
            1 => {
                coords[pos].signal(Signal::SIGSTOP);
                tokio::time::sleep(Duration::from_secs(3)).await;
                coords[pos].signal(Signal::SIGCONT);
                "SIGSTOP leader 3s"
            }
            2 => {
                for c in coords.iter_mut() {
                    c.kill();
                }
                for c in coords.iter_mut() {
                    c.start();
                }
                "kill all three"
            }
            3 => {
                let f = (pos + 1) % coords.len();
                coords[f].kill();
                coords[f].wipe();
                coords[f].start();
                tokio::time::sleep(Duration::from_secs(2)).await;
                if coords[f].is_running() {
                    let s = coords[f].status().await.unwrap();
                    assert!(
                        s.cluster_id.is_empty() && s.state != "leader",
                        "the wiped member takes part in the cluster: {s:?}"
                    );
                }
                // Replace it: remove the old id, join a new member on a fresh dir.
                let old = coords[f].id;
                coords[f].kill();
                remove_member(&coords, old).await;
                let mut new = new_coord(dir.path(), next_id);
                next_id += 1;
                new.extra_args = vec!["--join".into(), coords[pos].addr.clone()];
                new.start();
                coords[f] = new;
                wait_voters(&coords).await;
                *addrs.lock().unwrap() = addrs_of(&coords);
                "wipe a follower, replace it"
            }
            _ => {
                let cut = isolate(coords[pos].cgroup.as_ref().unwrap()).expect("partition");
                let old = coords[pos].id;
                let others: Vec<&Coord> = coords.iter().filter(|c| c.id != old).collect();
                // The cut is real: the others elect a leader among themselves.
                let new_leader = wait_leader(&others, Duration::from_secs(3)).await;
                assert_ne!(new_leader, old);
                tokio::time::sleep(
                    (at + Duration::from_secs(3)).saturating_duration_since(Instant::now()),
                )
                .await;
                drop(cut);
                "partition the leader 3s (iptables, its cgroup's packets dropped)"
            }
        };
        let took = recovered(&hist, at).await;
        println!("round {round}: {what}: first write acknowledged {took:?} after the fault began");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }

    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        t.await.unwrap();
    }
    let history = std::mem::take(&mut *hist.lock().unwrap());
    check(&coords, &history).await;
}

async fn remove_member(coords: &[Coord], id: u64) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        for c in coords.iter().filter(|c| c.id != id) {
            let Ok(mut client) = c.client().await else {
                continue;
            };
            match client.cluster_remove(ClusterRemoveRequest { id }).await {
                Ok(_) => return,
                Err(s) if s.code() == tonic::Code::FailedPrecondition => {
                    panic!("removing member {id} refused: {}", s.message())
                }
                Err(_) => {}
            }
        }
        assert!(Instant::now() < deadline, "member {id} not removed in 30s");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn wait_voters(coords: &[Coord]) {
    let want: BTreeSet<u64> = coords.iter().map(|c| c.id).collect();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        for c in coords {
            if let Ok(mut client) = c.client().await {
                if let Ok(s) = client.cluster_status(ClusterStatusRequest {}).await {
                    let s = s.into_inner();
                    let voters: BTreeSet<u64> = s
                        .members
                        .iter()
                        .filter(|m| m.role == "voter")
                        .map(|m| m.id)
                        .collect();
                    if s.state == "leader" && voters == want {
                        return;
                    }
                }
            }
        }
        assert!(
            Instant::now() < deadline,
            "voters did not become {want:?} in 60s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The checker: final states against acknowledged writes, and every read against the writes
/// acknowledged before it began.
async fn check(coords: &[Coord], h: &History) {
    let sent: BTreeSet<&str> = h.writes.iter().map(|w| w.name.as_str()).collect();
    let acked: Vec<(&str, Instant, u64)> = h
        .writes
        .iter()
        .filter_map(|w| w.acked.map(|(t, i)| (w.name.as_str(), t, i)))
        .collect();
    let max_index = acked.iter().map(|a| a.2).max().unwrap_or(0);
    println!(
        "history: {} writes sent, {} acknowledged, {} reads answered",
        h.writes.len(),
        acked.len(),
        h.reads.len()
    );
    assert!(!acked.is_empty() && !h.reads.is_empty());

    for c in coords {
        c.wait_applied(max_index, Duration::from_secs(30)).await;
        let (names, _) = read_names(&c.addr, true).await.unwrap();
        for (name, _, _) in &acked {
            assert!(
                names.contains(*name),
                "member {} lost acknowledged write {name}",
                c.id
            );
        }
        for name in &names {
            assert!(
                sent.contains(name.as_str()),
                "member {} has {name}, never sent",
                c.id
            );
        }
        let creates = c.create_counts().await.unwrap();
        for (name, n) in &creates {
            assert_eq!(*n, 1, "member {}: {name} applied {n} times", c.id);
        }
    }

    let mut stale = Vec::new();
    for r in &h.reads {
        for name in &r.names {
            assert!(
                sent.contains(name.as_str()),
                "a read saw {name}, never sent"
            );
        }
        for (name, at, index) in &acked {
            if *at < r.invoked && (!r.names.contains(*name) || r.index < *index) {
                stale.push(format!(
                    "read via {} (index {}) misses {name} (index {index}), acknowledged {:?} \
                     before the read began",
                    r.via,
                    r.index,
                    r.invoked - *at
                ));
            }
        }
    }
    assert!(
        stale.is_empty(),
        "{} stale reads:\n{}",
        stale.len(),
        stale.join("\n")
    );
}
