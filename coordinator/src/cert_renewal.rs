//! A coordinator renews its own certificate two thirds into its lifetime, as agents do, but
//! without restarting anything: the new key and certificate are stored in the TLS dir (for the
//! next start), new TLS handshakes on this coordinator's listeners present the new certificate,
//! and new connections to its peers present it too.
//!
//! The request is the ordinary `Certificates.Renew` call, made to this coordinator's own API
//! with the current (still valid) certificate: it signs with the replicated CA and records the
//! certificate through Raft (`RecordCert`, forwarded to the leader from a follower), like any
//! other issuance.

use std::sync::Arc;
use std::time::Duration;

use shoal_pki::files::{TlsDir, TlsMaterial};
use shoal_pki::server::ServerSettings;
use shoal_pki::{unix_now, CertInfo, PkiError, Role};
use tokio::sync::watch;

use crate::metrics::Metrics;
use crate::raft::network::Channels;

/// First wait after a failed attempt; doubled after each further failure.
const FIRST_RETRY: Duration = Duration::from_secs(1);
/// Longest wait between two attempts.
const MAX_RETRY: Duration = Duration::from_secs(30);

/// How long to wait after the `failures`-th failed attempt in a row (1, 2, 4, ... s, capped).
pub fn retry_delay(failures: u32) -> Duration {
    let doublings = failures.saturating_sub(1).min(16);
    FIRST_RETRY.saturating_mul(1 << doublings).min(MAX_RETRY)
}

/// Everything the renewal loop replaces.
pub struct Renewal {
    /// This coordinator's TLS dir (`<data dir>/tls`).
    pub dir: TlsDir,
    /// The material in use now.
    pub material: TlsMaterial,
    /// This coordinator's own API (`host:port` reachable from here).
    pub api_addr: String,
    /// Outgoing peer channels: their TLS identity is replaced.
    pub channels: Channels,
    /// What the API and agent listeners handshake new connections with.
    pub server_tls: watch::Sender<Arc<ServerSettings>>,
    /// Where the certificate's expiry and failed renewals are shown.
    pub metrics: Metrics,
}

impl Renewal {
    /// Renews at two thirds of each certificate's lifetime, forever; retries with backoff.
    pub async fn run(mut self) {
        let mut failures = 0u32;
        loop {
            let current = match CertInfo::from_pem(&self.material.cert_pem) {
                Ok(i) => i,
                Err(e) => {
                    tracing::error!(error = %e,
                        "cannot read this coordinator's certificate; it will not be renewed");
                    return;
                }
            };
            self.metrics.certificate_expires(current.not_after);
            let wait = if failures == 0 {
                current.until_renewal(unix_now())
            } else {
                retry_delay(failures)
            };
            if failures == 0 {
                tracing::info!(serial = %current.serial, not_after = current.not_after,
                    renew_in_secs = wait.as_secs(), "coordinator certificate renewal scheduled");
            }
            tokio::time::sleep(wait).await;
            match self.renew_once().await {
                Ok(renewed) => {
                    failures = 0;
                    tracing::info!(old_serial = %current.serial, serial = %renewed.serial,
                        not_after = renewed.not_after, via = %self.api_addr,
                        "coordinator certificate renewed");
                }
                Err(e) => {
                    failures = failures.saturating_add(1);
                    self.metrics.certificate_renewal_failed();
                    let expires_in_secs = current.not_after - unix_now();
                    let retry_in_secs = retry_delay(failures).as_secs();
                    if expires_in_secs <= 0 {
                        tracing::error!(error = %e, serial = %current.serial, failures,
                            retry_in_secs, "coordinator certificate expired and renewal failed: \
                            peers and clients refuse it; rejoin this coordinator with a token");
                    } else {
                        tracing::warn!(error = %e, serial = %current.serial, failures,
                            expires_in_secs, retry_in_secs, "coordinator certificate renewal failed");
                    }
                }
            }
        }
    }

    /// Gets a new certificate, stores it, then swaps it in (only a stored pair is ever used,
    /// so a restart finds what was served).
    async fn renew_once(&mut self) -> Result<CertInfo, PkiError> {
        let (fresh, info) = shoal_pki::join::renew(&self.api_addr, &self.material).await?;
        let server = shoal_pki::server::server_config(&fresh, false)?;
        let client = shoal_pki::tls::client_config(&fresh, Role::Coordinator);
        self.dir.store_renewed(&fresh.cert_pem, &fresh.key_pem)?;
        self.server_tls.send_replace(server);
        self.channels.set_tls(client);
        self.material = fresh;
        Ok(info)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_back_off_to_a_cap() {
        let got: Vec<u64> = (1..=8).map(|f| retry_delay(f).as_secs()).collect();
        assert_eq!(got, [1, 2, 4, 8, 16, 30, 30, 30]);
        assert_eq!(retry_delay(u32::MAX), MAX_RETRY);
    }

    /// A certificate signed now for `ttl` is renewed two thirds in, whatever the lifetime.
    #[test]
    fn a_coordinator_certificate_renews_two_thirds_into_its_lifetime() {
        let ca =
            shoal_pki::CertAuthority::generate("test", Duration::from_secs(3600)).expect("a CA");
        for ttl in [30u64, 365 * 24 * 3600] {
            let id = shoal_pki::Identity::new(Role::Coordinator, "c1");
            let issued = ca
                .issue_with_key(&id, Duration::from_secs(ttl))
                .expect("a certificate");
            let info = CertInfo::from_pem(&issued.cert.cert_pem).expect("parse");
            let issued_at = info.not_after - ttl as i64;
            assert_eq!(info.renew_at(), issued_at + ttl as i64 * 2 / 3, "ttl {ttl}");
            let wait = info.until_renewal(issued_at);
            assert_eq!(wait.as_secs(), ttl * 2 / 3, "ttl {ttl}");
        }
    }
}
