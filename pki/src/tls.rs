//! tonic TLS settings built from a holder's material, and the peer identity of a request.

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;
use tonic::transport::{Certificate, ClientTlsConfig, Endpoint, Identity as TonicIdentity};

use crate::files::TlsMaterial;
use crate::identity::{CertInfo, Role};
use crate::PkiError;

/// The DER of the first certificate in a PEM text.
pub fn first_cert_der(pem: &str) -> Result<Vec<u8>, PkiError> {
    let cert = CertificateDer::pem_slice_iter(pem.as_bytes())
        .next()
        .ok_or_else(|| PkiError::Cert("no certificate in the PEM text".into()))?
        .map_err(|e| PkiError::Cert(format!("malformed PEM: {e}")))?;
    Ok(cert.to_vec())
}

/// A client that presents its certificate and accepts only a server of role `server` signed
/// by the cluster CA.
pub fn client_config(m: &TlsMaterial, server: Role) -> ClientTlsConfig {
    ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(&m.ca_pem))
        .identity(TonicIdentity::from_pem(&m.cert_pem, &m.key_pem))
        .domain_name(server.server_name())
}

/// A client with no certificate of its own (a node that is joining), trusting `ca_pem` only.
pub fn anonymous_client_config(ca_pem: &str, server: Role) -> ClientTlsConfig {
    ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(ca_pem))
        .domain_name(server.server_name())
}

/// An endpoint for `addr` (`host:port`), over TLS when `tls` is given.
pub fn endpoint(addr: &str, tls: Option<&ClientTlsConfig>) -> Result<Endpoint, PkiError> {
    let bad = |e: tonic::transport::Error| PkiError::Cert(format!("address `{addr}`: {e}"));
    match tls {
        Some(cfg) => Endpoint::from_shared(format!("https://{addr}"))
            .and_then(|e| e.tls_config(cfg.clone()))
            .map_err(bad),
        None => Endpoint::from_shared(format!("http://{addr}")).map_err(bad),
    }
}

/// The identity in the certificate the caller presented, if any.
pub fn peer_info<T>(req: &tonic::Request<T>) -> Option<Result<CertInfo, PkiError>> {
    let certs = req.peer_certs()?;
    let leaf = certs.first()?;
    Some(CertInfo::from_der(leaf))
}

/// The caller's verified certificate (the chain was checked by TLS), or `Unauthenticated`
/// naming `api` when there is none.
pub fn caller<T>(req: &tonic::Request<T>, api: &str) -> Result<CertInfo, tonic::Status> {
    match peer_info(req) {
        None => Err(tonic::Status::unauthenticated(format!(
            "{api} requires a client certificate from the cluster CA (mutual TLS); none was \
             presented"
        ))),
        Some(Err(e)) => Err(tonic::Status::unauthenticated(e.to_string())),
        Some(Ok(info)) => Ok(info),
    }
}

/// `PermissionDenied` for a certificate on the cluster's revocation list, naming its holder and
/// serial. Every server that checks revocation (coordinators, agents) answers with this.
pub fn revoked(info: &CertInfo) -> tonic::Status {
    tonic::Status::permission_denied(format!(
        "the certificate of {} (serial {}) has been revoked",
        info.identity, info.serial
    ))
}

/// `PermissionDenied` naming `api` unless the certificate's role is one of `allowed`.
pub fn check_role(info: &CertInfo, api: &str, allowed: &[Role]) -> Result<(), tonic::Status> {
    if allowed.contains(&info.identity.role) {
        return Ok(());
    }
    let want: Vec<&str> = allowed.iter().map(|r| r.as_str()).collect();
    let article = if want.first().is_some_and(|w| w.starts_with('a')) {
        "an"
    } else {
        "a"
    };
    Err(tonic::Status::permission_denied(format!(
        "{api} requires {article} {} certificate; the caller presented the certificate of {}",
        want.join(" or "),
        info.identity
    )))
}
