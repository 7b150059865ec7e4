//! Compose `devices`: `HOST_PATH[:CONTAINER_PATH[:PERMISSIONS]]` entries.

use shoal_model::Device;

use super::container_keys::seq;
use super::error::{Ctx, Result};
use super::fields;
use super::yaml::Node;

pub(crate) fn parse(ctx: Ctx<'_>, node: &Node, path: &str) -> Result<Vec<Device>> {
    let mut out: Vec<Device> = Vec::new();
    for (i, item) in seq(ctx, node, path)?.iter().enumerate() {
        let p = format!("{path}[{i}]");
        let text = fields::string(ctx, item, &p)?;
        let device = parse_one(&text).map_err(|e| ctx.error(item.loc, &p, e))?;
        if out
            .iter()
            .any(|d| d.container_path == device.container_path)
        {
            return Err(ctx.error(
                item.loc,
                &p,
                format!("device path {} given twice", device.container_path),
            ));
        }
        out.push(device);
    }
    Ok(out)
}

fn parse_one(text: &str) -> std::result::Result<Device, String> {
    let parts: Vec<&str> = text.split(':').collect();
    let (host, container, permissions) = match parts.as_slice() {
        [h] => (*h, *h, "rwm"),
        [h, c] if is_permissions(c) => (*h, *h, *c),
        [h, c] => (*h, *c, "rwm"),
        [h, c, p] => (*h, *c, *p),
        _ => {
            return Err(format!(
                "expected HOST_PATH[:CONTAINER_PATH[:PERMISSIONS]], got {text:?}"
            ))
        }
    };
    for (what, p) in [("host", host), ("container", container)] {
        if !p.starts_with('/') {
            return Err(format!(
                "{what} device path must be absolute, got {p:?} (CDI device names are not supported)"
            ));
        }
    }
    if !is_permissions(permissions) {
        return Err(format!(
            "device permissions must be letters of `rwm`, each at most once, got {permissions:?}"
        ));
    }
    Ok(Device {
        host_path: host.to_owned(),
        container_path: container.to_owned(),
        permissions: permissions.to_owned(),
    })
}

/// `r`, `w`, `m`, each at most once, at least one.
fn is_permissions(p: &str) -> bool {
    !p.is_empty()
        && p.len() <= 3
        && p.chars().all(|c| matches!(c, 'r' | 'w' | 'm'))
        && p.chars().enumerate().all(|(i, c)| !p[..i].contains(c))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dev(h: &str, c: &str, p: &str) -> Device {
        Device {
            host_path: h.into(),
            container_path: c.into(),
            permissions: p.into(),
        }
    }

    #[test]
    fn compose_forms() {
        assert_eq!(
            parse_one("/dev/kvm"),
            Ok(dev("/dev/kvm", "/dev/kvm", "rwm"))
        );
        assert_eq!(
            parse_one("/dev/kvm:r"),
            Ok(dev("/dev/kvm", "/dev/kvm", "r"))
        );
        assert_eq!(
            parse_one("/dev/sda:/dev/xvda"),
            Ok(dev("/dev/sda", "/dev/xvda", "rwm"))
        );
        assert_eq!(
            parse_one("/dev/sda:/dev/xvda:rw"),
            Ok(dev("/dev/sda", "/dev/xvda", "rw"))
        );
        for bad in [
            "kvm",
            "/dev/a:/dev/b:rx",
            "/dev/a:/dev/b:rr",
            "/a:/b:r:x",
            "vendor.com/gpu=0",
        ] {
            assert!(parse_one(bad).is_err(), "{bad}");
        }
    }
}
