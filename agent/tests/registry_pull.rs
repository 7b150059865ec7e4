#![allow(clippy::unwrap_used)]
//! Pulling images from a real local registry (Debian's `docker-registry` on 127.0.0.1) into a
//! private containerd: needs root, containerd, runc, ctr and docker-registry.

use std::sync::Arc;
use std::time::Duration;

use shoal_agent::runtime::{
    ContainerConfig, ContainerRuntime, ContainerdConfig, ContainerdRuntime, RegistryAuth,
    RuntimeError,
};
use shoal_model::container::ContainerSpec;
use shoal_tests::containerd::{available, TestContainerd};
use shoal_tests::image::{build_busybox_image, BuiltImage, ImageOptions};
use shoal_tests::registry::{registry_available, Registry, PASSWORD, USER};

struct Env {
    cd: TestContainerd,
    rt: Arc<ContainerdRuntime>,
}

/// Starts a private containerd and connects a runtime to it; `None` when the machine cannot.
async fn setup() -> Option<Env> {
    if !available() || !registry_available() {
        assert!(
            std::env::var_os("SHOAL_SKIP_CONTAINERD_TESTS").is_some(),
            "registry tests need root, containerd, runc, ctr and docker-registry \
             (set SHOAL_SKIP_CONTAINERD_TESTS=1 to skip them)"
        );
        eprintln!("skipping: no root/containerd/docker-registry");
        return None;
    }
    let cd = TestContainerd::start().expect("start containerd");
    let mut cfg = ContainerdConfig::new(cd.socket());
    cfg.volumes_dir = cd.dir().join("volumes");
    cfg.exec_dir = cd.dir().join("exec");
    let rt = ContainerdRuntime::connect(cfg).await.expect("connect");
    Some(Env { cd, rt })
}

fn insecure() -> RegistryAuth {
    RegistryAuth {
        insecure: true,
        ..Default::default()
    }
}

/// Asserts that containerd holds no lease, content, image or snapshot.
fn assert_nothing_left(env: &Env, when: &str) {
    for what in ["leases", "content", "images"] {
        let out = env.cd.ctr_ok(&["-n", "shoal", what, "ls", "-q"]).unwrap();
        assert_eq!(out.trim(), "", "{what} left {when}: {out}");
    }
    let snaps = env.cd.ctr_ok(&["-n", "shoal", "snapshots", "ls"]).unwrap();
    assert_eq!(
        snaps.trim().lines().count(),
        1,
        "snapshots left {when}: {snaps}"
    );
}

fn build(env: &Env, name: &str) -> BuiltImage {
    build_busybox_image(env.cd.dir(), &ImageOptions::new(name)).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pull_unpack_and_run() {
    let Some(env) = setup().await else { return };
    let reg = Registry::start(false);
    reg.wait_ready().await;
    let img = build(&env, "shoal.test/busybox:latest");
    let manifest = reg.push(&img, "shoal/busybox", "v1").await;
    let name = reg.image("shoal/busybox:v1");

    assert!(!env.rt.ensure_image(&name).await.unwrap());
    // Concurrent pulls of one image both succeed (one download; the other waits for it).
    let auth = insecure();
    let (a, b) = tokio::join!(
        env.rt.pull_image(&name, &auth),
        env.rt.pull_image(&name, &auth)
    );
    let (a, b) = (a.unwrap(), b.unwrap());
    assert_eq!(a, b);
    assert_eq!(
        (a.name.as_str(), a.digest.as_str()),
        (name.as_str(), manifest.as_str())
    );
    let check = env.cd.ctr_ok(&["-n", "shoal", "images", "check"]).unwrap();
    assert!(
        check.contains(&name) && check.contains("complete"),
        "{check}"
    );
    let leases = env
        .cd
        .ctr_ok(&["-n", "shoal", "leases", "ls", "-q"])
        .unwrap();
    assert_eq!(leases.trim(), "", "leases left: {leases}");
    let content = env.cd.ctr_ok(&["-n", "shoal", "content", "ls"]).unwrap();
    assert!(content.contains(&img.diff_id), "{content}");
    assert!(env.rt.ensure_image(&name).await.unwrap());

    // A container runs from the pulled image.
    let id = format!("t{}-pulled", std::process::id());
    let mut exits = env.rt.subscribe_exits();
    env.rt
        .create(ContainerConfig {
            id: id.clone(),
            spec: ContainerSpec {
                image: name.clone(),
                command: vec!["sh".into(), "-c".into(), "test -x /bin/busybox".into()],
                ..Default::default()
            },
            task_id: "task-pulled".into(),
            service: "svc".into(),
            node: "node-1".into(),
            stdout_path: env.cd.dir().join("logs/pulled.out"),
            stderr_path: env.cd.dir().join("logs/pulled.err"),
        })
        .await
        .unwrap();
    env.rt.start(&id).await.unwrap();
    let code = tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            let ev = exits.recv().await.unwrap();
            if ev.id == id {
                return ev.exit_code;
            }
        }
    })
    .await
    .unwrap();
    assert_eq!(code, 0);
    env.rt.remove(&id).await.unwrap();

    // A missing tag (and a missing repository) is "not found", naming image and registry.
    for missing in [
        reg.image("shoal/busybox:nope"),
        reg.image("shoal/absent:v1"),
    ] {
        let err = env.rt.pull_image(&missing, &insecure()).await.unwrap_err();
        assert!(
            matches!(err, RuntimeError::RegistryNotFound { .. }),
            "{err}"
        );
        let msg = err.to_string();
        assert!(
            msg.contains(&missing) && msg.contains(&reg.addr) && msg.contains("not found"),
            "{msg}"
        );
    }
    // Without `insecure`, the plain-HTTP registry is not spoken to over HTTP.
    let err = env
        .rt
        .pull_image(&reg.image("shoal/busybox:v1x"), &RegistryAuth::default())
        .await
        .unwrap_err();
    assert!(matches!(err, RuntimeError::Registry { .. }), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registry_that_refuses_auth() {
    let Some(env) = setup().await else { return };
    let reg = Registry::start(true);
    reg.wait_ready().await;
    let img = build(&env, "shoal.test/busybox:latest");
    reg.push(&img, "shoal/private", "v1").await;
    let name = reg.image("shoal/private:v1");

    for auth in [
        insecure(),
        RegistryAuth {
            insecure: true,
            username: Some(USER.into()),
            password: Some("wrong".into()),
        },
    ] {
        let err = env.rt.pull_image(&name, &auth).await.unwrap_err();
        assert!(
            matches!(err, RuntimeError::RegistryUnauthorized { .. }),
            "{err}"
        );
        let msg = err.to_string();
        assert!(
            msg.contains(&reg.addr) && msg.contains("unauthorized"),
            "{msg}"
        );
        assert_nothing_left(&env, "after a refused pull");
    }
    let right = RegistryAuth {
        insecure: true,
        username: Some(USER.into()),
        password: Some(PASSWORD.into()),
    };
    env.rt.pull_image(&name, &right).await.unwrap();
    let check = env.cd.ctr_ok(&["-n", "shoal", "images", "check"]).unwrap();
    assert!(
        check.contains(&name) && check.contains("complete"),
        "{check}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn layer_digest_mismatch_leaves_nothing() {
    let Some(env) = setup().await else { return };
    let reg = Registry::start(false);
    reg.wait_ready().await;
    let img = build(&env, "shoal.test/busybox:latest");
    reg.push(&img, "shoal/corrupt", "v1").await;
    // Flip one byte of the layer in the registry's storage: it serves what it has.
    let file = reg.blob_file(&img.layer_digest);
    let mut data = std::fs::read(&file).unwrap();
    let mid = data.len() / 2;
    data[mid] ^= 0xff;
    std::fs::write(&file, data).unwrap();

    let name = reg.image("shoal/corrupt:v1");
    let err = env.rt.pull_image(&name, &insecure()).await.unwrap_err();
    assert!(matches!(err, RuntimeError::DigestMismatch { .. }), "{err}");
    let msg = err.to_string();
    assert!(
        msg.contains(&name) && msg.contains(&img.layer_digest),
        "{msg}"
    );
    assert_nothing_left(&env, "after a corrupt layer");
}

/// Runs `cat /marker` in a container of `image` and returns what it printed.
async fn marker_of(env: &Env, image: &str, id: &str) -> String {
    let id = format!("t{}-{id}", std::process::id());
    let stdout = env.cd.dir().join(format!("logs/{id}.out"));
    let mut exits = env.rt.subscribe_exits();
    env.rt
        .create(ContainerConfig {
            id: id.clone(),
            spec: ContainerSpec {
                image: image.to_owned(),
                command: vec!["cat".into(), "/marker".into()],
                ..Default::default()
            },
            task_id: format!("task-{id}"),
            service: "svc".into(),
            node: "node-1".into(),
            stdout_path: stdout.clone(),
            stderr_path: env.cd.dir().join(format!("logs/{id}.err")),
        })
        .await
        .unwrap();
    env.rt.start(&id).await.unwrap();
    let code = tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            let ev = exits.recv().await.unwrap();
            if ev.id == id {
                return ev.exit_code;
            }
        }
    })
    .await
    .unwrap();
    assert_eq!(code, 0);
    // The shim may still be copying after the exit event.
    let start = std::time::Instant::now();
    let mut out = String::new();
    while start.elapsed() < Duration::from_secs(5) {
        out = std::fs::read_to_string(&stdout).unwrap_or_default();
        if !out.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    env.rt.remove(&id).await.unwrap();
    out
}

/// Audit row 19 (image refresh): a tag pushed again is resolved again by the next pull (what
/// `pull_policy: always` relies on), and new containers run the new image.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_repushed_tag_is_resolved_again_by_a_new_pull() {
    let Some(env) = setup().await else { return };
    let reg = Registry::start(false);
    reg.wait_ready().await;
    let name = reg.image("shoal/app:stable");
    let mut digests = Vec::new();
    for (image, marker) in [
        ("shoal.test/app-one:1", "one"),
        ("shoal.test/app-two:1", "two"),
    ] {
        let mut opts = ImageOptions::new(image);
        opts.extra_file = Some(("/marker".into(), marker.as_bytes().to_vec()));
        let img = build_busybox_image(env.cd.dir(), &opts).unwrap();
        let pushed = reg.push(&img, "shoal/app", "stable").await;
        let pulled = env.rt.pull_image(&name, &insecure()).await.unwrap();
        assert_eq!(pulled.digest, pushed, "{marker}: the pull follows the tag");
        assert!(
            !digests.contains(&pulled.digest),
            "a new digest for {marker}"
        );
        digests.push(pulled.digest);
        assert_eq!(marker_of(&env, &name, marker).await, marker);
    }
}
