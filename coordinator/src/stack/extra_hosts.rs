//! Compose `extra_hosts`: `NAME:ADDRESS` or `NAME=ADDRESS` entries, or a `NAME: ADDRESS` mapping.

use std::net::IpAddr;

use shoal_model::ExtraHost;

use super::error::{Ctx, Result};
use super::fields;
use super::yaml::{join, Node, Value};

pub(crate) fn parse(ctx: Ctx<'_>, node: &Node, path: &str) -> Result<Vec<ExtraHost>> {
    let mut out = Vec::new();
    match &node.value {
        Value::Map(_) => {
            for (k, v) in fields::entries(ctx, node, path)? {
                let p = join(path, &k.name);
                let address = fields::scalar_text(ctx, v, &p)?;
                out.push(entry(&k.name, &address).map_err(|e| ctx.error(k.loc, &p, e))?);
            }
        }
        Value::Seq(items) => {
            for (i, item) in items.iter().enumerate() {
                let p = format!("{path}[{i}]");
                let s = fields::string(ctx, item, &p)?;
                // `=` first: an IPv6 address holds colons; with `:` the name ends at the first.
                let split = s.split_once('=').or_else(|| s.split_once(':'));
                let Some((name, address)) = split else {
                    return Err(ctx.error(
                        item.loc,
                        &p,
                        format!("expected NAME:ADDRESS or NAME=ADDRESS, got {s:?}"),
                    ));
                };
                out.push(entry(name, address).map_err(|e| ctx.error(item.loc, &p, e))?);
            }
        }
        other => {
            return Err(ctx.error(
                node.loc,
                path,
                format!(
                    "expected a list of NAME:ADDRESS or a mapping, got {}",
                    other.describe()
                ),
            ))
        }
    }
    Ok(out)
}

fn entry(name: &str, address: &str) -> std::result::Result<ExtraHost, String> {
    let name = name.trim();
    if name.is_empty() || name.chars().any(|c| c.is_whitespace() || c == '#') {
        return Err(format!("bad host name {name:?}"));
    }
    let address = address.trim();
    if address == "host-gateway" {
        return Err(
            "`host-gateway` names Docker's bridge gateway; Shoal has no bridge network (give \
             the address)"
                .to_owned(),
        );
    }
    let bare = address
        .strip_prefix('[')
        .and_then(|a| a.strip_suffix(']'))
        .unwrap_or(address);
    let ip: IpAddr = bare
        .parse()
        .map_err(|_| format!("host {name}: {address:?} is not an IP address"))?;
    Ok(ExtraHost {
        name: name.to_owned(),
        address: ip.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_addresses() {
        let e = entry("db", "10.0.0.5").unwrap();
        assert_eq!((e.name.as_str(), e.address.as_str()), ("db", "10.0.0.5"));
        assert_eq!(entry("v6", "[::1]").unwrap().address, "::1");
        assert_eq!(entry("v6", "::1").unwrap().address, "::1");
        assert!(entry("db", "host-gateway").is_err());
        assert!(entry("db", "example.com").is_err());
        assert!(entry("", "10.0.0.5").is_err());
        assert!(entry("a b", "10.0.0.5").is_err());
    }
}
