//! The top-level `configs:` (Compose's: each config's value from a `file`, an `environment`
//! variable or inline `content`) and a service's `configs:` references, read by the same code as
//! secrets (`secrets.rs`).
//!
//! Shoal's one addition: `x-shoal-sensitive: true` on a declaration keeps the value out of
//! `shoalctl config inspect` (it is then handled like a secret's everywhere but on the node).
//! `x-shoal-template: true` makes the value a Jinja2 template rendered per task on the agent
//! (`shoal_model::template`); an inline `content` template is checked here (syntax, unknown
//! variables), a `file` one when its value arrives (`api/control.rs`). Change modes are not
//! implemented yet: `x-shoal-change-mode` is refused by name rather than ignored like other `x-`
//! keys (Compose's `template_driver` is refused as an unknown key).

use std::collections::BTreeMap;

use super::error::{Ctx, Result};
use super::fields::{self, Fields};
use super::secrets::{value_source, ValueSource, CONFIGS};
use super::yaml::{join, Node, Value};

/// Shoal keys of a config declaration that are planned but not implemented.
const NOT_YET: [&str; 1] = ["x-shoal-change-mode"];

/// One declared config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigDecl {
    pub source: ValueSource,
    /// `x-shoal-sensitive: true`: the value is never shown by `shoalctl config inspect`.
    pub sensitive: bool,
    /// `x-shoal-template: true`: rendered per task by the agent.
    pub template: bool,
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
        let template = match f.take("x-shoal-template") {
            Some(n) => fields::boolean(ctx, n, &f.child("x-shoal-template"))?,
            None => false,
        };
        if let (true, ValueSource::Content(text)) = (template, &source) {
            if let Err(e) = shoal_model::template::check(text) {
                let content = content_node(v).map_or(v.loc, |n| n.loc);
                return Err(ctx.error(content, &f.child("content"), format!("template {e}")));
            }
        }
        f.finish()?;
        out.insert(
            key.name.clone(),
            ConfigDecl {
                source,
                sensitive,
                template,
            },
        );
    }
    Ok(out)
}

/// The `content` value of a config declaration, for the position of a template error.
fn content_node(decl: &Node) -> Option<&Node> {
    match &decl.value {
        Value::Map(entries) => entries
            .iter()
            .find(|(k, _)| k.name == "content")
            .map(|(_, n)| n),
        _ => None,
    }
}
