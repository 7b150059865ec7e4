//! The top-level `configs:` (Compose's: each config's value from a `file`, an `environment`
//! variable or inline `content`) and a service's `configs:` references, read by the same code as
//! secrets (`secrets.rs`).
//!
//! Shoal's one addition: `x-shoal-sensitive: true` on a declaration keeps the value out of
//! `shoalctl config inspect` (it is then handled like a secret's everywhere but on the node).

use std::collections::BTreeMap;

use super::error::{Ctx, Result};
use super::fields::{self, Fields};
use super::secrets::{value_source, ValueSource, CONFIGS};
use super::yaml::{join, Node};

/// One declared config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigDecl {
    pub source: ValueSource,
    /// `x-shoal-sensitive: true`: the value is never shown by `shoalctl config inspect`.
    pub sensitive: bool,
}

/// Reads the top-level `configs:` mapping.
pub(crate) fn declarations(
    ctx: Ctx<'_>,
    node: &Node,
    path: &str,
) -> Result<BTreeMap<String, ConfigDecl>> {
    let mut out = BTreeMap::new();
    for (key, v) in fields::entries(ctx, node, path)? {
        let p = join(path, &key.name);
        super::check_name(ctx, key.loc, &p, &key.name)?;
        let mut f = Fields::new(ctx, v, &p)?;
        let source = value_source(ctx, v, &mut f, &CONFIGS)?;
        let sensitive = match f.take("x-shoal-sensitive") {
            Some(n) => fields::boolean(ctx, n, &f.child("x-shoal-sensitive"))?,
            None => false,
        };
        f.finish()?;
        out.insert(key.name.clone(), ConfigDecl { source, sensitive });
    }
    Ok(out)
}
