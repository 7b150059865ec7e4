//! Bad input to coordinators: each refused with a clear error and nothing half-written.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use shoal_model::api::CONTROL_API_VERSION;
use shoal_proto::control::{ApplyRequest, ClusterAddRequest, ClusterRemoveRequest, QueryRequest};
use shoal_tests::coordinators::{cluster, wait_leader, Coord};
use shoal_tests::free_addr;

/// Every file under `dir` with a hash of its contents, to show a refused start changed nothing.
fn snapshot_dir(dir: &Path) -> BTreeMap<String, u64> {
    let mut out = BTreeMap::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            for (k, v) in snapshot_dir(&p) {
                out.insert(format!("{}/{k}", p.display()), v);
            }
        } else {
            let mut h = std::collections::hash_map::DefaultHasher::new();
            std::hash::Hash::hash(&std::fs::read(&p).unwrap(), &mut h);
            out.insert(p.display().to_string(), std::hash::Hasher::finish(&h));
        }
    }
    out
}

/// Runs a coordinator to completion (it is expected to refuse to start).
fn run_to_exit(c: &Coord) -> (bool, String) {
    let out = c.command().output().expect("run coordinator");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

#[test]
fn corrupt_data_dir_is_refused_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let c = Coord::new(dir.path(), 1);
    std::fs::create_dir_all(&c.data_dir).unwrap();
    std::fs::write(
        c.data_dir.join("conf"),
        b"\x00\x01garbage that is not a sled config",
    )
    .unwrap();
    std::fs::write(c.data_dir.join("db"), vec![0xAB; 4096]).unwrap();
    let before = snapshot_dir(&c.data_dir);
    let (ok, err) = run_to_exit(&c);
    assert!(!ok, "started on a corrupt data dir");
    assert!(err.contains("refusing to start on data dir"), "{err}");
    assert!(err.contains(&c.data_dir.display().to_string()), "{err}");
    assert_eq!(
        snapshot_dir(&c.data_dir),
        before,
        "the corrupt data dir was modified"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn data_dir_of_another_member_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let mut a = Coord::new(dir.path(), 1);
    a.extra_args = vec!["--bootstrap".into()];
    a.start();
    a.wait_serving().await;
    wait_leader(&[&a], Duration::from_secs(10)).await;
    a.create_service("r1", "kept").await.unwrap();
    a.terminate();
    let before = snapshot_dir(&a.data_dir);
    // Same data dir, other member id.
    let mut b = Coord::new(dir.path(), 2);
    b.data_dir = a.data_dir.clone();
    let (ok, err) = run_to_exit(&b);
    assert!(!ok);
    assert!(
        err.contains("belongs to member 1") && err.contains("member 2"),
        "{err}"
    );
    assert_eq!(snapshot_dir(&a.data_dir), before);
    // The rightful owner still starts with its state.
    a.start();
    a.wait_serving().await;
    assert_eq!(
        a.local_service_names().await.unwrap(),
        vec!["kept".to_string()]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn membership_mistakes_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let coords = cluster(dir.path(), 3, &[]).await;
    let refs: Vec<&Coord> = coords.iter().collect();
    wait_leader(&refs, Duration::from_secs(10)).await;
    // Membership as (id, address, role); replication progress may move meanwhile.
    let members = |s: shoal_proto::control::ClusterStatusReply| -> Vec<(u64, String, String)> {
        s.members
            .into_iter()
            .map(|m| (m.id, m.addr, m.role))
            .collect()
    };
    let members_before = members(coords[0].status().await.unwrap());

    // Duplicate member id.
    let mut dup = Coord::new(dir.path(), 2);
    dup.data_dir = dir.path().join("dup");
    dup.start();
    dup.wait_serving().await;
    let e = coords[1].add(&dup).await.unwrap_err();
    assert!(
        e.message().contains("duplicate member id 2"),
        "{}",
        e.message()
    );

    // A member of another cluster: a single-member cluster of its own, with id 4.
    let other_root = dir.path().join("other");
    std::fs::create_dir_all(&other_root).unwrap();
    let mut foreign = Coord::new(&other_root, 4);
    foreign.extra_args = vec!["--bootstrap".into()];
    foreign.start();
    foreign.wait_serving().await;
    wait_leader(&[&foreign], Duration::from_secs(10)).await;
    foreign.create_service("r", "foreign-svc").await.unwrap();
    let e = coords[0].add(&foreign).await.unwrap_err();
    assert!(
        e.message().contains("belongs to another cluster"),
        "{}",
        e.message()
    );
    // The foreign member keeps its own state and cluster.
    assert_eq!(
        foreign.local_service_names().await.unwrap(),
        vec!["foreign-svc".to_string()]
    );

    // Unreachable new member.
    let mut ghost = Coord::new(dir.path(), 6);
    ghost.addr = free_addr();
    let e = coords[0].add(&ghost).await.unwrap_err();
    assert!(
        e.message().contains("cannot reach new member 6"),
        "{}",
        e.message()
    );

    // Malformed requests.
    let mut client = coords[0].client().await.unwrap();
    let e = client
        .cluster_add(ClusterAddRequest {
            id: 7,
            addr: "not an address".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::InvalidArgument);
    assert!(e.message().contains("addr"), "{}", e.message());
    let e = client
        .cluster_add(ClusterAddRequest {
            id: 0,
            addr: free_addr(),
        })
        .await
        .unwrap_err();
    assert!(e.message().contains("id"), "{}", e.message());
    let e = client
        .apply(ApplyRequest {
            request_id: String::new(),
            command_json: b"{not json".to_vec(),
            api_version: CONTROL_API_VERSION,
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::InvalidArgument);
    assert!(e.message().contains("command_json"), "{}", e.message());
    let e = client
        .apply(ApplyRequest {
            request_id: String::new(),
            command_json: br#"{"type":"init_cluster","cluster_id":"x"}"#.to_vec(),
            api_version: CONTROL_API_VERSION,
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::PermissionDenied);
    let e = client
        .query(QueryRequest {
            query_json: br#"{"type":"nope"}"#.to_vec(),
            stale: false,
            api_version: CONTROL_API_VERSION,
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::InvalidArgument);
    let e = client
        .cluster_remove(ClusterRemoveRequest { id: 42 })
        .await
        .unwrap_err();
    assert!(
        e.message().contains("member 42 is not in the cluster"),
        "{}",
        e.message()
    );

    // Nothing changed.
    assert_eq!(members(coords[0].status().await.unwrap()), members_before);
    let (services, _) = coords[0].services(false).await.unwrap();
    assert_eq!(services.len(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn removing_the_last_voter_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let mut a = Coord::new(dir.path(), 1);
    a.extra_args = vec!["--bootstrap".into()];
    a.start();
    a.wait_serving().await;
    wait_leader(&[&a], Duration::from_secs(10)).await;
    let e = a
        .client()
        .await
        .unwrap()
        .cluster_remove(ClusterRemoveRequest { id: 1 })
        .await
        .unwrap_err();
    assert!(e.message().contains("last voter"), "{}", e.message());
    let st = a.status().await.unwrap();
    assert_eq!(st.members.len(), 1);
    assert!(a.create_service("r", "still-works").await.is_ok());
}

#[test]
fn joining_through_an_unreachable_peer_fails_and_leaves_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = Coord::new(dir.path(), 2);
    c.extra_args = vec!["--join".into(), free_addr()];
    let started = std::time::Instant::now();
    let out: std::process::Output = c.command().output().expect("run");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("cannot join the cluster through"), "{err}");
    assert!(started.elapsed() < Duration::from_secs(40));
    assert!(!c.data_dir.exists(), "a fresh data dir was left behind");
    let _ = Command::new("true");
}
