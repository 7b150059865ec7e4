//! A stack's secrets and configs in the replicated state: values and versions, checked and
//! stamped into the stack's service specs when the stack is applied. Both are kept the same way
//! (a [`StackValue`] per name); a [`ValueKind`] says which of the two is meant.
//!
//! Invariant: a secret's value, or a sensitive config's, is never part of a query answer, an
//! event or a `Debug` print; only the dispatcher reads it, for the nodes whose tasks reference it.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use shoal_model::config::MAX_CONFIG_BYTES;
use shoal_model::secret::MAX_SECRET_BYTES;
use shoal_model::{ContainerSpec, Millis, SecretRef, SecretValue, ServiceSpec};

use super::ClusterState;

/// One secret or config of a stack. `Debug` shows the value as `<redacted>`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StackValue {
    pub name: String,
    pub stack: String,
    pub value: SecretValue,
    /// Unique across the cluster's history (per kind): a new value always gets a new version.
    pub version: u64,
    pub created_at: Millis,
    pub updated_at: Millis,
    /// Never shown by a query: always for secrets, `x-shoal-sensitive: true` for configs.
    #[serde(default = "sensitive_by_default")]
    pub sensitive: bool,
    /// Configs only: `x-shoal-template: true`, rendered per task by the agent.
    #[serde(default)]
    pub template: bool,
}

/// A stack secret.
pub type Secret = StackValue;
/// A stack config.
pub type Config = StackValue;

fn sensitive_by_default() -> bool {
    true
}

/// A value a stack provides, as `ApplyStack` carries it for configs. `Debug` redacts the value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConfigInput {
    pub name: String,
    pub value: SecretValue,
    #[serde(default)]
    pub sensitive: bool,
    #[serde(default)]
    pub template: bool,
}

/// Secrets or configs: their noun, size limit and where a spec references them.
pub(super) struct ValueKind {
    pub noun: &'static str,
    pub limit: usize,
    pub refs: fn(&mut ContainerSpec) -> &mut Vec<SecretRef>,
    /// Where the state keeps them.
    pub values: fn(&mut ClusterState) -> &mut BTreeMap<String, StackValue>,
}

pub(super) const SECRETS: ValueKind = ValueKind {
    noun: "secret",
    limit: MAX_SECRET_BYTES,
    refs: |c| &mut c.secrets,
    values: |s| &mut s.secrets,
};

pub(super) const CONFIGS: ValueKind = ValueKind {
    noun: "config",
    limit: MAX_CONFIG_BYTES,
    refs: |c| &mut c.configs,
    values: |s| &mut s.configs,
};

/// What applying a stack's values of one kind will do, computed before anything changes.
#[derive(Debug, Default)]
pub(super) struct ValuesPlan {
    /// `(input, version, is_new_value)` for every value the stack provides.
    pub upsert: Vec<(ConfigInput, u64, bool)>,
    /// Values of the stack it no longer provides.
    pub remove: Vec<String>,
    /// The version of each value the stack provides, by name.
    pub versions: BTreeMap<String, u64>,
    /// The highest version handed out.
    pub last_seq: u64,
}

/// Checks a stack's values of one kind against the state: refuses (changing nothing) a name
/// owned by another stack, an oversized value or a name given twice; hands out versions.
pub(super) fn plan_values(
    kind: &ValueKind,
    existing: &BTreeMap<String, StackValue>,
    mut seq: u64,
    stack: &str,
    inputs: &[ConfigInput],
) -> Result<ValuesPlan, String> {
    let noun = kind.noun;
    let mut plan = ValuesPlan::default();
    for input in inputs {
        let name = &input.name;
        super::machine::validate_name(noun, name)?;
        if input.value.len() > kind.limit {
            return Err(format!(
                "{noun} `{name}` is {} bytes; the limit is {}",
                input.value.len(),
                kind.limit
            ));
        }
        if plan.versions.contains_key(name) {
            return Err(format!("{noun} `{name}` is given twice"));
        }
        let (version, is_new) = match existing.get(name) {
            Some(s) if s.stack != stack => {
                return Err(format!(
                    "{noun} `{name}` already exists in stack `{}`; nothing applied",
                    s.stack
                ))
            }
            // Turning a value into a template (or back) changes the files: a new version.
            Some(s) if s.value == input.value && s.template == input.template => (s.version, false),
            _ => {
                seq += 1;
                (seq, true)
            }
        };
        plan.upsert.push((input.clone(), version, is_new));
        plan.versions.insert(name.clone(), version);
    }
    plan.remove = existing
        .values()
        .filter(|s| s.stack == stack && !plan.versions.contains_key(&s.name))
        .map(|s| s.name.clone())
        .collect();
    plan.last_seq = seq;
    Ok(plan)
}

/// Stamps every reference of one kind in `services` with the version of the value it names;
/// refuses a reference to a value the stack does not provide.
pub(super) fn stamp(
    kind: &ValueKind,
    stack: &str,
    versions: &BTreeMap<String, u64>,
    services: &mut [(String, ServiceSpec)],
) -> Result<(), String> {
    for (svc, spec) in services {
        for r in (kind.refs)(&mut spec.container) {
            let Some(v) = versions.get(&r.source) else {
                return Err(format!(
                    "service `{svc}` uses {} `{}`, which stack `{stack}` does not provide",
                    kind.noun, r.source
                ));
            };
            r.version = *v;
        }
    }
    Ok(())
}

/// Carries out a plan on the stored values; returns the events to record as
/// `(name, action, message)`, none of which holds a value.
pub(super) fn store(
    values: &mut BTreeMap<String, StackValue>,
    plan: &ValuesPlan,
    stack: &str,
    now: Millis,
) -> Vec<(String, &'static str, String)> {
    let mut events = Vec::new();
    for name in &plan.remove {
        values.remove(name);
        events.push((name.clone(), "remove", format!("not in stack {stack}")));
    }
    for (input, version, is_new) in &plan.upsert {
        let name = &input.name;
        match values.get_mut(name) {
            Some(s) if !is_new => {
                s.sensitive = input.sensitive;
                s.template = input.template;
            }
            Some(s) => {
                s.value = input.value.clone();
                s.version = *version;
                s.updated_at = now;
                s.sensitive = input.sensitive;
                s.template = input.template;
                events.push((
                    name.clone(),
                    "update",
                    format!("new value, version {version}"),
                ));
            }
            None => {
                values.insert(
                    name.clone(),
                    StackValue {
                        name: name.clone(),
                        stack: stack.to_string(),
                        value: input.value.clone(),
                        version: *version,
                        created_at: now,
                        updated_at: now,
                        sensitive: input.sensitive,
                        template: input.template,
                    },
                );
                events.push((name.clone(), "create", format!("stack {stack}")));
            }
        }
    }
    events
}

/// The names of `stack`'s values, to forget when the stack is removed.
pub(super) fn of_stack(values: &BTreeMap<String, StackValue>, stack: &str) -> Vec<String> {
    values
        .values()
        .filter(|s| s.stack == stack)
        .map(|s| s.name.clone())
        .collect()
}
