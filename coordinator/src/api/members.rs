//! The live members of services, as the agents' config templates see them (`members("db")`):
//! read from the replicated state, sent with the assignment sets of nodes running a templated
//! task. Pure: a function of the state.

use std::collections::BTreeSet;

use shoal_model::template::{host_of, Member, MembersByService, ServiceMembers};
use shoal_model::TaskState;

use crate::state::ClusterState;

/// Every service of the stacks of `services` (a service outside any stack: itself only), with
/// its live tasks: placed on a node and not finished, sorted by slot then node.
pub(crate) fn for_services(state: &ClusterState, services: &BTreeSet<&str>) -> MembersByService {
    let stacks: BTreeSet<Option<&str>> = services
        .iter()
        .filter_map(|s| state.services.get(*s))
        .map(|s| s.stack.as_deref())
        .collect();
    let mut out = MembersByService::new();
    for svc in state.services.values() {
        let wanted = match svc.stack.as_deref() {
            Some(stack) => stacks.contains(&Some(stack)),
            None => services.contains(svc.name.as_str()),
        };
        if !wanted {
            continue;
        }
        let mut members: Vec<Member> = state
            .tasks
            .values()
            .filter(|t| t.service == svc.name && !t.state.is_terminal())
            .filter(|t| t.state >= TaskState::Assigned)
            .filter_map(|t| {
                let node = t.node.as_deref()?;
                let address = state
                    .nodes
                    .get(node)
                    .map(|n| n.address.clone())
                    .unwrap_or_default();
                Some(Member {
                    node: node.to_string(),
                    host: host_of(&address),
                    address,
                    slot: t.slot,
                    healthy: t.state == TaskState::Running,
                })
            })
            .collect();
        members.sort_by(|a, b| (a.slot, &a.node).cmp(&(b.slot, &b.node)));
        out.insert(
            svc.name.clone(),
            ServiceMembers {
                stack: svc.stack.clone().unwrap_or_default(),
                members,
            },
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use shoal_model::{Node, Service, Task};

    fn node(name: &str, address: &str) -> Node {
        Node {
            name: name.into(),
            role: Default::default(),
            labels: Default::default(),
            availability: Default::default(),
            status: Default::default(),
            resources: Default::default(),
            address: address.into(),
            agent_version: String::new(),
            runtime_version: String::new(),
            registered_at: 0,
            last_heartbeat: 0,
            down_since: None,
        }
    }

    fn service(name: &str, stack: Option<&str>) -> Service {
        Service {
            name: name.into(),
            stack: stack.map(Into::into),
            spec: Default::default(),
            version: 1,
            created_at: 0,
            updated_at: 0,
            previous_spec: None,
            update: None,
            formed: false,
        }
    }

    fn task(id: &str, service: &str, slot: u32, node: &str, state: TaskState) -> Task {
        Task {
            id: id.into(),
            service: service.into(),
            slot,
            node: Some(node.into()),
            state,
            service_version: 1,
            desired_state: TaskState::Running,
            message: String::new(),
            exit_code: None,
            image_digest: None,
            spec: Default::default(),
            restart_policy: Default::default(),
            mode: Default::default(),
            created_at: 0,
            updated_at: 0,
        }
    }

    #[test]
    fn members_of_the_stack_services_follow_placement() {
        let mut s = ClusterState::default();
        for (n, a) in [
            ("n1", "10.0.0.1:7001"),
            ("n2", "10.0.0.2:7001"),
            ("n3", "10.0.0.3:7001"),
        ] {
            s.nodes.insert(n.into(), node(n, a));
        }
        for svc in [
            service("db", Some("os")),
            service("api", Some("os")),
            service("x", Some("other")),
        ] {
            s.services.insert(svc.name.clone(), svc);
        }
        for t in [
            task("d2", "db", 2, "n2", TaskState::Starting),
            task("d1", "db", 1, "n1", TaskState::Running),
            task("d0", "db", 1, "n3", TaskState::Shutdown),
            task("a1", "api", 1, "n3", TaskState::Running),
            task("x1", "x", 1, "n3", TaskState::Running),
        ] {
            s.tasks.insert(t.id.clone(), t);
        }
        let got = for_services(&s, &["api"].into());
        assert_eq!(got.keys().collect::<Vec<_>>(), ["api", "db"]);
        let db: Vec<(&str, &str, u32, bool)> = got["db"]
            .members
            .iter()
            .map(|m| (m.node.as_str(), m.host.as_str(), m.slot, m.healthy))
            .collect();
        assert_eq!(
            db,
            [("n1", "10.0.0.1", 1, true), ("n2", "10.0.0.2", 2, false)]
        );
        assert_eq!(got["db"].stack, "os");

        // Slot 2 moves to n3: the next assignment set says so.
        if let Some(t) = s.tasks.get_mut("d2") {
            t.state = TaskState::Shutdown;
        }
        let moved = task("d3", "db", 2, "n3", TaskState::Running);
        s.tasks.insert(moved.id.clone(), moved);
        let got = for_services(&s, &["api"].into());
        let addresses: Vec<&str> = got["db"]
            .members
            .iter()
            .map(|m| m.address.as_str())
            .collect();
        assert_eq!(addresses, ["10.0.0.1:7001", "10.0.0.3:7001"]);
    }
}
