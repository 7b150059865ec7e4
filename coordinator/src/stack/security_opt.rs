//! Compose `security_opt`: the options Shoal honours, each as `KEY:VALUE` or `KEY=VALUE`.

use shoal_model::SecurityOpts;

use super::container_keys::seq;
use super::error::{Ctx, Result};
use super::fields;
use super::yaml::Node;

pub(crate) fn parse(ctx: Ctx<'_>, node: &Node, path: &str) -> Result<SecurityOpts> {
    let mut out = SecurityOpts::default();
    for (i, item) in seq(ctx, node, path)?.iter().enumerate() {
        let p = format!("{path}[{i}]");
        let text = fields::string(ctx, item, &p)?;
        apply(&mut out, &text).map_err(|e| ctx.error(item.loc, &p, e))?;
    }
    Ok(out)
}

fn apply(out: &mut SecurityOpts, text: &str) -> std::result::Result<(), String> {
    let (key, value) = match text.find([':', '=']) {
        Some(i) => (&text[..i], Some(&text[i + 1..])),
        None => (text, None),
    };
    match (key, value) {
        ("seccomp", Some("unconfined")) => out.seccomp_unconfined = true,
        ("seccomp", _) => {
            return Err(format!(
                "{text:?}: only seccomp:unconfined is supported (Shoal applies its own default \
                 filter; profile files are not read)"
            ))
        }
        ("apparmor", Some("unconfined")) => out.apparmor_unconfined = true,
        ("apparmor", _) => {
            return Err(format!(
                "{text:?}: only apparmor:unconfined is supported (Shoal loads no AppArmor profile)"
            ))
        }
        ("label", Some("disable")) => out.label_disable = true,
        ("label", _) => {
            return Err(format!(
                "{text:?}: only label:disable is supported (Shoal sets no SELinux label)"
            ))
        }
        ("no-new-privileges", None | Some("true")) => out.no_new_privileges = true,
        ("no-new-privileges", Some("false")) => out.no_new_privileges = false,
        _ => {
            return Err(format!(
                "unsupported security option {text:?} (expected seccomp:unconfined, \
                 apparmor:unconfined, label:disable or no-new-privileges[:true|false])"
            ))
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_separators_and_refusals() {
        let mut o = SecurityOpts::default();
        for t in [
            "seccomp:unconfined",
            "apparmor=unconfined",
            "label:disable",
            "no-new-privileges",
        ] {
            apply(&mut o, t).unwrap();
        }
        assert!(o.seccomp_unconfined && o.apparmor_unconfined && o.label_disable);
        assert!(o.no_new_privileges);
        apply(&mut o, "no-new-privileges:false").unwrap();
        assert!(!o.no_new_privileges);
        for bad in [
            "seccomp:/etc/p.json",
            "apparmor:docker-default",
            "label:type:x",
            "nope",
        ] {
            assert!(apply(&mut o, bad).is_err(), "{bad}");
        }
    }
}
