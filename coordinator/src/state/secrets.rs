//! A stack's secrets in the replicated state: values and versions, checked and stamped into the
//! stack's service specs when the stack is applied.
//!
//! Invariant: a secret's value is never part of a query answer, an event or a `Debug` print; only
//! the dispatcher reads it, for the nodes whose tasks reference it.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use shoal_model::secret::MAX_SECRET_BYTES;
use shoal_model::{Millis, SecretValue, ServiceSpec};

/// One secret of a stack. `Debug` shows the value as `<redacted>`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Secret {
    pub name: String,
    pub stack: String,
    pub value: SecretValue,
    /// Unique across the cluster's history: a new value always gets a new version.
    pub version: u64,
    pub created_at: Millis,
    pub updated_at: Millis,
}

/// What applying a stack's secrets will do, computed before anything changes.
#[derive(Debug, Default)]
pub(super) struct SecretsPlan {
    /// `(name, value, version, is_new_value)` for every secret the stack provides.
    pub upsert: Vec<(String, SecretValue, u64, bool)>,
    /// Secrets of the stack it no longer provides.
    pub remove: Vec<String>,
    /// The stack's services with every secret reference stamped with its version.
    pub services: Vec<(String, ServiceSpec)>,
    /// The highest version handed out.
    pub last_seq: u64,
}

/// Checks a stack's secrets against the state and its services' references; stamps versions.
/// Refuses (changing nothing) a secret owned by another stack, an oversized value, or a reference
/// to a secret the stack does not provide.
pub(super) fn plan_stack_secrets(
    existing: &BTreeMap<String, Secret>,
    mut seq: u64,
    stack: &str,
    secrets: &[(String, SecretValue)],
    services: &[(String, ServiceSpec)],
) -> Result<SecretsPlan, String> {
    let mut plan = SecretsPlan::default();
    let mut versions: BTreeMap<&str, u64> = BTreeMap::new();
    for (name, value) in secrets {
        super::machine::validate_name("secret", name)?;
        if value.len() > MAX_SECRET_BYTES {
            return Err(format!(
                "secret `{name}` is {} bytes; the limit is {MAX_SECRET_BYTES}",
                value.len()
            ));
        }
        if versions.contains_key(name.as_str()) {
            return Err(format!("secret `{name}` is given twice"));
        }
        let version = match existing.get(name) {
            Some(s) if s.stack != stack => {
                return Err(format!(
                    "secret `{name}` already exists in stack `{}`; nothing applied",
                    s.stack
                ))
            }
            Some(s) if &s.value == value => {
                plan.upsert
                    .push((name.clone(), value.clone(), s.version, false));
                s.version
            }
            _ => {
                seq += 1;
                plan.upsert.push((name.clone(), value.clone(), seq, true));
                seq
            }
        };
        versions.insert(name, version);
    }
    for (svc, spec) in services {
        let mut spec = spec.clone();
        for r in &mut spec.container.secrets {
            let Some(v) = versions.get(r.source.as_str()) else {
                return Err(format!(
                    "service `{svc}` uses secret `{}`, which stack `{stack}` does not provide",
                    r.source
                ));
            };
            r.version = *v;
        }
        plan.services.push((svc.clone(), spec));
    }
    plan.remove = existing
        .values()
        .filter(|s| s.stack == stack && !versions.contains_key(s.name.as_str()))
        .map(|s| s.name.clone())
        .collect();
    plan.last_seq = seq;
    Ok(plan)
}
