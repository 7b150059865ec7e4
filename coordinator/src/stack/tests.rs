//! Stack file tests: a full service, the examples, and a table of malformed files.

use shoal_model::container::HealthProbe;
use shoal_model::{MountKind, NetworkMode, ServiceMode};

use super::*;

fn parse(src: &str) -> Stack {
    match parse_stack("stack.yaml", src) {
        Ok(s) => s,
        Err(e) => panic!("unexpected error: {e}"),
    }
}

fn service<'a>(stack: &'a Stack, name: &str) -> &'a ServiceSpec {
    &stack
        .services
        .iter()
        .find(|(n, _)| n == name)
        .expect("service in stack")
        .1
}

#[test]
fn reads_every_supported_key() {
    let stack = parse(
        r#"
name: cloud
x-common: &common
  KOLLA_CONFIG_STRATEGY: COPY_ALWAYS
volumes:
  data: {}
  logs:
services:
  db:
    image: mariadb:11
    healthcheck:
      x-shoal-tcp: 127.0.0.1:3306
  api:
    image: "keystone:1"
    command: keystone-manage "db sync"
    entrypoint: ["/bin/sh", "-c"]
    environment:
      <<: *common
      PORT: 5000
    user: "1000"
    working_dir: /srv
    network_mode: none
    volumes:
      - /etc/kolla/keystone/:/var/lib/kolla/config_files/:ro
      - data:/var/lib/data
      - /run:/run:rshared
      - type: bind
        source: /run/netns
        target: /run/netns
        bind:
          propagation: shared
      - { type: volume, source: logs, target: /var/log }
    tmpfs: [/tmp]
    privileged: true
    cap_add: [NET_ADMIN]
    cap_drop: [MKNOD]
    pid: host
    ipc: host
    ulimits:
      nofile: 1048576
      nproc: { soft: 10, hard: 20 }
    healthcheck:
      test: ["CMD", "healthcheck_curl", "http://127.0.0.1:5000"]
      interval: 1m30s
      timeout: 500ms
      retries: 5
      start_period: 5s
    stop_signal: SIGTERM
    stop_grace_period: 1m
    labels: ["a=b", "c"]
    x-anything: ignored
    ports:
      - "5000"
      - "35357:35357"
      - { target: 8080, published: 8080, mode: host, protocol: tcp }
    depends_on:
      db:
        condition: service_healthy
    deploy:
      mode: replicated
      replicas: 3
      labels: { tier: api }
      placement:
        constraints: ["node.labels.role == controller", "node.role != coordinator"]
        preferences:
          - spread: node.labels.rack
        max_replicas_per_node: 1
      resources:
        reservations: { cpus: "0.5", memory: 512M }
        limits: { cpus: 2, memory: 1.5G }
      restart_policy:
        condition: on-failure
        delay: 10s
        max_attempts: 3
        window: 2m
  boot:
    image: keystone:1
    environment: ["KOLLA_BOOTSTRAP", "A=b=c"]
    depends_on: [db]
    deploy: { mode: replicated-job }
  agent:
    image: agent:1
    healthcheck: { disable: true }
    deploy: { mode: global }
"#,
    );
    assert_eq!(stack.name.as_deref(), Some("cloud"));
    assert_eq!(stack.volumes.keys().collect::<Vec<_>>(), ["data", "logs"]);
    assert_eq!(
        stack
            .services
            .iter()
            .map(|(n, _)| n.as_str())
            .collect::<Vec<_>>(),
        ["db", "api", "boot", "agent"]
    );

    let db = service(&stack, "db");
    assert_eq!(db.replicas, 1);
    assert_eq!(db.mode, ServiceMode::Replicated);
    assert_eq!(
        db.container.healthcheck.as_ref().map(|h| h.probe.clone()),
        Some(HealthProbe::Tcp {
            address: "127.0.0.1:3306".into()
        })
    );

    let api = service(&stack, "api");
    let c = &api.container;
    assert_eq!(c.image, "keystone:1");
    assert_eq!(c.command, ["keystone-manage", "db sync"]);
    assert_eq!(c.entrypoint, ["/bin/sh", "-c"]);
    assert_eq!(c.env["KOLLA_CONFIG_STRATEGY"], "COPY_ALWAYS");
    assert_eq!(c.env["PORT"], "5000");
    assert_eq!(c.user.as_deref(), Some("1000"));
    assert_eq!(c.working_dir.as_deref(), Some("/srv"));
    assert_eq!(c.network, NetworkMode::None);
    assert_eq!(c.mounts.len(), 6);
    assert!(c.mounts[0].read_only && c.mounts[0].kind == MountKind::Bind);
    assert_eq!(c.mounts[1].kind, MountKind::Volume);
    assert_eq!(c.mounts[2].propagation.as_deref(), Some("rshared"));
    assert_eq!(c.mounts[3].propagation.as_deref(), Some("shared"));
    assert_eq!(c.mounts[4].source, "logs");
    assert_eq!(c.mounts[5].kind, MountKind::Tmpfs);
    assert!(c.privileged && c.pid_host && c.ipc_host);
    assert_eq!(c.cap_add, ["NET_ADMIN"]);
    assert_eq!(c.cap_drop, ["MKNOD"]);
    assert_eq!(
        (c.ulimits[0].soft, c.ulimits[0].hard),
        (1_048_576, 1_048_576)
    );
    assert_eq!((c.ulimits[1].soft, c.ulimits[1].hard), (10, 20));
    let hc = c.healthcheck.as_ref().expect("healthcheck");
    assert_eq!(
        hc.probe,
        HealthProbe::Exec {
            command: vec!["healthcheck_curl".into(), "http://127.0.0.1:5000".into()]
        }
    );
    assert_eq!(
        (
            hc.interval_ms,
            hc.timeout_ms,
            hc.retries,
            hc.start_period_ms
        ),
        (90_000, 500, 5, 5_000)
    );
    assert_eq!(c.stop_signal.as_deref(), Some("SIGTERM"));
    assert_eq!(c.stop_grace_ms, Some(60_000));
    assert_eq!(c.labels["a"], "b");
    assert_eq!(c.labels["c"], "");
    assert_eq!(c.host_ports, [5000, 35357, 8080]);
    assert_eq!(c.cpu_limit_millis, Some(2000));
    assert_eq!(c.memory_limit, Some(3 << 29));
    assert_eq!(api.depends_on, [("db".to_string(), SERVICE_HEALTHY)]);
    assert_eq!(api.replicas, 3);
    assert_eq!(api.labels["tier"], "api");
    assert_eq!(
        api.constraints,
        ["node.labels.role == controller", "node.role != coordinator"]
    );
    assert_eq!(api.spread_labels, ["rack"]);
    assert_eq!(api.max_replicas_per_node, Some(1));
    assert_eq!(
        (api.cpu_reservation_millis, api.memory_reservation_bytes),
        (500, 512 << 20)
    );
    assert_eq!(
        api.restart_policy.condition,
        shoal_model::RestartCondition::OnFailure
    );
    assert_eq!(
        (
            api.restart_policy.delay_ms,
            api.restart_policy.max_attempts,
            api.restart_policy.window_ms
        ),
        (10_000, Some(3), 120_000)
    );

    let boot = service(&stack, "boot");
    assert_eq!(boot.mode, ServiceMode::ReplicatedJob);
    assert_eq!(boot.container.env["KOLLA_BOOTSTRAP"], "");
    assert_eq!(boot.container.env["A"], "b=c");
    assert_eq!(boot.depends_on, [("db".to_string(), SERVICE_STARTED)]);

    let agent = service(&stack, "agent");
    assert_eq!((agent.mode, agent.replicas), (ServiceMode::Global, 0));
    assert!(agent.container.healthcheck.is_none());
}

#[test]
fn openstack_example_parses() {
    let src = include_str!("../../../examples/openstack/stack.yaml");
    let stack = parse(src);
    let names: Vec<&str> = stack.services.iter().map(|(n, _)| n.as_str()).collect();
    for wanted in [
        "mariadb",
        "rabbitmq",
        "memcached",
        "keystone",
        "glance-api",
        "placement-api",
        "nova-api",
        "nova-scheduler",
        "nova-conductor",
        "nova-novncproxy",
        "neutron-server",
        "horizon",
        "nova-libvirt",
        "nova-compute",
        "openvswitch-vswitchd",
        "keystone-bootstrap",
    ] {
        assert!(names.contains(&wanted), "{wanted} missing");
    }
    for (name, spec) in &stack.services {
        let c = &spec.container;
        assert!(c.image.starts_with("quay.io/openstack.kolla/"), "{name}");
        assert_eq!(c.env["KOLLA_CONFIG_STRATEGY"], "COPY_ALWAYS", "{name}");
        assert!(
            c.mounts
                .iter()
                .any(|m| m.target == "/var/lib/kolla/config_files/" && m.read_only),
            "{name}"
        );
        assert!(c.mounts.iter().any(|m| m.source == "kolla_logs"), "{name}");
        assert_eq!(c.ulimits[0].hard, 1_048_576, "{name}");
        assert_eq!(c.network, NetworkMode::Host);
        let on_compute = spec
            .constraints
            .iter()
            .any(|c| c == "node.labels.role == compute");
        let on_controller = spec
            .constraints
            .iter()
            .any(|c| c == "node.labels.role == controller");
        assert!(
            on_compute != on_controller,
            "{name} must be on controllers or computes"
        );
        if on_compute {
            assert_eq!(spec.mode, ServiceMode::Global, "{name}");
        }
    }
    let keystone = service(&stack, "keystone");
    assert!(keystone
        .depends_on
        .contains(&("keystone-bootstrap".into(), SERVICE_COMPLETED_SUCCESSFULLY)));
    assert_eq!(keystone.container.host_ports, [5000]);
    assert_eq!(
        service(&stack, "keystone-bootstrap").mode,
        ServiceMode::ReplicatedJob
    );
    assert!(service(&stack, "nova-libvirt").container.pid_host);
    assert!(service(&stack, "nova-compute").container.ipc_host);
    // Audit row 11: libvirt shares the host's cgroup namespace.
    assert!(service(&stack, "nova-libvirt").container.cgroup_host);
    // Audit row 15: 60 s grace for the stateful services.
    for name in ["mariadb", "rabbitmq"] {
        assert_eq!(
            service(&stack, name).container.stop_grace_ms,
            Some(60_000),
            "{name}"
        );
    }
    // Audit rows 7 and 8: /run/openvswitch is created when missing; /run is a shared bind.
    let ovs = &service(&stack, "openvswitch-db-server").container;
    let run_ovs = ovs
        .mounts
        .iter()
        .find(|m| m.source == "/run/openvswitch")
        .expect("/run/openvswitch bind");
    assert!(run_ovs.create_host_path);
    assert_eq!(run_ovs.propagation.as_deref(), Some("shared"));
    for name in ["nova-libvirt", "nova-compute"] {
        let c = &service(&stack, name).container;
        assert!(
            c.mounts
                .iter()
                .any(|m| m.target == "/run" && m.propagation.as_deref() == Some("shared")),
            "{name}"
        );
    }
    // Audit row 8: neutron's agents share /run/netns with the host, so the namespaces they
    // create are the host's.
    for name in [
        "neutron-openvswitch-agent",
        "neutron-dhcp-agent",
        "neutron-l3-agent",
    ] {
        let c = &service(&stack, name).container;
        assert!(
            c.mounts.iter().any(|m| m.source == "/run/netns"
                && m.target == "/run/netns"
                && m.propagation.as_deref() == Some("shared")
                && m.create_host_path),
            "{name}"
        );
        assert!(c.privileged, "{name}");
    }
    // Audit row 9: what kolla runs privileged is privileged here too.
    for name in ["nova-libvirt", "nova-compute", "openvswitch-vswitchd"] {
        assert!(service(&stack, name).container.privileged, "{name}");
    }
    // Audit row 2: no service overrides its image's named USER.
    assert!(stack
        .services
        .iter()
        .all(|(_, s)| s.container.user.is_none()));
}

#[test]
fn demo_example_parses() {
    let stack = parse(include_str!("../../../examples/demo/stack.yaml"));
    assert_eq!(
        service(&stack, "db-bootstrap").mode,
        ServiceMode::ReplicatedJob
    );
    assert_eq!(service(&stack, "node-agent").mode, ServiceMode::Global);
    let api = service(&stack, "api");
    assert_eq!(api.container.host_ports, [18080]);
    assert!(matches!(
        api.container.healthcheck.as_ref().map(|h| &h.probe),
        Some(HealthProbe::Http { .. })
    ));
    assert!(api.depends_on.contains(&("db".into(), SERVICE_HEALTHY)));
    assert!(api
        .depends_on
        .contains(&("db-bootstrap".into(), SERVICE_COMPLETED_SUCCESSFULLY)));
}

/// `(file text, line, column, key path, part of the message)`.
const MALFORMED: &[(&str, usize, usize, &str, &str)] = &[
    // 1. yaml syntax error
    ("services:\n  a: [1\n  b: 2\n", 3, 4, "<root>", "yaml syntax error"),
    // 2. unknown top-level key
    ("services: {}\nnetworks: {}\n", 2, 1, "networks", "unknown or unsupported key"),
    // 3. unknown service key
    ("services:\n  a:\n    image: x\n    container_name: y\n", 4, 5, "services.a.container_name", "unknown"),
    // 4. unknown deploy key
    ("services:\n  a:\n    image: x\n    deploy:\n      endpoint_mode: vip\n", 5, 7, "services.a.deploy.endpoint_mode", "unknown"),
    // 5. wrong type: image is a list
    ("services:\n  a:\n    image: [x]\n", 3, 12, "services.a.image", "expected a string"),
    // 6. wrong type: privileged
    ("services:\n  a:\n    image: x\n    privileged: maybe\n", 4, 17, "services.a.privileged", "expected true or false"),
    // 7. negative replicas
    ("services:\n  a:\n    image: x\n    deploy:\n      replicas: -1\n", 5, 17, "services.a.deploy.replicas", "expected a non-negative integer, got -1"),
    // 8. bad duration
    ("services:\n  a:\n    image: x\n    stop_grace_period: 10\n", 4, 24, "services.a.stop_grace_period", "expected a string"),
    // 9. bad duration unit
    ("services:\n  a:\n    image: x\n    healthcheck:\n      test: [CMD, \"true\"]\n      interval: 10x\n", 6, 17, "services.a.healthcheck.interval", "expected a duration"),
    // 10. bad memory size
    ("services:\n  a:\n    image: x\n    deploy:\n      resources:\n        limits: { memory: lots }\n", 6, 27, "services.a.deploy.resources.limits.memory", "expected a size"),
    // 11. depends_on a missing service
    ("services:\n  a:\n    image: x\n    depends_on: [b]\n", 4, 18, "services.a.depends_on[0]", "not a service of this stack"),
    // 12. dependency cycle
    ("services:\n  a:\n    image: x\n    depends_on: [b]\n  b:\n    image: x\n    depends_on:\n      a: { condition: service_started }\n", 8, 7, "services.b.depends_on.a", "dependency cycle: a -> b -> a"),
    // 13. malformed constraint
    ("services:\n  a:\n    image: x\n    deploy:\n      placement:\n        constraints: [\"node.labels.role = controller\"]\n", 6, 23, "services.a.deploy.placement.constraints[0]", "expected `FIELD == VALUE`"),
    // 14. contradictory constraints
    ("services:\n  a:\n    image: x\n    deploy:\n      placement:\n        constraints:\n          - node.role == worker\n          - node.role == manager\n", 7, 11, "services.a.deploy.placement.constraints", "contradict"),
    // 15. unknown node.role
    ("services:\n  a:\n    image: x\n    deploy:\n      placement:\n        constraints: [node.role == boss]\n", 6, 23, "services.a.deploy.placement.constraints[0]", "unknown node.role"),
    // 16. unsupported network_mode
    ("services:\n  a:\n    image: x\n    network_mode: bridge\n", 4, 19, "services.a.network_mode", "unsupported network_mode"),
    // 17. undeclared named volume
    ("services:\n  a:\n    image: x\n    volumes: [\"data:/data\"]\n", 4, 15, "services.a.volumes[0]", "not declared"),
    // 18. bad depends_on condition
    ("services:\n  a:\n    image: x\n  b:\n    image: x\n    depends_on:\n      a:\n        condition: service_ready\n", 8, 20, "services.b.depends_on.a.condition", "unknown condition"),
    // 19. unknown deploy mode
    ("services:\n  a:\n    image: x\n    deploy: { mode: daemonset }\n", 4, 21, "services.a.deploy.mode", "unknown mode"),
    // 20. missing image
    ("services:\n  a:\n    command: [x]\n", 3, 5, "services.a", "missing required key `image`"),
    // 21. bad propagation in long syntax
    ("services:\n  a:\n    image: x\n    volumes:\n      - type: bind\n        source: /run\n        target: /run\n        bind: { propagation: sideways }\n", 8, 30, "services.a.volumes[0].bind.propagation", "unknown propagation"),
    // 22. ingress ports
    ("services:\n  a:\n    image: x\n    ports:\n      - { target: 80, published: 80, mode: ingress }\n", 5, 44, "services.a.ports[0].mode", "only host"),
    // 23. bad healthcheck test
    ("services:\n  a:\n    image: x\n    healthcheck:\n      test: [\"RUN\", \"x\"]\n", 5, 13, "services.a.healthcheck.test", "expected [\"CMD\""),
    // 24. ulimit negative
    ("services:\n  a:\n    image: x\n    ulimits:\n      nofile: -5\n", 5, 15, "services.a.ulimits.nofile", "non-negative"),
    // 25. unknown restart_policy condition
    ("services:\n  a:\n    image: x\n    deploy:\n      restart_policy: { condition: always }\n", 5, 36, "services.a.deploy.restart_policy.condition", "unknown condition"),
    // 26. duplicate key
    ("services:\n  a:\n    image: x\n    image: y\n", 4, 5, "<root>", "duplicated key"),
    // 27. unknown key in an x- free nested mapping of healthcheck
    ("services:\n  a:\n    image: x\n    healthcheck:\n      test: [CMD, x]\n      every: 5s\n", 6, 7, "services.a.healthcheck.every", "unknown"),
    // 28. replicas on a global service
    ("services:\n  a:\n    image: x\n    deploy:\n      mode: global\n      replicas: 2\n", 6, 17, "services.a.deploy.replicas", "global"),
    // 29. spread on something other than a label
    ("services:\n  a:\n    image: x\n    deploy:\n      placement:\n        preferences: [{ spread: node.hostname }]\n", 6, 33, "services.a.deploy.placement.preferences[0].spread", "node.labels.KEY"),
    // 30. relative bind source
    ("services:\n  a:\n    image: x\n    volumes: [\"./conf:/etc/conf\"]\n", 4, 15, "services.a.volumes[0]", "absolute path"),
    // 32. waiting for health of a service without a healthcheck
    ("services:\n  a:\n    image: x\n  b:\n    image: x\n    depends_on:\n      a: { condition: service_healthy }\n", 7, 7, "services.b.depends_on.a", "no healthcheck"),
    // 33. waiting for a long-running service to complete
    ("services:\n  a:\n    image: x\n  b:\n    image: x\n    depends_on:\n      a: { condition: service_completed_successfully }\n", 7, 7, "services.b.depends_on.a", "only jobs"),
    // 31. bad cpus
    ("services:\n  a:\n    image: x\n    deploy:\n      resources:\n        reservations: { cpus: many }\n", 6, 31, "services.a.deploy.resources.reservations.cpus", "number of cpus"),
    // 34. unknown node-loss behaviour
    ("services:\n  a:\n    image: x\n    deploy:\n      x-shoal-node-loss: sometimes\n", 5, 26, "services.a.deploy.x-shoal-node-loss", "expected `replace`, `wait` or a duration such as `10m`"),
    // 35. node-loss as a mapping
    ("services:\n  a:\n    image: x\n    deploy:\n      x-shoal-node-loss: { wait: 10m }\n", 5, 26, "services.a.deploy.x-shoal-node-loss", "expected"),
];

#[test]
fn malformed_stack_files_name_file_line_and_key() {
    assert!(MALFORMED.len() >= 20);
    check_malformed(MALFORMED);
}

/// A malformed case: `(file text, line, column, key path, part of the message)`.
pub(super) type Malformed = (&'static str, usize, usize, &'static str, &'static str);

/// Parses each case as `bad.yaml` and fails, listing every case that parsed or whose error
/// does not name that line, column, key path and message.
pub(super) fn check_malformed(cases: &[Malformed]) {
    let mut failures = Vec::new();
    for (i, (src, line, column, path, message)) in cases.iter().enumerate() {
        match parse_stack("bad.yaml", src) {
            Ok(_) => failures.push(format!("case {}: parsed without error", i + 1)),
            Err(e) => {
                let text = e.to_string();
                let ok = e.file == "bad.yaml"
                    && e.line == *line
                    && e.column == *column
                    && e.path == *path
                    && e.message.contains(message)
                    && text.starts_with(&format!("bad.yaml:{line}:{column}: {path}: "));
                if !ok {
                    failures.push(format!("case {}: got `{text}`", i + 1));
                }
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn error_display_names_file_line_column_and_key() {
    let e = parse_stack(
        "stack.yaml",
        "services:\n  keystone:\n    image: k\n    deploy:\n      replicas: -1\n",
    )
    .expect_err("negative replicas");
    assert_eq!(
        e.to_string(),
        "stack.yaml:5:17: services.keystone.deploy.replicas: expected a non-negative integer, got -1"
    );
}

#[test]
fn x_keys_are_ignored_everywhere() {
    let stack = parse(
        "x-top: 1\nservices:\n  a:\n    image: x\n    x-svc: {}\n    deploy:\n      x-d: 1\n      placement:\n        x-p: 2\n",
    );
    assert_eq!(stack.services.len(), 1);
}

#[test]
fn node_loss_defaults_to_waiting_for_services_with_data() {
    use shoal_model::NodeLoss;
    let stack = parse(
        r#"
volumes:
  data: {}
services:
  stateless:
    image: x
  config-only:
    image: x
    volumes: ["/etc/kolla/x:/etc/x:ro"]
  db:
    image: x
    volumes: ["data:/var/lib/mysql"]
  logs:
    image: x
    volumes: ["/var/log/kolla:/var/log/kolla"]
  cache:
    image: x
    volumes: ["data:/cache"]
    deploy:
      x-shoal-node-loss: replace
  rabbit:
    image: x
    deploy:
      x-shoal-node-loss: wait
  galera:
    image: x
    volumes: ["data:/var/lib/mysql"]
    deploy:
      x-shoal-node-loss: 10m
"#,
    );
    let got = |name: &str| service(&stack, name).node_loss();
    assert_eq!(got("stateless"), NodeLoss::Replace);
    assert_eq!(
        got("config-only"),
        NodeLoss::Replace,
        "read-only binds hold no data"
    );
    assert_eq!(got("db"), NodeLoss::Wait);
    assert_eq!(got("logs"), NodeLoss::Wait);
    assert_eq!(got("cache"), NodeLoss::Replace);
    assert_eq!(
        got("rabbit"),
        NodeLoss::Wait,
        "a quorum member without volumes"
    );
    assert_eq!(got("galera"), NodeLoss::ReplaceAfter(600_000));
}

/// Audit rows 2, 7, 11: `user` names, `group_add`, `cgroup: host`, and which binds create a
/// missing host directory (short syntax always, long syntax per `bind.create_host_path`).
#[test]
fn users_cgroup_and_bind_creation() {
    let stack = parse(
        "services:\n  libvirt:\n    image: kolla/nova-libvirt\n    user: nova:kolla\n    \
         group_add: [qemu, 42427]\n    cgroup: host\n    volumes:\n      \
         - /run/openvswitch:/run/openvswitch\n      \
         - { type: bind, source: /a, target: /a }\n      \
         - { type: bind, source: /b, target: /b, bind: { create_host_path: true } }\n  \
         plain:\n    image: x\n    cgroup: private\n",
    );
    let c = &service(&stack, "libvirt").container;
    assert_eq!(c.user.as_deref(), Some("nova:kolla"));
    assert_eq!(c.group_add, vec!["qemu", "42427"]);
    assert!(c.cgroup_host);
    let created: Vec<bool> = c.mounts.iter().map(|m| m.create_host_path).collect();
    assert_eq!(created, vec![true, false, true]);
    assert!(!service(&stack, "plain").container.cgroup_host);
    let err = parse_stack(
        "bad.yaml",
        "services:\n  a:\n    image: x\n    cgroup: shared\n",
    )
    .unwrap_err();
    assert_eq!(err.path, "services.a.cgroup");
    let err = parse_stack(
        "bad.yaml",
        "services:\n  a:\n    image: x\n    group_add: [\"a:b\"]\n",
    )
    .unwrap_err();
    assert_eq!(err.path, "services.a.group_add[0]");
}
