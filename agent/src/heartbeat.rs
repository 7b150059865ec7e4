//! Heartbeats that nothing else can hold up: their own OS thread, their own single-threaded
//! tokio runtime and their own connection to the coordinator.
//!
//! The rest of the agent can be slow for good reasons (status reports, each a Raft write on the
//! coordinator; sled flushes on a loaded disk; a hundred containers starting), and none of that
//! may look like silence to the coordinators. A heartbeat goes out every period whether or not
//! the previous one was answered (up to [`MAX_IN_FLIGHT`]); one unanswered for the RPC timeout,
//! or refused, ends the thread and, through [`Heartbeats::failed`], the session (the RPC timeout
//! is [`crate::session::RPC_TIMEOUT`]).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use shoal_proto::dispatcher::HeartbeatRequest;
use tokio::sync::oneshot;
use tokio::task::JoinSet;
use tracing::{debug, warn};

use crate::session::{Session, SessionError};

/// Heartbeats sent but not yet answered, at most.
pub const MAX_IN_FLIGHT: usize = 3;

/// Heartbeats answered, since the process started (for `/metrics`).
pub static HEARTBEATS_ANSWERED: AtomicU64 = AtomicU64::new(0);
/// The round trip of the last answered heartbeat, microseconds (for `/metrics`).
pub static HEARTBEAT_RTT_MICROS: AtomicU64 = AtomicU64::new(0);

/// The running heartbeat thread of one session; dropping it stops the thread.
pub struct Heartbeats {
    _stop: oneshot::Sender<()>,
    /// Resolves when the heartbeats fail (the session must end).
    pub failed: oneshot::Receiver<SessionError>,
}

impl Heartbeats {
    /// Starts heartbeating `addr` for `session`'s node every `period`.
    pub fn spawn(session: &Session, addr: &str, period: Duration) -> std::io::Result<Heartbeats> {
        let (stop_tx, stop_rx) = oneshot::channel();
        let (fail_tx, fail_rx) = oneshot::channel();
        let session = session.clone();
        let addr = addr.to_owned();
        std::thread::Builder::new()
            .name("shoal-heartbeat".into())
            .spawn(move || {
                let rt = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(rt) => rt,
                    Err(e) => {
                        warn!(error = %e, "cannot start the heartbeat runtime");
                        let _ = fail_tx.send(SessionError::Heartbeat(e.to_string()));
                        return;
                    }
                };
                rt.block_on(async move {
                    tokio::select! {
                        e = beat(&session, &addr, period) => { let _ = fail_tx.send(e); }
                        _ = stop_rx => {}
                    }
                });
            })?;
        Ok(Heartbeats {
            _stop: stop_tx,
            failed: fail_rx,
        })
    }
}

/// Heartbeats until one fails; returns why.
async fn beat(session: &Session, addr: &str, mut period: Duration) -> SessionError {
    // A connection of its own, made on this thread's runtime.
    let client = match session.connect(addr).await {
        Ok(c) => c,
        Err(e) => return e,
    };
    let node = Arc::new(session.node.name.clone());
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut in_flight: JoinSet<(tokio::time::Instant, Result<u64, SessionError>)> = JoinSet::new();
    loop {
        tokio::select! {
            _ = tick.tick() => {
                if in_flight.len() >= MAX_IN_FLIGHT {
                    debug!(coordinator = addr, "heartbeats unanswered; not sending more");
                    continue;
                }
                let mut c = client.clone();
                let node = node.clone();
                let addr = addr.to_owned();
                in_flight.spawn(async move {
                    let sent = tokio::time::Instant::now();
                    let r = Session::call(
                        &addr,
                        "Heartbeat",
                        c.heartbeat(HeartbeatRequest { node: node.to_string() }),
                    )
                    .await
                    .map(|r| r.heartbeat_period_ms);
                    (sent, r)
                });
            }
            Some(done) = in_flight.join_next() => {
                let (sent, r) = match done {
                    Ok(v) => v,
                    Err(e) => return SessionError::Heartbeat(e.to_string()),
                };
                let period_ms = match r {
                    Ok(p) => p,
                    Err(e) => return e,
                };
                HEARTBEATS_ANSWERED.fetch_add(1, Ordering::Relaxed);
                let rtt = u64::try_from(sent.elapsed().as_micros()).unwrap_or(u64::MAX);
                HEARTBEAT_RTT_MICROS.store(rtt, Ordering::Relaxed);
                if period_ms > 0 && Duration::from_millis(period_ms) != period {
                    period = Duration::from_millis(period_ms);
                    debug!(coordinator = addr, period_ms, "heartbeat period changed");
                    tick = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
                    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                }
            }
        }
    }
}
