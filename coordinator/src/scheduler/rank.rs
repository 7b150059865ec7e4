//! How candidate nodes are ordered: fewest tasks of the same service, then spread over preference
//! labels, then fewest tasks in total, then node name.

use std::collections::BTreeMap;

use super::view::NodeView;
use super::MAX_SPREAD_PREFERENCES;

/// A node's rank for one task; smaller is better. Compared field by field, in declaration order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Rank {
    pub same_service: u32,
    /// Tasks of the service on nodes sharing this node's value of each spread label.
    pub spread: [u32; MAX_SPREAD_PREFERENCES],
    pub total: u32,
    /// Position of the node in name order.
    pub node: u32,
}

/// For one spread label: which bucket (label value) each node falls in, and the service's
/// task count per bucket. Nodes without the label share one bucket of their own.
#[derive(Debug)]
pub(crate) struct Spread {
    pub bucket_of: Vec<u32>,
    pub counts: Vec<u32>,
}

impl Spread {
    /// Buckets for `label` over `nodes` (in name order), counting tasks from `same_service`.
    pub fn new(label: &str, nodes: &[&NodeView], same_service: &[u32]) -> Self {
        let mut values: BTreeMap<&str, u32> = BTreeMap::new();
        for n in nodes {
            if let Some(v) = n.labels.get(label) {
                let next = values.len() as u32;
                values.entry(v.as_str()).or_insert(next);
            }
        }
        let missing = values.len() as u32;
        let bucket_of: Vec<u32> = nodes
            .iter()
            .map(|n| {
                n.labels
                    .get(label)
                    .and_then(|v| values.get(v.as_str()).copied())
                    .unwrap_or(missing)
            })
            .collect();
        let mut counts = vec![0u32; values.len() + 1];
        for (i, b) in bucket_of.iter().enumerate() {
            counts[*b as usize] += same_service.get(i).copied().unwrap_or(0);
        }
        Self { bucket_of, counts }
    }

    #[inline]
    pub fn record(&mut self, node: usize) {
        self.counts[self.bucket_of[node] as usize] += 1;
    }
}
