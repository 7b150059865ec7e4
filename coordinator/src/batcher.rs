//! [`Batcher`]: on the leader, writes that arrive while earlier ones are being committed are
//! proposed together as one Raft log entry ([`Batch`]), so that one append, one flush and one
//! replication round carry all of them.
//!
//! openraft 0.9 appends every `client_write` on its own and waits for its flush before it looks
//! at the next one, so without this a burst of writes costs one fsync per write on the leader.
//! A lone write is proposed at once (a batch of one); only writes that queue up behind a batch
//! in flight are grouped, so batching adds no latency.

use std::sync::Arc;

use openraft::error::{ClientWriteError, RaftError};
use openraft::BasicNode;
use tokio::sync::{mpsc, oneshot, Semaphore};

use crate::raft::types::{NodeId, Raft};
use crate::state::{Batch, Request, Response};

/// Most requests in one log entry.
pub const MAX_BATCH: usize = 256;
/// Batches proposed and not yet applied at the same time. More than one lets the leader append
/// (and flush) the next batch while the previous one is being replicated.
const IN_FLIGHT: usize = 2;
/// Writes waiting for a batch; senders wait when it is full.
const QUEUE: usize = 8192;

/// Why a batched write failed, before it is mapped to the caller's error type.
pub type WriteError = RaftError<NodeId, ClientWriteError<NodeId, BasicNode>>;

/// What one write gets back: its own response and the index of the entry that carried it, or
/// the error that failed the whole batch (then none of its requests was applied here).
pub type WriteResult = Result<(Response, u64), Arc<WriteError>>;

struct Pending {
    request: Request,
    reply: oneshot::Sender<WriteResult>,
}

/// Groups concurrent writes into Raft log entries. Clones share the same queue.
#[derive(Clone)]
pub struct Batcher {
    tx: mpsc::Sender<Pending>,
}

impl std::fmt::Debug for Batcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Batcher").finish_non_exhaustive()
    }
}

impl Batcher {
    /// Starts the batching task on the current tokio runtime; it ends when every clone is dropped.
    pub fn start(raft: Raft) -> Self {
        let (tx, rx) = mpsc::channel(QUEUE);
        tokio::spawn(run(raft, rx));
        Self { tx }
    }

    /// Proposes `request` (with whatever else is waiting) and waits until it is applied.
    /// `None` when the batching task is gone (the runtime is shutting down).
    pub async fn write(&self, request: Request) -> Option<WriteResult> {
        let (reply, rx) = oneshot::channel();
        self.tx.send(Pending { request, reply }).await.ok()?;
        rx.await.ok()
    }
}

async fn run(raft: Raft, mut rx: mpsc::Receiver<Pending>) {
    let slots = Arc::new(Semaphore::new(IN_FLIGHT));
    loop {
        // Wait for a free slot first: writes arriving meanwhile form the next batch.
        let Ok(slot) = slots.clone().acquire_owned().await else {
            return;
        };
        let Some(first) = rx.recv().await else {
            return;
        };
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(p) => batch.push(p),
                Err(_) => break,
            }
        }
        let raft = raft.clone();
        tokio::spawn(async move {
            let (requests, replies): (Vec<Request>, Vec<_>) =
                batch.into_iter().map(|p| (p.request, p.reply)).unzip();
            tracing::trace!(requests = requests.len(), "proposing a batch");
            match raft.client_write(Batch(requests)).await {
                Ok(written) => {
                    let index = written.log_id.index;
                    // One response per request, in order (see `StateMachineStore::apply`); a
                    // reply left without one is dropped and its caller sees an internal error.
                    for (reply, response) in replies.into_iter().zip(written.data) {
                        let _ = reply.send(Ok((response, index)));
                    }
                }
                Err(e) => {
                    let e = Arc::new(e);
                    for reply in replies {
                        let _ = reply.send(Err(e.clone()));
                    }
                }
            }
            drop(slot);
        });
    }
}
