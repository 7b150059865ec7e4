//! `Debug` for the messages that carry secret or config values (and env files): everything but
//! the values (a stack file's text may hold a sensitive config's `content`, so only its length is
//! printed).

use std::fmt;

use crate::control::StackFileRequest;
use crate::dispatcher::SecretValue;

impl fmt::Debug for SecretValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SecretValue")
            .field("version", &self.version)
            .field("template", &self.template)
            .field("value", &format_args!("<redacted>"))
            .finish()
    }
}

impl fmt::Debug for StackFileRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<&String> = self.secrets.keys().collect();
        // Env files often carry passwords: their paths only.
        let env_files: Vec<&String> = self.env_files.keys().collect();
        let configs: Vec<&String> = self.configs.keys().collect();
        f.debug_struct("StackFileRequest")
            .field("stack", &self.stack)
            .field("file", &self.file)
            .field("source", &format_args!("<{} bytes>", self.source.len()))
            .field("secrets", &format_args!("<redacted: {names:?}>"))
            .field("env_files", &format_args!("<redacted: {env_files:?}>"))
            .field("configs", &format_args!("<redacted: {configs:?}>"))
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dispatcher::AssignmentSet;

    #[test]
    fn debug_prints_no_secret_value() {
        let set = AssignmentSet {
            tasks_json: b"[]".to_vec(),
            applied_index: 3,
            secrets: [(
                "pw".to_string(),
                SecretValue {
                    version: 2,
                    value: b"hunter2".to_vec(),
                    template: false,
                },
            )]
            .into(),
            revoked_serials: vec!["0a".into()],
            configs: [(
                "conf".to_string(),
                SecretValue {
                    version: 1,
                    value: b"hunter2".to_vec(),
                    template: false,
                },
            )]
            .into(),
            members_json: Vec::new(),
            images_to_ready: Vec::new(),
        };
        let req = StackFileRequest {
            stack: "s".into(),
            file: "f".into(),
            source: "configs: { c: { content: hunter2 } }".into(),
            secrets: [("pw".to_string(), b"hunter2".to_vec())].into(),
            api_version: 1,
            env_files: [("a.env".to_string(), "PW=hunter2".to_string())].into(),
            configs: [("conf".to_string(), b"hunter2".to_vec())].into(),
        };
        for text in [format!("{set:?}"), format!("{req:?}")] {
            assert!(text.contains("pw") && text.contains("<redacted"), "{text}");
            assert!(!format!("{req:?}").contains("content"), "{req:?}");
            assert!(!text.contains("hunter2"), "{text}");
            // Nor the bytes as numbers: 'h' 'u' 'n' = 104, 117, 110.
            assert!(!text.contains("104, 117, 110"), "{text}");
        }
    }
}
