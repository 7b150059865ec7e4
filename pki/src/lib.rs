//! Shoal's public-key infrastructure: the cluster CA, node certificates whose subject names
//! the node and its role, join tokens that pin the CA, key files, and the TLS settings for
//! tonic clients and servers built from them.
//!
//! Pure where it can be (signing, parsing, tokens); file and network access is in [`files`]
//! and [`pin`].

pub mod ca;
pub mod csr;
pub mod files;
pub mod identity;
pub mod join;
pub mod pin;
pub mod server;
pub mod tls;
pub mod token;

pub use ca::{CertAuthority, IssuedCert};
pub use identity::{CertInfo, Identity, Role};
pub use token::JoinToken;

/// Everything that can go wrong building, parsing or loading certificates, keys and tokens.
#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    #[error("certificate: {0}")]
    Cert(String),
    #[error("certificate signing request: {0}")]
    Csr(String),
    #[error("join token: {0}")]
    Token(String),
    #[error("{path}: {message}")]
    File { path: String, message: String },
    #[error("{0}")]
    Pin(String),
}

impl From<rcgen::Error> for PkiError {
    fn from(e: rcgen::Error) -> Self {
        PkiError::Cert(e.to_string())
    }
}

/// Installs rustls' ring provider as the process default (once; later calls do nothing).
/// Call it at the start of every binary's `main`.
pub fn install_crypto() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// Seconds since the Unix epoch (0 if the clock is before it): the time certificates are
/// compared with.
pub fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// Hex sha256 of DER bytes: how a CA certificate is pinned.
pub fn sha256_hex(der: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(der))
}

/// Compares two byte strings in time that does not depend on where they differ.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}
