//! The TLS side of a server: rustls settings built from a holder's material, and an accept
//! loop that hands tonic finished TLS streams (so `Request::peer_certs` works) and logs every
//! refused handshake with its cause (an expired certificate, another CA, no certificate where
//! one is required), which tonic's built-in TLS would drop silently. The accept loop can
//! follow a `watch` of the settings, so a renewed certificate serves new handshakes at once.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{AlertDescription, RootCertStore, ServerConfig};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;
use tokio_stream::wrappers::ReceiverStream;

use crate::files::TlsMaterial;
use crate::PkiError;

/// The rustls server settings [`incoming_watched`] follows (re-exported so holders can name it).
pub use rustls::ServerConfig as ServerSettings;

/// How long a client may take to finish its handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

fn certs(pem: &str) -> Result<Vec<CertificateDer<'static>>, PkiError> {
    CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| PkiError::Cert(format!("malformed PEM: {e}")))
}

/// A server presenting its certificate and the CA (so a joining node can pin the CA), verifying
/// client certificates against the CA. Without `require_client_cert`, a client may come without
/// a certificate (to join); the APIs then check the caller themselves.
pub fn server_config(
    m: &TlsMaterial,
    require_client_cert: bool,
) -> Result<Arc<ServerConfig>, PkiError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = RootCertStore::empty();
    for ca in certs(&m.ca_pem)? {
        roots
            .add(ca)
            .map_err(|e| PkiError::Cert(format!("the CA certificate: {e}")))?;
    }
    let builder = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone());
    let verifier = if require_client_cert {
        builder.build()
    } else {
        builder.allow_unauthenticated().build()
    }
    .map_err(|e| PkiError::Cert(format!("client verifier: {e}")))?;
    let mut chain = certs(&m.cert_pem)?;
    chain.extend(certs(&m.ca_pem)?);
    let key = PrivateKeyDer::from_pem_slice(m.key_pem.as_bytes())
        .map_err(|e| PkiError::Cert(format!("the private key: {e}")))?;
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| PkiError::Cert(e.to_string()))?
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key)
        .map_err(|e| PkiError::Cert(format!("the server certificate: {e}")))?;
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(Arc::new(config))
}

/// Accepts connections on `listener` and yields them once their TLS handshake succeeded.
/// Failed handshakes are logged (`server` names which server) and dropped. Each handshake runs
/// on its own task, so a slow client does not hold up the others.
pub fn incoming(
    listener: TcpListener,
    config: Arc<ServerConfig>,
    server: &'static str,
) -> ReceiverStream<Result<TlsStream<TcpStream>, std::io::Error>> {
    incoming_watched(listener, watch::channel(config).1, server)
}

/// Like [`incoming`], but each new connection is handshaken with the settings `config` holds
/// at that moment: sending a new `ServerConfig` (a renewed certificate) changes what new
/// connections see; established connections keep the one they were made with.
pub fn incoming_watched(
    listener: TcpListener,
    config: watch::Receiver<Arc<ServerConfig>>,
    server: &'static str,
) -> ReceiverStream<Result<TlsStream<TcpStream>, std::io::Error>> {
    incoming_observed(listener, config, server, None)
}

/// Called with the client's address when a client refused this server's certificate during
/// the handshake: it trusts another CA (a node or an admin of another cluster).
pub type OnCertRefused = Arc<dyn Fn(SocketAddr) + Send + Sync>;

/// Whether a failed handshake means the client refused our certificate (the alerts rustls and
/// other TLS stacks send when the server's chain does not lead to a CA they trust).
pub fn client_refused_our_certificate(e: &std::io::Error) -> bool {
    matches!(
        e.get_ref()
            .and_then(|inner| inner.downcast_ref::<rustls::Error>()),
        Some(rustls::Error::AlertReceived(
            AlertDescription::UnknownCA
                | AlertDescription::BadCertificate
                | AlertDescription::CertificateUnknown
        ))
    )
}

/// [`incoming_watched`] that also reports every client that refused this server's certificate
/// to `on_refused`.
pub fn incoming_observed(
    listener: TcpListener,
    config: watch::Receiver<Arc<ServerConfig>>,
    server: &'static str,
    on_refused: Option<OnCertRefused>,
) -> ReceiverStream<Result<TlsStream<TcpStream>, std::io::Error>> {
    let (tx, rx) = mpsc::channel(64);
    tokio::spawn(async move {
        loop {
            let accepted = tokio::select! {
                a = listener.accept() => a,
                _ = tx.closed() => return,
            };
            let (tcp, peer) = match accepted {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!(server, error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            let _ = tcp.set_nodelay(true);
            let acceptor = TlsAcceptor::from(config.borrow().clone());
            let tx = tx.clone();
            let on_refused = on_refused.clone();
            tokio::spawn(async move {
                match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                    Ok(Ok(tls)) => {
                        let _ = tx.send(Ok(tls)).await;
                    }
                    Ok(Err(e)) => {
                        tracing::warn!(server, %peer, error = %e, "TLS handshake refused");
                        if let Some(report) =
                            on_refused.filter(|_| client_refused_our_certificate(&e))
                        {
                            report(peer);
                        }
                    }
                    Err(_) => tracing::warn!(server, %peer, "TLS handshake timed out"),
                }
            });
        }
    });
    ReceiverStream::new(rx)
}
