//! The containerd runtime against a real, private containerd: needs root, containerd, runc and ctr.

mod conformance;

use std::sync::Arc;
use std::time::{Duration, Instant};

use shoal_agent::runtime::{
    ContainerConfig, ContainerRuntime, ContainerStatus, ContainerdConfig, ContainerdRuntime,
    ExitEvent, RuntimeError,
};
use shoal_model::container::{ContainerSpec, Mount, MountKind, NetworkMode, Ulimit};
use shoal_tests::containerd::{available, TestContainerd};
use shoal_tests::image::{build_busybox_image, BuiltImage, ImageOptions};

const IMAGE: &str = "shoal.test/busybox:latest";

struct Env {
    cd: TestContainerd,
    rt: Arc<ContainerdRuntime>,
}

/// Starts a private containerd and connects a runtime to it; `None` when the machine cannot.
async fn setup() -> Option<Env> {
    if !available() {
        assert!(
            std::env::var_os("SHOAL_SKIP_CONTAINERD_TESTS").is_some(),
            "containerd tests need root, containerd, runc and ctr \
             (set SHOAL_SKIP_CONTAINERD_TESTS=1 to skip them)"
        );
        eprintln!("skipping: no root/containerd");
        return None;
    }
    let cd = TestContainerd::start().expect("start containerd");
    let mut cfg = ContainerdConfig::new(cd.socket());
    cfg.volumes_dir = cd.dir().join("volumes");
    cfg.exec_dir = cd.dir().join("exec");
    cfg.hosts_dir = cd.dir().join("hosts");
    let rt = ContainerdRuntime::connect(cfg).await.expect("connect");
    Some(Env { cd, rt })
}

fn image(env: &Env) -> BuiltImage {
    build_busybox_image(env.cd.dir(), &ImageOptions::new(IMAGE)).expect("build image")
}

/// A container id unique on this machine (runc state and cgroups are shared between containerds).
fn unique(name: &str) -> String {
    format!("t{}-{name}", std::process::id())
}

fn config(env: &Env, id: &str, spec: ContainerSpec) -> ContainerConfig {
    ContainerConfig {
        id: id.to_owned(),
        spec,
        task_id: format!("task-{id}"),
        service: "svc".to_owned(),
        node: "node-1".to_owned(),
        stdout_path: env.cd.dir().join(format!("logs/{id}.out")),
        stderr_path: env.cd.dir().join(format!("logs/{id}.err")),
    }
}

fn busybox(command: &[&str]) -> ContainerSpec {
    ContainerSpec {
        image: IMAGE.to_owned(),
        command: command.iter().map(|s| s.to_string()).collect(),
        ..Default::default()
    }
}

async fn sh(rt: &ContainerdRuntime, id: &str, script: &str) -> (u32, String) {
    let out = rt
        .exec(id, &["sh".to_owned(), "-c".to_owned(), script.to_owned()])
        .await
        .unwrap_or_else(|e| panic!("exec `{script}`: {e}"));
    (
        out.exit_code,
        String::from_utf8_lossy(&out.stdout).trim().to_owned(),
    )
}

/// Waits until `path` holds `expected`: the shim may still be copying after the exit event.
async fn wait_file(path: &std::path::Path, expected: &str) {
    let start = Instant::now();
    loop {
        let got = std::fs::read_to_string(path).unwrap_or_default();
        if got == expected {
            return;
        }
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "{}: {got:?}, want {expected:?}",
            path.display()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn next_exit(rx: &mut tokio::sync::broadcast::Receiver<ExitEvent>, id: &str) -> u32 {
    tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            let ev = rx.recv().await.expect("exit channel");
            if ev.id == id {
                return ev.exit_code;
            }
        }
    })
    .await
    .expect("exit event within 20 s")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn import_and_check_image() {
    let Some(env) = setup().await else { return };
    let img = image(&env);
    let r = env.rt.import_image(&img.path).await.expect("import");
    assert_eq!(r.name, IMAGE);
    assert_eq!(r.digest, img.manifest_digest);
    let check = env.cd.ctr_ok(&["-n", "shoal", "images", "check"]).unwrap();
    assert!(
        check.contains(IMAGE) && check.contains("complete"),
        "{check}"
    );
    // The layer blob carries its uncompressed digest, and the leases are gone.
    let content = env.cd.ctr_ok(&["-n", "shoal", "content", "ls"]).unwrap();
    assert!(content.contains(&img.diff_id), "{content}");
    let leases = env
        .cd
        .ctr_ok(&["-n", "shoal", "leases", "ls", "-q"])
        .unwrap();
    assert_eq!(leases.trim(), "", "leases left: {leases}");
    // Importing again is fine (everything already there) and the image is ready.
    env.rt.import_image(&img.path).await.expect("re-import");
    assert!(env.rt.ensure_image(IMAGE).await.unwrap());
    assert!(!env.rt.ensure_image("shoal.test/absent:1").await.unwrap());
    // Content and snapshots survive a garbage collection (deleting a lease with --sync runs one):
    // the gc labels on image, manifest and config hold them.
    let lease = env.cd.ctr_ok(&["-n", "shoal", "leases", "create"]).unwrap();
    let lease = lease
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .to_owned();
    env.cd
        .ctr_ok(&["-n", "shoal", "leases", "delete", "--sync", &lease])
        .unwrap();
    let check = env.cd.ctr_ok(&["-n", "shoal", "images", "check"]).unwrap();
    assert!(check.contains("complete"), "{check}");
    let snaps = env.cd.ctr_ok(&["-n", "shoal", "snapshots", "ls"]).unwrap();
    assert!(snaps.contains(&img.diff_id), "{snaps}");
    // A lost root filesystem is unpacked again from the content store.
    env.cd
        .ctr_ok(&["-n", "shoal", "snapshots", "rm", &img.diff_id])
        .unwrap();
    assert!(env.rt.ensure_image(IMAGE).await.unwrap());
    let snaps = env.cd.ctr_ok(&["-n", "shoal", "snapshots", "ls"]).unwrap();
    assert!(snaps.contains(&img.diff_id), "{snaps}");
    let version = env.rt.version().await.unwrap();
    assert!(version.starts_with("containerd "), "{version}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn containerd_runtime_conforms() {
    let Some(env) = setup().await else { return };
    let img = image(&env);
    // The suite runs in a second namespace (as a second simulated node would), which also checks
    // that the default namespace's runtime neither sees its containers nor hears its exits.
    let mut cfg = ContainerdConfig::new(env.cd.socket());
    cfg.namespace = "shoal-node-2".to_owned();
    cfg.volumes_dir = env.cd.dir().join("volumes-2");
    cfg.exec_dir = env.cd.dir().join("exec-2");
    let rt2 = ContainerdRuntime::connect(cfg).await.unwrap();
    rt2.import_image(&img.path).await.unwrap();
    let mut other_exits = env.rt.subscribe_exits();

    let config = |id: &str, spec: ContainerSpec| config(&env, id, spec);
    let prefix = unique("conf");
    conformance::run_all(&conformance::Harness {
        rt: rt2.as_ref(),
        image: IMAGE,
        config: &config,
        prefix: &prefix,
    })
    .await;

    assert!(env.rt.list().await.unwrap().is_empty());
    assert!(!env.rt.ensure_image(IMAGE).await.unwrap());
    assert!(matches!(
        other_exits.try_recv(),
        Err(tokio::sync::broadcast::error::TryRecvError::Empty)
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corrupt_layer_fails_import_and_leaves_nothing() {
    let Some(env) = setup().await else { return };
    let mut opts = ImageOptions::new("shoal.test/corrupt:1");
    opts.corrupt_layer = true;
    let img = build_busybox_image(env.cd.dir(), &opts).unwrap();
    let err = env.rt.import_image(&img.path).await.unwrap_err();
    assert!(
        matches!(err, RuntimeError::DigestMismatch { .. }),
        "unexpected error: {err}"
    );
    let msg = err.to_string();
    assert!(msg.contains(&img.layer_digest), "{msg}");
    assert!(msg.contains("shoal.test/corrupt:1"), "{msg}");
    for what in ["leases", "content", "images"] {
        let out = env.cd.ctr_ok(&["-n", "shoal", what, "ls", "-q"]).unwrap();
        assert_eq!(out.trim(), "", "{what} left after a failed import: {out}");
    }
    // `ctr snapshots ls` has no `-q`: only its header line may be there.
    let snaps = env.cd.ctr_ok(&["-n", "shoal", "snapshots", "ls"]).unwrap();
    assert_eq!(snaps.trim().lines().count(), 1, "snapshots left: {snaps}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_spec_is_applied_inside_the_container() {
    let Some(env) = setup().await else { return };
    let img = image(&env);
    env.rt.import_image(&img.path).await.unwrap();
    let rt = &env.rt;

    let conf_dir = env.cd.dir().join("conf");
    std::fs::create_dir_all(&conf_dir).unwrap();
    std::fs::write(conf_dir.join("hello.txt"), "from the host").unwrap();
    let mut spec = busybox(&["sleep", "300"]);
    spec.network = NetworkMode::Host;
    spec.env.insert("GREETING".into(), "hello world".into());
    spec.cap_add = vec!["NET_ADMIN".into()];
    spec.ulimits = vec![Ulimit {
        name: "nofile".into(),
        soft: 4096,
        hard: 8192,
    }];
    spec.memory_limit = Some(64 << 20);
    spec.mounts = vec![
        Mount {
            kind: MountKind::Bind,
            source: conf_dir.display().to_string(),
            target: "/conf".into(),
            read_only: true,
            propagation: Some("rprivate".into()),
            create_host_path: false,
        },
        Mount {
            kind: MountKind::Volume,
            source: "data".into(),
            target: "/data".into(),
            read_only: false,
            propagation: None,
            create_host_path: false,
        },
    ];
    let id = unique("full");
    rt.create(config(&env, &id, spec.clone())).await.unwrap();
    let listed = rt.list().await.unwrap();
    let me = listed.iter().find(|c| c.id == id).unwrap();
    assert_eq!(me.status, ContainerStatus::Created);
    assert_eq!(me.labels["io.shoal.task-id"], format!("task-{id}"));

    let pid = rt.start(&id).await.unwrap();
    assert!(pid > 0);
    let me = rt
        .list()
        .await
        .unwrap()
        .into_iter()
        .find(|c| c.id == id)
        .unwrap();
    assert_eq!((me.status, me.pid), (ContainerStatus::Running, Some(pid)));

    // Host network: same network namespace as the host, and the host's name.
    let host_net = std::fs::read_link("/proc/self/ns/net").unwrap();
    let (_, net) = sh(rt, &id, "readlink /proc/self/ns/net").await;
    assert_eq!(net, host_net.display().to_string());
    let (_, hostname) = sh(rt, &id, "hostname").await;
    assert_eq!(
        hostname,
        nix::unistd::gethostname().unwrap().to_string_lossy()
    );
    let (_, resolv) = sh(rt, &id, "test -e /etc/resolv.conf && echo yes").await;
    assert_eq!(resolv, "yes");

    let (_, greeting) = sh(rt, &id, "echo $GREETING").await;
    assert_eq!(greeting, "hello world");

    // The container's main process (pid 1 in its pid namespace) carries the ulimit. An exec'd
    // process is not checked: runc 1.1 built with Go >= 1.19 may hand it soft = hard nofile
    // (Go raises the soft limit at start and restores it across exec), which made this flaky.
    let (_, limits) = sh(rt, &id, "grep 'Max open files' /proc/1/limits").await;
    let fields: Vec<&str> = limits.split_whitespace().collect();
    assert_eq!(&fields[3..5], &["4096", "8192"], "{limits}");

    let (_, capeff) = sh(rt, &id, "grep CapEff /proc/self/status").await;
    let caps = u64::from_str_radix(capeff.split_whitespace().nth(1).unwrap(), 16).unwrap();
    assert!(caps & (1 << 12) != 0, "NET_ADMIN missing: {capeff}");
    assert!(caps & (1 << 21) == 0, "SYS_ADMIN present: {capeff}");

    let (_, mem) = sh(
        rt,
        &id,
        "cat /sys/fs/cgroup/memory/memory.limit_in_bytes 2>/dev/null || cat /sys/fs/cgroup/memory.max",
    )
    .await;
    assert_eq!(mem, (64u64 << 20).to_string());

    let (_, conf) = sh(rt, &id, "cat /conf/hello.txt").await;
    assert_eq!(conf, "from the host");
    let (code, _) = sh(rt, &id, "echo x > /conf/new 2>/dev/null").await;
    assert_ne!(code, 0, "the bind mount is read-only");

    let (code, _) = sh(rt, &id, "echo persisted > /data/f").await;
    assert_eq!(code, 0);
    let (code, _) = sh(rt, &id, "exit 7").await;
    assert_eq!(code, 7);
    let out = rt
        .exec(
            &id,
            &["sh".into(), "-c".into(), "echo out; echo oops >&2".into()],
        )
        .await
        .unwrap();
    assert_eq!(
        (out.stdout.as_slice(), out.stderr.as_slice()),
        (&b"out\n"[..], &b"oops\n"[..])
    );
    let err = rt
        .exec(&id, &["/bin/no-such-tool".into()])
        .await
        .unwrap_err();
    assert!(err.to_string().contains("no-such-tool"), "{err}");

    // `sleep` as pid 1 ignores SIGTERM: stop waits the grace period, then kills.
    let mut exits = rt.subscribe_exits();
    let started = Instant::now();
    rt.stop(&id, "SIGTERM", Duration::from_millis(1500))
        .await
        .unwrap();
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(1500),
        "stopped after {took:?}"
    );
    assert!(took < Duration::from_secs(10), "stopped after {took:?}");
    assert_eq!(next_exit(&mut exits, &id).await, 137);
    let me = rt
        .list()
        .await
        .unwrap()
        .into_iter()
        .find(|c| c.id == id)
        .unwrap();
    assert_eq!(
        (me.status, me.exit_code),
        (ContainerStatus::Stopped, Some(137))
    );
    rt.remove(&id).await.unwrap();

    // A replacement container finds what the first one wrote to the volume.
    let id2 = unique("full2");
    rt.create(config(&env, &id2, spec)).await.unwrap();
    rt.start(&id2).await.unwrap();
    let (_, data) = sh(rt, &id2, "cat /data/f").await;
    assert_eq!(data, "persisted");
    rt.remove(&id2).await.unwrap();

    // Nothing of either container is left.
    let containers = env
        .cd
        .ctr_ok(&["-n", "shoal", "containers", "ls", "-q"])
        .unwrap();
    assert_eq!(containers.trim(), "");
    let tasks = env
        .cd
        .ctr_ok(&["-n", "shoal", "tasks", "ls", "-q"])
        .unwrap();
    assert_eq!(tasks.trim(), "");
    let snaps = env.cd.ctr_ok(&["-n", "shoal", "snapshots", "ls"]).unwrap();
    assert!(!snaps.contains(&id) && !snaps.contains(&id2), "{snaps}");
    assert!(rt.list().await.unwrap().is_empty());
    // Removing again is fine.
    rt.remove(&id).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exits_are_reported_through_events_and_logs_go_to_files() {
    let Some(env) = setup().await else { return };
    let img = image(&env);
    env.rt.import_image(&img.path).await.unwrap();
    let rt = &env.rt;
    let mut exits = rt.subscribe_exits();

    let id = unique("exit3");
    let mut spec = busybox(&["sh", "-c", "echo to-out; echo to-err >&2; exit 3"]);
    spec.network = NetworkMode::None;
    let cfg = config(&env, &id, spec);
    rt.create(cfg.clone()).await.unwrap();
    rt.start(&id).await.unwrap();
    assert_eq!(next_exit(&mut exits, &id).await, 3);
    let me = rt
        .list()
        .await
        .unwrap()
        .into_iter()
        .find(|c| c.id == id)
        .unwrap();
    assert_eq!(me.exit_code, Some(3));
    wait_file(&cfg.stdout_path, "to-out\n").await;
    wait_file(&cfg.stderr_path, "to-err\n").await;

    // Starting again reruns it; the log files are appended to.
    rt.start(&id).await.unwrap();
    assert_eq!(next_exit(&mut exits, &id).await, 3);
    wait_file(&cfg.stdout_path, "to-out\nto-out\n").await;

    // A process that handles SIGTERM stops well within its grace period.
    let id2 = unique("trap");
    let spec = busybox(&[
        "sh",
        "-c",
        "trap 'exit 0' TERM; while true; do sleep 0.1; done",
    ]);
    rt.create(config(&env, &id2, spec)).await.unwrap();
    rt.start(&id2).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let started = Instant::now();
    rt.stop(&id2, "TERM", Duration::from_secs(20))
        .await
        .unwrap();
    assert!(started.elapsed() < Duration::from_secs(5));
    assert_eq!(next_exit(&mut exits, &id2).await, 0);

    rt.remove(&id).await.unwrap();
    rt.remove(&id2).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_command_fails_clearly() {
    let Some(env) = setup().await else { return };
    let img = image(&env);
    env.rt.import_image(&img.path).await.unwrap();
    let rt = &env.rt;
    let id = unique("nocmd");
    rt.create(config(&env, &id, busybox(&["/bin/no-such-command"])))
        .await
        .unwrap();
    let err = rt.start(&id).await.unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, RuntimeError::Start { .. }), "{msg}");
    assert!(msg.contains("no-such-command"), "{msg}");
    assert!(msg.contains(&id), "{msg}");
    rt.remove(&id).await.unwrap();

    // An image that is not there is named in the error.
    let err = rt
        .create(config(
            &env,
            &unique("noimage"),
            ContainerSpec {
                image: "shoal.test/absent:1".into(),
                command: vec!["sh".into()],
                ..Default::default()
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(err.to_string(), "image `shoal.test/absent:1` not found");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn privileged_host_namespaces_and_limits() {
    let Some(env) = setup().await else { return };
    let img = image(&env);
    env.rt.import_image(&img.path).await.unwrap();
    let rt = &env.rt;
    let host_ns = |kind: &str| {
        std::fs::read_link(format!("/proc/self/ns/{kind}"))
            .unwrap()
            .display()
            .to_string()
    };

    // Privileged, host pid and ipc, own network namespace.
    let id = unique("priv");
    let mut spec = busybox(&["sleep", "300"]);
    spec.privileged = true;
    spec.pid_host = true;
    spec.ipc_host = true;
    spec.network = NetworkMode::None;
    rt.create(config(&env, &id, spec)).await.unwrap();
    rt.start(&id).await.unwrap();
    let (_, capeff) = sh(rt, &id, "grep CapEff /proc/self/status").await;
    let caps = u64::from_str_radix(capeff.split_whitespace().nth(1).unwrap(), 16).unwrap();
    assert!(caps & (1 << 21) != 0, "SYS_ADMIN missing: {capeff}");
    for (kind, shared) in [("pid", true), ("ipc", true), ("net", false)] {
        let (_, ns) = sh(rt, &id, &format!("readlink /proc/self/ns/{kind}")).await;
        assert_eq!(ns == host_ns(kind), shared, "{kind} namespace: {ns}");
    }
    let (_, hostname) = sh(rt, &id, "hostname").await;
    assert_eq!(hostname, id.chars().take(12).collect::<String>());
    let (code, _) = sh(rt, &id, "mkdir -p /mnt/t && mount -t tmpfs none /mnt/t").await;
    assert_eq!(code, 0, "a privileged container can mount");
    rt.remove(&id).await.unwrap();

    // Unprivileged: user, working dir, tmpfs, CPU limit; mounting is refused.
    let id = unique("limits");
    let mut spec = busybox(&["sleep", "300"]);
    spec.user = Some("1000:1000".into());
    spec.working_dir = Some("/tmp".into());
    spec.cpu_limit_millis = Some(500);
    spec.mounts = vec![Mount {
        kind: MountKind::Tmpfs,
        source: String::new(),
        target: "/scratch".into(),
        read_only: false,
        propagation: None,
        create_host_path: false,
    }];
    rt.create(config(&env, &id, spec)).await.unwrap();
    rt.start(&id).await.unwrap();
    let (_, ids) = sh(rt, &id, "echo $(id -u):$(id -g):$(pwd)").await;
    assert_eq!(ids, "1000:1000:/tmp");
    let (_, fs) = sh(rt, &id, "grep ' /scratch ' /proc/mounts").await;
    assert!(fs.starts_with("tmpfs /scratch tmpfs"), "{fs}");
    let (code, _) = sh(rt, &id, "touch /scratch/x").await;
    assert_eq!(code, 0, "tmpfs is writable by anyone");
    let (_, quota) = sh(
        rt,
        &id,
        "cat /sys/fs/cgroup/cpu,cpuacct/cpu.cfs_quota_us 2>/dev/null \
         || cat /sys/fs/cgroup/cpu/cpu.cfs_quota_us 2>/dev/null \
         || cut -d' ' -f1 /sys/fs/cgroup/cpu.max",
    )
    .await;
    assert_eq!(quota, "50000");
    let (code, _) = sh(rt, &id, "mkdir -p /tmp/m && mount -t tmpfs none /tmp/m").await;
    assert_ne!(code, 0, "an unprivileged container cannot mount");
    rt.remove(&id).await.unwrap();
}

/// The shim writes a container's output into its log files itself: with no runtime (no agent)
/// connected and nobody reading, a container writing far more than a pipe buffer (64 KiB) to
/// stdout and stderr never blocks, runs to its end, and every byte lands in the right file.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn output_never_waits_for_the_agent() {
    let Some(Env { cd, rt }) = setup().await else {
        return;
    };
    let img = build_busybox_image(cd.dir(), &ImageOptions::new(IMAGE)).expect("build image");
    rt.import_image(&img.path).await.unwrap();
    let log_paths = |id: &str| {
        (
            cd.dir().join(format!("logs/{id}.out")),
            cd.dir().join(format!("logs/{id}.err")),
        )
    };
    let id = unique("chatty");
    let (out, err) = log_paths(&id);
    let mut spec = busybox(&[
        "sh",
        "-c",
        "sleep 1; yes o | head -c 4194304; yes e | head -c 1048576 >&2; exec sleep 100000",
    ]);
    spec.network = NetworkMode::None;
    let cfg = ContainerConfig {
        id: id.clone(),
        spec,
        task_id: format!("task-{id}"),
        service: "svc".to_owned(),
        node: "node-1".to_owned(),
        stdout_path: out.clone(),
        stderr_path: err.clone(),
    };
    rt.create(cfg).await.unwrap();
    rt.start(&id).await.unwrap();
    // The "agent" goes away before the container writes anything.
    drop(rt);
    let start = Instant::now();
    let size = |p: &std::path::Path| std::fs::metadata(p).map_or(0, |m| m.len());
    while size(&out) < 4 << 20 || size(&err) < 1 << 20 {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "output stalled with no agent: stdout {} bytes, stderr {} bytes",
            size(&out),
            size(&err)
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let stdout = std::fs::read(&out).unwrap();
    let stderr = std::fs::read(&err).unwrap();
    assert_eq!(stdout.len(), 4 << 20);
    assert!(stdout.chunks(2).all(|c| c == b"o\n"));
    assert_eq!(stderr.len(), 1 << 20);
    assert!(stderr.chunks(2).all(|c| c == b"e\n"));
    // Not blocked: it reached its `sleep` and runs.
    let tasks = cd.ctr_ok(&["-n", "shoal", "tasks", "ls"]).unwrap();
    assert!(
        tasks
            .lines()
            .any(|l| l.starts_with(&id) && l.contains("RUNNING")),
        "{tasks}"
    );

    // A new runtime (the agent back) cleans up.
    let mut cfg = ContainerdConfig::new(cd.socket());
    cfg.volumes_dir = cd.dir().join("volumes");
    cfg.exec_dir = cd.dir().join("exec");
    let rt = ContainerdRuntime::connect(cfg).await.expect("connect");
    rt.remove(&id).await.unwrap();
}

/// An image whose `USER` is a kolla-like named user with supplementary groups.
fn kolla_like_image(env: &Env) -> BuiltImage {
    let mut opts = ImageOptions::new("shoal.test/kolla-like:1");
    opts.user = Some("nova".into());
    opts.passwd = Some(
        "root:x:0:0:root:/root:/bin/sh\n\
         nova:x:42436:42436::/var/lib/nova:/bin/sh\n\
         mysql:x:42434:42434::/var/lib/mysql:/bin/sh\n"
            .into(),
    );
    opts.group = Some(
        "root:x:0:\n\
         kolla:x:42400:nova,mysql\n\
         nova:x:42436:\n\
         libvirt:x:42473:nova\n\
         qemu:x:42427:\n"
            .into(),
    );
    build_busybox_image(env.cd.dir(), &opts).expect("build image")
}

/// `id -u`, `id -g` and the sorted `id -G` of a running container, as one line.
async fn ids_inside(rt: &ContainerdRuntime, id: &str) -> String {
    let (code, out) = sh(
        rt,
        id,
        "echo $(id -u) $(id -g) $(id -G | tr ' ' '\\n' | sort -n | uniq | tr '\\n' ' ')",
    )
    .await;
    assert_eq!(code, 0, "id: {out}");
    out.trim().to_owned()
}

/// Issue 14 Done-when 1, audit row 2 (non-root images): the image's named `USER` runs with its
/// uid, gid and supplementary groups from the image's files; `user: name:group` takes that
/// group as primary and no implied ones; `group_add` adds more; an unknown name is refused with
/// the image and the user named.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn image_users_resolve_by_name_with_their_groups() {
    let Some(env) = setup().await else { return };
    let img = kolla_like_image(&env);
    env.rt.import_image(&img.path).await.unwrap();
    let rt = &env.rt;
    let spec = |user: Option<&str>, group_add: &[&str]| ContainerSpec {
        image: img.name.clone(),
        command: vec!["sleep".into(), "300".into()],
        user: user.map(str::to_owned),
        group_add: group_add.iter().map(|s| s.to_string()).collect(),
        ..Default::default()
    };

    let id = unique("user-image");
    rt.create(config(&env, &id, spec(None, &[]))).await.unwrap();
    rt.start(&id).await.unwrap();
    // Primary gid 42436, supplementary kolla (42400) and libvirt (42473).
    assert_eq!(ids_inside(rt, &id).await, "42436 42436 42400 42436 42473");
    rt.remove(&id).await.unwrap();

    let id = unique("user-group");
    rt.create(config(&env, &id, spec(Some("nova:kolla"), &["qemu"])))
        .await
        .unwrap();
    rt.start(&id).await.unwrap();
    assert_eq!(ids_inside(rt, &id).await, "42436 42400 42400 42427");
    rt.remove(&id).await.unwrap();

    let id = unique("user-uid");
    rt.create(config(&env, &id, spec(Some("42434"), &[])))
        .await
        .unwrap();
    rt.start(&id).await.unwrap();
    assert_eq!(ids_inside(rt, &id).await, "42434 42434 42400 42434");
    rt.remove(&id).await.unwrap();

    let id = unique("user-unknown");
    let err = rt
        .create(config(&env, &id, spec(Some("rabbitmq"), &[])))
        .await
        .unwrap_err();
    let text = err.to_string();
    assert!(
        matches!(err, RuntimeError::Spec { .. })
            && text.contains("image `shoal.test/kolla-like:1`")
            && text.contains("user `rabbitmq` is not in the image's /etc/passwd"),
        "{text}"
    );
    assert!(!rt.list().await.unwrap().iter().any(|c| c.id == id));
}

/// Unmounts, on drop and in reverse order, the host mounts a test made (by path).
struct HostMounts(Vec<std::path::PathBuf>);

impl Drop for HostMounts {
    fn drop(&mut self) {
        for path in self.0.iter().rev() {
            let _ = nix::mount::umount2(path, nix::mount::MntFlags::MNT_DETACH);
        }
    }
}

fn host_mount_points() -> String {
    std::fs::read_to_string("/proc/self/mountinfo").expect("read mountinfo")
}

/// Issue 14 Done-when 2, audit row 8 (shared propagation): a tmpfs mounted inside a container
/// under a shared bind of a shared host directory appears on the host; under a private bind it
/// does not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mounts_under_a_shared_bind_reach_the_host() {
    use nix::mount::{mount, MsFlags};
    let Some(env) = setup().await else { return };
    let img = image(&env);
    env.rt.import_image(&img.path).await.unwrap();
    let rt = &env.rt;
    let mut guard = HostMounts(Vec::new());
    for (name, propagation, visible) in
        [("shared", "rshared", true), ("private", "rprivate", false)]
    {
        let dir = env.cd.dir().join(format!("prop-{name}"));
        std::fs::create_dir_all(dir.join("sub")).unwrap();
        // The host side: a shared mount of its own, as /run is on a systemd host.
        mount(
            Some(&dir),
            &dir,
            None::<&str>,
            MsFlags::MS_BIND,
            None::<&str>,
        )
        .unwrap();
        guard.0.push(dir.clone());
        mount(
            None::<&str>,
            &dir,
            None::<&str>,
            MsFlags::MS_SHARED,
            None::<&str>,
        )
        .unwrap();
        guard.0.push(dir.join("sub"));

        let id = unique(&format!("prop-{name}"));
        let mut spec = busybox(&["sleep", "300"]);
        spec.privileged = true;
        spec.mounts = vec![Mount {
            kind: MountKind::Bind,
            source: dir.display().to_string(),
            target: "/shared".into(),
            read_only: false,
            propagation: Some(propagation.into()),
            create_host_path: false,
        }];
        rt.create(config(&env, &id, spec)).await.unwrap();
        rt.start(&id).await.unwrap();
        let (code, out) = sh(rt, &id, "mount -t tmpfs tmpfs-from-inside /shared/sub").await;
        assert_eq!(code, 0, "mount inside: {out}");
        let sub = format!(" {} ", dir.join("sub").display());
        let on_host = host_mount_points()
            .lines()
            .any(|l| l.contains(&sub) && l.contains("tmpfs-from-inside"));
        assert_eq!(on_host, visible, "{name} bind: mount seen on the host");
        rt.remove(&id).await.unwrap();
    }
    drop(guard);
    for name in ["shared", "private"] {
        let dir = env.cd.dir().join(format!("prop-{name}"));
        assert!(
            !host_mount_points().contains(&format!(" {} ", dir.display())),
            "{name}: test mounts cleaned up"
        );
    }
}

/// Audit rows 9 (privileged) and 11 (cgroupns host), checked from inside: a privileged
/// container has a writable `/sys` and the host's devices; `cgroup_host` shares the host's cgroup
/// namespace, which a default container does not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn privileged_sys_devices_and_host_cgroup_namespace() {
    let Some(env) = setup().await else { return };
    let img = image(&env);
    env.rt.import_image(&img.path).await.unwrap();
    let rt = &env.rt;
    let host_cgroup_ns = std::fs::read_link("/proc/self/ns/cgroup")
        .unwrap()
        .display()
        .to_string();
    // A host device a default container lacks.
    let extra = std::fs::read_dir("/dev")
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .find(|p| {
            use std::os::unix::fs::FileTypeExt;
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            std::fs::symlink_metadata(p).is_ok_and(|m| m.file_type().is_char_device())
                && ![
                    "null", "zero", "full", "random", "urandom", "tty", "console", "ptmx",
                ]
                .contains(&name.as_str())
        });

    let id = unique("priv-docker");
    let mut spec = busybox(&["sleep", "300"]);
    spec.privileged = true;
    spec.cgroup_host = true;
    rt.create(config(&env, &id, spec)).await.unwrap();
    rt.start(&id).await.unwrap();
    let (_, sys) = sh(rt, &id, "grep ' /sys sysfs ' /proc/mounts").await;
    assert!(sys.contains(" rw,"), "/sys: {sys}");
    let (_, ns) = sh(rt, &id, "readlink /proc/self/ns/cgroup").await;
    assert_eq!(ns, host_cgroup_ns);
    if let Some(dev) = &extra {
        let (code, _) = sh(rt, &id, &format!("test -c {}", dev.display())).await;
        assert_eq!(code, 0, "host device {} inside", dev.display());
    }
    rt.remove(&id).await.unwrap();

    let id = unique("plain-cgroup");
    rt.create(config(&env, &id, busybox(&["sleep", "300"])))
        .await
        .unwrap();
    rt.start(&id).await.unwrap();
    let (_, sys) = sh(rt, &id, "grep ' /sys sysfs ' /proc/mounts").await;
    assert!(sys.contains(" ro,"), "/sys: {sys}");
    let (_, ns) = sh(rt, &id, "readlink /proc/self/ns/cgroup").await;
    assert_ne!(ns, host_cgroup_ns);
    if let Some(dev) = &extra {
        let (code, _) = sh(rt, &id, &format!("test -e {}", dev.display())).await;
        assert_ne!(code, 0, "host device {} absent", dev.display());
    }
    rt.remove(&id).await.unwrap();
}

fn status_field(status: &str, field: &str) -> String {
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .map(|v| v.trim().to_owned())
        .unwrap_or_default()
}

/// Issue 14 Done-when 3, checked from inside real containers: `devices` (with their cgroup
/// permissions), `sysctls`, `shm_size`, `extra_hosts`, `hostname`, the default seccomp filter and
/// `security_opt` (`seccomp:unconfined`, `no-new-privileges`), with its own network namespace and
/// with host networking.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compose_engine_keys_are_applied_inside_the_container() {
    let Some(env) = setup().await else { return };
    let img = image(&env);
    env.rt.import_image(&img.path).await.unwrap();
    let rt = &env.rt;
    let host_hosts = std::fs::read_to_string("/etc/hosts").unwrap();

    // A device node of our own (the fuse device's numbers, which runc does not allow by
    // default), reached through a symlink as `devices` may name it.
    let dev_dir = env.cd.dir().join("devices");
    std::fs::create_dir_all(&dev_dir).unwrap();
    let node = dev_dir.join("fuse-node");
    let made = std::process::Command::new("mknod")
        .arg(&node)
        .args(["c", "10", "229"])
        .status()
        .unwrap();
    assert!(made.success(), "mknod {}", node.display());
    let link = dev_dir.join("fuse-link");
    std::os::unix::fs::symlink(&node, &link).unwrap();

    let id = unique("keys-own-ns");
    let mut spec = busybox(&["sleep", "300"]);
    spec.network = NetworkMode::None;
    spec.devices = vec![shoal_model::Device {
        host_path: link.display().to_string(),
        container_path: "/dev/shoal-fuse".into(),
        permissions: "r".into(),
    }];
    spec.sysctls
        .insert("net.ipv4.ip_forward".into(), "1".into());
    spec.sysctls.insert("kernel.shmmni".into(), "1234".into());
    spec.shm_size = Some(32 << 20);
    spec.extra_hosts = vec![shoal_model::ExtraHost {
        name: "db.internal".into(),
        address: "10.1.2.3".into(),
    }];
    spec.hostname = Some("keys-test".into());
    spec.security.no_new_privileges = true;
    rt.create(config(&env, &id, spec)).await.unwrap();
    let hosts_file = env.cd.dir().join("hosts").join(&id);
    assert!(hosts_file.exists(), "{}", hosts_file.display());
    rt.start(&id).await.unwrap();

    let (_, kind) = sh(rt, &id, "stat -c '%F %t:%T' /dev/shoal-fuse").await;
    assert_eq!(kind, "character special file a:e5");
    let (code, _) = sh(rt, &id, ": < /dev/shoal-fuse").await;
    assert_eq!(code, 0, "the device opens for reading");
    let (code, _) = sh(rt, &id, ": > /dev/shoal-fuse").await;
    assert_ne!(code, 0, "the device cgroup allows reading only");
    let (_, fwd) = sh(rt, &id, "cat /proc/sys/net/ipv4/ip_forward").await;
    assert_eq!(fwd, "1");
    let (_, shmmni) = sh(rt, &id, "cat /proc/sys/kernel/shmmni").await;
    assert_eq!(shmmni, "1234");
    let (_, shm) = sh(rt, &id, "grep ' /dev/shm ' /proc/mounts").await;
    assert!(shm.contains("size=32768k"), "/dev/shm: {shm}");
    let (_, hosts) = sh(rt, &id, "cat /etc/hosts").await;
    assert!(hosts.contains("127.0.0.1\tlocalhost"), "{hosts}");
    assert!(hosts.contains("10.1.2.3\tdb.internal"), "{hosts}");
    let (_, name) = sh(rt, &id, "hostname").await;
    assert_eq!(name, "keys-test");
    let (_, status) = sh(rt, &id, "cat /proc/self/status").await;
    assert_eq!(
        status_field(&status, "Seccomp:"),
        "2",
        "default filter: {status}"
    );
    assert_eq!(status_field(&status, "NoNewPrivs:"), "1");
    rt.remove(&id).await.unwrap();
    assert!(
        !hosts_file.exists(),
        "hosts file removed with the container"
    );

    // Host networking: the host's /etc/hosts plus the extra line, the host untouched; a
    // hostname of its own (its own UTS namespace); no seccomp when unconfined.
    let id = unique("keys-host-net");
    let mut spec = busybox(&["sleep", "300"]);
    spec.extra_hosts = vec![shoal_model::ExtraHost {
        name: "rabbit.internal".into(),
        address: "fd00::7".into(),
    }];
    spec.hostname = Some("keys-host".into());
    spec.security.seccomp_unconfined = true;
    rt.create(config(&env, &id, spec)).await.unwrap();
    rt.start(&id).await.unwrap();
    let (_, hosts) = sh(rt, &id, "cat /etc/hosts").await;
    assert!(hosts.starts_with(host_hosts.trim_end()), "{hosts}");
    assert!(hosts.ends_with("fd00::7\trabbit.internal"), "{hosts}");
    assert_eq!(std::fs::read_to_string("/etc/hosts").unwrap(), host_hosts);
    let (_, name) = sh(rt, &id, "hostname").await;
    assert_eq!(name, "keys-host");
    assert_eq!(
        nix::unistd::gethostname().unwrap().to_string_lossy(),
        std::fs::read_to_string("/proc/sys/kernel/hostname")
            .unwrap()
            .trim()
    );
    let host_net = std::fs::read_link("/proc/self/ns/net").unwrap();
    let (_, net) = sh(rt, &id, "readlink /proc/self/ns/net").await;
    assert_eq!(net, host_net.display().to_string());
    let (_, status) = sh(rt, &id, "cat /proc/self/status").await;
    assert_eq!(
        status_field(&status, "Seccomp:"),
        "0",
        "unconfined: {status}"
    );
    assert_eq!(status_field(&status, "NoNewPrivs:"), "0");
    rt.remove(&id).await.unwrap();

    // A device path that is not a device fails the create and leaves nothing behind.
    let id = unique("keys-bad-dev");
    let mut spec = busybox(&["sleep", "300"]);
    spec.devices = vec![shoal_model::Device {
        host_path: "/etc/hosts".into(),
        container_path: "/dev/x".into(),
        permissions: "rwm".into(),
    }];
    let err = rt.create(config(&env, &id, spec)).await.unwrap_err();
    assert!(err.to_string().contains("/etc/hosts"), "{err}");
    assert!(rt.list().await.unwrap().iter().all(|c| c.id != id));
    let snaps = env.cd.ctr_ok(&["-n", "shoal", "snapshots", "ls"]).unwrap();
    assert!(!snaps.contains(&id), "{snaps}");
}
