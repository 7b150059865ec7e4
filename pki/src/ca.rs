//! The cluster CA: created once at bootstrap, kept in the replicated state so whichever
//! coordinator leads can sign, and used to sign node and admin certificates.

use std::fmt;
use std::time::Duration;

use rcgen::{
    BasicConstraints, CertificateParams, CertificateSigningRequestParams, DistinguishedName,
    DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose, SanType, SerialNumber,
};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::identity::{Identity, Role};
use crate::PkiError;

/// How far back a new certificate's validity starts, for clocks a little behind ours.
pub const BACKDATE: Duration = Duration::from_secs(300);
/// Lifetime of coordinator certificates (agents' lifetime is configurable and short; a
/// coordinator gets a new certificate by rejoining).
pub const COORDINATOR_CERT_TTL: Duration = Duration::from_secs(365 * 24 * 3600);

/// The CA certificate and its private key, both PEM. `Debug` never prints the key.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CertAuthority {
    pub cert_pem: String,
    pub key_pem: String,
}

impl fmt::Debug for CertAuthority {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CertAuthority")
            .field("cert_pem", &self.cert_pem)
            .field("key_pem", &"<redacted>")
            .finish()
    }
}

/// A certificate the CA signed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IssuedCert {
    pub cert_pem: String,
    /// Lower-case hex of the serial number.
    pub serial: String,
    /// Seconds since the Unix epoch.
    pub not_after: i64,
}

/// A certificate together with the private key made for it (bootstrap only: the first
/// coordinator's own certificate and the first admin certificate are made where the key lives).
pub struct CertAndKey {
    pub cert: IssuedCert,
    pub key_pem: String,
}

impl fmt::Debug for CertAndKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CertAndKey")
            .field("cert", &self.cert)
            .field("key_pem", &"<redacted>")
            .finish()
    }
}

impl CertAuthority {
    /// A new self-signed CA valid for `lifetime`.
    pub fn generate(cluster_name: &str, lifetime: Duration) -> Result<CertAuthority, PkiError> {
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        // A random suffix keeps two clusters' CAs apart even when their first coordinators
        // share a name (certificates name their issuer by this).
        let suffix = &uuid::Uuid::new_v4().simple().to_string()[..8];
        dn.push(
            DnType::CommonName,
            format!("shoal cluster CA {cluster_name} {suffix}"),
        );
        dn.push(DnType::OrganizationName, "shoal");
        params.distinguished_name = dn;
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let now = OffsetDateTime::now_utc();
        params.not_before = now - BACKDATE;
        params.not_after = now + lifetime;
        params.serial_number = Some(random_serial());
        let cert = params.self_signed(&key)?;
        Ok(CertAuthority {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        })
    }

    /// Hex sha256 of the CA certificate's DER: what join tokens pin.
    pub fn digest(&self) -> Result<String, PkiError> {
        Ok(crate::sha256_hex(&crate::tls::first_cert_der(
            &self.cert_pem,
        )?))
    }

    fn issuer(&self) -> Result<Issuer<'static, KeyPair>, PkiError> {
        let key = KeyPair::from_pem(&self.key_pem)
            .map_err(|e| PkiError::Cert(format!("the CA key cannot be read: {e}")))?;
        Issuer::from_ca_cert_pem(&self.cert_pem, key)
            .map_err(|e| PkiError::Cert(format!("the CA certificate cannot be read: {e}")))
    }

    /// Signs the key in `csr_pem` for `identity`. The subject and names come from `identity`,
    /// never from the request.
    pub fn sign_csr(
        &self,
        csr_pem: &str,
        identity: &Identity,
        lifetime: Duration,
    ) -> Result<IssuedCert, PkiError> {
        let csr = CertificateSigningRequestParams::from_pem(csr_pem)
            .map_err(|e| PkiError::Csr(format!("not a valid signing request: {e}")))?;
        let params = leaf_params(identity, lifetime)?;
        let cert = params.signed_by(&csr.public_key, &self.issuer()?)?;
        finish(cert.pem(), &params)
    }

    /// Makes a key here and signs it for `identity` (bootstrap only).
    pub fn issue_with_key(
        &self,
        identity: &Identity,
        lifetime: Duration,
    ) -> Result<CertAndKey, PkiError> {
        let key = KeyPair::generate()?;
        let params = leaf_params(identity, lifetime)?;
        let cert = params.signed_by(&key, &self.issuer()?)?;
        Ok(CertAndKey {
            cert: finish(cert.pem(), &params)?,
            key_pem: key.serialize_pem(),
        })
    }
}

fn finish(cert_pem: String, params: &CertificateParams) -> Result<IssuedCert, PkiError> {
    let serial = params
        .serial_number
        .as_ref()
        .map(|s| hex::encode(s.to_bytes()))
        .ok_or_else(|| PkiError::Cert("no serial number".into()))?;
    Ok(IssuedCert {
        cert_pem,
        serial,
        not_after: params.not_after.unix_timestamp(),
    })
}

fn leaf_params(identity: &Identity, lifetime: Duration) -> Result<CertificateParams, PkiError> {
    if identity.name.is_empty() {
        return Err(PkiError::Cert(
            "a certificate needs a non-empty name".into(),
        ));
    }
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, identity.name.as_str());
    dn.push(DnType::OrganizationalUnitName, identity.role.as_str());
    dn.push(DnType::OrganizationName, "shoal");
    params.distinguished_name = dn;
    let server_name = identity
        .role
        .server_name()
        .try_into()
        .map_err(|e: rcgen::Error| PkiError::Cert(e.to_string()))?;
    params.subject_alt_names = vec![SanType::DnsName(server_name)];
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = match identity.role {
        Role::Admin => vec![ExtendedKeyUsagePurpose::ClientAuth],
        Role::Coordinator | Role::Agent => vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ],
    };
    let now = OffsetDateTime::now_utc();
    params.not_before = now - BACKDATE;
    params.not_after = now + lifetime;
    params.serial_number = Some(random_serial());
    Ok(params)
}

/// 16 random bytes, high bit clear so the DER integer stays positive.
fn random_serial() -> SerialNumber {
    let mut bytes = *uuid::Uuid::new_v4().as_bytes();
    bytes[0] &= 0x7f;
    bytes[0] |= 0x01;
    SerialNumber::from_slice(&bytes)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::csr::KeyAndCsr;
    use crate::identity::CertInfo;

    #[test]
    fn signed_certificate_names_the_identity_not_the_request() {
        let ca = CertAuthority::generate("t", Duration::from_secs(3600)).unwrap();
        // The request claims to be an admin; the signer decides it is agent `n1`.
        let req = KeyAndCsr::generate(&Identity::new(Role::Admin, "root")).unwrap();
        let id = Identity::new(Role::Agent, "n1");
        let cert = ca
            .sign_csr(&req.csr_pem, &id, Duration::from_secs(60))
            .unwrap();
        let info = CertInfo::from_pem(&cert.cert_pem).unwrap();
        assert_eq!(info.identity, id);
        assert_eq!(info.serial, cert.serial);
        assert_eq!(info.not_after, cert.not_after);
    }

    #[test]
    fn garbage_request_is_refused() {
        let ca = CertAuthority::generate("t", Duration::from_secs(3600)).unwrap();
        let err = ca
            .sign_csr(
                "not a csr",
                &Identity::new(Role::Agent, "n"),
                Duration::from_secs(1),
            )
            .unwrap_err();
        assert!(err.to_string().contains("signing request"), "{err}");
    }

    #[test]
    fn debug_never_prints_the_key() {
        let ca = CertAuthority::generate("t", Duration::from_secs(3600)).unwrap();
        let text = format!("{ca:?}");
        assert!(!text.contains("PRIVATE KEY"), "{text}");
        assert!(text.contains("<redacted>"));
    }

    #[test]
    fn digest_is_stable_and_differs_between_cas() {
        let a = CertAuthority::generate("a", Duration::from_secs(3600)).unwrap();
        let b = CertAuthority::generate("b", Duration::from_secs(3600)).unwrap();
        assert_eq!(a.digest().unwrap(), a.digest().unwrap());
        assert_ne!(a.digest().unwrap(), b.digest().unwrap());
        assert_eq!(a.digest().unwrap().len(), 64);
    }
}
