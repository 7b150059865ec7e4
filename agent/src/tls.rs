//! The agent's certificate: obtained once with the agent join token, kept in
//! `<data dir>/tls`, renewed before it expires, and used for every connection (to the
//! coordinators as a client, and for the agent API as a server). A renewal changes nothing
//! that is running: the new pair is stored, new handshakes on the agent API present it (the
//! accept loop follows [`AgentTls::server_settings`]), and new connections to the coordinators
//! present it (they read [`AgentTls::client_config`] when they connect); established
//! connections, such as an open `logs --follow`, go on with the certificate they started with.

use std::sync::atomic::Ordering;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use shoal_pki::files::{TlsDir, TlsMaterial};
use shoal_pki::server::ServerSettings;
use shoal_pki::{CertInfo, Identity, JoinToken, PkiError, Role};
use tokio::sync::watch;
use tonic::transport::ClientTlsConfig;
use tracing::{info, warn};

use crate::metrics::{CERTIFICATE_EXPIRY, CERTIFICATE_RENEWAL_FAILURES};

pub struct AgentTls {
    dir: TlsDir,
    current: RwLock<TlsMaterial>,
    /// What the agent API handshakes new connections with; replaced after every renewal.
    server: watch::Sender<Arc<ServerSettings>>,
}

impl AgentTls {
    /// Loads the certificate from `dir`, or joins with `token` to get one.
    pub async fn obtain(
        dir: TlsDir,
        node: &str,
        coordinators: &[String],
        token: Option<&str>,
    ) -> Result<Arc<AgentTls>, PkiError> {
        let material = if dir.exists() {
            dir.load()?
        } else {
            let Some(token) = token else {
                return Err(PkiError::Token(format!(
                    "no certificate in {}: pass --token-file FILE or set SHOAL_JOIN_TOKEN with \
                     the agent join token (`shoalctl token show agent`); --insecure joins an \
                     insecure cluster",
                    dir.dir.display()
                )));
            };
            let token = JoinToken::parse(token)?;
            let m = shoal_pki::join::join(
                coordinators,
                &token,
                &Identity::new(Role::Agent, node),
                None,
            )
            .await?;
            dir.store(&m)?;
            info!(dir = %dir.dir.display(), "joined: agent certificate stored");
            m
        };
        if let Some(problem) = material.diagnose(shoal_pki::unix_now()) {
            return Err(PkiError::Cert(format!(
                "{}: {problem}; remove {} and restart the agent with a join token",
                dir.cert().display(),
                dir.dir.display()
            )));
        }
        let info = CertInfo::from_pem(&material.cert_pem)?;
        if info.identity != Identity::new(Role::Agent, node) {
            return Err(PkiError::Cert(format!(
                "{} holds the certificate of {}, but this agent is node `{node}`",
                dir.cert().display(),
                info.identity
            )));
        }
        let server = server_settings(&material)?;
        CERTIFICATE_EXPIRY.store(info.not_after, Ordering::Relaxed);
        Ok(Arc::new(AgentTls {
            dir,
            current: RwLock::new(material),
            server: watch::Sender::new(server),
        }))
    }

    pub fn material(&self) -> TlsMaterial {
        self.current
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// For calls to the coordinators.
    pub fn client_config(&self) -> ClientTlsConfig {
        shoal_pki::tls::client_config(&self.material(), Role::Coordinator)
    }

    /// For the agent API (see [`shoal_pki::server::incoming_watched`]): the settings new
    /// handshakes use, replaced after each renewal.
    pub fn server_settings(&self) -> watch::Receiver<Arc<ServerSettings>> {
        self.server.subscribe()
    }

    /// Renews the certificate two thirds into its lifetime, forever.
    pub async fn renew_loop(self: Arc<Self>, coordinators: Vec<String>) {
        let mut next = 0usize;
        loop {
            let info = match CertInfo::from_pem(&self.material().cert_pem) {
                Ok(i) => i,
                Err(e) => {
                    warn!(error = %e, "cannot read the agent certificate; not renewing");
                    return;
                }
            };
            tokio::time::sleep(info.until_renewal(shoal_pki::unix_now())).await;
            if coordinators.is_empty() {
                return;
            }
            let addr = &coordinators[next % coordinators.len()];
            next = next.wrapping_add(1);
            match self.renew_once(addr).await {
                Ok(renewed) => {
                    info!(old_serial = %info.serial, serial = %renewed.serial,
                        not_after = renewed.not_after, via = %addr, "agent certificate renewed");
                }
                Err(e) => {
                    CERTIFICATE_RENEWAL_FAILURES.fetch_add(1, Ordering::Relaxed);
                    warn!(error = %e, via = %addr, "certificate renewal failed; retrying in 1 s");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        }
    }

    /// Gets a new certificate through the coordinator at `addr`, stores it, then swaps it in
    /// (only a stored pair is ever used, so a restart finds what was served).
    async fn renew_once(&self, addr: &str) -> Result<CertInfo, PkiError> {
        let (fresh, info) = shoal_pki::join::renew(addr, &self.material()).await?;
        let server = server_settings(&fresh)?;
        self.dir.store_renewed(&fresh.cert_pem, &fresh.key_pem)?;
        *self.current.write().unwrap_or_else(|p| p.into_inner()) = fresh;
        self.server.send_replace(server);
        CERTIFICATE_EXPIRY.store(info.not_after, Ordering::Relaxed);
        Ok(info)
    }
}

/// The agent API's settings: every caller must present a certificate of the cluster CA.
fn server_settings(m: &TlsMaterial) -> Result<Arc<ServerSettings>, PkiError> {
    shoal_pki::server::server_config(m, true)
}
