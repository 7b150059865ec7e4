//! Configs: files a service's containers see read-only, declared at the top of a stack like
//! secrets and referenced the same way. A reference is a [`SecretRef`] whose target is always an
//! absolute path (Compose's default is `/<source>`); values travel and are stored as
//! [`crate::SecretValue`]s, so a `Debug` print never shows one, sensitive or not.

use crate::SecretRef;

/// A service's use of a config: the same fields as a secret reference.
pub type ConfigRef = SecretRef;

/// File mode of a config file when the reference sets none (Compose: world-readable).
pub const DEFAULT_CONFIG_MODE: u32 = 0o444;
/// Largest config value accepted (as Docker: 1000 KiB).
pub const MAX_CONFIG_BYTES: usize = 1000 * 1024;

/// A reference with Compose's defaults: target `/<source>`, mode 0444, owned by root.
pub fn config_ref(source: impl Into<String>) -> ConfigRef {
    let source = source.into();
    let mut r = SecretRef::new(format!("/{source}"));
    r.source = source;
    r.mode = DEFAULT_CONFIG_MODE;
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_follow_compose() {
        let r = config_ref("haproxy.cfg");
        assert_eq!(r.source, "haproxy.cfg");
        assert_eq!(r.container_path(), "/haproxy.cfg");
        assert_eq!((r.mode, r.uid, r.gid, r.version), (0o444, 0, 0, 0));
    }
}
