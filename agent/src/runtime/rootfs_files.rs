//! Reads files out of a container's prepared rootfs (its snapshot's mounts, mounted read-only on a
//! temporary directory and unmounted at once, as containerd's `oci.WithUsername` does), and lists
//! the host's device nodes for privileged containers.

use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use containerd_client::types::Mount as CdMount;
use nix::mount::{mount, umount2, MntFlags, MsFlags};
use oci_spec::runtime::{LinuxDevice, LinuxDeviceBuilder, LinuxDeviceType};
use tracing::warn;

/// Largest file read (an `/etc/passwd` is a few KiB).
const MAX_FILE_BYTES: u64 = 4 << 20;

/// Splits containerd mount options into mount flags and the filesystem data string.
fn flags_and_data(options: &[String]) -> (MsFlags, String) {
    let mut flags = MsFlags::MS_RDONLY;
    let mut data = Vec::new();
    for o in options {
        match o.as_str() {
            "ro" | "rw" => {}
            "bind" => flags |= MsFlags::MS_BIND,
            "rbind" => flags |= MsFlags::MS_BIND | MsFlags::MS_REC,
            "nosuid" => flags |= MsFlags::MS_NOSUID,
            "nodev" => flags |= MsFlags::MS_NODEV,
            "noexec" => flags |= MsFlags::MS_NOEXEC,
            other => data.push(other),
        }
    }
    (flags, data.join(","))
}

/// Reads `files` (absolute paths inside the rootfs) from the rootfs described by `mounts`,
/// mounted read-only under `scratch` for the duration. A file the image lacks, or one whose path
/// leaves the rootfs through a symlink, is `None`.
pub fn read_files(
    mounts: &[CdMount],
    scratch: &Path,
    files: &[&str],
) -> std::io::Result<Vec<Option<String>>> {
    let dir = tempfile::Builder::new()
        .prefix("rootfs-")
        .tempdir_in(scratch)?;
    let root = dir.path().to_path_buf();
    let mut mounted: Vec<PathBuf> = Vec::new();
    let result = (|| {
        for m in mounts {
            let (flags, data) = flags_and_data(&m.options);
            let target = if m.target.is_empty() {
                root.clone()
            } else {
                root.join(m.target.trim_start_matches('/'))
            };
            mount(
                Some(m.source.as_str()),
                &target,
                Some(m.r#type.as_str()),
                flags,
                (!data.is_empty()).then_some(data.as_str()),
            )
            .map_err(std::io::Error::from)?;
            mounted.push(target);
        }
        let real_root = root.canonicalize()?;
        Ok(files.iter().map(|f| read_inside(&real_root, f)).collect())
    })();
    for target in mounted.iter().rev() {
        if let Err(error) = umount2(target, MntFlags::MNT_DETACH) {
            warn!(path = %target.display(), %error, "cannot unmount a rootfs read mount");
        }
    }
    result
}

fn read_inside(root: &Path, file: &str) -> Option<String> {
    let path = root
        .join(file.trim_start_matches('/'))
        .canonicalize()
        .ok()?;
    if !path.starts_with(root) {
        return None;
    }
    let meta = std::fs::metadata(&path).ok()?;
    if !meta.is_file() || meta.len() > MAX_FILE_BYTES {
        return None;
    }
    std::fs::read_to_string(&path).ok()
}

/// Directories of `/dev` whose nodes are not devices to copy (containerd's list).
const SKIP_DEV_DIRS: &[&str] = &["pts", "shm", "fd", "mqueue", ".lxc", ".lxd-mounts", ".udev"];

/// The host's block and character devices under `/dev` (not `/dev/console`), as Docker gives a
/// privileged container.
pub fn host_devices() -> Vec<LinuxDevice> {
    let mut out = Vec::new();
    walk_dev(Path::new("/dev"), &mut out, 0);
    out
}

fn walk_dev(dir: &Path, out: &mut Vec<LinuxDevice>, depth: usize) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let Ok(meta) = std::fs::symlink_metadata(&path) else {
            continue;
        };
        let ft = meta.file_type();
        if ft.is_dir() {
            let skip = depth == 0
                && SKIP_DEV_DIRS
                    .iter()
                    .any(|d| entry.file_name().to_str() == Some(d));
            if !skip && depth < 8 {
                walk_dev(&path, out, depth + 1);
            }
            continue;
        }
        if path == Path::new("/dev/console") {
            continue;
        }
        if let Some(d) = device_node(&path, &meta) {
            out.push(d);
        }
    }
}

/// The device node described by `meta`, to appear at `path`; `None` if it is not a block or
/// character device.
fn device_node(path: &Path, meta: &std::fs::Metadata) -> Option<LinuxDevice> {
    let ft = meta.file_type();
    let typ = if ft.is_block_device() {
        LinuxDeviceType::B
    } else if ft.is_char_device() {
        LinuxDeviceType::C
    } else {
        return None;
    };
    let rdev = meta.rdev();
    let major = ((rdev >> 8) & 0xfff) | ((rdev >> 32) & !0xfff);
    let minor = (rdev & 0xff) | ((rdev >> 12) & !0xff);
    LinuxDeviceBuilder::default()
        .path(path)
        .typ(typ)
        .major(major as i64)
        .minor(minor as i64)
        .file_mode(meta.mode() & 0o777)
        .uid(meta.uid())
        .gid(meta.gid())
        .build()
        .ok()
}

/// A host device node (symlinks followed, as Docker does) to appear at `container_path`.
pub fn host_device(host_path: &Path, container_path: &str) -> std::io::Result<LinuxDevice> {
    let meta = std::fs::metadata(host_path)?;
    device_node(Path::new(container_path), &meta).ok_or_else(|| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "not a block or character device",
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_split_into_flags_and_data() {
        let opts: Vec<String> = ["index=off", "workdir=/w", "upperdir=/u", "lowerdir=/a:/b"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let (flags, data) = flags_and_data(&opts);
        assert_eq!(flags, MsFlags::MS_RDONLY);
        assert_eq!(data, "index=off,workdir=/w,upperdir=/u,lowerdir=/a:/b");
        let (flags, data) = flags_and_data(&["rbind".to_owned(), "rw".to_owned()]);
        assert_eq!(
            flags,
            MsFlags::MS_RDONLY | MsFlags::MS_BIND | MsFlags::MS_REC
        );
        assert!(data.is_empty());
    }

    #[test]
    fn files_outside_the_root_are_not_read() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().canonicalize().unwrap();
        std::fs::create_dir(root.join("etc")).unwrap();
        std::fs::write(root.join("etc/group"), "g:x:1:\n").unwrap();
        std::os::unix::fs::symlink("/etc/hostname", root.join("etc/passwd")).unwrap();
        assert_eq!(
            read_inside(&root, "/etc/group").as_deref(),
            Some("g:x:1:\n")
        );
        assert_eq!(read_inside(&root, "/etc/passwd"), None);
        assert_eq!(read_inside(&root, "/etc/shadow"), None);
    }
}
