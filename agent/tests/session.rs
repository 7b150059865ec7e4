//! The agent's dispatcher session against in-test dispatcher servers: leader redirects,
//! reconnects, status reports that survive a coordinator outage, revoked serials.
#![allow(clippy::unwrap_used)]

mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use shoal_agent::config::{AgentConfig, FileConfig, Flags};
use shoal_agent::node_info::local_node;
use shoal_agent::reporter::Reporter;
use shoal_agent::revocations::Revocations;
use shoal_agent::session::Session;
use shoal_model::TaskState;
use shoal_proto::convert::StatusUpdate;
use support::{task, FakeDispatcher};

fn session(
    endpoints: Vec<String>,
    reporter: Arc<Reporter>,
) -> (Session, tokio::sync::mpsc::Receiver<Vec<shoal_model::Task>>) {
    session_with(endpoints, reporter, Revocations::default())
}

fn session_with(
    endpoints: Vec<String>,
    reporter: Arc<Reporter>,
    revocations: Revocations,
) -> (Session, tokio::sync::mpsc::Receiver<Vec<shoal_model::Task>>) {
    let flags = Flags {
        node_name: Some("node-s".into()),
        labels: vec!["role=controller".into()],
        ..Default::default()
    };
    let cfg = AgentConfig::resolve(FileConfig::default(), &flags).unwrap();
    let (tx, rx) = tokio::sync::mpsc::channel(8);
    (
        Session {
            endpoints,
            node: local_node(&cfg, "fake 0"),
            reporter,
            assignments: tx,
            prepull: None,
            tls: None,
            secrets: Default::default(),
            configs: Default::default(),
            templates: Default::default(),
            revocations,
        },
        rx,
    )
}

fn update(id: &str, state: TaskState, msg: &str) -> StatusUpdate {
    StatusUpdate {
        task_id: id.into(),
        state,
        message: msg.into(),
        exit_code: None,
        image_digest: None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn follows_the_leader_and_delivers_assignments_and_reports() {
    let leader = FakeDispatcher::start();
    let follower = FakeDispatcher::start();
    *follower.shared.redirect_to.lock().unwrap() = Some(leader.addr.clone());
    leader.assign(vec![task("t1", "node-s", "img", &["sleep", "1"])]);
    let reporter = Arc::new(Reporter::new(None));
    reporter.report(update("t1", TaskState::Running, "before connecting"));
    let (s, mut rx) = session(vec![follower.addr.clone()], reporter.clone());
    let h = tokio::spawn(s.run());
    let set = tokio::time::timeout(Duration::from_secs(5), rx.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(set.len(), 1);
    assert_eq!(set[0].id, "t1");
    let regs = leader.registrations();
    assert_eq!(regs.len(), 1);
    assert_eq!(regs[0].name, "node-s");
    assert_eq!(regs[0].labels["role"], "controller");
    assert!(follower.registrations().is_empty());
    leader
        .wait_for("t1", "queued report", Duration::from_secs(5), |r| {
            r.len() == 1
        })
        .await;
    // New sets arrive whenever the assignment changes; reports go out as they are made.
    leader.assign(vec![]);
    let set = tokio::time::timeout(Duration::from_secs(5), rx.recv())
        .await
        .unwrap()
        .unwrap();
    assert!(set.is_empty());
    reporter.report(update("t1", TaskState::Shutdown, "stopped"));
    leader
        .wait_state("t1", TaskState::Shutdown, Duration::from_secs(5))
        .await;
    assert!(reporter.pending().is_empty());
    h.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconnects_within_a_second_and_resends_unacknowledged_reports_once() {
    let mut d = FakeDispatcher::start();
    let reporter = Arc::new(Reporter::new(None));
    // The first endpoint is dead from the start: the agent moves on to the next.
    let dead = shoal_tests::free_addr();
    let (s, mut rx) = session(vec![dead, d.addr.clone()], reporter.clone());
    let h = tokio::spawn(s.run());
    tokio::time::timeout(Duration::from_secs(5), rx.recv())
        .await
        .unwrap()
        .unwrap();
    d.stop();
    // Reports made while no coordinator answers stay queued.
    reporter.report(update("t2", TaskState::Running, "while down"));
    reporter.report(update("t2", TaskState::Failed, "exited with code 1"));
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(reporter.pending().len(), 2);
    // The coordinator comes back: the agent is there within about a second (backoff <= 1 s) and
    // delivers the queued reports, once each, in order.
    let regs = d.registrations().len();
    let start = Instant::now();
    d.resume();
    d.wait_state("t2", TaskState::Failed, Duration::from_secs(3))
        .await;
    assert!(
        start.elapsed() < Duration::from_millis(1500),
        "{:?}",
        start.elapsed()
    );
    assert_eq!(d.registrations().len(), regs + 1);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let got: Vec<(TaskState, String)> = d
        .reports_of("t2")
        .into_iter()
        .map(|u| (u.state, u.message))
        .collect();
    assert_eq!(
        got,
        vec![
            (TaskState::Running, "while down".into()),
            (TaskState::Failed, "exited with code 1".into())
        ]
    );
    assert!(reporter.pending().is_empty());
    h.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoked_serials_arrive_with_the_assignment_set_and_replace_the_last_list() {
    let d = FakeDispatcher::start();
    d.revoke(&["0a"]);
    let revocations = Revocations::default();
    let (s, mut rx) = session_with(
        vec![d.addr.clone()],
        Arc::new(Reporter::new(None)),
        revocations.clone(),
    );
    let h = tokio::spawn(s.run());
    tokio::time::timeout(Duration::from_secs(5), rx.recv())
        .await
        .unwrap()
        .unwrap();
    assert!(revocations.is_revoked("0a"));
    // A revocation while connected: a new set with the same tasks brings the new list.
    d.revoke(&["0a", "0b"]);
    tokio::time::timeout(Duration::from_secs(5), rx.recv())
        .await
        .unwrap()
        .unwrap();
    assert!(revocations.is_revoked("0a") && revocations.is_revoked("0b"));
    // The list is replaced whole (an expired certificate leaves it).
    d.revoke(&["0b"]);
    tokio::time::timeout(Duration::from_secs(5), rx.recv())
        .await
        .unwrap()
        .unwrap();
    assert!(!revocations.is_revoked("0a") && revocations.is_revoked("0b"));
    h.abort();
}

/// Issue 22: status reports that take long (each a Raft write on a busy disk) never hold up a
/// heartbeat. Each `ReportStatus` takes 700 ms while reports keep coming for 4 s; heartbeats
/// (period 200 ms) keep arriving on time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heartbeats_keep_their_period_while_reports_are_slow() {
    let d = FakeDispatcher::start();
    *d.shared.report_delay.lock().unwrap() = Duration::from_millis(700);
    let reporter = Arc::new(Reporter::new(None));
    let (s, mut rx) = session(vec![d.addr.clone()], reporter.clone());
    let h = tokio::spawn(s.run());
    tokio::time::timeout(Duration::from_secs(5), rx.recv())
        .await
        .unwrap()
        .unwrap();
    let start = Instant::now();
    let mut n = 0u32;
    while start.elapsed() < Duration::from_secs(4) {
        n += 1;
        reporter.report(update(&format!("t{n}"), TaskState::Running, "started"));
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let beats: Vec<Instant> = d
        .shared
        .heartbeats
        .lock()
        .unwrap()
        .iter()
        .copied()
        .filter(|t| *t >= start)
        .collect();
    let widest = beats
        .windows(2)
        .map(|w| w[1] - w[0])
        .max()
        .unwrap_or_default();
    println!(
        "{} heartbeats in 4 s of slow reports ({n} reports, {} delivered); widest gap {widest:?}",
        beats.len(),
        d.shared.reports.lock().unwrap().len()
    );
    assert!(beats.len() >= 15, "only {} heartbeats in 4 s", beats.len());
    assert!(
        widest < Duration::from_millis(600),
        "a heartbeat waited {widest:?}"
    );
    h.abort();
}
