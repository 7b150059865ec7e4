//! What queries say about a stack config: its name, stack, version, size, users and, for
//! `shoalctl config inspect` of a config not marked sensitive, its content.

use std::collections::BTreeMap;

use shoal_model::api::ConfigInfo;
use shoal_model::Service;

use super::secrets::Config;

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
