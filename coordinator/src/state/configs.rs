//! What queries say about a stack config: its name, stack, version, size, users and, for
//! `shoalctl config inspect` of a config not marked sensitive, its content.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use shoal_model::{Millis, Service};

use super::secrets::Config;

/// A config as queries show it. Sensitive configs never carry `content`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConfigInfo {
    pub name: String,
    pub stack: String,
    pub version: u64,
    pub size: usize,
    pub sensitive: bool,
    pub created_at: Millis,
    pub updated_at: Millis,
    /// Services whose specs reference it, by name.
    pub services: Vec<String>,
    /// The value as text (when asked for, not sensitive, and valid UTF-8).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content: Option<String>,
}

/// `config` as a query answers it; `with_content` for a single config's inspection.
pub(super) fn info(
    config: &Config,
    services: &BTreeMap<String, Service>,
    with_content: bool,
) -> ConfigInfo {
    let users = services
        .values()
        .filter(|s| {
            s.spec
                .container
                .configs
                .iter()
                .any(|r| r.source == config.name)
        })
        .map(|s| s.name.clone())
        .collect();
    let content = (with_content && !config.sensitive)
        .then(|| String::from_utf8(config.value.expose().to_vec()).ok())
        .flatten();
    ConfigInfo {
        name: config.name.clone(),
        stack: config.stack.clone(),
        version: config.version,
        size: config.value.len(),
        sensitive: config.sensitive,
        created_at: config.created_at,
        updated_at: config.updated_at,
        services: users,
        content,
    }
}
