//! systemd notification (`Type=notify`): `READY=1` once the daemon serves, `WATCHDOG=1` at half
//! of `WATCHDOG_USEC` while a liveness probe passes, `STOPPING=1` on the way out.
//!
//! Without `NOTIFY_SOCKET` every call here does nothing.

use std::future::Future;
use std::time::Duration;

use sd_notify::NotifyState;

fn send(state: &[NotifyState<'_>], what: &str) {
    if let Err(e) = sd_notify::notify(state) {
        tracing::warn!(error = %e, "cannot tell systemd {what}");
    }
}

/// Tells systemd the daemon serves. Call only once it really does.
pub fn ready() {
    send(&[NotifyState::Ready], "READY=1");
}

/// Tells systemd the daemon is shutting down.
pub fn stopping() {
    send(&[NotifyState::Stopping], "STOPPING=1");
}

/// The watchdog interval systemd asked for (`WATCHDOG_USEC`, for this process), if any.
pub fn watchdog_interval() -> Option<Duration> {
    sd_notify::watchdog_enabled().filter(|d| !d.is_zero())
}

/// If systemd asked for a watchdog, pings it at half the interval for as long as `probe`
/// answers `true` within that half interval. A probe that fails or hangs stops the pings for
/// that round, so a wedged daemon is restarted by systemd. Returns at once without a watchdog.
pub async fn watchdog<F, Fut>(mut probe: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let Some(interval) = watchdog_interval() else {
        return;
    };
    let period = interval / 2;
    tracing::info!(
        interval_ms = interval.as_millis() as u64,
        "systemd watchdog enabled"
    );
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        match tokio::time::timeout(period, probe()).await {
            Ok(true) => send(&[NotifyState::Watchdog], "WATCHDOG=1"),
            Ok(false) => tracing::warn!("liveness probe failed; not pinging the watchdog"),
            Err(_) => tracing::warn!("liveness probe hung; not pinging the watchdog"),
        }
    }
}
