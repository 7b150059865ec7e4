//! The default seccomp filter (pure): Docker's list of blocked system calls, as a deny list.
//!
//! Docker's default profile is an allow list of about 350 calls. Shoal keeps the part that
//! matters for isolation: the calls Docker refuses to a container (kernel modules, kexec and
//! reboot, the clock, mounts and namespaces, keyrings, BPF and perf, ...) fail with `EPERM`,
//! and, as in Docker, a call that a granted capability exists for is allowed again
//! (`cap_add: [SYS_ADMIN]` gives back `mount`). Everything else is allowed. Argument filters
//! (Docker's rules on `clone` flags and `personality`) are not reproduced. Privileged
//! containers and `security_opt: [seccomp:unconfined]` get no filter.

use oci_spec::runtime::{
    Arch, Capabilities, Capability, LinuxSeccomp, LinuxSeccompAction, LinuxSeccompBuilder,
    LinuxSyscall, LinuxSyscallBuilder,
};

/// `EPERM`: what a blocked call returns.
const EPERM: u32 = 1;

/// Blocked calls, each with the capability that allows it again, if any.
const BLOCKED: &[(&str, Option<Capability>)] = &[
    ("acct", Some(Capability::SysPacct)),
    ("add_key", None),
    ("bpf", Some(Capability::SysAdmin)),
    ("clock_adjtime", Some(Capability::SysTime)),
    ("clock_settime", Some(Capability::SysTime)),
    ("create_module", Some(Capability::SysModule)),
    ("delete_module", Some(Capability::SysModule)),
    ("fanotify_init", Some(Capability::SysAdmin)),
    ("finit_module", Some(Capability::SysModule)),
    ("get_kernel_syms", None),
    ("get_mempolicy", Some(Capability::SysNice)),
    ("init_module", Some(Capability::SysModule)),
    ("ioperm", Some(Capability::SysRawio)),
    ("iopl", Some(Capability::SysRawio)),
    ("kcmp", Some(Capability::SysPtrace)),
    ("kexec_file_load", Some(Capability::SysBoot)),
    ("kexec_load", Some(Capability::SysBoot)),
    ("keyctl", None),
    ("lookup_dcookie", Some(Capability::SysAdmin)),
    ("mbind", Some(Capability::SysNice)),
    ("mount", Some(Capability::SysAdmin)),
    ("move_pages", Some(Capability::SysNice)),
    ("name_to_handle_at", Some(Capability::SysAdmin)),
    ("nfsservctl", None),
    ("open_by_handle_at", Some(Capability::DacReadSearch)),
    ("perf_event_open", Some(Capability::SysAdmin)),
    ("pivot_root", Some(Capability::SysAdmin)),
    ("process_vm_readv", Some(Capability::SysPtrace)),
    ("process_vm_writev", Some(Capability::SysPtrace)),
    ("query_module", None),
    ("quotactl", Some(Capability::SysAdmin)),
    ("reboot", Some(Capability::SysBoot)),
    ("request_key", None),
    ("set_mempolicy", Some(Capability::SysNice)),
    ("setns", Some(Capability::SysAdmin)),
    ("settimeofday", Some(Capability::SysTime)),
    ("stime", Some(Capability::SysTime)),
    ("swapoff", Some(Capability::SysAdmin)),
    ("swapon", Some(Capability::SysAdmin)),
    ("syslog", Some(Capability::Syslog)),
    ("sysfs", None),
    ("_sysctl", None),
    ("umount", Some(Capability::SysAdmin)),
    ("umount2", Some(Capability::SysAdmin)),
    ("unshare", Some(Capability::SysAdmin)),
    ("uselib", None),
    ("ustat", None),
    ("vhangup", Some(Capability::SysTtyConfig)),
    ("vm86", None),
    ("vm86old", None),
];

/// The architectures a filter must cover: the host's, and the 32-bit ABIs it can run.
fn architectures() -> Vec<Arch> {
    if cfg!(target_arch = "x86_64") {
        vec![Arch::ScmpArchX86_64, Arch::ScmpArchX86, Arch::ScmpArchX32]
    } else if cfg!(target_arch = "aarch64") {
        vec![Arch::ScmpArchAarch64, Arch::ScmpArchArm]
    } else {
        vec![Arch::ScmpArchNative]
    }
}

/// The calls `caps` does not allow again.
pub fn blocked_calls(caps: &Capabilities) -> Vec<String> {
    BLOCKED
        .iter()
        .filter(|(_, cap)| cap.is_none_or(|c| !caps.contains(&c)))
        .map(|(name, _)| (*name).to_owned())
        .collect()
}

/// The default filter for a container with capabilities `caps`.
pub fn default_filter(caps: &Capabilities) -> Result<LinuxSeccomp, oci_spec::OciSpecError> {
    let deny: LinuxSyscall = LinuxSyscallBuilder::default()
        .names(blocked_calls(caps))
        .action(LinuxSeccompAction::ScmpActErrno)
        .errno_ret(EPERM)
        .build()?;
    LinuxSeccompBuilder::default()
        .default_action(LinuxSeccompAction::ScmpActAllow)
        .architectures(architectures())
        .syscalls(vec![deny])
        .build()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_granted_capability_allows_its_calls_again() {
        let none = Capabilities::new();
        let blocked = blocked_calls(&none);
        for call in ["mount", "unshare", "kexec_load", "keyctl", "init_module"] {
            assert!(blocked.contains(&call.to_owned()), "{call}");
        }
        let admin: Capabilities = [Capability::SysAdmin].into_iter().collect();
        let blocked = blocked_calls(&admin);
        assert!(!blocked.contains(&"mount".to_owned()));
        assert!(!blocked.contains(&"unshare".to_owned()));
        assert!(blocked.contains(&"keyctl".to_owned()));
        assert!(blocked.contains(&"init_module".to_owned()));
        let f = default_filter(&none).unwrap();
        assert_eq!(f.default_action(), LinuxSeccompAction::ScmpActAllow);
        let rule = &f.syscalls().as_ref().unwrap()[0];
        assert_eq!(rule.action(), LinuxSeccompAction::ScmpActErrno);
        assert_eq!(rule.errno_ret(), Some(EPERM));
    }
}
