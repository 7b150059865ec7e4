//! Pure reading of `/proc/self/mountinfo`: which mount holds a path, and whether it is shared
//! (Docker refuses a shared bind of a source that is not on a shared mount, as nothing would
//! propagate).

use std::path::{Path, PathBuf};

/// The mount holding a path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountPoint {
    pub mount_point: PathBuf,
    /// In a peer group (`shared:N` among the optional fields).
    pub shared: bool,
}

/// Undoes mountinfo's octal escapes (`\040` for a space, `\011`, `\012`, `\134`).
fn unescape(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\' && i + 4 <= bytes.len() {
            let oct = std::str::from_utf8(&bytes[i + 1..i + 4])
                .ok()
                .and_then(|o| u8::from_str_radix(o, 8).ok());
            if let Some(v) = oct {
                out.push(v);
                i += 4;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The mount that holds `path` (absolute, symlinks already resolved): the last-listed mount
/// whose mount point is the longest prefix of `path`.
pub fn mount_of(mountinfo: &str, path: &Path) -> Option<MountPoint> {
    let mut best: Option<MountPoint> = None;
    for line in mountinfo.lines() {
        let fields: Vec<&str> = line.split(' ').collect();
        let Some(mount_point) = fields.get(4).map(|f| PathBuf::from(unescape(f))) else {
            continue;
        };
        if !path.starts_with(&mount_point) {
            continue;
        }
        let optional = fields
            .iter()
            .skip(6)
            .take_while(|f| **f != "-")
            .copied()
            .collect::<Vec<_>>();
        let candidate = MountPoint {
            shared: optional.iter().any(|f| f.starts_with("shared:")),
            mount_point,
        };
        let longer = best.as_ref().is_none_or(|b| {
            candidate.mount_point.components().count() >= b.mount_point.components().count()
        });
        if longer {
            best = Some(candidate);
        }
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;

    const INFO: &str = "\
22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw
25 22 0:23 / /run rw,nosuid,nodev shared:5 - tmpfs tmpfs rw
40 22 0:40 / /srv rw,relatime - ext4 /dev/sdb1 rw
41 40 0:41 / /srv/my\\040dir rw,relatime master:3 - tmpfs tmpfs rw
42 25 0:42 / /run/netns rw,relatime shared:9 master:5 - tmpfs tmpfs rw
43 40 0:43 / /srv rw,relatime - tmpfs tmpfs rw";

    fn at(path: &str) -> (String, bool) {
        let m = mount_of(INFO, Path::new(path)).unwrap();
        (m.mount_point.display().to_string(), m.shared)
    }

    #[test]
    fn the_longest_prefix_holds_the_path() {
        assert_eq!(at("/run/openvswitch"), ("/run".into(), true));
        assert_eq!(at("/run/netns/x"), ("/run/netns".into(), true));
        assert_eq!(at("/etc"), ("/".into(), true));
        // Not a component prefix: /runx is on /.
        assert_eq!(at("/runx"), ("/".into(), true));
    }

    #[test]
    fn private_slave_escaped_and_overmounted_points() {
        assert_eq!(at("/srv/my dir/a"), ("/srv/my dir".into(), false));
        // Two mounts on /srv: the later one is on top.
        let m = mount_of(INFO, Path::new("/srv/data")).unwrap();
        assert_eq!(m.mount_point, PathBuf::from("/srv"));
        assert!(!m.shared);
        assert_eq!(unescape("a\\040b\\134"), "a b\\");
        assert_eq!(unescape("plain\\"), "plain\\");
    }
}
