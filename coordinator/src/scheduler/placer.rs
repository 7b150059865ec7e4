//! One scheduling pass: the state that placements update, and the per-requirements candidates.
//!
//! Each distinct (service, requirements) group splits its statically eligible nodes into buckets
//! that share every spread-label value (one bucket without spread preferences). A bucket keeps a
//! min-heap of its nodes by (same-service tasks, total tasks, name); the group keeps a min-heap of
//! buckets by the [`Rank`] of their best node. Ranks only grow during a pass, so entries are
//! refreshed lazily: a popped entry whose rank is out of date goes back with its current rank. A
//! node failing a dynamic filter leaves its bucket for good (nodes only fill up). A placement thus
//! costs a few heap operations instead of a scan of every node.
//!
//! Determinism: the `HashMap`s here are only looked up, never iterated into an output. Memory: a
//! per-node task count for each service that has pending tasks in the call. When a group runs out
//! of nodes its reasons are computed once (a scan of every node) and reused for its later tasks.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, HashMap};
use std::sync::Arc;

use super::filters::{dynamic_filter, dynamic_ok, static_filter, Compiled, NodeLoad, Reasons};
use super::rank::{Rank, Spread};
use super::view::{ClusterView, Decision, NodeView, PendingTask, Requirements};
use super::MAX_SPREAD_PREFERENCES;

/// A bucket's node entry: (same-service tasks, total tasks, node position).
type NodeEntry = Reverse<(u32, u32, u32)>;

/// Eligible nodes of a group that share all spread-label values.
struct Bucket {
    /// Value index per spread label.
    values: [u32; MAX_SPREAD_PREFERENCES],
    nodes: BinaryHeap<NodeEntry>,
}

/// Tasks of one service with one set of requirements.
struct Group {
    service: usize,
    req: Compiled,
    spread: Vec<Spread>,
    buckets: Vec<Bucket>,
    /// One entry per non-empty bucket: the rank of its best node when pushed, and the bucket.
    top: BinaryHeap<Reverse<(Rank, u32)>>,
    /// Once no bucket is left, the reasons every later task of the group gets.
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
        let mut bucket_ids: BTreeMap<[u32; MAX_SPREAD_PREFERENCES], usize> = BTreeMap::new();
        let mut members: Vec<Vec<NodeEntry>> = Vec::new();
        for (i, node) in self.nodes.iter().enumerate() {
            if static_filter(node, &compiled).is_some() {
                continue;
            }
            let mut values = [0u32; MAX_SPREAD_PREFERENCES];
            for (slot, sp) in values.iter_mut().zip(&spread) {
                *slot = sp.bucket_of[i];
            }
            let b = *bucket_ids.entry(values).or_insert_with(|| {
                members.push(Vec::new());
                members.len() - 1
            });
            members[b].push(Reverse((per_node[i], self.loads[i].total_tasks, i as u32)));
        }
        let mut values_of = vec![[0u32; MAX_SPREAD_PREFERENCES]; members.len()];
        for (values, b) in &bucket_ids {
            values_of[*b] = *values;
        }
        let buckets: Vec<Bucket> = members
            .into_iter()
            .zip(values_of)
            .map(|(nodes, values)| Bucket {
                values,
                nodes: BinaryHeap::from(nodes),
            })
            .collect();
        let top = buckets
            .iter()
            .enumerate()
            .filter_map(|(b, bucket)| {
                let Reverse((same, total, node)) = *bucket.nodes.peek()?;
                Some(Reverse((
                    bucket_rank(bucket, &spread, same, total, node),
                    b as u32,
                )))
            })
            .collect();
        let gid = self.groups.len();
        self.groups.push(Group {
            service: sid,
            req: compiled,
            spread,
            buckets,
            top,
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

    /// The best node of the group, or the reasons none fits.
    fn pick(&mut self, gid: usize) -> Result<usize, Vec<String>> {
        let group = &mut self.groups[gid];
        let per_node = &self.services[group.service].per_node;
        while let Some(Reverse((entry, b))) = group.top.pop() {
            let bucket = &mut group.buckets[b as usize];
            let Some((same, total, node)) =
                best_in_bucket(bucket, per_node, &self.loads, &group.req)
            else {
                continue; // bucket exhausted: it leaves the group
            };
            let current = bucket_rank(bucket, &group.spread, same, total, node);
            // Back in either way; after a placement the entry is merely out of date, which is
            // allowed (entries never overstate a rank).
            group.top.push(Reverse((current, b)));
            if current == entry {
                return Ok(node as usize);
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
    }
}

/// The bucket's best node that passes the dynamic filters, with up-to-date counts; drops nodes
/// that fail them and refreshes out-of-date entries on the way.
#[inline]
fn best_in_bucket(
    bucket: &mut Bucket,
    per_node: &[u32],
    loads: &[NodeLoad],
    req: &Compiled,
) -> Option<(u32, u32, u32)> {
    while let Some(&Reverse((same, total, node))) = bucket.nodes.peek() {
        let n = node as usize;
        let current = (per_node[n], loads[n].total_tasks, node);
        if current != (same, total, node) {
            bucket.nodes.pop();
            bucket.nodes.push(Reverse(current));
            continue;
        }
        if dynamic_ok(&loads[n], req, same) {
            return Some(current);
        }
        bucket.nodes.pop();
    }
    None
}

#[inline]
fn bucket_rank(bucket: &Bucket, spread: &[Spread], same: u32, total: u32, node: u32) -> Rank {
    let mut s = [0u32; MAX_SPREAD_PREFERENCES];
    for ((slot, sp), value) in s.iter_mut().zip(spread).zip(bucket.values) {
        *slot = sp.counts[value as usize];
    }
    Rank {
        same_service: same,
        spread: s,
        total,
        node,
    }
}
