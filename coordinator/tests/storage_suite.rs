//! openraft's storage conformance suite, run against the sled store in fresh temp dirs.

use openraft::testing::{StoreBuilder, Suite};
use openraft::{AnyError, ErrorSubject, ErrorVerb, StorageError, StorageIOError};
use shoal_coordinator::raft::types::{NodeId, TypeConfig};
use shoal_coordinator::raft::{LogStore, StateMachineStore, Store};
use tempfile::TempDir;

/// Opens a [`Store`] in a new temp dir; the dir (the guard) lives as long as the test.
struct SledStoreBuilder;

fn setup_err(e: &(impl std::error::Error + 'static)) -> StorageError<NodeId> {
    StorageIOError::new(ErrorSubject::Store, ErrorVerb::Write, AnyError::new(e)).into()
}

impl StoreBuilder<TypeConfig, LogStore, StateMachineStore, TempDir> for SledStoreBuilder {
    async fn build(&self) -> Result<(TempDir, LogStore, StateMachineStore), StorageError<NodeId>> {
        let dir = tempfile::tempdir().map_err(|e| setup_err(&e))?;
        let store = Store::open(dir.path()).map_err(|e| setup_err(&e))?;
        Ok((dir, store.log_store(), store.state_machine()))
    }
}

// The suite builds its own tokio runtime per case, so this is a plain test, not a tokio one.
#[test]
fn sled_store_passes_openraft_storage_suite() {
    if let Err(e) = Suite::test_all(SledStoreBuilder) {
        panic!("openraft storage suite failed: {e}");
    }
}
