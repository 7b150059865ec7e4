//! [`LogCache`]: the most recently appended Raft log entries, decoded, in memory.
//!
//! The leader's replication reads every new entry once per follower; without the cache each read
//! was a sled lookup and a JSON decode of the entry, the largest CPU cost on a busy leader.
//!
//! Invariant: when not empty, the cache holds exactly the log's entries from its first index to
//! the last entry of the log, with no hole; anything it cannot vouch for it drops, and readers
//! fall back to sled.

use std::collections::VecDeque;
use std::ops::RangeBounds;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use super::types::{Entry, LogId};

/// Most entries kept.
const MAX_ENTRIES: usize = 4096;
/// Most encoded bytes kept (entries are batches and can be large).
const MAX_BYTES: usize = 32 << 20;

#[derive(Default)]
struct Inner {
    /// Entries with consecutive indexes, oldest first, each with its encoded size.
    entries: VecDeque<(Entry, usize)>,
    bytes: usize,
}

impl Inner {
    fn first_index(&self) -> Option<u64> {
        self.entries.front().map(|(e, _)| e.log_id.index)
    }

    fn last_index(&self) -> Option<u64> {
        self.entries.back().map(|(e, _)| e.log_id.index)
    }

    fn pop_front(&mut self) {
        if let Some((_, size)) = self.entries.pop_front() {
            self.bytes -= size;
        }
    }

    fn pop_back(&mut self) {
        if let Some((_, size)) = self.entries.pop_back() {
            self.bytes -= size;
        }
    }
}

/// Shared by all clones of the log store.
#[derive(Clone, Default)]
pub(crate) struct LogCache {
    inner: Arc<Mutex<Inner>>,
}

impl LogCache {
    // Poisoning is ignored: every change leaves `Inner` consistent before anything can panic.
    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Records an entry just written to the log (with its encoded size); an entry that does not
    /// follow the last one cached starts the cache afresh.
    pub(crate) fn appended(&self, entry: Entry, size: usize) {
        let mut inner = self.lock();
        if inner
            .last_index()
            .is_some_and(|last| last + 1 != entry.log_id.index)
        {
            *inner = Inner::default();
        }
        inner.bytes += size;
        inner.entries.push_back((entry, size));
        while inner.entries.len() > MAX_ENTRIES || inner.bytes > MAX_BYTES {
            inner.pop_front();
        }
    }

    /// Entries from `log_id` on were deleted from the log.
    pub(crate) fn truncated(&self, log_id: LogId) {
        let mut inner = self.lock();
        while inner.last_index().is_some_and(|i| i >= log_id.index) {
            inner.pop_back();
        }
    }

    /// Entries up to and including `log_id` were deleted from the log.
    pub(crate) fn purged(&self, log_id: LogId) {
        let mut inner = self.lock();
        while inner.first_index().is_some_and(|i| i <= log_id.index) {
            inner.pop_front();
        }
    }

    /// The entries of `range` (which starts at `start`), if the cache holds all that the log
    /// does there; `None` means read the log.
    #[cfg(test)]
    pub(crate) fn get(&self, start: u64, range: &impl RangeBounds<u64>) -> Option<Vec<Entry>> {
        self.get_limited(start, range, usize::MAX)
    }

    /// Like [`get`](Self::get), but stops before the entry that would take the encoded size
    /// past `max_bytes` (the first entry is always returned).
    pub(crate) fn get_limited(
        &self,
        start: u64,
        range: &impl RangeBounds<u64>,
        max_bytes: usize,
    ) -> Option<Vec<Entry>> {
        let inner = self.lock();
        let first = inner.first_index()?;
        if start < first {
            return None;
        }
        let skip = usize::try_from(start - first).ok()?;
        let mut bytes = 0usize;
        let mut out = Vec::new();
        for (e, size) in inner.entries.iter().skip(skip) {
            bytes = bytes.saturating_add(*size);
            if !range.contains(&e.log_id.index) || (!out.is_empty() && bytes > max_bytes) {
                break;
            }
            out.push(e.clone());
        }
        Some(out)
    }
}

#[cfg(test)]
mod tests {
    use openraft::testing::{blank_ent, log_id};

    use super::*;
    use crate::raft::types::TypeConfig;

    fn indexes(entries: Option<Vec<Entry>>) -> Option<Vec<u64>> {
        entries.map(|es| es.iter().map(|e| e.log_id.index).collect())
    }

    fn cache_with(range: std::ops::RangeInclusive<u64>) -> LogCache {
        let cache = LogCache::default();
        for i in range {
            cache.appended(blank_ent::<TypeConfig>(1, 1, i), 10);
        }
        cache
    }

    #[test]
    fn serves_ranges_it_holds_and_refuses_older_ones() {
        let cache = cache_with(5..=9);
        assert_eq!(indexes(cache.get(6, &(6..8))), Some(vec![6, 7]));
        assert_eq!(indexes(cache.get(5, &(5..))), Some(vec![5, 6, 7, 8, 9]));
        assert_eq!(indexes(cache.get(8, &(8..=20))), Some(vec![8, 9]));
        assert_eq!(indexes(cache.get(12, &(12..))), Some(vec![]));
        assert_eq!(indexes(cache.get(4, &(4..7))), None);
        assert_eq!(indexes(LogCache::default().get(0, &(0..))), None);
    }

    #[test]
    fn limited_reads_stop_at_the_byte_budget_but_return_one_entry() {
        let cache = cache_with(1..=9);
        assert_eq!(
            indexes(cache.get_limited(2, &(2..9), 35)),
            Some(vec![2, 3, 4])
        );
        assert_eq!(indexes(cache.get_limited(2, &(2..9), 5)), Some(vec![2]));
    }

    #[test]
    fn follows_truncate_purge_and_gaps() {
        let cache = cache_with(1..=6);
        cache.truncated(log_id(1, 1, 5));
        assert_eq!(indexes(cache.get(1, &(1..))), Some(vec![1, 2, 3, 4]));
        cache.purged(log_id(1, 1, 2));
        assert_eq!(indexes(cache.get(3, &(3..))), Some(vec![3, 4]));
        assert_eq!(indexes(cache.get(2, &(2..))), None);
        // A gap (not expected from openraft) starts afresh rather than leave a hole.
        cache.appended(blank_ent::<TypeConfig>(1, 1, 9), 10);
        assert_eq!(indexes(cache.get(3, &(3..))), None);
        assert_eq!(indexes(cache.get(9, &(9..))), Some(vec![9]));
    }

    #[test]
    fn drops_the_oldest_beyond_its_limits() {
        let cache = LogCache::default();
        for i in 0..(MAX_ENTRIES as u64 + 10) {
            cache.appended(blank_ent::<TypeConfig>(1, 1, i), 1);
        }
        assert_eq!(indexes(cache.get(9, &(9..10))), None);
        assert_eq!(indexes(cache.get(10, &(10..11))), Some(vec![10]));
        cache.appended(
            blank_ent::<TypeConfig>(1, 1, MAX_ENTRIES as u64 + 10),
            MAX_BYTES,
        );
        assert_eq!(
            indexes(cache.get(0, &(0..))),
            None,
            "one entry of MAX_BYTES leaves room for nothing else"
        );
    }
}
