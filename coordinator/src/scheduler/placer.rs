//! One scheduling pass: the state that placements update, and the per-requirements candidate heaps.
//!
//! Each distinct (service, requirements) group keeps a min-heap of its statically eligible nodes
//! keyed by [`Rank`]. Ranks only grow during a pass, so heap entries are refreshed lazily: a popped
//! entry whose rank is out of date is pushed back with its current rank. A node failing a dynamic
//! filter leaves the group's heap for good (nodes only fill up). A placement thus costs a few heap
//! operations instead of a scan of every node.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, HashMap};
use std::sync::Arc;

use super::filters::{dynamic_filter, dynamic_ok, static_filter, Compiled, NodeLoad, Reasons};
use super::rank::{Rank, Spread};
use super::view::{ClusterView, Decision, NodeView, PendingTask, Requirements};
use super::MAX_SPREAD_PREFERENCES;

/// Tasks of one service with one set of requirements.
struct Group {
    service: usize,
    req: Compiled,
    spread: Vec<Spread>,
    heap: BinaryHeap<Reverse<Rank>>,
    /// Once the heap is empty, the reasons every later task of the group gets.
    exhausted: Option<Vec<String>>,
}

/// Per service (by name) touched by this pass.
struct ServiceState {
    /// Tasks of the service per node (by name order).
    per_node: Vec<u32>,
    groups: Vec<usize>,
}

pub(crate) struct Placer<'v> {
    /// Nodes in name order.
    nodes: Vec<&'v NodeView>,
    by_name: BTreeMap<&'v str, usize>,
    loads: Vec<NodeLoad>,
    /// Existing tasks per service name: the nodes they run on.
    existing: HashMap<&'v str, Vec<u32>>,
    services: Vec<ServiceState>,
    service_ids: HashMap<String, usize>,
    groups: Vec<Group>,
    group_ids: HashMap<(usize, *const Requirements), usize>,
}

impl<'v> Placer<'v> {
    pub fn new(view: &'v ClusterView) -> Self {
        let mut nodes: Vec<&NodeView> = view.nodes.iter().collect();
        nodes.sort_by(|a, b| a.name.cmp(&b.name));
        let by_name = nodes
            .iter()
            .enumerate()
            .map(|(i, n)| (n.name.as_str(), i))
            .collect();
        let loads = nodes.iter().map(|n| NodeLoad::new(n)).collect();
        let mut existing: HashMap<&str, Vec<u32>> = HashMap::new();
        for (i, n) in nodes.iter().enumerate() {
            for t in &n.tasks {
                existing
                    .entry(t.service.as_str())
                    .or_default()
                    .push(i as u32);
            }
        }
        Self {
            nodes,
            by_name,
            loads,
            existing,
            services: Vec::new(),
            service_ids: HashMap::new(),
            groups: Vec::new(),
            group_ids: HashMap::new(),
        }
    }

    fn service_id(&mut self, name: &str) -> usize {
        if let Some(&id) = self.service_ids.get(name) {
            return id;
        }
        let mut per_node = vec![0u32; self.nodes.len()];
        if let Some(list) = self.existing.get(name) {
            for &n in list {
                per_node[n as usize] += 1;
            }
        }
        let id = self.services.len();
        self.services.push(ServiceState {
            per_node,
            groups: Vec::new(),
        });
        self.service_ids.insert(name.to_string(), id);
        id
    }

    fn group_id(&mut self, service: &str, req: &Arc<Requirements>) -> usize {
        let sid = self.service_id(service);
        let key = (sid, Arc::as_ptr(req));
        if let Some(&g) = self.group_ids.get(&key) {
            return g;
        }
        let compiled = Compiled::new(req);
        let per_node = &self.services[sid].per_node;
        let spread: Vec<Spread> = req
            .spread_labels
            .iter()
            .take(MAX_SPREAD_PREFERENCES)
            .map(|label| Spread::new(label, &self.nodes, per_node))
            .collect();
        let mut entries = Vec::new();
        for (i, node) in self.nodes.iter().enumerate() {
            if static_filter(node, &compiled).is_none() {
                entries.push(Reverse(rank_of(i, per_node, &spread, &self.loads)));
            }
        }
        let gid = self.groups.len();
        self.groups.push(Group {
            service: sid,
            req: compiled,
            spread,
            heap: BinaryHeap::from(entries),
            exhausted: None,
        });
        self.services[sid].groups.push(gid);
        self.group_ids.insert(key, gid);
        gid
    }

    pub fn place(&mut self, task: &PendingTask) -> Decision {
        let gid = self.group_id(&task.service, &task.requirements);
        let chosen = match &task.node {
            Some(pinned) => self.pick_pinned(gid, pinned),
            None => self.pick(gid),
        };
        match chosen {
            Ok(node) => {
                self.commit(gid, node);
                Decision::Place {
                    task_id: task.id.clone(),
                    node: self.nodes[node].name.clone(),
                }
            }
            Err(reasons) => Decision::Unplaceable {
                task_id: task.id.clone(),
                reasons,
            },
        }
    }

    /// The best node of the group's heap, or the reasons none fits.
    fn pick(&mut self, gid: usize) -> Result<usize, Vec<String>> {
        let group = &mut self.groups[gid];
        let per_node = &self.services[group.service].per_node;
        while let Some(Reverse(entry)) = group.heap.pop() {
            let node = entry.node as usize;
            let current = rank_of(node, per_node, &group.spread, &self.loads);
            if current != entry {
                group.heap.push(Reverse(current));
                continue;
            }
            if dynamic_ok(&self.loads[node], &group.req, per_node[node]) {
                // Back in with its rank after this placement; `commit` updates the counts.
                let mut next = current;
                next.same_service += 1;
                next.total += 1;
                group.heap.push(Reverse(next));
                return Ok(node);
            }
        }
        if let Some(reasons) = &group.exhausted {
            return Err(reasons.clone());
        }
        let reasons = self.explain(gid, None);
        self.groups[gid].exhausted = Some(reasons.clone());
        Err(reasons)
    }

    fn pick_pinned(&mut self, gid: usize, pinned: &str) -> Result<usize, Vec<String>> {
        let Some(&node) = self.by_name.get(pinned) else {
            return Err(vec![format!("node {pinned} is not in the cluster")]);
        };
        let group = &self.groups[gid];
        let same = self.services[group.service].per_node[node];
        let filtered = static_filter(self.nodes[node], &group.req)
            .or_else(|| dynamic_filter(&self.loads[node], &group.req, same));
        match filtered {
            None => Ok(node),
            Some(_) => Err(self.explain(gid, Some(node))),
        }
    }

    /// Runs every filter on every node (or on the one pinned node) and aggregates the reasons.
    fn explain(&self, gid: usize, only: Option<usize>) -> Vec<String> {
        let group = &self.groups[gid];
        let per_node = &self.services[group.service].per_node;
        let mut reasons = Reasons::default();
        let range = match only {
            Some(n) => n..n + 1,
            None => 0..self.nodes.len(),
        };
        for i in range {
            if let Some(f) = static_filter(self.nodes[i], &group.req)
                .or_else(|| dynamic_filter(&self.loads[i], &group.req, per_node[i]))
            {
                reasons.add(f);
            }
        }
        reasons.render(self.nodes.len())
    }

    fn commit(&mut self, gid: usize, node: usize) {
        let group = &self.groups[gid];
        self.loads[node].add(
            group.req.cpu_millis,
            group.req.memory_bytes,
            &group.req.host_ports,
        );
        let sid = group.service;
        self.services[sid].per_node[node] += 1;
        for &g in &self.services[sid].groups {
            for s in &mut self.groups[g].spread {
                s.record(node);
            }
        }
        // The chosen node was pushed back assuming no spread change; refresh lazily if it did.
    }
}

#[inline]
fn rank_of(node: usize, per_node: &[u32], spread: &[Spread], loads: &[NodeLoad]) -> Rank {
    let mut s = [0u32; MAX_SPREAD_PREFERENCES];
    for (slot, sp) in s.iter_mut().zip(spread) {
        *slot = sp.count(node);
    }
    Rank {
        same_service: per_node[node],
        spread: s,
        total: loads[node].total_tasks,
        node: node as u32,
    }
}
