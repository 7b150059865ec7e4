//! The inputs of the node's templated configs (`x-shoal-template: true`): which configs are
//! templates and the services' live members, both from the latest assignment set, and this
//! node's own values. Rendering itself is `shoal_model::template::render` (pure).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};

use shoal_model::template::{host_of, stack_members, MembersByService, NodeVars, TemplateVars};
use shoal_model::{Node, NodeRole, Task};

#[derive(Debug, Default)]
struct Inputs {
    templated: BTreeSet<String>,
    members: MembersByService,
}

/// Which configs are templates, and the members they may name. Shared by the session (writer)
/// and the supervisor (reader). Holds no config value.
#[derive(Debug, Clone, Default)]
pub struct TemplateStore(Arc<Mutex<Inputs>>);

impl TemplateStore {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inputs> {
        // Each replace is one store: a panic elsewhere cannot leave it half-updated.
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Replaces everything with what the latest assignment set says.
    pub fn replace(&self, templated: BTreeSet<String>, members: MembersByService) {
        *self.lock() = Inputs { templated, members };
    }

    /// Whether config `name` is rendered per task.
    pub fn is_template(&self, name: &str) -> bool {
        self.lock().templated.contains(name)
    }

    /// What a template of `task`, on the node `node` describes, reads.
    pub fn vars(&self, node: &NodeVars, task: &Task) -> TemplateVars {
        let (stack, members) = stack_members(&self.lock().members, &task.service)
            .unwrap_or_else(|| (String::new(), BTreeMap::new()));
        TemplateVars {
            node: node.clone(),
            task_slot: task.slot,
            task_id: task.id.clone(),
            service_name: task.service.clone(),
            service_version: task.service_version,
            stack,
            members,
        }
    }
}

/// This node as its templates see it: name, advertised address, labels and role.
pub fn node_vars(node: &Node) -> NodeVars {
    NodeVars {
        name: node.name.clone(),
        host: host_of(&node.address),
        address: node.address.clone(),
        labels: node.labels.clone(),
        role: match node.role {
            NodeRole::Worker => "worker",
            NodeRole::Coordinator => "coordinator",
        }
        .to_string(),
    }
}
