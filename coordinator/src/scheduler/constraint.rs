//! Placement constraints (`node.labels.role == controller`): parsing, matching, and the check
//! that a set of them could be met by some node at all.

use std::collections::BTreeMap;

use shoal_model::NodeRole;

/// The node attribute a constraint looks at.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ConstraintField {
    /// `node.hostname` (also `node.name`): the node's name.
    Hostname,
    /// `node.role`: `worker` or `coordinator` (`manager` is accepted as Swarm's word for it).
    Role,
    /// `node.labels.KEY`.
    Label(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ConstraintOp {
    Eq,
    Ne,
}

/// One parsed constraint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Constraint {
    pub field: ConstraintField,
    pub op: ConstraintOp,
    /// Expected value; for [`ConstraintField::Role`] the canonical role name.
    pub value: String,
    /// The constraint as written, for messages.
    pub text: String,
}

impl Constraint {
    /// Parses `FIELD == VALUE` or `FIELD != VALUE`.
    pub fn parse(text: &str) -> Result<Self, String> {
        let (lhs, op, rhs) = if let Some((l, r)) = text.split_once("==") {
            (l, ConstraintOp::Eq, r)
        } else if let Some((l, r)) = text.split_once("!=") {
            (l, ConstraintOp::Ne, r)
        } else {
            return Err(format!(
                "constraint {text:?}: expected `FIELD == VALUE` or `FIELD != VALUE`"
            ));
        };
        let (lhs, rhs) = (lhs.trim(), rhs.trim());
        if rhs.is_empty() || rhs.contains("==") || rhs.contains("!=") {
            return Err(format!(
                "constraint {text:?}: expected one value after the operator"
            ));
        }
        let field = match lhs {
            "node.hostname" | "node.name" => ConstraintField::Hostname,
            "node.role" => ConstraintField::Role,
            _ => match lhs.strip_prefix("node.labels.") {
                Some(key) if !key.is_empty() && !key.contains(char::is_whitespace) => {
                    ConstraintField::Label(key.to_string())
                }
                _ => {
                    return Err(format!(
                        "constraint {text:?}: unknown field {lhs:?} (expected node.hostname, \
                         node.role or node.labels.KEY)"
                    ))
                }
            },
        };
        let value = match field {
            ConstraintField::Role => match parse_role(rhs) {
                Some(role) => role_name(role).to_string(),
                None => {
                    return Err(format!(
                        "constraint {text:?}: unknown node.role {rhs:?} (expected worker or coordinator)"
                    ))
                }
            },
            _ => rhs.to_string(),
        };
        Ok(Self {
            field,
            op,
            value,
            text: text.trim().to_string(),
        })
    }

    /// Whether a node with this name, role and labels satisfies the constraint.
    pub fn matches(&self, name: &str, role: NodeRole, labels: &BTreeMap<String, String>) -> bool {
        let equal = match &self.field {
            ConstraintField::Hostname => name == self.value,
            ConstraintField::Role => role_name(role) == self.value,
            ConstraintField::Label(key) => labels.get(key).is_some_and(|v| *v == self.value),
        };
        equal == (self.op == ConstraintOp::Eq)
    }
}

/// `worker`, `coordinator` (or Swarm's `manager`).
pub fn parse_role(s: &str) -> Option<NodeRole> {
    match s {
        "worker" => Some(NodeRole::Worker),
        "coordinator" | "manager" => Some(NodeRole::Coordinator),
        _ => None,
    }
}

pub fn role_name(role: NodeRole) -> &'static str {
    match role {
        NodeRole::Worker => "worker",
        NodeRole::Coordinator => "coordinator",
    }
}

/// Errors when no node could satisfy all `constraints` together, whatever its labels:
/// two different `==` values for one field, `== v` with `!= v`, or every role excluded.
pub fn check_satisfiable(constraints: &[Constraint]) -> Result<(), String> {
    for (i, a) in constraints.iter().enumerate() {
        for b in &constraints[i + 1..] {
            if a.field != b.field {
                continue;
            }
            let clash = match (a.op, b.op) {
                (ConstraintOp::Eq, ConstraintOp::Eq) => a.value != b.value,
                (ConstraintOp::Eq, ConstraintOp::Ne) | (ConstraintOp::Ne, ConstraintOp::Eq) => {
                    a.value == b.value
                }
                (ConstraintOp::Ne, ConstraintOp::Ne) => false,
            };
            if clash {
                return Err(format!(
                    "constraints {:?} and {:?} contradict each other: no node can satisfy both",
                    a.text, b.text
                ));
            }
        }
    }
    let all_roles_excluded = [NodeRole::Worker, NodeRole::Coordinator]
        .iter()
        .all(|role| {
            constraints.iter().any(|c| {
                c.field == ConstraintField::Role
                    && c.op == ConstraintOp::Ne
                    && c.value == role_name(*role)
            })
        });
    if all_roles_excluded {
        return Err("constraints exclude every node role: no node can satisfy them".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn parses_and_matches() {
        let c = Constraint::parse("node.labels.role == controller").unwrap();
        assert_eq!(c.field, ConstraintField::Label("role".into()));
        assert!(c.matches("n1", NodeRole::Worker, &labels(&[("role", "controller")])));
        assert!(!c.matches("n1", NodeRole::Worker, &labels(&[("role", "compute")])));
        assert!(!c.matches("n1", NodeRole::Worker, &labels(&[])));

        let ne = Constraint::parse("node.labels.role!=compute").unwrap();
        assert!(
            ne.matches("n1", NodeRole::Worker, &labels(&[])),
            "missing label satisfies !="
        );

        let host = Constraint::parse("node.hostname == ctl-1").unwrap();
        assert!(host.matches("ctl-1", NodeRole::Worker, &labels(&[])));

        let role = Constraint::parse("node.role == manager").unwrap();
        assert_eq!(role.value, "coordinator");
        assert!(role.matches("x", NodeRole::Coordinator, &labels(&[])));
    }

    #[test]
    fn rejects_malformed_and_impossible() {
        for bad in [
            "node.labels.role",
            "node.labels. == x",
            "node.os == linux",
            "node.role == boss",
            "a == ",
        ] {
            assert!(Constraint::parse(bad).is_err(), "{bad}");
        }
        let parse = |v: &[&str]| {
            v.iter()
                .map(|s| Constraint::parse(s).unwrap())
                .collect::<Vec<_>>()
        };
        assert!(
            check_satisfiable(&parse(&["node.role == worker", "node.role == manager"])).is_err()
        );
        assert!(check_satisfiable(&parse(&["node.labels.a == x", "node.labels.a != x"])).is_err());
        assert!(
            check_satisfiable(&parse(&["node.role != worker", "node.role != coordinator"]))
                .is_err()
        );
        assert!(check_satisfiable(&parse(&["node.labels.a == x", "node.labels.b != x"])).is_ok());
    }
}
