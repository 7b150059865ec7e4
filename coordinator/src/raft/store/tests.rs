//! Unit tests for the sled store: reopening, corruption, purge/truncate, snapshots.
