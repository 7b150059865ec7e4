//! Pinning the CA before a joining node trusts a coordinator.
//!
//! The joining node opens a TLS connection that accepts the coordinator only if one of the
//! certificates it presents is the CA whose digest the join token carries, and the
//! coordinator's own certificate is signed by that CA for the coordinator role. Only then is
//! the CA certificate used as the trust root for the join call.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, RootCertStore, SignatureScheme};
use tokio::net::TcpStream;

use crate::identity::Role;
use crate::PkiError;

#[derive(Debug)]
struct PinVerifier {
    pin: String,
    provider: Arc<CryptoProvider>,
    /// The CA that matched the pin, or the digests seen when none did.
    outcome: Mutex<Result<CertificateDer<'static>, Vec<String>>>,
}

impl ServerCertVerifier for PinVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let seen: Vec<String> = intermediates
            .iter()
            .map(|c| crate::sha256_hex(c.as_ref()))
            .collect();
        let Some(ca) = intermediates
            .iter()
            .zip(&seen)
            .find(|(_, d)| crate::constant_time_eq(d.as_bytes(), self.pin.as_bytes()))
            .map(|(c, _)| c.clone().into_owned())
        else {
            if let Ok(mut o) = self.outcome.lock() {
                *o = Err(seen);
            }
            return Err(rustls::Error::General("CA does not match the pin".into()));
        };
        let mut roots = RootCertStore::empty();
        roots.add(ca.clone())?;
        let verifier =
            WebPkiServerVerifier::builder_with_provider(Arc::new(roots), self.provider.clone())
                .build()
                .map_err(|e| rustls::Error::General(e.to_string()))?;
        verifier.verify_server_cert(end_entity, &[], server_name, ocsp, now)?;
        if let Ok(mut o) = self.outcome.lock() {
            *o = Ok(ca);
        }
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// Connects to the coordinator at `addr` and returns its CA certificate (PEM) if, and only if,
/// its digest is `pin` and the coordinator proves it holds a coordinator certificate of that CA.
pub async fn fetch_pinned_ca(addr: &str, pin: &str) -> Result<String, PkiError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier = Arc::new(PinVerifier {
        pin: pin.to_ascii_lowercase(),
        provider: provider.clone(),
        outcome: Mutex::new(Err(Vec::new())),
    });
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| PkiError::Pin(e.to_string()))?
        .dangerous()
        .with_custom_certificate_verifier(verifier.clone())
        .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let name = ServerName::try_from(Role::Coordinator.server_name())
        .map_err(|e| PkiError::Pin(e.to_string()))?;
    let tcp = tokio::time::timeout(Duration::from_secs(3), TcpStream::connect(addr))
        .await
        .map_err(|_| PkiError::Pin(format!("{addr}: connection timed out")))?
        .map_err(|e| PkiError::Pin(format!("{addr}: unreachable: {e}")))?;
    let handshake =
        tokio::time::timeout(Duration::from_secs(5), connector.connect(name, tcp)).await;
    let outcome = verifier
        .outcome
        .lock()
        .map(|o| o.clone())
        .unwrap_or_else(|p| p.into_inner().clone());
    match (handshake, outcome) {
        (Ok(Ok(_)), Ok(ca)) => {
            let pem = format!(
                "-----BEGIN CERTIFICATE-----\n{}\n-----END CERTIFICATE-----\n",
                base64_lines(ca.as_ref())
            );
            Ok(pem)
        }
        (_, Err(seen)) if !seen.is_empty() => Err(PkiError::Pin(format!(
            "the coordinator at {addr} presents CA sha256:{}, but the join token pins \
             sha256:{pin}; refusing to trust it (is the token from another cluster?)",
            seen.join(", sha256:")
        ))),
        (Ok(Err(e)), _) => Err(PkiError::Pin(format!(
            "{addr}: TLS handshake failed: {e} (is it a Shoal coordinator with TLS?)"
        ))),
        (Err(_), _) => Err(PkiError::Pin(format!("{addr}: TLS handshake timed out"))),
        (Ok(Ok(_)), Err(_)) => Err(PkiError::Pin(format!(
            "{addr}: the coordinator presented no CA certificate"
        ))),
    }
}

/// Standard base64 with 64-character lines, as PEM wants.
fn base64_lines(der: &[u8]) -> String {
    use base64::Engine;
    let text = base64::engine::general_purpose::STANDARD.encode(der);
    text.as_bytes()
        .chunks(64)
        .map(|l| String::from_utf8_lossy(l).into_owned())
        .collect::<Vec<_>>()
        .join("\n")
}
