//! Pure translation of a `ContainerSpec` plus the image's config into an OCI runtime spec.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};

use oci_spec::runtime::{
    Capabilities, Capability, LinuxCapabilities, LinuxCpuBuilder, LinuxDevice,
    LinuxDeviceCgroupBuilder, LinuxMemoryBuilder, LinuxNamespaceType, LinuxResources, Mount,
    MountBuilder, PosixRlimit, PosixRlimitBuilder, PosixRlimitType, Spec, UserBuilder,
};
use serde::Deserialize;
use shoal_model::container::{ContainerSpec, MountKind, NetworkMode};

use super::seccomp::default_filter;
use super::users::{resolve_user, UserError};

/// `PATH` when neither the image nor the spec sets one.
const DEFAULT_PATH: &str = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Docker's default capability set, for containers that are not privileged.
const DEFAULT_CAPS: &[&str] = &[
    "CHOWN",
    "DAC_OVERRIDE",
    "FSETID",
    "FOWNER",
    "MKNOD",
    "NET_RAW",
    "SETGID",
    "SETUID",
    "SETFCAP",
    "SETPCAP",
    "NET_BIND_SERVICE",
    "SYS_CHROOT",
    "KILL",
    "AUDIT_WRITE",
];

/// Every capability up to Linux 5.9, for privileged containers, in bit order (`CAP_CHOWN` = 0).
const ALL_CAPS: &[&str] = &[
    "CHOWN",
    "DAC_OVERRIDE",
    "DAC_READ_SEARCH",
    "FOWNER",
    "FSETID",
    "KILL",
    "SETGID",
    "SETUID",
    "SETPCAP",
    "LINUX_IMMUTABLE",
    "NET_BIND_SERVICE",
    "NET_BROADCAST",
    "NET_ADMIN",
    "NET_RAW",
    "IPC_LOCK",
    "IPC_OWNER",
    "SYS_MODULE",
    "SYS_RAWIO",
    "SYS_CHROOT",
    "SYS_PTRACE",
    "SYS_PACCT",
    "SYS_ADMIN",
    "SYS_BOOT",
    "SYS_NICE",
    "SYS_RESOURCE",
    "SYS_TIME",
    "SYS_TTY_CONFIG",
    "MKNOD",
    "LEASE",
    "AUDIT_WRITE",
    "AUDIT_CONTROL",
    "SETFCAP",
    "MAC_OVERRIDE",
    "MAC_ADMIN",
    "SYSLOG",
    "WAKE_ALARM",
    "BLOCK_SUSPEND",
    "AUDIT_READ",
    "PERFMON",
    "BPF",
    "CHECKPOINT_RESTORE",
];

/// CFS period used for CPU limits, in microseconds.
const CPU_PERIOD_US: u64 = 100_000;

/// Why a spec could not be built.
#[derive(Debug, thiserror::Error)]
pub enum SpecError {
    #[error("no command: neither the spec nor the image sets an entrypoint or cmd")]
    NoCommand,
    #[error("unknown capability `{0}`")]
    UnknownCapability(String),
    #[error("unknown ulimit `{0}`")]
    UnknownUlimit(String),
    #[error("image `{image}`, user `{user}`: {source}")]
    User {
        image: String,
        user: String,
        source: UserError,
    },
    #[error("mount target `{0}` must be an absolute path")]
    RelativeTarget(String),
    #[error("bad volume name `{0}`")]
    BadVolumeName(String),
    #[error("{given} devices given but {resolved} resolved on the host")]
    DevicesUnresolved { given: usize, resolved: usize },
    #[error("limit {0} does not fit")]
    LimitTooLarge(u64),
    #[error("image config: {0}")]
    ImageConfig(#[from] serde_json::Error),
    #[error("building the spec: {0}")]
    Oci(#[from] oci_spec::OciSpecError),
}

/// The parts of an OCI image config that decide how a container runs.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct ImageConfig {
    pub entrypoint: Option<Vec<String>>,
    pub cmd: Option<Vec<String>>,
    pub env: Option<Vec<String>>,
    pub working_dir: Option<String>,
    pub user: Option<String>,
}

impl ImageConfig {
    /// Reads the `config` object of an OCI image config JSON document.
    pub fn from_image_json(json: &[u8]) -> Result<Self, SpecError> {
        #[derive(Deserialize)]
        struct Outer {
            #[serde(default)]
            config: Option<ImageConfig>,
        }
        let outer: Outer = serde_json::from_slice(json)?;
        Ok(outer.config.unwrap_or_default())
    }
}

/// Facts about the host and the container that are not in the spec.
#[derive(Debug, Clone)]
pub struct SpecContext<'a> {
    /// Container id; names the cgroup.
    pub id: &'a str,
    /// Parent cgroup, e.g. `/shoal`.
    pub cgroup_parent: &'a str,
    /// Where named volumes live: volume `x` is `<volumes_dir>/x`.
    pub volumes_dir: &'a Path,
    /// The agent's secrets tmpfs: the `n`-th secret of container `id` (the task id) is the file
    /// [`crate::secrets::host_file`]`(secrets_dir, id, n)`, written by the supervisor.
    pub secrets_dir: &'a Path,
    /// The host's hostname, used with host networking.
    pub host_hostname: &'a str,
    /// The host's capability bounding set (`CapBnd` of `/proc/self/status`), when known:
    /// "all capabilities" (privileged, `cap_add: [ALL]`) means all of these, as runc cannot
    /// grant a capability the host lacks.
    pub host_caps: Option<u64>,
    /// The image's `/etc/passwd` and `/etc/group` text, when it has them (read from the
    /// container's rootfs by the runtime); names in `user` and `group_add` resolve against them.
    pub passwd: Option<&'a str>,
    pub group: Option<&'a str>,
    /// The host's device nodes, given to privileged containers as Docker does.
    pub host_devices: &'a [LinuxDevice],
    /// The spec's `devices`, in order, resolved on the host (type, numbers, mode), each with
    /// its container path.
    pub devices: &'a [LinuxDevice],
    /// The container's own hosts file (the base plus `extra_hosts`), written by the runtime
    /// when the spec has `extra_hosts`; mounted read-only at `/etc/hosts`.
    pub hosts_file: Option<&'a Path>,
}

/// The user a container runs as: the spec's, else the image's `USER`, else none (root).
pub fn effective_user<'a>(spec: &'a ContainerSpec, image: &'a ImageConfig) -> Option<&'a str> {
    spec.user
        .as_deref()
        .or(image.user.as_deref())
        .filter(|u| !u.is_empty())
}

/// Reads the `CapBnd` mask out of the text of `/proc/self/status`.
pub fn parse_cap_bounding(status: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|l| l.strip_prefix("CapBnd:"))
        .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
}

/// The host directories the named volumes of `spec` need.
pub fn volume_dirs(spec: &ContainerSpec, volumes_dir: &Path) -> Result<Vec<PathBuf>, SpecError> {
    spec.mounts
        .iter()
        .filter(|m| m.kind == MountKind::Volume)
        .map(|m| volume_path(volumes_dir, &m.source))
        .collect()
}

fn volume_path(volumes_dir: &Path, name: &str) -> Result<PathBuf, SpecError> {
    let ok = !name.is_empty()
        && name != "."
        && name != ".."
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if !ok {
        return Err(SpecError::BadVolumeName(name.to_owned()));
    }
    Ok(volumes_dir.join(name))
}

/// The process arguments: Docker's rules for entrypoint and cmd.
pub fn process_args(spec: &ContainerSpec, image: &ImageConfig) -> Result<Vec<String>, SpecError> {
    let (entrypoint, cmd) = if !spec.entrypoint.is_empty() {
        (spec.entrypoint.clone(), spec.command.clone())
    } else {
        let cmd = if spec.command.is_empty() {
            image.cmd.clone().unwrap_or_default()
        } else {
            spec.command.clone()
        };
        (image.entrypoint.clone().unwrap_or_default(), cmd)
    };
    let args: Vec<String> = entrypoint.into_iter().chain(cmd).collect();
    if args.is_empty() {
        return Err(SpecError::NoCommand);
    }
    Ok(args)
}

/// The environment: the image's, overridden by the spec's, with a default `PATH`.
pub fn process_env(spec: &ContainerSpec, image: &ImageConfig) -> Vec<String> {
    let mut env: BTreeMap<String, String> = BTreeMap::new();
    let mut order: Vec<String> = Vec::new();
    for entry in image.env.iter().flatten() {
        let (k, v) = entry.split_once('=').unwrap_or((entry.as_str(), ""));
        if env.insert(k.to_owned(), v.to_owned()).is_none() {
            order.push(k.to_owned());
        }
    }
    for (k, v) in &spec.env {
        if env.insert(k.clone(), v.clone()).is_none() {
            order.push(k.clone());
        }
    }
    let mut out: Vec<String> = order
        .iter()
        .map(|k| format!("{k}={}", env.get(k).map(String::as_str).unwrap_or("")))
        .collect();
    if !env.contains_key("PATH") {
        out.insert(0, DEFAULT_PATH.to_owned());
    }
    out
}

fn parse_capability(name: &str) -> Result<Capability, SpecError> {
    let upper = name.to_ascii_uppercase();
    let full = if upper.starts_with("CAP_") {
        upper
    } else {
        format!("CAP_{upper}")
    };
    serde_json::from_value(serde_json::Value::String(full))
        .map_err(|_| SpecError::UnknownCapability(name.to_owned()))
}

fn parse_rlimit(name: &str) -> Result<PosixRlimitType, SpecError> {
    let upper = name.to_ascii_uppercase();
    let full = if upper.starts_with("RLIMIT_") {
        upper
    } else {
        format!("RLIMIT_{upper}")
    };
    serde_json::from_value(serde_json::Value::String(full))
        .map_err(|_| SpecError::UnknownUlimit(name.to_owned()))
}

/// All capabilities the host can grant.
fn all_caps(host_caps: Option<u64>) -> Result<Vec<Capability>, SpecError> {
    ALL_CAPS
        .iter()
        .enumerate()
        .filter(|(bit, _)| host_caps.is_none_or(|mask| mask & (1u64 << bit) != 0))
        .map(|(_, c)| parse_capability(c))
        .collect()
}

fn capabilities(spec: &ContainerSpec, host_caps: Option<u64>) -> Result<Capabilities, SpecError> {
    if spec.privileged {
        return Ok(all_caps(host_caps)?.into_iter().collect());
    }
    let mut caps: HashSet<Capability> = DEFAULT_CAPS
        .iter()
        .map(|c| parse_capability(c))
        .collect::<Result<_, _>>()?;
    for name in &spec.cap_add {
        if name.eq_ignore_ascii_case("ALL") {
            caps.extend(all_caps(host_caps)?);
        } else {
            caps.insert(parse_capability(name)?);
        }
    }
    for name in &spec.cap_drop {
        if name.eq_ignore_ascii_case("ALL") {
            caps.clear();
        } else {
            caps.remove(&parse_capability(name)?);
        }
    }
    Ok(caps)
}

fn bind_mount(source: &Path, target: &str, read_only: bool, propagation: Option<&str>) -> Mount {
    let mut options = vec![
        "rbind".to_owned(),
        if read_only { "ro" } else { "rw" }.to_owned(),
    ];
    if let Some(p) = propagation {
        options.push(p.to_owned());
    }
    let mut m = Mount::default();
    m.set_destination(PathBuf::from(target));
    m.set_typ(Some("bind".to_owned()));
    m.set_source(Some(source.to_path_buf()));
    m.set_options(Some(options));
    m
}

fn user_mounts(spec: &ContainerSpec, ctx: &SpecContext<'_>) -> Result<Vec<Mount>, SpecError> {
    let mut mounts = Vec::new();
    for m in &spec.mounts {
        if !m.target.starts_with('/') {
            return Err(SpecError::RelativeTarget(m.target.clone()));
        }
        let mount = match m.kind {
            MountKind::Bind => bind_mount(
                Path::new(&m.source),
                &m.target,
                m.read_only,
                m.propagation.as_deref(),
            ),
            MountKind::Volume => bind_mount(
                &volume_path(ctx.volumes_dir, &m.source)?,
                &m.target,
                m.read_only,
                m.propagation.as_deref(),
            ),
            MountKind::Tmpfs => {
                let mut options: Vec<String> = ["nosuid", "nodev", "mode=1777"]
                    .iter()
                    .map(|s| (*s).to_owned())
                    .collect();
                if m.read_only {
                    options.push("ro".to_owned());
                }
                MountBuilder::default()
                    .destination(PathBuf::from(&m.target))
                    .typ("tmpfs")
                    .source(PathBuf::from("tmpfs"))
                    .options(options)
                    .build()?
            }
        };
        mounts.push(mount);
    }
    for (i, r) in spec.secrets.iter().enumerate() {
        let source = crate::secrets::host_file(ctx.secrets_dir, ctx.id, i);
        mounts.push(bind_mount(&source, &r.container_path(), true, None));
    }
    for (i, r) in spec.configs.iter().enumerate() {
        let source = crate::secrets::config_file(ctx.secrets_dir, ctx.id, i);
        mounts.push(bind_mount(&source, &r.container_path(), true, None));
    }
    Ok(mounts)
}

/// Docker's rule: the root filesystem is `shared` when any bind is (r)shared, else `rslave`
/// when any bind is (r)slave (runc's default made explicit); otherwise runc's default. Without
/// it a mount made inside a shared bind never reaches the host.
fn rootfs_propagation(spec: &ContainerSpec) -> Option<String> {
    let props = || {
        spec.mounts
            .iter()
            .filter(|m| m.kind != MountKind::Tmpfs)
            .filter_map(|m| m.propagation.as_deref())
    };
    if props().any(|p| matches!(p, "shared" | "rshared")) {
        Some("shared".to_owned())
    } else if props().any(|p| matches!(p, "slave" | "rslave")) {
        Some("rslave".to_owned())
    } else {
        None
    }
}

/// Gives the default `/dev/shm` tmpfs `size` bytes (Compose `shm_size`).
fn set_shm_size(mounts: &mut [Mount], size: u64) {
    for m in mounts
        .iter_mut()
        .filter(|m| m.destination() == Path::new("/dev/shm"))
    {
        let mut options = m.options().clone().unwrap_or_default();
        options.retain(|o| !o.starts_with("size="));
        options.push(format!("size={size}"));
        m.set_options(Some(options));
    }
}

/// The text of a container's `/etc/hosts`: `base` (the host's file with host networking),
/// then one line per `extra_hosts` entry, as Docker appends them.
pub fn hosts_file_text(base: &str, spec: &ContainerSpec) -> String {
    let mut out = base.to_owned();
    if !out.is_empty() && !out.ends_with('\n') {
        out.push('\n');
    }
    for h in &spec.extra_hosts {
        out.push_str(&format!("{}\t{}\n", h.address, h.name));
    }
    out
}

/// The base of `/etc/hosts` for a container with its own network namespace.
pub const LOOPBACK_HOSTS: &str =
    "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n";

fn to_i64(v: u64) -> Result<i64, SpecError> {
    i64::try_from(v).map_err(|_| SpecError::LimitTooLarge(v))
}

/// Builds the OCI runtime spec for one container.
pub fn build_spec(
    spec: &ContainerSpec,
    image: &ImageConfig,
    ctx: &SpecContext<'_>,
) -> Result<Spec, SpecError> {
    let mut oci = Spec::default();

    // Process.
    let mut process = oci.process().clone().unwrap_or_default();
    process.set_args(Some(process_args(spec, image)?));
    process.set_env(Some(process_env(spec, image)));
    let cwd = spec
        .working_dir
        .clone()
        .or_else(|| image.working_dir.clone().filter(|w| !w.is_empty()))
        .unwrap_or_else(|| "/".to_owned());
    process.set_cwd(PathBuf::from(cwd));
    let user = effective_user(spec, image);
    let ids = resolve_user(user, &spec.group_add, ctx.passwd, ctx.group).map_err(|source| {
        SpecError::User {
            image: spec.image.clone(),
            user: user.unwrap_or("root").to_owned(),
            source,
        }
    })?;
    let mut oci_user = UserBuilder::default().uid(ids.uid).gid(ids.gid);
    if !ids.additional_gids.is_empty() {
        oci_user = oci_user.additional_gids(ids.additional_gids);
    }
    process.set_user(oci_user.build()?);
    let caps = capabilities(spec, ctx.host_caps)?;
    let mut linux_caps = LinuxCapabilities::default();
    let effective_caps = caps.clone();
    linux_caps.set_bounding(Some(caps.clone()));
    linux_caps.set_effective(Some(caps.clone()));
    linux_caps.set_permitted(Some(caps));
    linux_caps.set_inheritable(Some(Capabilities::new()));
    linux_caps.set_ambient(Some(Capabilities::new()));
    process.set_capabilities(Some(linux_caps));
    process.set_no_new_privileges(Some(spec.security.no_new_privileges));
    let mut rlimits: Vec<PosixRlimit> = Vec::new();
    for u in &spec.ulimits {
        let typ = parse_rlimit(&u.name)?;
        rlimits.retain(|r| r.typ() != typ);
        rlimits.push(
            PosixRlimitBuilder::default()
                .typ(typ)
                .soft(u.soft)
                .hard(u.hard)
                .build()?,
        );
    }
    if !rlimits
        .iter()
        .any(|r| r.typ() == PosixRlimitType::RlimitNofile)
    {
        rlimits.push(
            PosixRlimitBuilder::default()
                .typ(PosixRlimitType::RlimitNofile)
                .soft(1024u64)
                .hard(1024u64)
                .build()?,
        );
    }
    process.set_rlimits(Some(rlimits));
    oci.set_process(Some(process));

    // Root: writable, in the bundle's `rootfs`.
    let mut root = oci.root().clone().unwrap_or_default();
    root.set_readonly(Some(false));
    oci.set_root(Some(root));

    // Mounts.
    let mut mounts = oci.mounts().clone().unwrap_or_default();
    if spec.ipc_host {
        mounts.retain(|m| m.destination() != Path::new("/dev/shm"));
        mounts.push(bind_mount(Path::new("/dev/shm"), "/dev/shm", false, None));
    }
    if let Some(size) = spec.shm_size.filter(|_| !spec.ipc_host) {
        set_shm_size(&mut mounts, size);
    }
    if spec.network == NetworkMode::Host {
        mounts.push(bind_mount(
            Path::new("/etc/resolv.conf"),
            "/etc/resolv.conf",
            true,
            None,
        ));
    }
    if let Some(hosts) = ctx.hosts_file {
        mounts.push(bind_mount(hosts, "/etc/hosts", true, None));
    } else if spec.network == NetworkMode::Host {
        mounts.push(bind_mount(
            Path::new("/etc/hosts"),
            "/etc/hosts",
            true,
            None,
        ));
    }
    if spec.privileged {
        // Docker's privileged: `/sys` and the cgroup filesystem are writable.
        for m in mounts.iter_mut().filter(|m| {
            m.destination() == Path::new("/sys") || m.destination() == Path::new("/sys/fs/cgroup")
        }) {
            let mut options = m.options().clone().unwrap_or_default();
            options.retain(|o| o != "ro");
            options.push("rw".to_owned());
            m.set_options(Some(options));
        }
    }
    mounts.extend(user_mounts(spec, ctx)?);
    oci.set_mounts(Some(mounts));

    // The container keeps its own UTS namespace (as in Docker, host networking included):
    // the host's name unless `hostname` gives one.
    oci.set_hostname(Some(match (&spec.hostname, spec.network) {
        (Some(name), _) => name.clone(),
        (None, NetworkMode::Host) => ctx.host_hostname.to_owned(),
        (None, NetworkMode::None) => ctx.id.chars().take(12).collect(),
    }));

    // Linux: namespaces, cgroup, resources, hardening.
    let mut linux = oci.linux().clone().unwrap_or_default();
    let mut namespaces = linux.namespaces().clone().unwrap_or_default();
    namespaces.retain(|ns| match ns.typ() {
        LinuxNamespaceType::Network => spec.network == NetworkMode::None,
        LinuxNamespaceType::Pid => !spec.pid_host,
        LinuxNamespaceType::Ipc => !spec.ipc_host,
        LinuxNamespaceType::Cgroup => !spec.cgroup_host,
        _ => true,
    });
    linux.set_namespaces(Some(namespaces));
    linux.set_rootfs_propagation(rootfs_propagation(spec));
    linux.set_cgroups_path(Some(PathBuf::from(format!(
        "{}/{}",
        ctx.cgroup_parent.trim_end_matches('/'),
        ctx.id
    ))));

    let mut resources = LinuxResources::default();
    let device_rule = LinuxDeviceCgroupBuilder::default()
        .allow(spec.privileged)
        .access("rwm")
        .build()?;
    let mut device_rules = vec![device_rule];
    if ctx.devices.len() != spec.devices.len() {
        return Err(SpecError::DevicesUnresolved {
            given: spec.devices.len(),
            resolved: ctx.devices.len(),
        });
    }
    if !spec.privileged {
        // Default runc devices are allowed by runc itself; the spec's devices by these rules.
        for (d, want) in ctx.devices.iter().zip(&spec.devices) {
            device_rules.push(
                LinuxDeviceCgroupBuilder::default()
                    .allow(true)
                    .typ(d.typ())
                    .major(d.major())
                    .minor(d.minor())
                    .access(want.permissions.clone())
                    .build()?,
            );
        }
    }
    resources.set_devices(Some(device_rules));
    if !spec.sysctls.is_empty() {
        linux.set_sysctl(Some(
            spec.sysctls
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
        ));
    }
    if let Some(limit) = spec.memory_limit {
        resources.set_memory(Some(
            LinuxMemoryBuilder::default()
                .limit(to_i64(limit)?)
                .build()?,
        ));
    }
    if let Some(millis) = spec.cpu_limit_millis {
        let quota = millis.saturating_mul(CPU_PERIOD_US) / 1000;
        resources.set_cpu(Some(
            LinuxCpuBuilder::default()
                .quota(to_i64(quota)?)
                .period(CPU_PERIOD_US)
                .build()?,
        ));
    }
    linux.set_resources(Some(resources));
    let mut devices: Vec<LinuxDevice> = Vec::new();
    if spec.privileged {
        linux.set_masked_paths(None);
        linux.set_readonly_paths(None);
        devices.extend(ctx.host_devices.iter().cloned());
    }
    for d in ctx.devices {
        devices.retain(|have| have.path() != d.path());
        devices.push(d.clone());
    }
    if !devices.is_empty() {
        linux.set_devices(Some(devices));
    }
    linux.set_seccomp(if spec.privileged || spec.security.seccomp_unconfined {
        None
    } else {
        Some(default_filter(&effective_caps)?)
    });
    oci.set_linux(Some(linux));

    Ok(oci)
}

#[cfg(test)]
mod tests {
    use super::*;
    use shoal_model::container::{Mount as SpecMount, Ulimit};

    fn ctx() -> SpecContext<'static> {
        SpecContext {
            id: "c1-0123456789abcdef",
            cgroup_parent: "/shoal",
            volumes_dir: Path::new("/var/lib/shoal/volumes"),
            secrets_dir: Path::new("/var/lib/shoal/agent/secrets"),
            host_hostname: "node-a",
            host_caps: None,
            passwd: None,
            group: None,
            host_devices: &[],
            devices: &[],
            hosts_file: None,
        }
    }

    fn busybox() -> ImageConfig {
        ImageConfig {
            cmd: Some(vec!["sh".into()]),
            env: Some(vec!["PATH=/bin".into(), "A=image".into()]),
            ..Default::default()
        }
    }

    fn build(spec: &ContainerSpec) -> Spec {
        build_spec(spec, &busybox(), &ctx()).unwrap()
    }

    fn namespaces(s: &Spec) -> Vec<LinuxNamespaceType> {
        s.linux()
            .as_ref()
            .unwrap()
            .namespaces()
            .as_ref()
            .unwrap()
            .iter()
            .map(|n| n.typ())
            .collect()
    }

    fn mount<'a>(s: &'a Spec, target: &str) -> Option<&'a Mount> {
        s.mounts()
            .as_ref()
            .unwrap()
            .iter()
            .find(|m| m.destination() == Path::new(target))
    }

    fn effective(s: &Spec) -> Capabilities {
        s.process()
            .as_ref()
            .unwrap()
            .capabilities()
            .as_ref()
            .unwrap()
            .effective()
            .clone()
            .unwrap()
    }

    #[test]
    fn args_follow_docker_rules() {
        let image = ImageConfig {
            entrypoint: Some(vec!["/entry".into()]),
            cmd: Some(vec!["default".into()]),
            ..Default::default()
        };
        let check = |entrypoint: &[&str], command: &[&str], expected: &[&str]| {
            let spec = ContainerSpec {
                entrypoint: entrypoint.iter().map(|s| s.to_string()).collect(),
                command: command.iter().map(|s| s.to_string()).collect(),
                ..Default::default()
            };
            assert_eq!(process_args(&spec, &image).unwrap(), expected);
        };
        check(&[], &[], &["/entry", "default"]);
        check(&[], &["x"], &["/entry", "x"]);
        check(&["/other"], &[], &["/other"]);
        check(&["/other"], &["y"], &["/other", "y"]);
        assert!(matches!(
            process_args(&ContainerSpec::default(), &ImageConfig::default()),
            Err(SpecError::NoCommand)
        ));
    }

    #[test]
    fn env_merges_image_and_spec() {
        let mut spec = ContainerSpec::default();
        spec.env.insert("A".into(), "spec".into());
        spec.env.insert("B".into(), "b".into());
        assert_eq!(
            process_env(&spec, &busybox()),
            vec!["PATH=/bin", "A=spec", "B=b"]
        );
        assert_eq!(
            process_env(&ContainerSpec::default(), &ImageConfig::default()),
            vec![DEFAULT_PATH]
        );
    }

    #[test]
    fn host_network_shares_the_host_namespace() {
        let s = build(&ContainerSpec::default());
        assert!(!namespaces(&s).contains(&LinuxNamespaceType::Network));
        assert_eq!(s.hostname().as_deref(), Some("node-a"));
        let resolv = mount(&s, "/etc/resolv.conf").unwrap();
        assert!(resolv
            .options()
            .as_ref()
            .unwrap()
            .contains(&"ro".to_owned()));
        assert!(mount(&s, "/etc/hosts").is_some());
        assert_eq!(s.root().as_ref().unwrap().readonly(), Some(false));
    }

    #[test]
    fn network_none_gets_its_own_namespace() {
        let s = build(&ContainerSpec {
            network: NetworkMode::None,
            ..Default::default()
        });
        assert!(namespaces(&s).contains(&LinuxNamespaceType::Network));
        assert!(mount(&s, "/etc/resolv.conf").is_none());
        assert_eq!(s.hostname().as_deref(), Some("c1-012345678"));
    }

    #[test]
    fn mounts_bind_volume_tmpfs() {
        let spec = ContainerSpec {
            mounts: vec![
                SpecMount {
                    kind: MountKind::Bind,
                    source: "/srv/conf".into(),
                    target: "/conf".into(),
                    read_only: true,
                    propagation: Some("rslave".into()),
                    create_host_path: false,
                },
                SpecMount {
                    kind: MountKind::Volume,
                    source: "logs".into(),
                    target: "/var/log/x".into(),
                    read_only: false,
                    propagation: None,
                    create_host_path: false,
                },
                SpecMount {
                    kind: MountKind::Tmpfs,
                    source: String::new(),
                    target: "/scratch".into(),
                    read_only: false,
                    propagation: None,
                    create_host_path: false,
                },
            ],
            ..Default::default()
        };
        let s = build(&spec);
        let conf = mount(&s, "/conf").unwrap();
        assert_eq!(conf.typ().as_deref(), Some("bind"));
        assert_eq!(
            conf.options().as_ref().unwrap(),
            &vec!["rbind".to_owned(), "ro".to_owned(), "rslave".to_owned()]
        );
        let logs = mount(&s, "/var/log/x").unwrap();
        assert_eq!(
            logs.source().as_deref(),
            Some(Path::new("/var/lib/shoal/volumes/logs"))
        );
        assert_eq!(
            mount(&s, "/scratch").unwrap().typ().as_deref(),
            Some("tmpfs")
        );
        assert_eq!(
            volume_dirs(&spec, Path::new("/v")).unwrap(),
            vec![PathBuf::from("/v/logs")]
        );
    }

    #[test]
    fn secrets_are_read_only_binds_of_the_task_files() {
        let mut abs = shoal_model::SecretRef::new("tls_key");
        abs.target = "/etc/app/key.pem".into();
        let spec = ContainerSpec {
            image: "busybox".into(),
            secrets: vec![shoal_model::SecretRef::new("db_password"), abs],
            ..Default::default()
        };
        let s = build(&spec);
        let m = mount(&s, "/run/secrets/db_password").expect("secret mount");
        assert_eq!(m.typ().as_deref(), Some("bind"));
        assert_eq!(
            m.source().as_deref(),
            Some(Path::new(
                "/var/lib/shoal/agent/secrets/c1-0123456789abcdef/secret-0"
            ))
        );
        let opts = m.options().clone().unwrap_or_default();
        assert!(opts.contains(&"ro".to_owned()) && opts.contains(&"rbind".to_owned()));
        assert!(!opts.contains(&"rw".to_owned()));
        let m = mount(&s, "/etc/app/key.pem").expect("absolute target");
        assert_eq!(
            m.source().as_deref(),
            Some(Path::new(
                "/var/lib/shoal/agent/secrets/c1-0123456789abcdef/secret-1"
            ))
        );
    }

    #[test]
    fn configs_are_read_only_binds_of_the_task_files() {
        let spec = ContainerSpec {
            image: "busybox".into(),
            configs: vec![shoal_model::config::config_ref("haproxy.cfg")],
            ..Default::default()
        };
        let s = build(&spec);
        let m = mount(&s, "/haproxy.cfg").expect("config mount");
        assert_eq!(
            m.source().as_deref(),
            Some(Path::new(
                "/var/lib/shoal/agent/secrets/c1-0123456789abcdef/config-0"
            ))
        );
        let opts = m.options().clone().unwrap_or_default();
        assert!(opts.contains(&"ro".to_owned()) && !opts.contains(&"rw".to_owned()));
    }

    #[test]
    fn bad_volume_names_and_relative_targets_are_refused() {
        for name in ["..", "a/b", ""] {
            let spec = ContainerSpec {
                mounts: vec![SpecMount {
                    kind: MountKind::Volume,
                    source: name.into(),
                    target: "/x".into(),
                    read_only: false,
                    propagation: None,
                    create_host_path: false,
                }],
                ..Default::default()
            };
            assert!(matches!(
                build_spec(&spec, &busybox(), &ctx()),
                Err(SpecError::BadVolumeName(_))
            ));
        }
        let spec = ContainerSpec {
            mounts: vec![SpecMount {
                kind: MountKind::Bind,
                source: "/a".into(),
                target: "rel".into(),
                read_only: false,
                propagation: None,
                create_host_path: false,
            }],
            ..Default::default()
        };
        assert!(matches!(
            build_spec(&spec, &busybox(), &ctx()),
            Err(SpecError::RelativeTarget(_))
        ));
    }

    #[test]
    fn capabilities_add_and_drop() {
        let s = build(&ContainerSpec {
            cap_add: vec!["NET_ADMIN".into(), "CAP_SYS_TIME".into()],
            cap_drop: vec!["MKNOD".into()],
            ..Default::default()
        });
        let caps = effective(&s);
        assert!(caps.contains(&Capability::NetAdmin));
        assert!(caps.contains(&Capability::SysTime));
        assert!(caps.contains(&Capability::Chown));
        assert!(!caps.contains(&Capability::Mknod));
        assert!(!caps.contains(&Capability::SysAdmin));
        let ambient = s
            .process()
            .as_ref()
            .unwrap()
            .capabilities()
            .as_ref()
            .unwrap()
            .ambient()
            .clone()
            .unwrap();
        assert!(ambient.is_empty());
        assert!(matches!(
            build_spec(
                &ContainerSpec {
                    cap_add: vec!["FLY".into()],
                    ..Default::default()
                },
                &busybox(),
                &ctx()
            ),
            Err(SpecError::UnknownCapability(_))
        ));
    }

    #[test]
    fn privileged_gets_everything() {
        let s = build(&ContainerSpec {
            privileged: true,
            ..Default::default()
        });
        assert!(effective(&s).contains(&Capability::SysAdmin));
        let linux = s.linux().as_ref().unwrap();
        assert!(linux.masked_paths().is_none());
        assert!(linux.seccomp().is_none());
        let devices = linux
            .resources()
            .as_ref()
            .unwrap()
            .devices()
            .clone()
            .unwrap();
        assert!(devices[0].allow());
    }

    #[test]
    fn all_capabilities_means_all_the_host_has() {
        // A host without CAP_SYS_RESOURCE (bit 24), as some VMs are.
        let status = "Name:\tx\nCapBnd:\t000001fffeffffff\nCapAmb:\t0\n";
        let mask = parse_cap_bounding(status);
        assert_eq!(mask, Some(0x1fffeffffff));
        let mut c = ctx();
        c.host_caps = mask;
        for spec in [
            ContainerSpec {
                privileged: true,
                ..Default::default()
            },
            ContainerSpec {
                cap_add: vec!["ALL".into()],
                ..Default::default()
            },
        ] {
            let caps = effective(&build_spec(&spec, &busybox(), &c).unwrap());
            assert!(caps.contains(&Capability::SysAdmin));
            assert!(!caps.contains(&Capability::SysResource));
            assert_eq!(caps.len(), ALL_CAPS.len() - 1);
        }
    }

    #[test]
    fn host_pid_and_ipc() {
        let s = build(&ContainerSpec {
            pid_host: true,
            ipc_host: true,
            ..Default::default()
        });
        let ns = namespaces(&s);
        assert!(!ns.contains(&LinuxNamespaceType::Pid));
        assert!(!ns.contains(&LinuxNamespaceType::Ipc));
        assert!(ns.contains(&LinuxNamespaceType::Mount));
        assert_eq!(
            mount(&s, "/dev/shm").unwrap().typ().as_deref(),
            Some("bind")
        );
    }

    #[test]
    fn limits_and_cgroup() {
        let s = build(&ContainerSpec {
            ulimits: vec![Ulimit {
                name: "nofile".into(),
                soft: 4096,
                hard: 8192,
            }],
            memory_limit: Some(64 << 20),
            cpu_limit_millis: Some(500),
            ..Default::default()
        });
        let rl = s.process().as_ref().unwrap().rlimits().clone().unwrap();
        assert_eq!(rl.len(), 1);
        assert_eq!(rl[0].typ(), PosixRlimitType::RlimitNofile);
        assert_eq!((rl[0].soft(), rl[0].hard()), (4096, 8192));
        let linux = s.linux().as_ref().unwrap();
        assert_eq!(
            linux.cgroups_path().as_deref(),
            Some(Path::new("/shoal/c1-0123456789abcdef"))
        );
        let res = linux.resources().as_ref().unwrap();
        assert_eq!(res.memory().as_ref().unwrap().limit(), Some(64 << 20));
        let cpu = res.cpu().as_ref().unwrap();
        assert_eq!((cpu.quota(), cpu.period()), (Some(50_000), Some(100_000)));
        assert!(!res.devices().clone().unwrap()[0].allow());
    }

    #[test]
    fn user_and_workdir() {
        let s = build_spec(
            &ContainerSpec {
                user: Some("1000:100".into()),
                ..Default::default()
            },
            &ImageConfig {
                cmd: Some(vec!["sh".into()]),
                working_dir: Some("/app".into()),
                ..Default::default()
            },
            &ctx(),
        )
        .unwrap();
        let p = s.process().as_ref().unwrap();
        assert_eq!((p.user().uid(), p.user().gid()), (1000, 100));
        assert_eq!(p.cwd(), Path::new("/app"));
    }

    /// Audit row 2 (non-root images): a named `USER` resolves in the image's files, with its
    /// supplementary groups and `group_add`; an unknown name is an error naming image and user.
    #[test]
    fn named_users_resolve_in_the_image_files() {
        let image = ImageConfig {
            cmd: Some(vec!["sh".into()]),
            user: Some("nova".into()),
            ..Default::default()
        };
        let mut c = ctx();
        c.passwd = Some("root:x:0:0::/root:/bin/sh\nnova:x:42436:42436::/:/bin/sh\n");
        c.group = Some("kolla:x:42400:nova\nnova:x:42436:\nqemu:x:42427:\n");
        let spec = ContainerSpec {
            image: "kolla/nova-compute".into(),
            group_add: vec!["qemu".into()],
            ..Default::default()
        };
        let s = build_spec(&spec, &image, &c).unwrap();
        let u = s.process().as_ref().unwrap().user();
        assert_eq!((u.uid(), u.gid()), (42436, 42436));
        assert_eq!(u.additional_gids().as_deref(), Some(&[42400, 42427][..]));

        let named_group = ContainerSpec {
            user: Some("nova:kolla".into()),
            ..spec.clone()
        };
        let s = build_spec(&named_group, &image, &c).unwrap();
        let u = s.process().as_ref().unwrap().user();
        assert_eq!((u.uid(), u.gid()), (42436, 42400));
        assert_eq!(u.additional_gids().as_deref(), Some(&[42427][..]));

        let unknown = ContainerSpec {
            user: Some("rabbitmq".into()),
            ..spec
        };
        let err = build_spec(&unknown, &image, &c).unwrap_err();
        assert!(matches!(err, SpecError::User { .. }));
        assert_eq!(
            err.to_string(),
            "image `kolla/nova-compute`, user `rabbitmq`: \
             user `rabbitmq` is not in the image's /etc/passwd"
        );
    }

    /// Audit row 8 (shared propagation): a shared bind makes the rootfs `shared`.
    #[test]
    fn rootfs_propagation_follows_the_binds() {
        let with = |p: Option<&str>| {
            let s = build(&ContainerSpec {
                mounts: vec![SpecMount {
                    kind: MountKind::Bind,
                    source: "/run/netns".into(),
                    target: "/run/netns".into(),
                    read_only: false,
                    propagation: p.map(str::to_owned),
                    create_host_path: false,
                }],
                ..Default::default()
            });
            s.linux().as_ref().unwrap().rootfs_propagation().clone()
        };
        assert_eq!(with(Some("shared")).as_deref(), Some("shared"));
        assert_eq!(with(Some("rshared")).as_deref(), Some("shared"));
        assert_eq!(with(Some("rslave")).as_deref(), Some("rslave"));
        assert_eq!(with(Some("private")), None);
        assert_eq!(with(None), None);
    }

    /// Audit row 11 (cgroupns host).
    #[test]
    fn cgroup_host_shares_the_host_cgroup_namespace() {
        let private = build(&ContainerSpec::default());
        assert!(namespaces(&private).contains(&LinuxNamespaceType::Cgroup));
        let host = build(&ContainerSpec {
            cgroup_host: true,
            ..Default::default()
        });
        assert!(!namespaces(&host).contains(&LinuxNamespaceType::Cgroup));
    }

    /// Audit row 9 (privileged): `/sys` and cgroupfs writable, host devices, nothing masked.
    #[test]
    fn privileged_is_dockers_privileged() {
        let devices = vec![LinuxDevice::default()];
        let mut c = ctx();
        c.host_devices = &devices;
        let privileged = ContainerSpec {
            privileged: true,
            ..Default::default()
        };
        let s = build_spec(&privileged, &busybox(), &c).unwrap();
        for target in ["/sys", "/sys/fs/cgroup"] {
            let opts = mount(&s, target).unwrap().options().clone().unwrap();
            assert!(opts.contains(&"rw".to_owned()), "{target}: {opts:?}");
            assert!(!opts.contains(&"ro".to_owned()), "{target}: {opts:?}");
        }
        let linux = s.linux().as_ref().unwrap();
        assert!(linux.readonly_paths().is_none());
        assert_eq!(linux.devices().as_ref().map(Vec::len), Some(1));
        let plain = build_spec(&ContainerSpec::default(), &busybox(), &c).unwrap();
        let opts = mount(&plain, "/sys").unwrap().options().clone().unwrap();
        assert!(opts.contains(&"ro".to_owned()));
        assert!(plain.linux().as_ref().unwrap().devices().is_none());
        assert!(plain.linux().as_ref().unwrap().masked_paths().is_some());
    }

    /// Compose `devices`: each resolved device is created at its container path and allowed
    /// in the device cgroup with its own permissions.
    #[test]
    fn devices_are_created_and_allowed_with_their_permissions() {
        use oci_spec::runtime::{LinuxDeviceBuilder, LinuxDeviceType};
        let kvm = LinuxDeviceBuilder::default()
            .path("/dev/kvm")
            .typ(LinuxDeviceType::C)
            .major(10)
            .minor(232)
            .build()
            .unwrap();
        let resolved = [kvm];
        let mut c = ctx();
        c.devices = &resolved;
        let spec = ContainerSpec {
            devices: vec![shoal_model::Device {
                host_path: "/dev/kvm".into(),
                container_path: "/dev/kvm".into(),
                permissions: "rw".into(),
            }],
            ..Default::default()
        };
        let s = build_spec(&spec, &busybox(), &c).unwrap();
        let linux = s.linux().as_ref().unwrap();
        let devices = linux.devices().clone().unwrap();
        assert_eq!(devices.len(), 1);
        assert_eq!(devices[0].path(), Path::new("/dev/kvm"));
        let rules = linux
            .resources()
            .as_ref()
            .unwrap()
            .devices()
            .clone()
            .unwrap();
        assert!(!rules[0].allow(), "everything else stays denied");
        let rule = &rules[1];
        assert!(rule.allow());
        assert_eq!((rule.major(), rule.minor()), (Some(10), Some(232)));
        assert_eq!(rule.access().as_deref(), Some("rw"));
        // A device the runtime did not resolve is an error, never a silently missing device.
        assert!(matches!(
            build_spec(&spec, &busybox(), &ctx()),
            Err(SpecError::DevicesUnresolved { .. })
        ));
    }

    #[test]
    fn sysctls_shm_size_and_hostname() {
        let mut spec = ContainerSpec {
            network: NetworkMode::None,
            shm_size: Some(256 << 20),
            hostname: Some("db-1".into()),
            ..Default::default()
        };
        spec.sysctls
            .insert("net.ipv4.ip_forward".into(), "1".into());
        let s = build(&spec);
        let sysctl = s.linux().as_ref().unwrap().sysctl().clone().unwrap();
        assert_eq!(
            sysctl.get("net.ipv4.ip_forward").map(String::as_str),
            Some("1")
        );
        let shm = mount(&s, "/dev/shm").unwrap().options().clone().unwrap();
        assert!(shm.contains(&format!("size={}", 256u64 << 20)), "{shm:?}");
        assert_eq!(shm.iter().filter(|o| o.starts_with("size=")).count(), 1);
        assert_eq!(s.hostname().as_deref(), Some("db-1"));
        // Host networking keeps its own UTS namespace, so a hostname can still be given.
        let host = build(&ContainerSpec {
            hostname: Some("db-1".into()),
            ..Default::default()
        });
        assert!(namespaces(&host).contains(&LinuxNamespaceType::Uts));
        assert_eq!(host.hostname().as_deref(), Some("db-1"));
    }

    #[test]
    fn extra_hosts_use_the_containers_own_hosts_file() {
        let spec = ContainerSpec {
            extra_hosts: vec![shoal_model::ExtraHost {
                name: "db".into(),
                address: "10.0.0.5".into(),
            }],
            ..Default::default()
        };
        assert_eq!(
            hosts_file_text("127.0.0.1 localhost", &spec),
            "127.0.0.1 localhost\n10.0.0.5\tdb\n"
        );
        let file = Path::new("/run/shoal/hosts/c1");
        let mut c = ctx();
        c.hosts_file = Some(file);
        let s = build_spec(&spec, &busybox(), &c).unwrap();
        let hosts: Vec<&Mount> = s
            .mounts()
            .as_ref()
            .unwrap()
            .iter()
            .filter(|m| m.destination() == Path::new("/etc/hosts"))
            .collect();
        assert_eq!(hosts.len(), 1);
        assert_eq!(hosts[0].source().as_deref(), Some(file));
    }

    /// The default seccomp filter: on unless privileged or `seccomp:unconfined`;
    /// `no-new-privileges` reaches the process.
    #[test]
    fn seccomp_by_default_and_security_opt() {
        let plain = build(&ContainerSpec::default());
        let filter = plain.linux().as_ref().unwrap().seccomp().clone().unwrap();
        let blocked = filter.syscalls().as_ref().unwrap()[0].names().clone();
        assert!(blocked.contains(&"mount".to_owned()));
        assert_eq!(
            plain.process().as_ref().unwrap().no_new_privileges(),
            Some(false)
        );
        let admin = build(&ContainerSpec {
            cap_add: vec!["SYS_ADMIN".into()],
            ..Default::default()
        });
        let filter = admin.linux().as_ref().unwrap().seccomp().clone().unwrap();
        assert!(!filter.syscalls().as_ref().unwrap()[0]
            .names()
            .contains(&"mount".to_owned()));
        let unconfined = build(&ContainerSpec {
            security: shoal_model::SecurityOpts {
                seccomp_unconfined: true,
                no_new_privileges: true,
                ..Default::default()
            },
            ..Default::default()
        });
        assert!(unconfined.linux().as_ref().unwrap().seccomp().is_none());
        assert_eq!(
            unconfined.process().as_ref().unwrap().no_new_privileges(),
            Some(true)
        );
    }

    #[test]
    fn image_config_json() {
        let cfg = ImageConfig::from_image_json(
            br#"{"architecture":"amd64","config":{"Cmd":["sh"],"Env":["PATH=/bin"],"WorkingDir":"/w"}}"#,
        )
        .unwrap();
        assert_eq!(cfg.cmd, Some(vec!["sh".to_owned()]));
        assert_eq!(cfg.working_dir.as_deref(), Some("/w"));
        assert_eq!(
            ImageConfig::from_image_json(b"{}").unwrap(),
            ImageConfig::default()
        );
    }
}
