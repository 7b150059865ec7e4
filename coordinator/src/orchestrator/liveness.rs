//! Agent liveness as the leader sees it: last heartbeat per node, in memory only.
//!
//! Heartbeats do not go through Raft. A newly elected leader knows no heartbeat history, so it
//! gives every node a fresh grace period before declaring any down.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

#[derive(Clone, Debug)]
pub struct Liveness {
    inner: Arc<Mutex<Inner>>,
    pub heartbeat_period: Duration,
    pub grace: Duration,
}

#[derive(Debug, Default)]
struct Inner {
    last_seen: BTreeMap<String, Instant>,
    /// When this member last became leader; the grace for unseen nodes counts from here.
    leader_since: Option<Instant>,
}

impl Liveness {
    pub fn new(heartbeat_period: Duration, grace: Duration) -> Self {
        Self {
            inner: Arc::default(),
            heartbeat_period,
            grace,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn seen(&self, node: &str) {
        self.lock()
            .last_seen
            .insert(node.to_string(), Instant::now());
    }

    /// Called on every leadership change: forget history, start every node's grace now.
    pub fn became_leader(&self, leader: bool) {
        let mut g = self.lock();
        g.last_seen.clear();
        g.leader_since = leader.then(Instant::now);
    }

    /// Of `ready` nodes, those whose last heartbeat (or this leader's start) is older than the
    /// grace period.
    pub fn expired<'a>(&self, ready: impl Iterator<Item = &'a str>) -> Vec<String> {
        let g = self.lock();
        let Some(since) = g.leader_since else {
            return Vec::new();
        };
        let now = Instant::now();
        ready
            .filter(|n| {
                let last = g.last_seen.get(*n).copied().unwrap_or(since).max(since);
                now.duration_since(last) > self.grace
            })
            .map(str::to_string)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn fresh_leader_gives_every_node_a_grace() {
        let l = Liveness::new(Duration::from_millis(500), Duration::from_secs(2));
        assert!(
            l.expired(["a"].into_iter()).is_empty(),
            "a follower declares nothing"
        );
        l.became_leader(true);
        tokio::time::advance(Duration::from_millis(1900)).await;
        assert!(l.expired(["a", "b"].into_iter()).is_empty());
        l.seen("a");
        tokio::time::advance(Duration::from_millis(200)).await;
        assert_eq!(l.expired(["a", "b"].into_iter()), vec!["b".to_string()]);
        tokio::time::advance(Duration::from_secs(2)).await;
        assert_eq!(l.expired(["a", "b"].into_iter()).len(), 2);
        l.became_leader(true);
        assert!(l.expired(["a", "b"].into_iter()).is_empty());
    }
}
