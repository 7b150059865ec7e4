//! The values of a stack file's top-level `secrets:`, read on the operator's machine: each
//! secret's `file` (relative to the stack file) or `environment` variable. The coordinator
//! validates the file; this only finds the sources, and fails before anything is sent when one
//! is missing. Errors name the secret and the stack file, never a value.

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
    let mut out = HashMap::new();
    let Ok(docs) = Yaml::load_from_str(source) else {
        return Ok(out);
    };
    let Some(secrets) = docs
        .first()
        .and_then(|d| d.as_mapping_get("secrets"))
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
                        "{shown}: secret `{name}`: cannot read file {}",
                        path.display()
                    )
                })?
            }
            (None, Some(v)) => match env(v) {
                Some(value) => value.into_bytes(),
                None => bail!("{shown}: secret `{name}`: environment variable `{v}` is not set"),
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
    fn files_without_secrets_or_with_bad_yaml_send_none() {
        let p = Path::new("s.yaml");
        assert!(resolve(p, "services: {}\n", env).unwrap().is_empty());
        assert!(resolve(p, "services: [\n", env).unwrap().is_empty());
    }
}
