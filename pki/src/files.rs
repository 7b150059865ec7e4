//! A TLS directory: `ca.pem` (the cluster CA), `cert.pem` (this holder's certificate) and
//! `key.pem` (its private key, mode 0600). Files are replaced atomically (write, then rename);
//! a renewal replaces the certificate and key as a pair (staged, then swapped, and a swap a
//! crash interrupted is finished by the next `load`), so the two on disk always match.

use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::PkiError;

/// Paths of one holder's TLS material.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsDir {
    pub dir: PathBuf,
}

/// The PEM texts of one holder.
#[derive(Clone)]
pub struct TlsMaterial {
    pub ca_pem: String,
    pub cert_pem: String,
    pub key_pem: String,
}

impl std::fmt::Debug for TlsMaterial {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsMaterial").finish_non_exhaustive()
    }
}

fn file_err(path: &Path, e: impl std::fmt::Display) -> PkiError {
    PkiError::File {
        path: path.display().to_string(),
        message: e.to_string(),
    }
}

impl TlsMaterial {
    /// Why this holder's certificate would be refused, if a local check can tell: expired, not
    /// yet valid, or not issued by the CA next to it. Used to explain a refused connection,
    /// whose TLS error the peer cannot always deliver.
    pub fn diagnose(&self, now_secs: i64) -> Option<String> {
        use x509_parser::prelude::{FromDer, X509Certificate};
        let cert_der = crate::tls::first_cert_der(&self.cert_pem).ok()?;
        let ca_der = crate::tls::first_cert_der(&self.ca_pem).ok()?;
        let (_, cert) = X509Certificate::from_der(&cert_der).ok()?;
        let (_, ca) = X509Certificate::from_der(&ca_der).ok()?;
        let validity = cert.validity();
        if now_secs > validity.not_after.timestamp() {
            return Some(format!(
                "the certificate expired at {} (get a new one: `shoalctl cert issue-admin`, or \
                 rejoin the node with a token)",
                validity.not_after
            ));
        }
        if now_secs < validity.not_before.timestamp() {
            return Some(format!(
                "the certificate is not valid before {} (is this clock behind?)",
                validity.not_before
            ));
        }
        if cert.issuer() != ca.subject() {
            return Some(format!(
                "the certificate was issued by `{}`, not by this cluster's CA `{}`",
                cert.issuer(),
                ca.subject()
            ));
        }
        None
    }
}

impl TlsDir {
    pub fn new(dir: impl Into<PathBuf>) -> TlsDir {
        TlsDir { dir: dir.into() }
    }

    pub fn ca(&self) -> PathBuf {
        self.dir.join("ca.pem")
    }

    pub fn cert(&self) -> PathBuf {
        self.dir.join("cert.pem")
    }

    pub fn key(&self) -> PathBuf {
        self.dir.join("key.pem")
    }

    /// Whether a certificate and key are present.
    pub fn exists(&self) -> bool {
        self.cert().exists() && self.key().exists() && self.ca().exists()
    }

    /// Where a renewal stages the new certificate and key before swapping them in.
    fn staged_cert(&self) -> PathBuf {
        self.dir.join("cert.pem.next")
    }

    fn staged_key(&self) -> PathBuf {
        self.dir.join("key.pem.next")
    }

    /// Loads the material, first finishing a renewal swap a crash interrupted.
    pub fn load(&self) -> Result<TlsMaterial, PkiError> {
        self.finish_swap()?;
        let read = |p: PathBuf| std::fs::read_to_string(&p).map_err(|e| file_err(&p, e));
        let key = self.key();
        let mode = std::fs::metadata(&key)
            .map_err(|e| file_err(&key, e))?
            .permissions()
            .mode();
        if mode & 0o077 != 0 {
            return Err(file_err(
                &key,
                format!(
                    "the private key is readable by others (mode {:o}); run chmod 600 on it",
                    mode & 0o777
                ),
            ));
        }
        Ok(TlsMaterial {
            ca_pem: read(self.ca())?,
            cert_pem: read(self.cert())?,
            key_pem: read(key)?,
        })
    }

    /// Writes all three files; the key with mode 0600.
    pub fn store(&self, m: &TlsMaterial) -> Result<(), PkiError> {
        create_private_dir(&self.dir)?;
        write_private(&self.key(), m.key_pem.as_bytes())?;
        write_public(&self.cert(), m.cert_pem.as_bytes())?;
        write_public(&self.ca(), m.ca_pem.as_bytes())
    }
}

impl TlsDir {
    /// Replaces the certificate and its key together (a renewal; the CA stays). The key is
    /// staged first, then the certificate (whose staged file therefore means "the staged key is
    /// complete"), both synced; then the key and the certificate are renamed into place. A crash
    /// at any step leaves either the old pair or a swap that [`TlsDir::load`] finishes.
    pub fn store_renewed(&self, cert_pem: &str, key_pem: &str) -> Result<(), PkiError> {
        let (staged_cert, staged_key) = (self.staged_cert(), self.staged_key());
        for p in [&staged_cert, &staged_key] {
            remove_if_present(p)?;
        }
        write_private(&staged_key, key_pem.as_bytes())?;
        sync_dir(&self.dir)?;
        write_public(&staged_cert, cert_pem.as_bytes())?;
        sync_dir(&self.dir)?;
        self.finish_swap()
    }

    /// Completes a staged swap: nothing staged, nothing to do; a staged key without a staged
    /// certificate is an unfinished staging and is dropped (the old pair stays).
    fn finish_swap(&self) -> Result<(), PkiError> {
        let (staged_cert, staged_key) = (self.staged_cert(), self.staged_key());
        if !staged_cert.exists() {
            return remove_if_present(&staged_key);
        }
        if staged_key.exists() {
            std::fs::rename(&staged_key, self.key()).map_err(|e| file_err(&staged_key, e))?;
        }
        std::fs::rename(&staged_cert, self.cert()).map_err(|e| file_err(&staged_cert, e))?;
        sync_dir(&self.dir)
    }
}

fn remove_if_present(path: &Path) -> Result<(), PkiError> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(file_err(path, e)),
        _ => Ok(()),
    }
}

/// Makes the renames in `dir` durable.
fn sync_dir(dir: &Path) -> Result<(), PkiError> {
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| file_err(dir, e))
}

/// Creates `dir` (and parents) with mode 0700 for the last component.
pub fn create_private_dir(dir: &Path) -> Result<(), PkiError> {
    std::fs::create_dir_all(dir).map_err(|e| file_err(dir, e))?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
        .map_err(|e| file_err(dir, e))
}

fn write_with_mode(path: &Path, data: &[u8], mode: u32) -> Result<(), PkiError> {
    let tmp = path.with_extension("tmp");
    let _ = std::fs::remove_file(&tmp);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(&tmp)
        .map_err(|e| file_err(&tmp, e))?;
    // The mode given at creation is filtered by the umask; set it exactly.
    f.set_permissions(std::fs::Permissions::from_mode(mode))
        .map_err(|e| file_err(&tmp, e))?;
    f.write_all(data).map_err(|e| file_err(&tmp, e))?;
    f.sync_all().map_err(|e| file_err(&tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| file_err(path, e))
}

/// Writes a private key (or any secret) with mode 0600, atomically.
pub fn write_private(path: &Path, data: &[u8]) -> Result<(), PkiError> {
    write_with_mode(path, data, 0o600)
}

/// Writes a certificate with mode 0644, atomically.
pub fn write_public(path: &Path, data: &[u8]) -> Result<(), PkiError> {
    write_with_mode(path, data, 0o644)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn key_is_0600_and_a_readable_key_is_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = TlsDir::new(tmp.path().join("tls"));
        let m = TlsMaterial {
            ca_pem: "ca".into(),
            cert_pem: "cert".into(),
            key_pem: "key".into(),
        };
        dir.store(&m).unwrap();
        let mode = std::fs::metadata(dir.key()).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(dir.load().unwrap().key_pem, "key");
        std::fs::set_permissions(dir.key(), std::fs::Permissions::from_mode(0o644)).unwrap();
        let e = dir.load().unwrap_err().to_string();
        assert!(e.contains("readable by others"), "{e}");
    }

    fn pair(dir: &TlsDir) -> (String, String) {
        let m = dir.load().unwrap();
        (m.cert_pem, m.key_pem)
    }

    fn stored(tmp: &tempfile::TempDir) -> TlsDir {
        let dir = TlsDir::new(tmp.path().join("tls"));
        let m = TlsMaterial {
            ca_pem: "ca".into(),
            cert_pem: "old cert".into(),
            key_pem: "old key".into(),
        };
        dir.store(&m).unwrap();
        dir
    }

    #[test]
    fn a_renewal_replaces_the_pair_and_keeps_the_key_private() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = stored(&tmp);
        dir.store_renewed("new cert", "new key").unwrap();
        assert_eq!(pair(&dir), ("new cert".into(), "new key".into()));
        assert_eq!(dir.load().unwrap().ca_pem, "ca");
        let mode = std::fs::metadata(dir.key()).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        assert!(!dir.staged_cert().exists() && !dir.staged_key().exists());
    }

    /// Each state a crash can leave a renewal in loads as one matching pair.
    #[test]
    fn an_interrupted_renewal_loads_as_a_matching_pair() {
        let check = |staged_key: bool, staged_cert: bool, key_swapped: bool, want: (&str, &str)| {
            let tmp = tempfile::tempdir().unwrap();
            let dir = stored(&tmp);
            if staged_key {
                write_private(&dir.staged_key(), b"new key").unwrap();
            }
            if key_swapped {
                write_private(&dir.key(), b"new key").unwrap();
            }
            if staged_cert {
                write_public(&dir.staged_cert(), b"new cert").unwrap();
            }
            assert_eq!(pair(&dir), (want.0.to_string(), want.1.to_string()));
            assert!(!dir.staged_cert().exists() && !dir.staged_key().exists());
        };
        // Crash while staging the key: the old pair.
        check(true, false, false, ("old cert", "old key"));
        // Both staged, nothing renamed: the new pair.
        check(true, true, false, ("new cert", "new key"));
        // The key renamed, the certificate not yet: the new pair.
        check(false, true, true, ("new cert", "new key"));
        // Nothing staged: the old pair.
        check(false, false, false, ("old cert", "old key"));
    }
}
