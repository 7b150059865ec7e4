//! The contents of the services' `env_file`s, read on the operator's machine relative to the
//! stack file (as Compose does) and sent beside it; the coordinator parses and merges them.
//! A missing file is an error naming the service and path, unless marked `required: false`.

use std::collections::HashMap;
use std::path::Path;

use anyhow::Context;
use saphyr::{LoadableYamlNode, Yaml};

/// `path as written -> content` for every `env_file` the stack's services name. A file the YAML
/// parser rejects gives none: the coordinator then reports the syntax error with its position.
pub fn resolve(stack_file: &Path, source: &str) -> anyhow::Result<HashMap<String, String>> {
    let mut out = HashMap::new();
    let Ok(docs) = Yaml::load_from_str(source) else {
        return Ok(out);
    };
    let Some(services) = docs
        .first()
        .and_then(|d| d.as_mapping_get("services"))
        .and_then(Yaml::as_mapping)
    else {
        return Ok(out);
    };
    let base = stack_file.parent().unwrap_or(Path::new("."));
    for (name, service) in services {
        let name = name.as_str().unwrap_or("?");
        let Some(entry) = service.as_mapping_get("env_file") else {
            continue;
        };
        let entries: Vec<&Yaml<'_>> = match entry.as_sequence() {
            Some(items) => items.iter().collect(),
            None => vec![entry],
        };
        for e in entries {
            let (path, required) = match e.as_str() {
                Some(p) => (p, true),
                None => match e.as_mapping_get("path").and_then(Yaml::as_str) {
                    Some(p) => (
                        p,
                        e.as_mapping_get("required")
                            .and_then(Yaml::as_bool)
                            .unwrap_or(true),
                    ),
                    // Malformed: the coordinator says where.
                    None => continue,
                },
            };
            let full = base.join(path);
            match std::fs::read_to_string(&full) {
                Ok(text) => {
                    out.insert(path.to_owned(), text);
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound && !required => {}
                Err(e) => {
                    return Err(e).with_context(|| {
                        format!(
                            "{}: service `{name}`: cannot read env_file {}",
                            stack_file.display(),
                            full.display()
                        )
                    })
                }
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_next_to_the_stack_file() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a.env"), "A=1\n").unwrap();
        let stack = dir.path().join("stack.yaml");
        let src = "services:\n  s:\n    image: x\n    env_file: [a.env, {path: gone.env, required: false}]\n";
        let got = resolve(&stack, src).unwrap();
        assert_eq!(got.len(), 1);
        assert_eq!(got["a.env"], "A=1\n");
        let err = resolve(
            &stack,
            "services:\n  s:\n    image: x\n    env_file: gone.env\n",
        )
        .unwrap_err();
        let text = format!("{err:#}");
        assert!(
            text.contains("service `s`") && text.contains("gone.env"),
            "{text}"
        );
    }
}
