//! Exactly one copy on this node: what a task's container holds that no second copy may share
//! (its slot, its host ports, the storage it writes), read from a task or from the labels of a
//! container, and the checks the reconciler makes before it starts anything. Pure.
//!
//! Rules (see [`Guard`]):
//! - a task is not started while another container of the same slot of its service exists
//!   here, whatever its state (the old copy of a replaced task is removed first);
//! - nor while a container that is leaving (unassigned, or told to stop) still runs and binds
//!   one of its host ports or writes to one of its volumes or bind sources;
//! - no container is created while the node holds as many containers as it has assigned tasks:
//!   the count of containers never exceeds the count of assigned tasks because of the agent.

use std::collections::{BTreeMap, BTreeSet};

use shoal_model::{MountKind, Task, TaskState};

use crate::runtime::{labels, ContainerInfo, ContainerStatus};

/// What one copy of a task holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claims {
    pub service: String,
    /// `None` when a container carries no slot label (made by an older agent): it then
    /// conflicts with every slot of its service.
    pub slot: Option<u32>,
    pub host_ports: BTreeSet<u16>,
    /// `volume:NAME` or `bind:PATH`, writable ones only.
    pub data: BTreeSet<String>,
}

impl Claims {
    /// What `task`'s container will hold.
    pub fn of_task(task: &Task) -> Claims {
        Claims {
            service: task.service.clone(),
            slot: Some(task.slot),
            host_ports: task.spec.host_ports.iter().copied().collect(),
            data: data_of(task),
        }
    }

    /// What a container holds, from its labels; `None` for a container that is not a task's.
    pub fn of_container(c: &ContainerInfo) -> Option<Claims> {
        let service = c.labels.get(labels::SERVICE)?.clone();
        c.labels.get(labels::TASK_ID)?;
        let list = |key: &str| -> Vec<String> {
            c.labels
                .get(key)
                .map(|v| {
                    v.split(',')
                        .filter(|s| !s.is_empty())
                        .map(str::to_owned)
                        .collect()
                })
                .unwrap_or_default()
        };
        Some(Claims {
            service,
            slot: c.labels.get(labels::SLOT).and_then(|s| s.parse().ok()),
            host_ports: list(labels::HOST_PORTS)
                .iter()
                .filter_map(|p| p.parse().ok())
                .collect(),
            data: list(labels::DATA).into_iter().collect(),
        })
    }

    /// Why a copy with these claims must wait for `other`, if it must.
    fn conflict(&self, other: &Claims, other_leaving_and_running: bool) -> Option<String> {
        if self.service == other.service && (other.slot.is_none() || other.slot == self.slot) {
            return Some(match self.slot {
                Some(0) => format!("the other copy of {} on this node", self.service),
                Some(n) => format!("the other copy of {} slot {n}", self.service),
                None => format!("the other copy of {}", self.service),
            });
        }
        if !other_leaving_and_running {
            return None;
        }
        if let Some(p) = self.host_ports.intersection(&other.host_ports).next() {
            return Some(format!("host port {p}"));
        }
        if let Some(d) = self.data.intersection(&other.data).next() {
            return Some(d.clone());
        }
        None
    }
}

/// The labels that record `task`'s claims on its container.
pub fn claim_labels(task: &Task) -> BTreeMap<String, String> {
    let join = |v: Vec<String>| v.join(",");
    let mut out = BTreeMap::new();
    out.insert(labels::SLOT.to_owned(), task.slot.to_string());
    let ports: Vec<String> = task.spec.host_ports.iter().map(u16::to_string).collect();
    if !ports.is_empty() {
        out.insert(labels::HOST_PORTS.to_owned(), join(ports));
    }
    let data: Vec<String> = data_of(task).into_iter().collect();
    if !data.is_empty() {
        out.insert(labels::DATA.to_owned(), join(data));
    }
    out
}

fn data_of(task: &Task) -> BTreeSet<String> {
    task.spec
        .mounts
        .iter()
        .filter(|m| !m.read_only)
        .filter_map(|m| match m.kind {
            MountKind::Volume => Some(format!("volume:{}", m.source)),
            MountKind::Bind => Some(format!("bind:{}", m.source)),
            MountKind::Tmpfs => None,
        })
        .collect()
}

/// Another copy the reconciler must respect: a container or a start in flight.
#[derive(Debug)]
struct Holder {
    task_id: String,
    claims: Claims,
    /// Unassigned or told to stop, and running.
    leaving_and_running: bool,
}

/// The checks of one reconcile pass; starts it allows are recorded as it goes.
#[derive(Debug)]
pub struct Guard {
    holders: Vec<Holder>,
    /// Containers (and creations in flight) on the node.
    present: usize,
    /// Tasks in the assignment set.
    assigned: usize,
}

impl Guard {
    /// The guard for `observed` containers, the `desired` tasks and the `busy` ones.
    pub fn new(desired: &[Task], observed: &[ContainerInfo], busy: &BTreeSet<String>) -> Guard {
        let by_id: BTreeMap<&str, &Task> = desired.iter().map(|t| (t.id.as_str(), t)).collect();
        let mut holders = Vec::new();
        let mut listed = BTreeSet::new();
        let mut present = 0;
        for c in observed {
            let Some(task_id) = c.labels.get(labels::TASK_ID) else {
                continue;
            };
            present += 1;
            listed.insert(task_id.as_str());
            let task = by_id.get(task_id.as_str());
            let claims = Claims::of_container(c).or_else(|| task.map(|t| Claims::of_task(t)));
            let Some(claims) = claims else { continue };
            let leaving = task.is_none_or(|t| t.desired_state > TaskState::Running);
            holders.push(Holder {
                task_id: task_id.clone(),
                claims,
                leaving_and_running: leaving && c.status == ContainerStatus::Running,
            });
        }
        // Actions in flight on tasks whose container is not listed yet (a creation).
        for t in desired {
            if busy.contains(&t.id) && !listed.contains(t.id.as_str()) {
                present += 1;
                holders.push(Holder {
                    task_id: t.id.clone(),
                    claims: Claims::of_task(t),
                    leaving_and_running: false,
                });
            }
        }
        Guard {
            holders,
            present,
            assigned: desired.len(),
        }
    }

    /// Why `task` may not start now, if it may not. `creates` when starting it makes a new
    /// container (then the count rule applies too).
    pub fn blocker(&self, task: &Task, creates: bool) -> Option<String> {
        let mine = Claims::of_task(task);
        for h in self.holders.iter().filter(|h| h.task_id != task.id) {
            if let Some(what) = mine.conflict(&h.claims, h.leaving_and_running) {
                return Some(format!("waiting for task {} to stop ({what})", h.task_id));
            }
        }
        if creates && self.present >= self.assigned {
            return Some(format!(
                "waiting for unassigned containers to go ({} containers for {} assigned tasks)",
                self.present, self.assigned
            ));
        }
        None
    }

    /// `task` is being started (a container created when `creates`).
    pub fn started(&mut self, task: &Task, creates: bool) {
        if creates {
            self.present += 1;
        }
        self.holders.push(Holder {
            task_id: task.id.clone(),
            claims: Claims::of_task(task),
            leaving_and_running: false,
        });
    }

    /// Containers (and creations in flight) beyond the assigned tasks: 0 when the node is
    /// within its assignment.
    pub fn over_assignment(&self) -> usize {
        self.present.saturating_sub(self.assigned)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use shoal_model::{ContainerSpec, Mount};

    fn task(id: &str, service: &str, slot: u32) -> Task {
        Task {
            id: id.into(),
            service: service.into(),
            service_version: 1,
            slot,
            node: Some("n1".into()),
            desired_state: TaskState::Running,
            state: TaskState::Assigned,
            message: String::new(),
            exit_code: None,
            spec: ContainerSpec::default(),
            restart_policy: Default::default(),
            mode: Default::default(),
            created_at: 0,
            updated_at: 0,
            image_digest: None,
        }
    }

    fn container(t: &Task, status: ContainerStatus) -> ContainerInfo {
        let mut labels = claim_labels(t);
        labels.insert(labels::TASK_ID.into(), t.id.clone());
        labels.insert(labels::SERVICE.into(), t.service.clone());
        ContainerInfo {
            id: t.id.clone(),
            labels,
            pid: None,
            status,
            exit_code: None,
        }
    }

    #[test]
    fn labels_round_trip() {
        let mut t = task("a", "db", 2);
        t.spec.host_ports = vec![3306, 4567];
        t.spec.mounts = vec![
            Mount {
                kind: MountKind::Volume,
                source: "mysql".into(),
                target: "/var/lib/mysql".into(),
                read_only: false,
                propagation: None,
                create_host_path: false,
            },
            Mount {
                kind: MountKind::Bind,
                source: "/etc/kolla".into(),
                target: "/etc/kolla".into(),
                read_only: true,
                propagation: None,
                create_host_path: false,
            },
        ];
        let c = container(&t, ContainerStatus::Running);
        assert_eq!(Claims::of_container(&c), Some(Claims::of_task(&t)));
        assert_eq!(
            Claims::of_task(&t).data,
            ["volume:mysql".to_string()].into()
        );
    }

    #[test]
    fn a_replacement_waits_for_the_old_copy_of_its_slot() {
        let old = task("old", "web", 3);
        let new = task("new", "web", 3);
        let other_slot = task("other", "web", 4);
        for status in [
            ContainerStatus::Running,
            ContainerStatus::Stopped,
            ContainerStatus::Created,
        ] {
            let observed = [container(&old, status)];
            let desired = [new.clone(), other_slot.clone()];
            let g = Guard::new(&desired, &observed, &BTreeSet::new());
            let why = g.blocker(&new, true).expect("blocked");
            assert!(why.contains("task old") && why.contains("slot 3"), "{why}");
            // Another slot is free (two assigned tasks, one container).
            assert_eq!(g.blocker(&other_slot, true), None);
        }
        // A container of an older agent has no slot label: it blocks every slot of its service.
        let mut unlabelled = container(&old, ContainerStatus::Running);
        unlabelled.labels.remove(labels::SLOT);
        let desired = [other_slot.clone(), task("x", "x", 1)];
        let g = Guard::new(&desired, &[unlabelled], &BTreeSet::new());
        assert!(g.blocker(&other_slot, true).is_some());
        assert_eq!(g.blocker(&desired[1], true), None);
    }

    #[test]
    fn leaving_containers_keep_their_ports_and_data_until_they_stop() {
        let mut old = task("old", "mariadb-old", 1);
        old.spec.host_ports = vec![3306];
        let mut new = task("new", "mariadb", 1);
        new.spec.host_ports = vec![3306];
        let running = [container(&old, ContainerStatus::Running)];
        // Unassigned and running: wait.
        let desired = [new.clone(), task("spare", "s", 1)];
        let g = Guard::new(&desired, &running, &BTreeSet::new());
        assert!(g.blocker(&new, false).unwrap().contains("host port 3306"));
        // Told to stop and still running: wait.
        let mut stopping = old.clone();
        stopping.desired_state = TaskState::Shutdown;
        let g = Guard::new(&[new.clone(), stopping], &running, &BTreeSet::new());
        assert!(g.blocker(&new, false).is_some());
        // Stopped: the port is free.
        let stopped = [container(&old, ContainerStatus::Stopped)];
        let g = Guard::new(&desired, &stopped, &BTreeSet::new());
        assert_eq!(g.blocker(&new, false), None);
        // An assigned running task of another service on the same port is the scheduler's
        // business, not a leaving copy.
        let g = Guard::new(&[new.clone(), old.clone()], &running, &BTreeSet::new());
        assert_eq!(g.blocker(&new, false), None);
    }

    #[test]
    fn never_more_containers_than_assigned_tasks() {
        let a = task("a", "s", 1);
        let b = task("b", "s", 2);
        let orphan = task("orphan", "t", 1);
        // One unassigned container and two assigned tasks without one: one may be created.
        let observed = [container(&orphan, ContainerStatus::Running)];
        let desired = [a.clone(), b.clone()];
        let mut g = Guard::new(&desired, &observed, &BTreeSet::new());
        assert_eq!(g.over_assignment(), 0);
        assert_eq!(g.blocker(&a, true), None);
        g.started(&a, true);
        assert!(g.blocker(&b, true).unwrap().contains("2 containers for 2"));
        // Starting an existing container creates nothing.
        assert_eq!(g.blocker(&b, false), None);
        // A creation in flight counts.
        let g = Guard::new(&desired, &observed, &["a".to_string()].into());
        assert!(g.blocker(&b, true).is_some());
        // Over the assignment: reported.
        let g = Guard::new(
            std::slice::from_ref(&a),
            &observed,
            &["a".to_string()].into(),
        );
        assert_eq!(g.over_assignment(), 1);
    }

    #[test]
    fn a_task_starting_in_this_pass_claims_its_slot() {
        let first = task("first", "s", 1);
        let second = task("second", "s", 1);
        let desired = [first.clone(), second.clone()];
        let mut g = Guard::new(&desired, &[], &BTreeSet::new());
        assert_eq!(g.blocker(&first, true), None);
        g.started(&first, true);
        assert!(g.blocker(&second, true).unwrap().contains("task first"));
    }
}
