//! Where a coordinator's certificate comes from at start: the data dir (a restart), a new CA
//! (`--bootstrap`), or a join token (`--join ADDR --token ...`). Insecure mode has none.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context};
use serde::{Deserialize, Serialize};
use shoal_coordinator::config::Config;
use shoal_coordinator::coordinator::Coordinator;
use shoal_coordinator::state::pki::{CertRecord, Redacted};
use shoal_pki::files::{write_private, TlsDir, TlsMaterial};
use shoal_pki::{CertAuthority, Identity, JoinToken, Role};

/// Lifetime of a new cluster CA.
const CA_TTL: Duration = Duration::from_secs(10 * 365 * 24 * 3600);
/// Lifetime of the first admin certificate.
const ADMIN_TTL: Duration = Duration::from_secs(365 * 24 * 3600);

/// What bootstrap made that the replicated state must learn once the cluster exists.
#[derive(Serialize, Deserialize)]
struct PendingCa {
    ca: CertAuthority,
    agent_secret: Redacted,
    coordinator_secret: Redacted,
    issued: Vec<CertRecord>,
}

pub fn tls_dir(data_dir: &Path) -> TlsDir {
    TlsDir::new(data_dir.join("tls"))
}

pub fn admin_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("admin")
}

fn pending_path(data_dir: &Path) -> PathBuf {
    data_dir.join("tls").join("pending-ca.json")
}

/// Prints the insecure-mode warning (at every start, as promised).
pub fn warn_insecure() {
    let text = "INSECURE MODE: no TLS, no certificates, no authorization. Anyone who can reach \
                this coordinator can run privileged containers on every node. Use only for local \
                experiments.";
    eprintln!("shoal-coordinator: WARNING: {text}");
    tracing::warn!("{text}");
}

/// This coordinator's TLS material, made or fetched as the data dir and flags say.
pub async fn prepare(cfg: &Config) -> anyhow::Result<TlsMaterial> {
    let dir = tls_dir(&cfg.data_dir);
    if dir.exists() {
        return dir
            .load()
            .context("cannot load this coordinator's certificate");
    }
    let identity = Identity::new(Role::Coordinator, cfg.name.clone());
    let ttl = Duration::from_secs(cfg.tls.coordinator_cert_ttl_secs);
    if cfg.bootstrap {
        return bootstrap(cfg, &dir, &identity, ttl);
    }
    if cfg.join.is_empty() {
        bail!(
            "no certificate in {}: pass --bootstrap to create a new cluster, or --join ADDR with \
             --token (from `shoalctl token show coordinator`) to join one; --insecure runs \
             without TLS for local experiments",
            dir.dir.display()
        );
    }
    let Some(text) = &cfg.tls.join_token else {
        bail!(
            "joining through {} needs the coordinator join token: pass --token-file FILE or set \
             SHOAL_JOIN_TOKEN (from `shoalctl token show coordinator`)",
            cfg.join.join(", ")
        );
    };
    let token = JoinToken::parse(text)?;
    let material = shoal_pki::join::join(&cfg.join, &token, &identity, Some(cfg.id))
        .await
        .context("cannot get a coordinator certificate")?;
    dir.store(&material)?;
    tracing::info!(dir = %dir.dir.display(), "joined the cluster CA: certificate stored");
    Ok(material)
}

fn bootstrap(
    cfg: &Config,
    dir: &TlsDir,
    identity: &Identity,
    ttl: Duration,
) -> anyhow::Result<TlsMaterial> {
    let ca = CertAuthority::generate(&cfg.name, CA_TTL)?;
    let own = ca.issue_with_key(identity, ttl)?;
    let admin_id = Identity::new(Role::Admin, "admin");
    let admin = ca.issue_with_key(&admin_id, ADMIN_TTL)?;
    let record = |id: &Identity, c: &shoal_pki::IssuedCert, member_id| CertRecord {
        serial: c.serial.clone(),
        role: id.role,
        name: id.name.clone(),
        member_id,
        not_after: c.not_after,
    };
    let pending = PendingCa {
        ca: ca.clone(),
        agent_secret: Redacted(JoinToken::new_secret()),
        coordinator_secret: Redacted(JoinToken::new_secret()),
        issued: vec![
            record(identity, &own.cert, Some(cfg.id)),
            record(&admin_id, &admin.cert, None),
        ],
    };
    let material = TlsMaterial {
        ca_pem: ca.cert_pem.clone(),
        cert_pem: own.cert.cert_pem,
        key_pem: own.key_pem,
    };
    shoal_pki::files::create_private_dir(&dir.dir)?;
    write_private(
        &pending_path(&cfg.data_dir),
        &serde_json::to_vec(&pending).context("cannot encode the new CA")?,
    )?;
    dir.store(&material)?;
    let admin_dir = TlsDir::new(admin_dir(&cfg.data_dir));
    admin_dir.store(&TlsMaterial {
        ca_pem: ca.cert_pem.clone(),
        cert_pem: admin.cert.cert_pem,
        key_pem: admin.key_pem,
    })?;
    tracing::info!(ca_digest = %ca.digest()?, admin_dir = %admin_dir.dir.display(),
        "created the cluster CA; shoalctl's admin certificate is in admin_dir \
         (point SHOAL_TLS_DIR at it)");
    Ok(material)
}

/// Hands a CA made at bootstrap to the replicated state, then forgets the local copy. Retries
/// until this coordinator's cluster has a leader that accepts it.
pub async fn publish_pending_ca(coord: Coordinator, data_dir: PathBuf) {
    let path = pending_path(&data_dir);
    let Ok(bytes) = std::fs::read(&path) else {
        return;
    };
    let pending: PendingCa = match serde_json::from_slice(&bytes) {
        Ok(p) => p,
        Err(e) => {
            tracing::error!(path = %path.display(), error = %e, "unreadable pending CA file");
            return;
        }
    };
    let req = coord.init_pki_request(
        pending.ca,
        pending.agent_secret,
        pending.coordinator_secret,
        pending.issued,
    );
    loop {
        match coord.write(req.clone()).await {
            Ok((resp, _)) => {
                if let Some(e) = resp.error {
                    tracing::info!(reason = %e, "cluster CA already recorded");
                } else {
                    tracing::info!("cluster CA recorded in the replicated state");
                }
                let _ = std::fs::remove_file(&path);
                return;
            }
            Err(e) => {
                tracing::debug!(error = %e, "cannot record the cluster CA yet; retrying");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
}
