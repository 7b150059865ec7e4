//! Coordinators renew their own certificates: a secure 3-coordinator cluster whose coordinator
//! certificates live 24 s renews each of them (new serial, same identity, stored in the TLS
//! dir) before it expires; once every original certificate has expired, the cluster still has
//! a leader, takes writes through every member (followers forward to the leader over mutual TLS
//! with their renewed certificates, and the harness connects anew to each member, so each
//! server must present a valid certificate), elects a new leader when the leader is killed,
//! and the killed coordinator restarts on the renewed certificate from its data dir and
//! catches up (the others connect to it anew, presenting theirs).
#![allow(clippy::unwrap_used)]

use std::os::unix::fs::PermissionsExt;
use std::time::{Duration, Instant};

use shoal_pki::files::TlsDir;
use shoal_pki::{unix_now, CertInfo, Identity, Role};
use shoal_tests::coordinators::{secure_cluster, wait_leader, Coord};

/// The coordinator certificates' lifetime: renewed at about 16 s.
const TTL_SECS: i64 = 24;

fn tls_dir(c: &Coord) -> TlsDir {
    TlsDir::new(c.data_dir.join("tls"))
}

fn cert_of(c: &Coord) -> CertInfo {
    CertInfo::from_pem(&tls_dir(c).load().unwrap().cert_pem).unwrap()
}

/// Writes one service through `c`; retries while a leader change settles. Returns the index.
async fn write_through(c: &Coord, name: &str, within: Duration) -> u64 {
    let start = Instant::now();
    loop {
        match c.create_service(&format!("req-{name}"), name).await {
            Ok(index) => return index,
            Err(s) if start.elapsed() < within => {
                eprintln!("write `{name}` through {}: {s}; retrying", c.id);
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(s) => panic!(
                "write `{name}` through coordinator {} failed: {s}\nlog:\n{}",
                c.id,
                c.log_text()
            ),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn coordinators_renew_their_certificates_and_serve_past_the_first_expiry() {
    let root = tempfile::tempdir().unwrap();
    let (mut coords, _admin_dir) = secure_cluster(root.path(), 3, |c| {
        c.extra_args
            .extend(["--coordinator-cert-ttl-secs".into(), TTL_SECS.to_string()]);
        c.extra_args
            .extend(["--metrics-listen".into(), shoal_tests::free_addr()]);
    })
    .await;

    // 1. The flag sets the lifetime of the bootstrap's own certificate and of those signed
    //    for joining coordinators.
    let originals: Vec<CertInfo> = coords.iter().map(cert_of).collect();
    for (c, o) in coords.iter().zip(&originals) {
        let want = Identity::new(Role::Coordinator, format!("coordinator-{}", c.id));
        assert_eq!(o.identity, want);
        let issued = o.not_before + shoal_pki::ca::BACKDATE.as_secs() as i64;
        assert_eq!(o.not_after - issued, TTL_SECS, "coordinator {}", c.id);
    }

    // 2. Each certificate is renewed before it expires: new serial, same identity, later
    //    expiry, key still 0600.
    let deadline = Instant::now() + Duration::from_secs(2 * TTL_SECS as u64);
    for (c, o) in coords.iter().zip(&originals) {
        loop {
            let now = cert_of(c);
            if now.serial != o.serial {
                assert!(
                    unix_now() < o.not_after,
                    "coordinator {} renewed only after its certificate expired",
                    c.id
                );
                assert_eq!(now.identity, o.identity);
                assert!(now.not_after > o.not_after);
                break;
            }
            assert!(
                Instant::now() < deadline,
                "coordinator {} did not renew its certificate (serial {}, expires {}); log:\n{}",
                c.id,
                o.serial,
                o.not_after,
                c.log_text()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        let mode = std::fs::metadata(tls_dir(c).key())
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        assert!(c.log_text().contains("coordinator certificate renewed"));
    }

    // 3. Wait until every original certificate has expired.
    let last_expiry = originals.iter().map(|o| o.not_after).max().unwrap();
    let wait = (last_expiry + 2 - unix_now()).max(0) as u64;
    assert!(wait <= TTL_SECS as u64 + 2, "waiting {wait} s");
    tokio::time::sleep(Duration::from_secs(wait)).await;
    for (c, o) in coords.iter().zip(&originals) {
        assert_ne!(cert_of(c).serial, o.serial, "coordinator {}", c.id);
    }
    // /metrics shows when the certificate in use expires: the renewed one's time, not the
    // original's (polled: a further renewal may be under way).
    for c in &coords {
        let at = c
            .extra_args
            .iter()
            .position(|a| a == "--metrics-listen")
            .unwrap();
        let addr = &c.extra_args[at + 1];
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let (_, text) = shoal_tests::probes::http_get(addr, "/metrics", None).unwrap();
            let line = "shoal_tls_certificate_expiry_timestamp_seconds{role=\"coordinator\"} ";
            let shown = text
                .lines()
                .find_map(|l| l.strip_prefix(line))
                .and_then(|v| v.trim().parse::<i64>().ok());
            if shown == Some(cert_of(c).not_after) {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "coordinator {}: metrics show expiry {shown:?}, certificate on disk expires {}:\n{text}",
                c.id,
                cert_of(c).not_after
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    // 4. A leader, and writes through every member, each seen by all.
    let all: Vec<&Coord> = coords.iter().collect();
    let leader = wait_leader(&all, Duration::from_secs(10)).await;
    let mut last = 0;
    for c in &coords {
        last = last.max(
            write_through(
                c,
                &format!("after-expiry-{}", c.id),
                Duration::from_secs(10),
            )
            .await,
        );
    }
    for c in &coords {
        c.wait_applied(last, Duration::from_secs(10)).await;
    }

    // 5. Kill the leader: the others elect a new one and take writes.
    let li = coords.iter().position(|c| c.id == leader).unwrap();
    let before_kill = cert_of(&coords[li]);
    coords[li].kill();
    let survivors: Vec<&Coord> = coords.iter().filter(|c| c.id != leader).collect();
    let new_leader = wait_leader(&survivors, Duration::from_secs(10)).await;
    assert_ne!(new_leader, leader);
    for c in &survivors {
        last = write_through(c, &format!("leader-gone-{}", c.id), Duration::from_secs(10)).await;
    }

    // 6. The killed coordinator restarts on its renewed certificate and catches up.
    let restarted = &mut coords[li];
    let on_disk = cert_of(restarted);
    assert_ne!(on_disk.serial, originals[li].serial);
    assert!(on_disk.serial == before_kill.serial || on_disk.not_after > before_kill.not_after);
    restarted.start();
    restarted.wait_serving().await;
    restarted.wait_applied(last, Duration::from_secs(15)).await;
    let idx = write_through(restarted, "after-restart", Duration::from_secs(10)).await;
    for c in &coords {
        c.wait_applied(idx, Duration::from_secs(10)).await;
    }
    let names = coords[li].local_service_names().await.unwrap();
    for c in &coords {
        assert!(
            names.contains(&format!("after-expiry-{}", c.id)),
            "{names:?}"
        );
    }
    assert!(names.contains(&"after-restart".to_string()), "{names:?}");
}
