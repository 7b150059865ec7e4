//! The stack name of `shoalctl apply`/`plan`, as Compose finds a project name: `--stack`, else the
//! file's top-level `name:`, else the name of the directory holding the file, normalized the way
//! Compose normalizes it (lowercase; only `a-z`, `0-9`, `_` and `-` kept; no leading `_` or `-`).

use std::path::Path;

use anyhow::{bail, Context};
use saphyr::{LoadableYamlNode, Yaml};

/// Compose's normalization of a project name taken from a directory.
pub fn normalize(name: &str) -> String {
    let kept: String = name
        .to_lowercase()
        .chars()
        .filter(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '_' | '-'))
        .collect();
    kept.trim_start_matches(['_', '-']).to_string()
}

/// Whether the YAML's first document has a top-level `name:` (the coordinator reads it then). A
/// file the YAML parser rejects counts as having one: the coordinator reports where it is broken.
fn has_name(source: &str) -> bool {
    match Yaml::load_from_str(source) {
        Ok(docs) => docs
            .first()
            .and_then(|d| d.as_mapping_get("name"))
            .is_some(),
        Err(_) => true,
    }
}

/// The stack name to send: `None` lets the coordinator take the file's `name:`.
pub fn resolve(flag: Option<&str>, file: &Path, source: &str) -> anyhow::Result<Option<String>> {
    if let Some(n) = flag {
        return Ok(Some(n.to_string()));
    }
    if has_name(source) {
        return Ok(None);
    }
    let abs = std::path::absolute(file)
        .with_context(|| format!("cannot resolve the path of {}", file.display()))?;
    let dir = abs
        .parent()
        .and_then(Path::file_name)
        .map(|d| d.to_string_lossy());
    let name = dir.as_deref().map(normalize).unwrap_or_default();
    if name.is_empty() {
        bail!(
            "{}: the stack has no `name:` and its directory gives no usable name (Compose keeps \
             only lowercase letters, digits, `_` and `-`): add `name:` to the file or pass --stack NAME",
            file.display()
        );
    }
    Ok(Some(name))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalizes_like_compose() {
        assert_eq!(normalize("My_Project.v2"), "my_projectv2");
        assert_eq!(normalize("__-openstack"), "openstack");
        assert_eq!(normalize("demo stack"), "demostack");
        assert_eq!(normalize("Ünïcode-1"), "ncode-1");
        assert_eq!(normalize("..."), "");
    }

    #[test]
    fn flag_then_name_then_directory() {
        let f = Path::new("/srv/Kolla_Control/stack.yaml");
        let with_name = "name: cp\nservices: {}\n";
        let without = "services: {}\n";
        assert_eq!(
            resolve(Some("x"), f, without).expect("flag").as_deref(),
            Some("x")
        );
        assert_eq!(resolve(None, f, with_name).expect("name"), None);
        assert_eq!(
            resolve(None, f, without).expect("dir").as_deref(),
            Some("kolla_control")
        );
        // A relative path is taken from the current directory, as Compose does.
        let here = std::env::current_dir().expect("cwd");
        let expected = normalize(&here.file_name().expect("dir name").to_string_lossy());
        assert_eq!(
            resolve(None, Path::new("stack.yaml"), without)
                .expect("relative")
                .as_deref(),
            Some(expected.as_str())
        );
    }

    #[test]
    fn a_directory_without_usable_characters_is_an_error() {
        let err =
            resolve(None, Path::new("/tmp/.../stack.yaml"), "services: {}\n").expect_err("no name");
        assert!(err.to_string().contains("--stack NAME"), "{err}");
    }
}
