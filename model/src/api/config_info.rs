//! [`ConfigInfo`]: a stack config as `Query::Configs` and `Query::Config` show it.

use serde::{Deserialize, Serialize};

use crate::Millis;

/// A config's name, stack, version, size and users; sensitive configs never carry `content`.
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
