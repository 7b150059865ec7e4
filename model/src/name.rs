//! The one rule for the names of nodes, services, stacks, volumes, secrets and certificate
//! holders: 1-63 ASCII letters, digits, `-`, `_` or `.`, starting with a letter or digit.

/// The longest name.
pub const MAX_NAME_LEN: usize = 63;

/// A name that breaks the rule, with what it names.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{what} name `{name}` is invalid: use 1-63 letters, digits, `-`, `_` or `.`, starting with \
     a letter or digit"
)]
pub struct NameError {
    /// `service`, `node`, `stack`, ...
    pub what: String,
    pub name: String,
}

/// Checks `name`, the name of a `what`, against the rule.
pub fn check_name(what: &str, name: &str) -> Result<(), NameError> {
    let mut chars = name.chars();
    let ok = name.len() <= MAX_NAME_LEN
        && chars.next().is_some_and(|c| c.is_ascii_alphanumeric())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if ok {
        Ok(())
    } else {
        Err(NameError {
            what: what.to_string(),
            name: name.to_string(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_rule_for_every_name() {
        for good in ["a", "n1", "web-1", "db_0.primary", "9", &"a".repeat(63)] {
            assert_eq!(check_name("node", good), Ok(()), "{good:?}");
        }
        for bad in ["", "-x", "_x", ".x", "a b", "x/y", "é", &"a".repeat(64)] {
            assert!(check_name("node", bad).is_err(), "{bad:?}");
        }
        assert_eq!(
            check_name("service", "a b")
                .expect_err("invalid")
                .to_string(),
            "service name `a b` is invalid: use 1-63 letters, digits, `-`, `_` or `.`, starting \
             with a letter or digit"
        );
    }
}
