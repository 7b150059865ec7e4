//! A node's own key pair and the signing request it sends with its join token. The private
//! key never leaves the node: only the request travels.

use rcgen::{CertificateParams, DistinguishedName, DnType, KeyPair};

use crate::identity::Identity;
use crate::PkiError;

/// A fresh key pair and a certificate signing request for it.
pub struct KeyAndCsr {
    pub key_pem: String,
    pub csr_pem: String,
}

impl KeyAndCsr {
    /// Generates an ECDSA P-256 key and a request naming `identity` (the signer decides the
    /// final subject; the request only proves possession of the key).
    pub fn generate(identity: &Identity) -> Result<KeyAndCsr, PkiError> {
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, identity.name.as_str());
        dn.push(DnType::OrganizationalUnitName, identity.role.as_str());
        params.distinguished_name = dn;
        let csr = params
            .serialize_request(&key)
            .map_err(|e| PkiError::Csr(e.to_string()))?;
        Ok(KeyAndCsr {
            key_pem: key.serialize_pem(),
            csr_pem: csr.pem().map_err(|e| PkiError::Csr(e.to_string()))?,
        })
    }
}
