//! Stack file tests for `devices`, `sysctls`, `shm_size`, `extra_hosts`, `hostname`, `init` and
//! `security_opt`: accepted in their Compose forms, refused with file, line and key.

use shoal_model::{ContainerSpec, Device, ExtraHost, NetworkMode, PullPolicy};

use super::*;

fn container(src: &str) -> ContainerSpec {
    match parse_stack("stack.yaml", src) {
        Ok(s) => s.services[0].1.container.clone(),
        Err(e) => panic!("unexpected error: {e}"),
    }
}

#[test]
fn compose_forms_reach_the_container_spec() {
    let c = container(
        r#"
services:
  libvirt:
    image: kolla/nova-libvirt
    network_mode: none
    devices:
      - /dev/kvm
      - /dev/sda:/dev/xvda:rw
    sysctls:
      net.ipv4.ip_forward: 1
      kernel.shmmax: "68719476736"
    shm_size: 256m
    extra_hosts:
      - "db.internal:10.0.0.5"
      - "v6.internal=::1"
    hostname: compute-1
    init: false
    pull_policy: always
    security_opt:
      - seccomp:unconfined
      - apparmor=unconfined
      - label:disable
      - no-new-privileges
"#,
    );
    assert_eq!(c.network, NetworkMode::None);
    assert_eq!(c.pull_policy, PullPolicy::Always);
    assert_eq!(
        c.devices,
        vec![
            Device {
                host_path: "/dev/kvm".into(),
                container_path: "/dev/kvm".into(),
                permissions: "rwm".into(),
            },
            Device {
                host_path: "/dev/sda".into(),
                container_path: "/dev/xvda".into(),
                permissions: "rw".into(),
            },
        ]
    );
    assert_eq!(c.sysctls["net.ipv4.ip_forward"], "1");
    assert_eq!(c.sysctls["kernel.shmmax"], "68719476736");
    assert_eq!(c.shm_size, Some(256 << 20));
    assert_eq!(
        c.extra_hosts,
        vec![
            ExtraHost {
                name: "db.internal".into(),
                address: "10.0.0.5".into(),
            },
            ExtraHost {
                name: "v6.internal".into(),
                address: "::1".into(),
            },
        ]
    );
    assert_eq!(c.hostname.as_deref(), Some("compute-1"));
    assert!(c.security.seccomp_unconfined && c.security.apparmor_unconfined);
    assert!(c.security.label_disable && c.security.no_new_privileges);

    // The list form of sysctls and the mapping form of extra_hosts.
    let c = container(
        "services:\n  a:\n    image: x\n    sysctls: [\"fs.mqueue.msg_max=100\"]\n    extra_hosts: {db: 10.0.0.5}\n",
    );
    assert_eq!(c.sysctls["fs.mqueue.msg_max"], "100");
    assert_eq!(c.extra_hosts[0].address, "10.0.0.5");
    assert_eq!(c.pull_policy, PullPolicy::Missing);
    let c = container("services:\n  a:\n    image: x\n    pull_policy: never\n");
    assert_eq!(c.pull_policy, PullPolicy::Never);
}

/// (source, line, column, key path, part of the message)
const MALFORMED: &[(&str, usize, usize, &str, &str)] = &[
    ("services:\n  a:\n    image: x\n    devices: [kvm]\n", 4, 15, "services.a.devices[0]", "must be absolute"),
    ("services:\n  a:\n    image: x\n    devices: [\"/dev/a:/dev/b:rx\"]\n", 4, 15, "services.a.devices[0]", "rwm"),
    ("services:\n  a:\n    image: x\n    devices: [/dev/a, /dev/a]\n", 4, 23, "services.a.devices[1]", "given twice"),
    ("services:\n  a:\n    image: x\n    devices: /dev/kvm\n", 4, 14, "services.a.devices", "expected a list"),
    ("services:\n  a:\n    image: x\n    sysctls:\n      vm.swappiness: 10\n", 5, 7, "services.a.sysctls.vm.swappiness", "not namespaced"),
    ("services:\n  a:\n    image: x\n    sysctls:\n      net.core.somaxconn: 1024\n", 5, 7, "services.a.sysctls.net.core.somaxconn", "host networking"),
    ("services:\n  a:\n    image: x\n    ipc: host\n    sysctls: [\"kernel.shmmax=1\"]\n", 5, 15, "services.a.sysctls[0]", "ipc: host"),
    ("services:\n  a:\n    image: x\n    network_mode: none\n    sysctls: [\"net.ipv4.ip_forward\"]\n", 5, 15, "services.a.sysctls[0]", "KEY=VALUE"),
    ("services:\n  a:\n    image: x\n    shm_size: lots\n", 4, 15, "services.a.shm_size", "expected a size"),
    ("services:\n  a:\n    image: x\n    ipc: host\n    shm_size: 1g\n", 5, 15, "services.a.shm_size", "ipc: host"),
    ("services:\n  a:\n    image: x\n    extra_hosts: [\"db:example.com\"]\n", 4, 19, "services.a.extra_hosts[0]", "not an IP address"),
    ("services:\n  a:\n    image: x\n    extra_hosts: [\"db:host-gateway\"]\n", 4, 19, "services.a.extra_hosts[0]", "no bridge"),
    ("services:\n  a:\n    image: x\n    extra_hosts: [db]\n", 4, 19, "services.a.extra_hosts[0]", "NAME:ADDRESS"),
    ("services:\n  a:\n    image: x\n    hostname: bad_name\n", 4, 15, "services.a.hostname", "bad hostname"),
    ("services:\n  a:\n    image: x\n    init: true\n", 4, 11, "services.a.init", "no init binary"),
    ("services:\n  a:\n    image: x\n    init: yes please\n", 4, 11, "services.a.init", "true or false"),
    ("services:\n  a:\n    image: x\n    security_opt: [\"seccomp:/p.json\"]\n", 4, 20, "services.a.security_opt[0]", "seccomp:unconfined"),
    ("services:\n  a:\n    image: x\n    security_opt: [\"apparmor:docker-default\"]\n", 4, 20, "services.a.security_opt[0]", "AppArmor"),
    ("services:\n  a:\n    image: x\n    security_opt: [\"label:user:u\"]\n", 4, 20, "services.a.security_opt[0]", "SELinux"),
    ("services:\n  a:\n    image: x\n    pull_policy: daily\n", 4, 18, "services.a.pull_policy", "expected always, missing or never"),
    ("services:\n  a:\n    image: x\n    pull_policy: build\n", 4, 18, "services.a.pull_policy", "builds no images"),
    ("services:\n  a:\n    image: x\n    security_opt: [systempaths=unconfined]\n", 4, 20, "services.a.security_opt[0]", "unsupported security option"),
];

#[test]
fn bad_values_name_file_line_and_key() {
    let mut failures = Vec::new();
    for (i, (src, line, column, path, message)) in MALFORMED.iter().enumerate() {
        match parse_stack("bad.yaml", src) {
            Ok(_) => failures.push(format!("case {}: parsed without error", i + 1)),
            Err(e) => {
                let ok = (e.line, e.column) == (*line, *column)
                    && e.path == *path
                    && e.message.contains(message);
                if !ok {
                    failures.push(format!("case {}: got `{e}`", i + 1));
                }
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
