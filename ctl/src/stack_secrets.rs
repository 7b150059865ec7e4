//! The values of a stack file's top-level `secrets:` and `configs:`, read on the operator's
//! machine: each one's `file` (relative to the stack file) or `environment` variable (a config's
//! inline `content` travels in the text). The coordinator validates the file; this only finds the
//! sources, and fails before anything is sent when one is missing. Errors name the secret or
//! config and the stack file, never a value.

use std::collections::HashMap;
use std::path::Path;

use anyhow::{bail, Context};
use saphyr::{LoadableYamlNode, Yaml};

/// `name -> value` for every secret the stack file declares. A file the YAML parser rejects
/// gives no secrets: the coordinator then reports the syntax error with its position.
pub fn resolve(
    stack_file: &Path,
    source: &str,
    env: impl Fn(&str) -> Option<String>,
) -> anyhow::Result<HashMap<String, Vec<u8>>> {
    resolve_section(stack_file, source, "secrets", env)
}

/// `name -> value` for every config the stack file declares with a `file` or `environment`
/// source, read as secrets are.
pub fn resolve_configs(
    stack_file: &Path,
    source: &str,
    env: impl Fn(&str) -> Option<String>,
) -> anyhow::Result<HashMap<String, Vec<u8>>> {
    resolve_section(stack_file, source, "configs", env)
}

/// The values of one top-level section (`secrets` or `configs`).
fn resolve_section(
    stack_file: &Path,
    source: &str,
    section: &str,
    env: impl Fn(&str) -> Option<String>,
) -> anyhow::Result<HashMap<String, Vec<u8>>> {
    let noun = section.trim_end_matches('s');
    let mut out = HashMap::new();
    let Ok(docs) = Yaml::load_from_str(source) else {
        return Ok(out);
    };
    let Some(secrets) = docs
        .first()
        .and_then(|d| d.as_mapping_get(section))
        .and_then(Yaml::as_mapping)
    else {
        return Ok(out);
    };
    let base = stack_file.parent().unwrap_or(Path::new("."));
    let shown = stack_file.display();
    for (key, decl) in secrets {
        let Some(name) = key.as_str() else { continue };
        if name.starts_with("x-") {
            continue;
        }
        let file = decl.as_mapping_get("file").and_then(Yaml::as_str);
        let var = decl.as_mapping_get("environment").and_then(Yaml::as_str);
        let value = match (file, var) {
            (Some(f), None) => {
                let path = base.join(f);
                std::fs::read(&path).with_context(|| {
                    format!(
                        "{shown}: {noun} `{name}`: cannot read file {}",
                        path.display()
                    )
                })?
            }
            (None, Some(v)) => match env(v) {
                Some(value) => value.into_bytes(),
                None => bail!("{shown}: {noun} `{name}`: environment variable `{v}` is not set"),
            },
            // Anything else is malformed; the coordinator says where.
            _ => continue,
        };
        out.insert(name.to_string(), value);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const STACK: &str =
        "secrets:\n  pw: { file: ./pw.txt }\n  token:\n    environment: TOKEN\nservices: {}\n";

    fn env(var: &str) -> Option<String> {
        (var == "TOKEN").then(|| "from-env".to_string())
    }

    #[test]
    fn reads_files_next_to_the_stack_and_environment_variables() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("pw.txt"), b"from-file\n").unwrap();
        let got = resolve(&dir.path().join("stack.yaml"), STACK, env).unwrap();
        assert_eq!(got["pw"], b"from-file\n");
        assert_eq!(got["token"], b"from-env");
        assert_eq!(got.len(), 2);
    }

    #[test]
    fn a_missing_file_or_variable_names_the_secret_and_the_stack_file() {
        let dir = tempfile::tempdir().unwrap();
        let stack = dir.path().join("stack.yaml");
        let e = resolve(&stack, STACK, env).unwrap_err();
        let text = format!("{e:#}");
        assert!(
            text.contains("stack.yaml: secret `pw`: cannot read file") && text.contains("pw.txt"),
            "{text}"
        );
        std::fs::write(dir.path().join("pw.txt"), b"x").unwrap();
        let e = resolve(&stack, STACK, |_| None).unwrap_err();
        assert_eq!(
            e.to_string(),
            format!(
                "{}: secret `token`: environment variable `TOKEN` is not set",
                stack.display()
            )
        );
    }

    #[test]
    fn configs_are_read_the_same_way_and_inline_content_stays_in_the_text() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("keystone.conf"), b"[DEFAULT]\n").unwrap();
        let stack = "secrets:\n  pw: { file: ./missing }\nconfigs:\n  keystone.conf: { file: ./keystone.conf }\n  \
                     galera.cnf: { environment: TOKEN }\n  inline: { content: x }\nservices: {}\n";
        let got = resolve_configs(&dir.path().join("stack.yaml"), stack, env).unwrap();
        assert_eq!(got.len(), 2);
        assert_eq!(got["keystone.conf"], b"[DEFAULT]\n");
        assert_eq!(got["galera.cnf"], b"from-env");
        let e = resolve_configs(&dir.path().join("stack.yaml"), stack, |_| None).unwrap_err();
        assert!(
            e.to_string()
                .ends_with("config `galera.cnf`: environment variable `TOKEN` is not set"),
            "{e}"
        );
    }

    #[test]
    fn files_without_secrets_or_with_bad_yaml_send_none() {
        let p = Path::new("s.yaml");
        assert!(resolve(p, "services: {}\n", env).unwrap().is_empty());
        assert!(resolve(p, "services: [\n", env).unwrap().is_empty());
    }
}
