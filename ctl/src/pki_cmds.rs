//! `shoalctl token ...` and `shoalctl cert ...`: join tokens and admin certificates.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use clap::Subcommand;
use shoal_pki::csr::KeyAndCsr;
use shoal_pki::files::{TlsDir, TlsMaterial};
use shoal_pki::{CertInfo, Identity, Role};
use shoal_proto::certificates::{IssueAdminRequest, RevokeRequest, TokenRequest};

use crate::client::Client;

#[derive(Subcommand, Debug)]
pub enum TokenCmd {
    /// Print the join token of a role (agent or coordinator).
    Show { role: String },
    /// Replace a role's join token; the old one stops working at once.
    Rotate { role: String },
}

#[derive(Subcommand, Debug)]
pub enum CertCmd {
    /// Make a key here and have the cluster CA sign an admin certificate for it.
    IssueAdmin {
        /// Name in the certificate (who holds it).
        #[arg(long)]
        name: String,
        /// Directory to write ca.pem, cert.pem and key.pem (0600) to.
        #[arg(long)]
        out: PathBuf,
        /// Lifetime in seconds (default: the cluster's certificate lifetime).
        #[arg(long)]
        ttl_secs: Option<u64>,
    },
    /// Revoke a certificate by serial (as `cert issue-admin` printed it).
    Revoke { serial: String },
}

/// The admin certificate to present, from `--tls-dir`, `SHOAL_TLS_DIR` or
/// `~/.config/shoal/tls`; none with `--insecure`.
pub fn load_admin_tls(dir: Option<&Path>, insecure: bool) -> anyhow::Result<Option<TlsMaterial>> {
    if insecure {
        return Ok(None);
    }
    let dir = match dir {
        Some(d) => d.to_path_buf(),
        None => std::env::var_os("HOME")
            .map(PathBuf::from)
            .unwrap_or_default()
            .join(".config/shoal/tls"),
    };
    let tls = TlsDir::new(&dir);
    if !tls.exists() {
        bail!(
            "no admin certificate in {}: pass --tls-dir DIR or set SHOAL_TLS_DIR (the \
             bootstrap coordinator writes one to DATA_DIR/admin; `shoalctl cert issue-admin` \
             makes more); --insecure talks to an insecure cluster",
            dir.display()
        );
    }
    let m = tls.load().context("cannot load the admin certificate")?;
    if let Some(problem) = m.diagnose(shoal_pki::unix_now()) {
        bail!("the admin certificate in {}: {problem}", dir.display());
    }
    Ok(Some(m))
}

fn role_of(s: &str) -> anyhow::Result<&'static str> {
    match Role::parse(s) {
        Some(Role::Agent) => Ok("agent"),
        Some(Role::Coordinator) => Ok("coordinator"),
        _ => bail!("`{s}`: join tokens exist for `agent` and `coordinator`"),
    }
}

pub async fn token(client: &mut Client, cmd: &TokenCmd) -> anyhow::Result<()> {
    let (rotate, role) = match cmd {
        TokenCmd::Show { role } => (false, role_of(role)?),
        TokenCmd::Rotate { role } => (true, role_of(role)?),
    };
    let req = TokenRequest { role: role.into() };
    let reply = client
        .call_certs(|mut c| {
            let req = req.clone();
            async move {
                if rotate {
                    c.rotate_token(req).await
                } else {
                    c.show_token(req).await
                }
            }
        })
        .await?;
    println!("{}", reply.token);
    Ok(())
}

pub async fn cert(client: &mut Client, cmd: &CertCmd) -> anyhow::Result<()> {
    let (name, out, ttl_secs) = match cmd {
        CertCmd::IssueAdmin {
            name,
            out,
            ttl_secs,
        } => (name, out, ttl_secs),
        CertCmd::Revoke { serial } => {
            let req = RevokeRequest {
                serial: serial.clone(),
            };
            let reply = client
                .call_certs(|mut c| {
                    let req = req.clone();
                    async move { c.revoke_cert(req).await }
                })
                .await?;
            println!("{}", reply.message);
            return Ok(());
        }
    };
    let identity = Identity::new(Role::Admin, name.clone());
    let request = KeyAndCsr::generate(&identity)?;
    let req = IssueAdminRequest {
        csr_pem: request.csr_pem.clone(),
        name: name.clone(),
        ttl_secs: ttl_secs.unwrap_or(0),
    };
    let reply = client
        .call_certs(|mut c| {
            let req = req.clone();
            async move { c.issue_admin(req).await }
        })
        .await?;
    let info = CertInfo::from_pem(&reply.cert_pem)?;
    if info.identity != identity {
        bail!("the coordinator issued a certificate for {}", info.identity);
    }
    TlsDir::new(out).store(&TlsMaterial {
        ca_pem: reply.ca_pem,
        cert_pem: reply.cert_pem,
        key_pem: request.key_pem,
    })?;
    println!(
        "admin certificate for `{name}` (serial {}) written to {}",
        info.serial,
        out.display()
    );
    Ok(())
}
