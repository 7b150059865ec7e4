//! The client side of joining and renewing: what an agent or a new coordinator does to get
//! its certificate. The key is made here and never sent; only the signing request travels.

use std::time::Duration;

use shoal_proto::certificates::certificates_client::CertificatesClient;
use shoal_proto::certificates::{JoinRequest, RenewRequest};

use crate::csr::KeyAndCsr;
use crate::files::TlsMaterial;
use crate::identity::{CertInfo, Identity, Role};
use crate::tls::{anonymous_client_config, client_config, endpoint};
use crate::token::JoinToken;
use crate::{pin, PkiError};

/// Joins through the first of `coordinators` that accepts: pins the CA named by the token,
/// then asks for a certificate for `identity`. `member_id` is the Raft id of a coordinator.
pub async fn join(
    coordinators: &[String],
    token: &JoinToken,
    identity: &Identity,
    member_id: Option<u64>,
) -> Result<TlsMaterial, PkiError> {
    if token.role != identity.role {
        return Err(PkiError::Token(format!(
            "this is the {} join token; joining as {} needs the {} token \
             (`shoalctl token show {}`)",
            token.role, identity.role, identity.role, identity.role
        )));
    }
    let request = KeyAndCsr::generate(identity)?;
    let mut last = PkiError::Pin("no coordinator address given".into());
    for addr in coordinators {
        let ca_pem = match pin::fetch_pinned_ca(addr, &token.ca_digest).await {
            Ok(ca) => ca,
            // A coordinator with a different CA is never tried further.
            Err(e) => {
                last = e;
                continue;
            }
        };
        let tls = anonymous_client_config(&ca_pem, Role::Coordinator);
        let call = async {
            let reply = ca_client(addr, &tls)
                .await?
                .join(JoinRequest {
                    token: token.encode(),
                    csr_pem: request.csr_pem.clone(),
                    role: identity.role.to_string(),
                    name: identity.name.clone(),
                    member_id: member_id.unwrap_or(0),
                })
                .await
                .map_err(|s| refused(addr, &s))?
                .into_inner();
            Ok::<_, PkiError>(reply)
        };
        match call.await {
            Ok(reply) => {
                check_issued(&reply.cert_pem, identity)?;
                return Ok(TlsMaterial {
                    ca_pem: ca_pem.clone(),
                    cert_pem: reply.cert_pem,
                    key_pem: request.key_pem,
                });
            }
            Err(e @ PkiError::Token(_)) => return Err(e),
            Err(e) => last = e,
        }
    }
    Err(last)
}

/// Asks a coordinator for a fresh certificate with the same identity and a new key; returns it
/// with the new certificate read.
pub async fn renew(addr: &str, current: &TlsMaterial) -> Result<(TlsMaterial, CertInfo), PkiError> {
    let info = CertInfo::from_pem(&current.cert_pem)?;
    let request = KeyAndCsr::generate(&info.identity)?;
    let tls = client_config(current, Role::Coordinator);
    let reply = ca_client(addr, &tls)
        .await?
        .renew(RenewRequest {
            csr_pem: request.csr_pem,
        })
        .await
        .map_err(|s| refused(addr, &s))?
        .into_inner();
    let issued = check_issued(&reply.cert_pem, &info.identity)?;
    let material = TlsMaterial {
        ca_pem: current.ca_pem.clone(),
        cert_pem: reply.cert_pem,
        key_pem: request.key_pem,
    };
    Ok((material, issued))
}

async fn ca_client(
    addr: &str,
    tls: &tonic::transport::ClientTlsConfig,
) -> Result<CertificatesClient<tonic::transport::Channel>, PkiError> {
    let channel = endpoint(addr, Some(tls))?
        .connect_timeout(Duration::from_secs(3))
        .timeout(Duration::from_secs(15))
        .connect()
        .await
        .map_err(|e| PkiError::Pin(format!("{addr}: {e}")))?;
    Ok(CertificatesClient::new(channel))
}

fn refused(addr: &str, s: &tonic::Status) -> PkiError {
    match s.code() {
        tonic::Code::PermissionDenied | tonic::Code::InvalidArgument => PkiError::Token(format!(
            "the coordinator at {addr} refused: {}",
            s.message()
        )),
        _ => PkiError::Pin(format!("{addr}: {}", s.message())),
    }
}

/// The issued certificate, read; an error if it is not for `want`.
fn check_issued(cert_pem: &str, want: &Identity) -> Result<CertInfo, PkiError> {
    let got = CertInfo::from_pem(cert_pem)?;
    if &got.identity != want {
        return Err(PkiError::Cert(format!(
            "the coordinator issued a certificate for {}, not for {want}",
            got.identity
        )));
    }
    Ok(got)
}
