//! `shoalctl node`: list and inspect nodes; operator changes (availability, labels, removal).

use anyhow::Context;
use clap::Subcommand;
use shoal_model::api::UserCommand;
use shoal_model::{Node, NodeAvailability};

use crate::client::Client;
use crate::exit::NotFound;
use crate::output::{self, name_of};
use crate::{api, Format};

#[derive(Subcommand, Debug)]
pub enum NodeCmd {
    /// List nodes.
    Ls,
    /// Show one node.
    Inspect { name: String },
    /// Node labels.
    #[command(subcommand)]
    Label(LabelCmd),
    /// Move the node's replicated tasks elsewhere and stop its global ones.
    Drain { name: String },
    /// Place nothing new on the node.
    Pause { name: String },
    /// Make the node schedulable again.
    Activate { name: String },
    /// Forget a node that is down. Refused while it may still run tasks of services with data,
    /// unless `--force`.
    Rm {
        name: String,
        /// The node is gone for good (powered off, its containers dead): start the tasks of its
        /// services with data elsewhere.
        #[arg(long)]
        force: bool,
    },
}

#[derive(Subcommand, Debug)]
pub enum LabelCmd {
    /// Add or change a label: `shoalctl node label add NODE role=controller`.
    Add { node: String, label: String },
    /// Remove a label.
    Rm { node: String, key: String },
}

pub async fn run(
    client: &mut Client,
    cmd: &NodeCmd,
    fmt: Format,
    stale: bool,
) -> anyhow::Result<String> {
    let (name, change) = match cmd {
        NodeCmd::Ls => return Ok(render_nodes(fmt, &api::nodes(client, stale).await?)),
        NodeCmd::Inspect { name } => {
            let nodes = api::nodes(client, stale).await?;
            let node = nodes
                .iter()
                .find(|n| &n.name == name)
                .ok_or_else(|| NotFound(format!("node `{name}` not found")))?;
            return Ok(output::json(node));
        }
        NodeCmd::Rm { name, force } => {
            let cmd = UserCommand::RemoveNode {
                name: name.clone(),
                force: *force,
            };
            api::apply_new(client, &cmd).await?;
            return Ok(format!("node {name} removed\n"));
        }
        NodeCmd::Label(LabelCmd::Add { node, label }) => {
            let (k, v) = label.split_once('=').context("expected KEY=VALUE")?;
            (node, Change::labels(vec![(k.into(), v.into())], vec![]))
        }
        NodeCmd::Label(LabelCmd::Rm { node, key }) => {
            (node, Change::labels(vec![], vec![key.clone()]))
        }
        NodeCmd::Drain { name } => (name, Change::availability(NodeAvailability::Drain)),
        NodeCmd::Pause { name } => (name, Change::availability(NodeAvailability::Pause)),
        NodeCmd::Activate { name } => (name, Change::availability(NodeAvailability::Active)),
    };
    let said = change.said(name);
    api::apply_new(client, &change.command(name)).await?;
    Ok(said)
}

/// An operator change to a node: its availability or its labels.
struct Change {
    availability: Option<NodeAvailability>,
    add_labels: Vec<(String, String)>,
    remove_labels: Vec<String>,
}

impl Change {
    fn availability(a: NodeAvailability) -> Self {
        Self {
            availability: Some(a),
            add_labels: vec![],
            remove_labels: vec![],
        }
    }

    fn labels(add_labels: Vec<(String, String)>, remove_labels: Vec<String>) -> Self {
        Self {
            availability: None,
            add_labels,
            remove_labels,
        }
    }

    fn command(self, name: &str) -> UserCommand {
        UserCommand::UpdateNode {
            name: name.to_string(),
            availability: self.availability,
            add_labels: self.add_labels,
            remove_labels: self.remove_labels,
        }
    }

    /// What shoalctl prints once the change is applied.
    fn said(&self, name: &str) -> String {
        match self.availability {
            Some(a) => format!("node {name}: availability {}\n", name_of(&a)),
            None => format!("node {name} updated\n"),
        }
    }
}

/// `node ls`.
pub fn render_nodes(fmt: Format, nodes: &[Node]) -> String {
    let header = ["NAME", "ROLE", "STATUS", "AVAILABILITY", "ADDRESS"];
    output::list(fmt, nodes, &header, |n| {
        vec![
            n.name.clone(),
            name_of(&n.role),
            name_of(&n.status),
            name_of(&n.availability),
            n.address.clone(),
        ]
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use shoal_model::{NodeResources, NodeRole, NodeStatus};

    fn node(name: &str, status: NodeStatus, availability: NodeAvailability) -> Node {
        Node {
            name: name.into(),
            role: NodeRole::Worker,
            labels: Default::default(),
            availability,
            status,
            resources: NodeResources::default(),
            address: format!("127.0.0.1:70{}", name.len()),
            agent_version: "0.1.0".into(),
            runtime_version: "1.6.20".into(),
            registered_at: 0,
            last_heartbeat: 0,
            down_since: None,
        }
    }

    #[test]
    fn nodes_table() {
        let nodes = [
            node("n1", NodeStatus::Ready, NodeAvailability::Active),
            node("node-2", NodeStatus::Down, NodeAvailability::Drain),
        ];
        assert_eq!(
            render_nodes(Format::Table, &nodes),
            "NAME    ROLE    STATUS  AVAILABILITY  ADDRESS\n\
             n1      worker  ready   active        127.0.0.1:702\n\
             node-2  worker  down    drain         127.0.0.1:706\n"
        );
    }

    #[test]
    fn availability_changes_say_the_new_availability() {
        let c = Change::availability(NodeAvailability::Drain);
        assert_eq!(c.said("n1"), "node n1: availability drain\n");
        let c = Change::labels(vec![("zone".into(), "a".into())], vec![]);
        assert_eq!(c.said("n1"), "node n1 updated\n");
        assert_eq!(
            c.command("n1"),
            UserCommand::UpdateNode {
                name: "n1".into(),
                availability: None,
                add_labels: vec![("zone".into(), "a".into())],
                remove_labels: vec![],
            }
        );
    }
}
