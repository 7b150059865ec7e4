//! The top-level `configs:` (Compose's: each config's value from a `file`, an `environment`
//! variable or inline `content`) and a service's `configs:` references, read by the same code as
//! secrets (`secrets.rs`).
//!
//! Shoal's one addition: `x-shoal-sensitive: true` on a declaration keeps the value out of
//! `shoalctl config inspect` (it is then handled like a secret's everywhere but on the node).
//! Templates and change modes are not implemented yet: `x-shoal-template` and
//! `x-shoal-change-mode` are refused by name rather than ignored like other `x-` keys, so that a
//! file meant to be rendered never reaches a container unrendered (Compose's `template_driver`
//! is refused as an unknown key).

use std::collections::BTreeMap;

use super::error::{Ctx, Result};
use super::fields::{self, Fields};
use super::secrets::{value_source, ValueSource, CONFIGS};
use super::yaml::{join, Node};

/// Shoal keys of a config declaration that are planned but not implemented.
const NOT_YET: [&str; 2] = ["x-shoal-template", "x-shoal-change-mode"];

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
        for key in NOT_YET {
            if let Some(n) = f.take(key) {
                return Err(ctx.error(
                    n.loc,
                    &f.child(key),
                    format!("`{key}` is not supported yet"),
                ));
            }
        }
        let sensitive = match f.take("x-shoal-sensitive") {
            Some(n) => fields::boolean(ctx, n, &f.child("x-shoal-sensitive"))?,
            None => false,
        };
        f.finish()?;
        out.insert(key.name.clone(), ConfigDecl { source, sensitive });
    }
    Ok(out)
}
