//! The agent's certificate: obtained once with the agent join token, kept in
//! `<data dir>/tls`, renewed before it expires, and used for every connection (to the
//! coordinators as a client, and for the agent API as a server).

use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use shoal_pki::files::{TlsDir, TlsMaterial};
use shoal_pki::{CertInfo, Identity, JoinToken, PkiError, Role};
use tokio::sync::watch;
use tonic::transport::ClientTlsConfig;
use tracing::{info, warn};

pub struct AgentTls {
    dir: TlsDir,
    current: RwLock<TlsMaterial>,
    /// Bumped after every renewal, so servers can reload.
    generation: watch::Sender<u64>,
}

fn now_secs() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
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
        if let Some(problem) = material.diagnose(now_secs()) {
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
        let (generation, _) = watch::channel(0);
        Ok(Arc::new(AgentTls {
            dir,
            current: RwLock::new(material),
            generation,
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

    /// For the agent API: every caller must present a certificate of the cluster CA.
    pub fn server_config(&self) -> Result<Arc<rustls::ServerConfig>, PkiError> {
        shoal_pki::server::server_config(&self.material(), true)
    }

    /// Changes after each renewal.
    pub fn renewals(&self) -> watch::Receiver<u64> {
        self.generation.subscribe()
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
            let wait = (info.renew_at() - now_secs()).max(0) as u64;
            tokio::time::sleep(Duration::from_secs(wait)).await;
            if coordinators.is_empty() {
                return;
            }
            let addr = &coordinators[next % coordinators.len()];
            next = next.wrapping_add(1);
            match shoal_pki::join::renew(addr, &self.material()).await {
                Ok(m) => {
                    if let Err(e) = self.dir.store(&m) {
                        warn!(error = %e, "cannot store the renewed certificate");
                    }
                    let serial = CertInfo::from_pem(&m.cert_pem)
                        .map(|i| i.serial)
                        .unwrap_or_default();
                    *self.current.write().unwrap_or_else(|p| p.into_inner()) = m;
                    self.generation.send_modify(|g| *g += 1);
                    info!(%serial, via = %addr, "agent certificate renewed");
                }
                Err(e) => {
                    warn!(error = %e, via = %addr, "certificate renewal failed; retrying in 1 s");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        }
    }
}
