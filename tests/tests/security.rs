//! Secure by default, end to end: a bootstrapped cluster with its own CA, coordinators and
//! agents joining with tokens, `shoalctl` with the admin certificate, and every refusal the
//! security model promises (no certificate, another CA, an expired certificate, an agent
//! certificate on the control and Raft APIs, an agent speaking for another node, the wrong token,
//! a rotated-out token, a revoked node, a coordinator whose CA does not match the pin, a revoked
//! admin certificate on the coordinators and on the agents' API, also after an agent restart with
//! no coordinator), each checked to change nothing. Also: agent certificates renew themselves
//! without a restart (an open `logs --follow` stays open, new connections get the new
//! certificate, `/metrics` shows its expiry), key files are 0600.
#![allow(clippy::unwrap_used)]

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use shoal_model::api::{Query, UserCommand};
use shoal_model::{ContainerSpec, ServiceSpec};
use shoal_pki::files::{TlsDir, TlsMaterial};
use shoal_pki::tls::{anonymous_client_config, client_config, endpoint};
use shoal_pki::{CertInfo, Role};
use shoal_proto::agent::agent_client::AgentClient;
use shoal_proto::agent::{ExecRequest, LogsRequest};
use shoal_proto::control::control_client::ControlClient;
use shoal_proto::control::ApplyRequest;
use shoal_proto::control_api;
use shoal_proto::dispatcher::dispatcher_client::DispatcherClient;
use shoal_proto::dispatcher::{HeartbeatRequest, StatusReport, TaskStatus};
use shoal_proto::raft::raft_client::RaftClient;
use shoal_proto::raft::RaftPayload;
use shoal_tests::agents::Agent;
use shoal_tests::binary;
use shoal_tests::containerd::{available_or_skip, TestContainerd};
use shoal_tests::coordinators::{wait_leader, Coord};
use shoal_tests::image::{build_busybox_image, ImageOptions};
use tonic::transport::{Certificate, ClientTlsConfig, Identity};

const IMAGE: &str = "shoal.test/busybox:security";

fn ctl(tls_dir: &Path, coordinators: &str, args: &[&str]) -> Output {
    Command::new(binary("shoalctl"))
        .env_remove("SHOAL_INSECURE")
        .env("SHOAL_TLS_DIR", tls_dir)
        .args(["--coordinators", coordinators])
        .args(args)
        .output()
        .unwrap()
}

fn ok(out: Output, what: &str) -> String {
    assert!(
        out.status.success(),
        "{what} failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// `shoalctl cert issue-admin --name NAME --out OUT EXTRA...` as the bootstrap admin.
fn issue_admin(admin_dir: &Path, coordinators: &str, name: &str, out: &Path, extra: &[&str]) {
    let mut args = vec![
        "cert",
        "issue-admin",
        "--name",
        name,
        "--out",
        out.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    ok(
        ctl(admin_dir, coordinators, &args),
        &format!("cert issue-admin {name}"),
    );
}

fn material(dir: &Path) -> TlsMaterial {
    TlsDir::new(dir).load().unwrap()
}

fn create_service(name: &str) -> ApplyRequest {
    let cmd = UserCommand::CreateService {
        name: name.into(),
        spec: ServiceSpec {
            container: ContainerSpec {
                image: IMAGE.into(),
                command: vec!["sleep".into(), "600".into()],
                ..Default::default()
            },
            replicas: 1,
            ..Default::default()
        },
    };
    control_api::apply_request("", &cmd)
}

/// Calls Control.Apply with `tls` and returns the error text (the call must fail).
async fn apply_refused(addr: &str, tls: &ClientTlsConfig, name: &str) -> (tonic::Code, String) {
    let channel = match endpoint(addr, Some(tls)).unwrap().connect().await {
        Ok(c) => c,
        Err(e) => return (tonic::Code::Unavailable, format!("{e:?}")),
    };
    match ControlClient::new(channel)
        .apply(create_service(name))
        .await
    {
        Ok(r) => panic!("apply of {name} was accepted: {r:?}"),
        Err(s) => (s.code(), format!("{}: {:?}", s.message(), s)),
    }
}

async fn query(c: &Coord, q: Query) -> Value {
    c.query_json(&q, false).await.unwrap().0
}

async fn service_names(c: &Coord) -> Vec<String> {
    c.read_service_names().await.unwrap().0
}

async fn node(c: &Coord, name: &str) -> Option<Value> {
    query(c, Query::Nodes)
        .await
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["name"] == json!(name))
        .cloned()
}

/// Waits until the coordinators list node `name` as ready.
async fn wait_ready(c: &Coord, name: &str, what: &str, within: Duration) {
    wait_for(what, within, || async {
        node(c, name).await.is_some_and(|n| n["status"] == "ready")
    })
    .await;
}

async fn wait_for<F, Fut>(what: &str, within: Duration, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = Instant::now();
    while !f().await {
        assert!(start.elapsed() < within, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Waits for a process started to fail, and returns its log.
fn wait_exit_failed(c: &mut Coord, within: Duration) -> String {
    let start = Instant::now();
    while c.is_running() {
        assert!(
            start.elapsed() < within,
            "coordinator {} kept running:\n{}",
            c.id,
            c.log_text()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    c.log_text()
}

/// A Raft vote with `tls`; the call must be refused.
async fn raft_vote_refused(addr: &str, tls: &ClientTlsConfig) -> tonic::Status {
    let ch = endpoint(addr, Some(tls)).unwrap().connect().await.unwrap();
    RaftClient::new(ch)
        .vote(RaftPayload {
            data: b"{}".to_vec(),
        })
        .await
        .unwrap_err()
}

/// The agent API at `addr`, called directly with `tls` (as the holder of a leaked certificate
/// would: `shoalctl exec` asks a coordinator first, which refuses a revoked certificate itself).
async fn agent_api(
    addr: &str,
    tls: &ClientTlsConfig,
) -> Result<AgentClient<tonic::transport::Channel>, tonic::Status> {
    let ch = endpoint(addr, Some(tls))
        .unwrap()
        .connect()
        .await
        .map_err(|e| tonic::Status::unavailable(format!("{e:?}")))?;
    Ok(AgentClient::new(ch))
}

/// `echo WORD` in `task` through the agent API at `addr`; stdout on success.
async fn exec_direct(
    addr: &str,
    tls: &ClientTlsConfig,
    task: &str,
    word: &str,
) -> Result<String, tonic::Status> {
    let r = agent_api(addr, tls)
        .await?
        .exec(ExecRequest {
            task_id: task.into(),
            command: vec!["echo".into(), word.into()],
        })
        .await?
        .into_inner();
    Ok(String::from_utf8_lossy(&r.stdout).trim().to_string())
}

/// Polls exec in `task` through the agent API at `addr` with `tls` until it is refused; fails if
/// it still works 10 s after `since`.
async fn exec_refused_by(
    addr: &str,
    tls: &ClientTlsConfig,
    task: &str,
    since: Instant,
) -> tonic::Status {
    loop {
        match exec_direct(addr, tls, task, "still-allowed").await {
            Err(s) if s.code() == tonic::Code::PermissionDenied => return s,
            r => assert!(
                since.elapsed() < Duration::from_secs(10),
                "the agent at {addr} still serves the revoked certificate 10 s after `cert \
                 revoke`: {r:?}"
            ),
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Asserts that `s` is the agent's refusal of the revoked certificate with `serial`.
fn assert_revoked(s: &tonic::Status, serial: &str) {
    assert_eq!(s.code(), tonic::Code::PermissionDenied, "{s:?}");
    assert!(
        s.message()
            .contains(&format!("(serial {serial}) has been revoked")),
        "{s:?}"
    );
}

/// The serial of the certificate the server at `addr` presents on a new TLS connection, made as
/// the holder of `m` (for a server that requires client certificates); an error if there is no
/// handshake within 2 s.
async fn presented_serial(addr: &str, m: &TlsMaterial, server: Role) -> Result<String, String> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    for ca in CertificateDer::pem_slice_iter(m.ca_pem.as_bytes()) {
        roots.add(ca.unwrap()).unwrap();
    }
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(m.cert_pem.as_bytes())
        .collect::<Result<_, _>>()
        .unwrap();
    let key = PrivateKeyDer::from_pem_slice(m.key_pem.as_bytes()).unwrap();
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_client_auth_cert(chain, key)
        .unwrap();
    let name = ServerName::try_from(server.server_name().to_string()).unwrap();
    let handshake = async {
        let tcp = tokio::net::TcpStream::connect(addr).await?;
        tokio_rustls::TlsConnector::from(std::sync::Arc::new(config))
            .connect(name, tcp)
            .await
    };
    let tls = match tokio::time::timeout(Duration::from_secs(2), handshake).await {
        Ok(Ok(tls)) => tls,
        Ok(Err(e)) => return Err(format!("{addr}: {e}")),
        Err(_) => return Err(format!("{addr}: no TLS handshake within 2 s")),
    };
    let leaf = tls.get_ref().1.peer_certificates().unwrap()[0].clone();
    Ok(CertInfo::from_der(&leaf).unwrap().serial)
}

/// The agent's `shoal_agent_tls_certificate_expiry_timestamp_seconds` on `metrics` (an
/// address), if shown.
fn shown_expiry(metrics: &str) -> Option<i64> {
    let (_, text) = shoal_tests::probes::http_get(metrics, "/metrics", None).unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix("shoal_agent_tls_certificate_expiry_timestamp_seconds "))
        .and_then(|v| v.trim().parse().ok())
}

fn key_mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

fn serial_of(dir: &Path) -> String {
    CertInfo::from_pem(&material(dir).cert_pem).unwrap().serial
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secure_cluster_joins_with_tokens_and_refuses_everyone_else() {
    if !available_or_skip() {
        return;
    }
    let root = tempfile::tempdir().unwrap();
    let cd = TestContainerd::start().unwrap();
    let image = build_busybox_image(cd.dir(), &ImageOptions::new(IMAGE)).unwrap();

    // 1. Bootstrap: the CA, this coordinator's certificate, an admin certificate, two tokens.
    let mut c1 = Coord::new(root.path(), 1);
    c1.secure = true;
    c1.extra_args = vec!["--bootstrap".into(), "--cert-ttl-secs".into(), "30".into()];
    c1.start();
    c1.wait_serving().await;
    let admin_dir = c1.data_dir.join("admin");
    let admin = material(&admin_dir);
    assert_eq!(
        CertInfo::from_pem(&admin.cert_pem).unwrap().identity,
        shoal_pki::Identity::new(Role::Admin, "admin")
    );
    let coord_token = ok(
        ctl(&admin_dir, &c1.addr, &["token", "show", "coordinator"]),
        "token show coordinator",
    )
    .trim()
    .to_string();
    let agent_token = ok(
        ctl(&admin_dir, &c1.addr, &["token", "show", "agent"]),
        "token show agent",
    )
    .trim()
    .to_string();
    assert!(
        coord_token.starts_with("SHOAL-1-coordinator-"),
        "{coord_token}"
    );
    assert!(agent_token.starts_with("SHOAL-1-agent-"), "{agent_token}");
    let ca_digest = shoal_pki::sha256_hex(&shoal_pki::tls::first_cert_der(&admin.ca_pem).unwrap());
    assert!(coord_token.contains(&ca_digest), "the token pins the CA");

    // 2. Two more coordinators join with the coordinator token.
    let mut coords = vec![c1];
    for id in 2..=3 {
        let mut c = Coord::new(root.path(), id);
        c.secure = true;
        c.client_tls = coords[0].admin_tls();
        c.extra_args = vec!["--join".into(), coords[0].addr.clone()];
        c.env = vec![("SHOAL_JOIN_TOKEN".into(), coord_token.clone())];
        c.start();
        c.wait_serving().await;
        coords.push(c);
    }
    wait_for("three voters", Duration::from_secs(30), || async {
        coords[0]
            .status()
            .await
            .is_ok_and(|s| s.members.iter().filter(|m| m.role == "voter").count() == 3)
    })
    .await;
    let all: Vec<String> = coords.iter().map(|c| c.addr.clone()).collect();
    let all = all.join(",");
    let status = ok(
        ctl(&admin_dir, &all, &["cluster", "status"]),
        "cluster status",
    );
    assert!(status.contains("leader"), "{status}");

    // 3. Agents join with the agent token; shoalctl runs a service on them.
    let mut agents = Vec::new();
    let mut n1_metrics = String::new();
    for name in ["n1", "n2"] {
        let mut a = Agent::new(
            root.path(),
            name,
            &[],
            std::slice::from_ref(&all),
            cd.socket(),
            &image.path,
        );
        a.secure(&agent_token);
        if name == "n1" {
            n1_metrics = a.serve_metrics();
        }
        a.start();
        agents.push(a);
    }
    for name in ["n1", "n2"] {
        wait_ready(
            &coords[0],
            name,
            &format!("node {name} ready"),
            Duration::from_secs(60),
        )
        .await;
    }
    let out = ok(
        ctl(
            &admin_dir,
            &all,
            &[
                "service",
                "create",
                "web",
                "--image",
                IMAGE,
                "--replicas",
                "2",
                "--",
                "sleep",
                "600",
            ],
        ),
        "service create",
    );
    assert!(out.contains("web"), "{out}");
    let start = Instant::now();
    let tasks = loop {
        let v = query(
            &coords[0],
            Query::Tasks {
                service: Some("web".into()),
                node: None,
            },
        )
        .await;
        let tasks = v.as_array().unwrap().clone();
        let running: Vec<&Value> = tasks.iter().filter(|t| t["state"] == "running").collect();
        if running.iter().any(|t| t["node"] == "n1") && running.iter().any(|t| t["node"] == "n2") {
            break tasks;
        }
        assert!(
            start.elapsed() < Duration::from_secs(90),
            "web not running on n1 and n2: {tasks:#?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let task_on = |n: &str| {
        tasks
            .iter()
            .find(|t| t["node"] == json!(n) && t["state"] == "running")
            .unwrap()["id"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let (t1, t2) = (task_on("n1"), task_on("n2"));
    // shoalctl -> agent over mutual TLS (admin certificate, agent server certificate).
    let out = ok(
        ctl(&admin_dir, &all, &["exec", &t1, "--", "echo", "over-mtls"]),
        "exec",
    );
    assert_eq!(out.trim(), "over-mtls");
    // A long-lived call to n1's API, open across its certificate renewal (step 8).
    let n1_serial_at_follow = serial_of(&agents[0].tls_dir());
    let as_admin = client_config(&admin, Role::Agent);
    let mut follow = agent_api(&agents[0].listen, &as_admin)
        .await
        .unwrap()
        .logs(LogsRequest {
            task_id: t1.clone(),
            follow: true,
            tail: 0,
        })
        .await
        .unwrap()
        .into_inner();
    // n1's /metrics shows when its certificate expires.
    let n1_info = CertInfo::from_pem(&material(&agents[0].tls_dir()).cert_pem).unwrap();
    assert_eq!(shown_expiry(&n1_metrics), Some(n1_info.not_after));

    let leader_id = wait_leader(&coords.iter().collect::<Vec<_>>(), Duration::from_secs(10)).await;
    let leader = coords
        .iter()
        .find(|c| c.id == leader_id)
        .unwrap()
        .addr
        .clone();
    let services_before = service_names(&coords[0]).await;

    // 4a. No client certificate.
    let anon = anonymous_client_config(&admin.ca_pem, Role::Coordinator);
    let (code, msg) = apply_refused(&leader, &anon, "nocert").await;
    assert_eq!(code, tonic::Code::Unauthenticated, "{msg}");
    assert!(msg.contains("requires a client certificate"), "{msg}");

    // 4b. A certificate from another CA (another cluster's admin certificate).
    let mut other = Coord::new(&root.path().join("other"), 9);
    other.secure = true;
    other.extra_args = vec!["--bootstrap".into()];
    other.start();
    other.wait_serving().await;
    let other_admin = material(&other.data_dir.join("admin"));
    let foreign = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(&admin.ca_pem))
        .identity(Identity::from_pem(
            &other_admin.cert_pem,
            &other_admin.key_pem,
        ))
        .domain_name("shoal-coordinator");
    let (_, msg) = apply_refused(&leader, &foreign, "foreignca").await;
    eprintln!("another CA, client side: {msg}");
    let leader_coord = coords.iter().find(|c| c.id == leader_id).unwrap();
    wait_for(
        "the refused handshake in the leader's log",
        Duration::from_secs(5),
        || async { leader_coord.log_text().contains("TLS handshake refused") },
    )
    .await;
    let log = leader_coord.log_text();
    let refused: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("TLS handshake refused"))
        .collect();
    assert!(
        refused.iter().any(|l| l.contains("UnknownIssuer")),
        "{refused:#?}"
    );
    // shoalctl holding another cluster's admin directory refuses our coordinator in turn.
    let out = ctl(&other.data_dir.join("admin"), &leader, &["service", "ls"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("not from the CA in the admin TLS directory"),
        "{err}"
    );

    // 4c. An expired certificate (issued for one second).
    let brief = root.path().join("brief");
    issue_admin(&admin_dir, &all, "brief", &brief, &["--ttl-secs", "1"]);
    assert_eq!(key_mode(&brief.join("key.pem")), 0o600);
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let expired = client_config(&material(&brief), Role::Coordinator);
    let (_, msg) = apply_refused(&leader, &expired, "expired").await;
    eprintln!("expired certificate, client side: {msg}");
    let start = Instant::now();
    while !leader_coord
        .log_text()
        .lines()
        .any(|l| l.contains("TLS handshake refused") && l.contains("certificate expired"))
    {
        let log = leader_coord.log_text();
        let refused: Vec<&str> = log
            .lines()
            .filter(|l| l.contains("TLS handshake refused"))
            .collect();
        assert!(start.elapsed() < Duration::from_secs(5), "{refused:#?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let out = ctl(&brief, &leader, &["service", "ls"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("the certificate expired at"), "{err}");
    // A fresh admin certificate from `cert issue-admin` works.
    let ops = root.path().join("ops");
    issue_admin(&admin_dir, &all, "ops", &ops, &[]);
    let ls = ok(
        ctl(&ops, &all, &["service", "ls"]),
        "service ls with the new admin",
    );
    assert!(ls.contains("web"), "{ls}");
    // An admin certificate revoked by serial stops working at once; another admin's does not.
    let temp = root.path().join("temp-admin");
    issue_admin(&admin_dir, &all, "temp", &temp, &[]);
    let temp_serial = serial_of(&temp);
    ok(ctl(&temp, &all, &["service", "ls"]), "service ls as temp");
    // Before the revocation, temp may exec on the agents too (directly, with its certificate).
    let n1_api = agents[0].listen.clone();
    let as_temp = client_config(&material(&temp), Role::Agent);
    let as_ops = client_config(&material(&ops), Role::Agent);
    assert_eq!(
        exec_direct(&n1_api, &as_temp, &t1, "temp-before")
            .await
            .unwrap(),
        "temp-before"
    );
    let out = ok(
        ctl(&ops, &all, &["cert", "revoke", &temp_serial]),
        "cert revoke",
    );
    assert!(out.contains("revoked"), "{out}");
    let revoked_at = Instant::now();
    let out = ctl(&temp, &all, &["service", "ls"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("revoked"), "{err}");
    ok(
        ctl(&ops, &all, &["service", "ls"]),
        "service ls as ops after revoking temp",
    );
    // The agents learn the revoked serials from the leader with their assignment set: within a
    // few seconds, the agent API refuses temp's certificate (exec and logs) and names it.
    let refused = exec_refused_by(&n1_api, &as_temp, &t1, revoked_at).await;
    eprintln!(
        "n1 refused the revoked certificate {:?} after `cert revoke`: {}",
        revoked_at.elapsed(),
        refused.message()
    );
    assert_revoked(&refused, &temp_serial);
    assert!(refused.message().contains("admin `temp`"), "{refused:?}");
    let s = agent_api(&n1_api, &as_temp)
        .await
        .unwrap()
        .logs(LogsRequest {
            task_id: t1.clone(),
            follow: false,
            tail: 1,
        })
        .await
        .unwrap_err();
    assert_revoked(&s, &temp_serial);
    // Every agent has it, not only n1.
    let s = exec_refused_by(&agents[1].listen, &as_temp, &t2, revoked_at).await;
    assert_revoked(&s, &temp_serial);
    // Another admin still execs, directly and through shoalctl.
    assert_eq!(
        exec_direct(&n1_api, &as_ops, &t1, "ops-direct")
            .await
            .unwrap(),
        "ops-direct"
    );
    let out = ok(
        ctl(&ops, &all, &["exec", &t1, "--", "echo", "ops-exec"]),
        "exec as ops after revoking temp",
    );
    assert_eq!(out.trim(), "ops-exec");
    let out = ctl(&ops, &all, &["cert", "revoke", "abcdef"]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("no unexpired certificate with serial abcdef"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // 4d. An agent certificate on the control API and on the Raft API.
    let n1_tls = material(&agents[0].tls_dir());
    let as_n1 = client_config(&n1_tls, Role::Coordinator);
    let (code, msg) = apply_refused(&leader, &as_n1, "byagent").await;
    assert_eq!(code, tonic::Code::PermissionDenied, "{msg}");
    assert!(
        msg.contains("requires an admin certificate") && msg.contains("agent `n1`"),
        "{msg}"
    );
    let s = raft_vote_refused(&leader, &as_n1).await;
    assert_eq!(s.code(), tonic::Code::PermissionDenied, "{s:?}");
    assert!(s.message().contains("raft peer API"), "{s:?}");

    // 4e. Agent n1 reporting a task of node n2, or speaking as n2.
    let ch = endpoint(&leader, Some(&as_n1))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut d = DispatcherClient::new(ch);
    let forged = TaskStatus {
        task_id: t2.clone(),
        state: "failed".into(),
        message: "forged by n1".into(),
        has_exit_code: true,
        exit_code: 1,
        image_digest: String::new(),
    };
    let s = d
        .report_status(StatusReport {
            node: "n1".into(),
            updates: vec![forged.clone()],
        })
        .await
        .unwrap_err();
    assert_eq!(s.code(), tonic::Code::PermissionDenied, "{s:?}");
    assert!(s.message().contains("assigned to node `n2`"), "{s:?}");
    let s = d
        .report_status(StatusReport {
            node: "n2".into(),
            updates: vec![forged],
        })
        .await
        .unwrap_err();
    assert_eq!(s.code(), tonic::Code::PermissionDenied, "{s:?}");
    assert!(s.message().contains("cannot act for node `n2`"), "{s:?}");
    let v = query(
        &coords[0],
        Query::Tasks {
            service: Some("web".into()),
            node: Some("n2".into()),
        },
    )
    .await;
    let t = v
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["id"] == json!(t2))
        .unwrap();
    assert_eq!(t["state"], "running", "{t}");
    assert_eq!(
        service_names(&coords[0]).await,
        services_before,
        "nothing changed"
    );

    // 4f. The agent token used to join as a coordinator.
    let mut c4 = Coord::new(root.path(), 4);
    c4.secure = true;
    c4.extra_args = vec!["--join".into(), leader.clone()];
    c4.env = vec![("SHOAL_JOIN_TOKEN".into(), agent_token.clone())];
    c4.start();
    let log = wait_exit_failed(&mut c4, Duration::from_secs(30));
    assert!(log.contains("this is the agent join token"), "{log}");
    assert!(!c4.data_dir.exists(), "the fresh data dir is removed");
    // ... and a forged request claiming the coordinator role with the agent secret.
    let forged_token = agent_token.replacen("SHOAL-1-agent-", "SHOAL-1-coordinator-", 1);
    let e = shoal_pki::join::join(
        std::slice::from_ref(&leader),
        &shoal_pki::JoinToken::parse(&forged_token).unwrap(),
        &shoal_pki::Identity::new(Role::Coordinator, "c-forged"),
        Some(44),
    )
    .await
    .unwrap_err()
    .to_string();
    assert!(e.contains("coordinator join token is not valid"), "{e}");

    // 5. A joining coordinator refuses a coordinator whose CA is not the token's pin.
    let mut c5 = Coord::new(root.path(), 5);
    c5.secure = true;
    c5.extra_args = vec!["--join".into(), other.addr.clone()];
    c5.env = vec![("SHOAL_JOIN_TOKEN".into(), coord_token.clone())];
    c5.start();
    let log = wait_exit_failed(&mut c5, Duration::from_secs(30));
    assert!(
        log.contains("presents CA sha256:") && log.contains(&format!("pins sha256:{ca_digest}")),
        "{log}"
    );
    let other_events = query(&other, Query::Events { after: 0 }).await;
    assert!(
        !other_events.to_string().contains("\"certificate\""),
        "the other cluster issued nothing: {other_events}"
    );
    let members = coords[0].status().await.unwrap().members.len();
    assert_eq!(members, 3, "no member was added by refused joins");

    // 6. A rotated-out token.
    let rotated = ok(
        ctl(&admin_dir, &all, &["token", "rotate", "agent"]),
        "token rotate agent",
    )
    .trim()
    .to_string();
    assert_ne!(rotated, agent_token);
    let mut n3 = Agent::new(
        root.path(),
        "n3",
        &[],
        std::slice::from_ref(&all),
        cd.socket(),
        &image.path,
    );
    n3.secure(&agent_token);
    n3.start();
    let start = Instant::now();
    while n3.is_running() {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "n3 kept running:\n{}",
            n3.log_text()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        n3.log_text().contains("not valid (wrong, or rotated out)"),
        "{}",
        n3.log_text()
    );
    assert!(!n3.tls_dir().join("cert.pem").exists());
    assert!(node(&coords[0], "n3").await.is_none());
    n3.kill();
    n3.secure(&rotated);
    n3.start();
    wait_ready(
        &coords[0],
        "n3",
        "n3 ready with the new token",
        Duration::from_secs(60),
    )
    .await;

    // 7. A revoked node: n2 stops, is removed, and its certificate no longer works.
    let n2_tls = material(&agents[1].tls_dir());
    agents[1].terminate();
    wait_for("n2 down", Duration::from_secs(30), || async {
        node(&coords[0], "n2")
            .await
            .is_some_and(|n| n["status"] == "down")
    })
    .await;
    ok(ctl(&admin_dir, &all, &["node", "rm", "n2"]), "node rm n2");
    let events = ok(ctl(&admin_dir, &all, &["events"]), "events");
    let revoked_line = events
        .lines()
        .find(|l| l.contains("n2") && l.contains("node removed"))
        .unwrap_or_else(|| panic!("no removal event: {events}"));
    assert!(
        revoked_line.contains("certificate(s) revoked") && !revoked_line.contains(" 0 certificate"),
        "{revoked_line}"
    );
    let as_n2 = client_config(&n2_tls, Role::Coordinator);
    let ch = endpoint(&leader, Some(&as_n2))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let s = DispatcherClient::new(ch)
        .heartbeat(HeartbeatRequest { node: "n2".into() })
        .await
        .unwrap_err();
    assert_eq!(s.code(), tonic::Code::PermissionDenied, "{s:?}");
    assert!(s.message().contains("revoked"), "{s:?}");
    agents[1].start();
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(
        node(&coords[0], "n2").await.is_none(),
        "a revoked agent cannot register again"
    );
    assert!(
        agents[1].log_text().contains("revoked"),
        "{}",
        agents[1].log_text()
    );

    // 8. Agent certificates renew before they expire (30 s lifetime: at about 20 s), without a
    //    restart: the `logs --follow` opened in step 3 stays open meanwhile, and new connections
    //    get the new certificate at once.
    let n1_dir = agents[0].tls_dir();
    wait_for(
        "n1's certificate renewed",
        Duration::from_secs(60),
        || async { serial_of(&n1_dir) != n1_serial_at_follow },
    )
    .await;
    let renewed = CertInfo::from_pem(&material(&n1_dir).cert_pem).unwrap();
    assert_eq!(
        renewed.identity,
        shoal_pki::Identity::new(Role::Agent, "n1")
    );
    assert!(agents[0].log_text().contains("agent certificate renewed"));
    // New handshakes on n1's API present the renewed certificate, and /metrics shows its expiry
    // (polled: the certificate is stored a moment before it is swapped in; compared with the one
    // on disk, as a further renewal may have happened meanwhile).
    wait_for(
        "n1's API to present its renewed certificate on a new connection",
        Duration::from_secs(5),
        || async {
            let on_disk = serial_of(&n1_dir);
            presented_serial(&n1_api, &admin, Role::Agent).await == Ok(on_disk)
        },
    )
    .await;
    wait_for(
        "n1's /metrics to show its renewed certificate's expiry",
        Duration::from_secs(5),
        || async {
            let on_disk = CertInfo::from_pem(&material(&n1_dir).cert_pem).unwrap();
            shown_expiry(&n1_metrics) == Some(on_disk.not_after)
        },
    )
    .await;
    // A new exec after the renewal works while the stream is still open, and the stream, made
    // before the renewal, still delivers: the exec writes to the container's stdout.
    let out = ok(
        ctl(
            &admin_dir,
            &all,
            &[
                "exec",
                &t1,
                "--",
                "sh",
                "-c",
                "echo follow-after-renewal > /proc/1/fd/1; echo renewed",
            ],
        ),
        "exec after renewal",
    );
    assert_eq!(out.trim(), "renewed");
    let mut seen = String::new();
    while !seen.contains("follow-after-renewal") {
        match tokio::time::timeout(Duration::from_secs(10), follow.message()).await {
            Ok(Ok(Some(chunk))) => seen.push_str(&String::from_utf8_lossy(&chunk.data)),
            r => panic!(
                "the logs --follow opened before the renewal ended or stalled: {r:?}; saw {seen:?}"
            ),
        }
    }
    drop(follow);
    // After the renewal the agent still works: heartbeats and its API.
    wait_ready(
        &coords[0],
        "n1",
        "n1 ready after renewal",
        Duration::from_secs(30),
    )
    .await;
    assert_eq!(
        exec_direct(&n1_api, &as_admin, &t1, "direct-after-renewal")
            .await
            .unwrap(),
        "direct-after-renewal"
    );

    // 9. Private keys are 0600; the bootstrap's pending CA file is gone.
    let mut keys: Vec<PathBuf> = vec![admin_dir.join("key.pem"), ops.join("key.pem")];
    for c in &coords {
        keys.push(c.data_dir.join("tls/key.pem"));
    }
    for a in &agents {
        keys.push(a.tls_dir().join("key.pem"));
    }
    keys.push(n3.tls_dir().join("key.pem"));
    for k in &keys {
        assert_eq!(key_mode(k), 0o600, "{}", k.display());
    }
    assert!(!coords[0].data_dir.join("tls/pending-ca.json").exists());

    // Join-token secrets and the CA key are never logged.
    let ca_key = material(&admin_dir).key_pem; // (the admin key, checked too)
    let secrets: Vec<String> = [&coord_token, &agent_token, &rotated]
        .iter()
        .map(|t| t.rsplit('-').next().unwrap().to_string())
        .collect();
    let mut logs: Vec<String> = coords.iter().map(|c| c.log_text()).collect();
    logs.extend(agents.iter().map(|a| a.log_text()));
    logs.push(n3.log_text());
    for log in &logs {
        assert!(!log.is_empty());
        for secret in &secrets {
            assert!(
                !log.contains(secret.as_str()),
                "a join-token secret was logged"
            );
        }
        assert!(!log.contains("PRIVATE KEY"), "a private key was logged");
    }
    assert!(ca_key.contains("PRIVATE KEY"));

    // 10. A coordinator removed from the cluster loses its certificate too.
    let c3_tls = material(&coords[2].data_dir.join("tls"));
    ok(
        ctl(&admin_dir, &all, &["cluster", "remove", "3"]),
        "cluster remove 3",
    );
    let leader_id = wait_leader(
        &coords[..2].iter().collect::<Vec<_>>(),
        Duration::from_secs(10),
    )
    .await;
    let leader = coords
        .iter()
        .find(|c| c.id == leader_id)
        .unwrap()
        .addr
        .clone();
    let as_c3 = client_config(&c3_tls, Role::Coordinator);
    let s = raft_vote_refused(&leader, &as_c3).await;
    assert_eq!(s.code(), tonic::Code::PermissionDenied, "{s:?}");
    assert!(s.message().contains("revoked"), "{s:?}");

    // 11. An agent restarted while no coordinator answers still refuses the revoked admin
    //     certificate (the serials are kept in its state db) and still serves another admin.
    //     Its certificate must outlive the restart, renewal being impossible meanwhile.
    wait_for(
        "n1's certificate valid for 15 s more",
        Duration::from_secs(30),
        || async {
            let info = CertInfo::from_pem(&material(&n1_dir).cert_pem).unwrap();
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_secs() as i64;
            info.not_after - now > 15
        },
    )
    .await;
    agents[0].kill();
    let i = agents[0]
        .args
        .iter()
        .position(|a| a == "--coordinators")
        .unwrap();
    agents[0].args[i + 1] = shoal_tests::free_addr();
    agents[0].start();
    wait_for(
        "n1's API serving ops after a restart without coordinators",
        Duration::from_secs(30),
        || async {
            exec_direct(&n1_api, &as_ops, &t1, "ops-alone")
                .await
                .is_ok_and(|out| out == "ops-alone")
        },
    )
    .await;
    match exec_direct(&n1_api, &as_temp, &t1, "temp-alone").await {
        Ok(out) => panic!(
            "n1, restarted with no coordinator, serves the revoked certificate again: {out:?}"
        ),
        Err(s) => assert_revoked(&s, &temp_serial),
    }
}
