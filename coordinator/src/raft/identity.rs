//! Which cluster this coordinator belongs to, shared by the network client and server.

use std::sync::{Arc, RwLock};

/// The cluster id, once known (bootstrapped here, or learned from the first leader that
/// replicated to us). Carried on every Raft RPC so that members of two clusters never mix.
#[derive(Clone, Default, Debug)]
pub struct ClusterTag(Arc<RwLock<Option<String>>>);

impl ClusterTag {
    pub fn new(id: Option<String>) -> Self {
        Self(Arc::new(RwLock::new(id)))
    }

    pub fn get(&self) -> Option<String> {
        self.0.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    pub fn set(&self, id: &str) {
        *self.0.write().unwrap_or_else(|p| p.into_inner()) = Some(id.to_string());
    }
}
