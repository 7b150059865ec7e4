//! What an endpoint speaks, asked only after a connection or call to it failed: TLS (a secure
//! cluster) or plaintext HTTP/2 (a cluster started with `--insecure`). A mismatch with what
//! shoalctl was told to use becomes an error saying what is wrong and what to do, instead of
//! `h2 protocol error` or `transport error`.

use std::sync::Arc;
use std::time::Duration;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// What the endpoint answered to a probe.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Speaks {
    /// It completed the server side of a TLS handshake up to presenting a certificate.
    Tls,
    /// It answered an HTTP/2 connection preface with a SETTINGS frame, in plaintext.
    PlainHttp2,
    /// Neither (not reachable, or something else).
    Unknown,
}

/// Probes `addr` (host:port): TLS first, then plaintext HTTP/2.
pub async fn probe(addr: &str) -> Speaks {
    match presents_certificate(addr).await {
        Some(true) => Speaks::Tls,
        // Reachable, not TLS: perhaps plaintext HTTP/2.
        Some(false) if answers_h2_preface(addr).await => Speaks::PlainHttp2,
        _ => Speaks::Unknown,
    }
}

/// The explanation of a failure against `addr`, when the probe shows a TLS mismatch.
pub async fn mismatch(addr: &str, using_tls: bool) -> Option<String> {
    match (probe(addr).await, using_tls) {
        (Speaks::Tls, false) => Some(format!(
            "{addr} speaks TLS (a secure cluster), but shoalctl talks plaintext because of \
             --insecure (or SHOAL_INSECURE): drop --insecure and point SHOAL_TLS_DIR (or \
             --tls-dir) at the admin certificate (the bootstrap coordinator writes it to \
             DATA_DIR/admin; `shoalctl cert issue-admin` makes more)"
        )),
        (Speaks::PlainHttp2, true) => Some(format!(
            "{addr} speaks plaintext HTTP/2 (a cluster started with --insecure), but shoalctl \
             uses TLS with the admin certificate: add --insecure (or set SHOAL_INSECURE=1)"
        )),
        _ => None,
    }
}

/// Refuses every certificate after noting that one was presented: the probe trusts nothing and
/// sends nothing over the connection.
#[derive(Debug)]
struct NoteAndRefuse {
    schemes: Vec<SignatureScheme>,
}

impl ServerCertVerifier for NoteAndRefuse {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Err(rustls::Error::General(
            "probe: certificate presented".into(),
        ))
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Err(rustls::Error::General("probe: refused".into()))
    }

    fn verify_tls13_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Err(rustls::Error::General("probe: refused".into()))
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.schemes.clone()
    }
}

/// `None` when the endpoint cannot be reached at all.
async fn presents_certificate(addr: &str) -> Option<bool> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let schemes = provider
        .signature_verification_algorithms
        .supported_schemes();
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .ok()?;
    let config = builder
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(NoteAndRefuse { schemes }))
        .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let name = ServerName::try_from("shoal-probe").ok()?;
    let attempt = async {
        let tcp = TcpStream::connect(addr).await.ok()?;
        Some(connector.connect(name, tcp).await)
    };
    match tokio::time::timeout(PROBE_TIMEOUT, attempt).await {
        Ok(Some(Err(e))) => Some(e.to_string().contains("probe: certificate presented")),
        Ok(Some(Ok(_))) => Some(false),
        Ok(None) | Err(_) => None,
    }
}

async fn answers_h2_preface(addr: &str) -> bool {
    const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
    // An empty SETTINGS frame: length 0, type 4, no flags, stream 0.
    const SETTINGS: [u8; 9] = [0, 0, 0, 4, 0, 0, 0, 0, 0];
    let attempt = async {
        let mut tcp = TcpStream::connect(addr).await.ok()?;
        tcp.write_all(PREFACE).await.ok()?;
        tcp.write_all(&SETTINGS).await.ok()?;
        let mut head = [0u8; 9];
        tcp.read_exact(&mut head).await.ok()?;
        // The server's first frame is its SETTINGS (type 4) on stream 0.
        Some(head[3] == 4 && head[5..9] == [0, 0, 0, 0])
    };
    matches!(
        tokio::time::timeout(PROBE_TIMEOUT, attempt).await,
        Ok(Some(true))
    )
}
