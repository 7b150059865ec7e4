//! Loads YAML into a small tree that remembers where each node and key came from.
//!
//! This is the only file that knows the YAML crate (`saphyr`). Aliases are resolved by the loader;
//! merge keys (`<<: *anchor`) are resolved here, explicit keys winning over merged ones.

use saphyr::{LoadableYamlNode, MarkedYaml, Scalar, YamlData};

use super::error::{Ctx, Loc, Result};

/// One YAML node with its position.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Node {
    pub loc: Loc,
    pub value: Value,
    /// The source text of an integer (`0400`, `0o400`, `256`), where the notation matters.
    pub raw: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Value {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    Seq(Vec<Node>),
    Map(Vec<(Key, Node)>),
}

/// A mapping key (always a scalar, kept as text) with its position.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Key {
    pub name: String,
    pub loc: Loc,
}

impl Value {
    /// What the value is, for "expected X, got Y" messages.
    pub fn describe(&self) -> String {
        match self {
            Value::Null => "null".into(),
            Value::Bool(b) => format!("boolean {b}"),
            Value::Int(i) => format!("{i}"),
            Value::Float(f) => format!("{f}"),
            Value::Str(s) => format!("string {s:?}"),
            Value::Seq(_) => "a list".into(),
            Value::Map(_) => "a mapping".into(),
        }
    }
}

fn loc_of(y: &MarkedYaml<'_>) -> Loc {
    Loc {
        line: y.span.start.line(),
        column: y.span.start.col() + 1,
    }
}

/// Parses one YAML document; an empty input is an empty mapping.
pub(crate) fn load(ctx: Ctx<'_>, source: &str) -> Result<Node> {
    let docs = MarkedYaml::load_from_str(source).map_err(|e| {
        let m = e.marker();
        ctx.error(
            Loc {
                line: m.line(),
                column: m.col() + 1,
            },
            "",
            format!("yaml syntax error: {}", e.info()),
        )
    })?;
    match docs.len() {
        0 => Ok(Node {
            loc: Loc { line: 1, column: 1 },
            value: Value::Map(Vec::new()),
            raw: None,
        }),
        1 => {
            let chars: Vec<char> = source.chars().collect();
            convert(ctx, &chars, &docs[0], "")
        }
        _ => Err(ctx.error(
            loc_of(&docs[1]),
            "",
            "a stack file holds one yaml document, found several",
        )),
    }
}

fn convert(ctx: Ctx<'_>, src: &[char], y: &MarkedYaml<'_>, path: &str) -> Result<Node> {
    let loc = loc_of(y);
    let value = match &y.data {
        YamlData::Value(s) => scalar(s),
        YamlData::Representation(text, _, _) => scalar(&Scalar::parse_from_cow(text.clone())),
        YamlData::Sequence(items) => Value::Seq(
            items
                .iter()
                .enumerate()
                .map(|(i, item)| convert(ctx, src, item, &format!("{path}[{i}]")))
                .collect::<Result<_>>()?,
        ),
        YamlData::Mapping(map) => {
            let mut entries: Vec<(Key, Node)> = Vec::with_capacity(map.len());
            let mut merged: Vec<(Key, Node)> = Vec::new();
            for (k, v) in map {
                let key_loc = loc_of(k);
                let name = match &k.data {
                    YamlData::Value(s) => scalar_text(s),
                    YamlData::Representation(text, _, _) => Some(text.to_string()),
                    _ => None,
                };
                let Some(name) = name else {
                    return Err(ctx.error(key_loc, path, "mapping keys must be plain scalars"));
                };
                let child_path = join(path, &name);
                let node = convert(ctx, src, v, &child_path)?;
                if name == "<<" {
                    match node.value {
                        Value::Map(m) => merged.extend(m),
                        Value::Seq(seq) => {
                            for item in seq {
                                match item.value {
                                    Value::Map(m) => merged.extend(m),
                                    other => {
                                        return Err(ctx.error(
                                            item.loc,
                                            &child_path,
                                            format!(
                                                "merge key expects mappings, got {}",
                                                other.describe()
                                            ),
                                        ))
                                    }
                                }
                            }
                        }
                        other => {
                            return Err(ctx.error(
                                key_loc,
                                &child_path,
                                format!("merge key expects a mapping, got {}", other.describe()),
                            ))
                        }
                    }
                } else {
                    entries.push((Key { name, loc: key_loc }, node));
                }
            }
            for (k, v) in merged {
                if !entries.iter().any(|(e, _)| e.name == k.name) {
                    entries.push((k, v));
                }
            }
            Value::Map(entries)
        }
        YamlData::Tagged(_, inner) => return convert(ctx, src, inner, path),
        YamlData::Alias(_) => return Err(ctx.error(loc, path, "unresolved yaml alias")),
        YamlData::BadValue => return Err(ctx.error(loc, path, "invalid yaml value")),
    };
    let raw = matches!(value, Value::Int(_))
        .then(|| src.get(y.span.start.index()..y.span.end.index()))
        .flatten()
        .map(|c| c.iter().collect::<String>().trim().to_string());
    Ok(Node { loc, value, raw })
}

fn scalar(s: &Scalar<'_>) -> Value {
    match s {
        Scalar::Null => Value::Null,
        Scalar::Boolean(b) => Value::Bool(*b),
        Scalar::Integer(i) => Value::Int(*i),
        Scalar::FloatingPoint(f) => Value::Float(f.into_inner()),
        Scalar::String(s) => Value::Str(s.to_string()),
    }
}

fn scalar_text(s: &Scalar<'_>) -> Option<String> {
    Some(match s {
        Scalar::Null => return None,
        Scalar::Boolean(b) => b.to_string(),
        Scalar::Integer(i) => i.to_string(),
        Scalar::FloatingPoint(f) => f.into_inner().to_string(),
        Scalar::String(s) => s.to_string(),
    })
}

/// `a.b` from `a` and `b`; just `b` at the root.
pub(crate) fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}
