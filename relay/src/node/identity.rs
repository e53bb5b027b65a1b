//! Node identities: a long-lived ed25519 key per node, named by its public key
//! ([`NodeId`]). It is what peers pin when they connect: a node is only accepted as the
//! parent a child asked for if its TLS certificate carries exactly that key.

use std::fmt;
use std::path::{Path, PathBuf};

use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use thiserror::Error;

pub use crate::proto::id::{NodeId, ParseNodeIdError};

/// Errors loading, creating or using an identity.
#[derive(Debug, Error)]
pub enum IdentityError {
    /// The key file could not be read or written.
    #[error("identity key file {path}: {cause}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The IO error.
        cause: std::io::Error,
    },
    /// The key file does not hold an ed25519 PKCS#8 PEM key.
    #[error("identity key file {path} is not an ed25519 PKCS#8 PEM key: {reason}")]
    BadKey {
        /// The file.
        path: PathBuf,
        /// What was wrong.
        reason: String,
    },
    /// Generating the key or certificate failed.
    #[error("cannot create identity: {0}")]
    Generate(String),
}

/// A node's secret identity: the ed25519 key and a self-signed certificate for it.
pub struct Identity {
    id: NodeId,
    pkcs8: Vec<u8>,
    cert: CertificateDer<'static>,
}

impl fmt::Debug for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Identity").field("id", &self.id).finish()
    }
}

impl Clone for Identity {
    fn clone(&self) -> Self {
        Identity {
            id: self.id,
            pkcs8: self.pkcs8.clone(),
            cert: self.cert.clone(),
        }
    }
}

impl Identity {
    /// A fresh random identity (not saved anywhere).
    pub fn generate() -> Result<Self, IdentityError> {
        let kp = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519)
            .map_err(|e| IdentityError::Generate(e.to_string()))?;
        Self::from_key_pair(kp)
    }

    /// Loads the identity stored at `path`, creating it (mode 0600) if the file does not
    /// exist yet.
    pub fn load_or_create(path: &Path) -> Result<Self, IdentityError> {
        match std::fs::read_to_string(path) {
            Ok(pem) => {
                let kp = rcgen::KeyPair::from_pem(&pem).map_err(|e| IdentityError::BadKey {
                    path: path.to_path_buf(),
                    reason: e.to_string(),
                })?;
                if !kp.is_compatible(&rcgen::PKCS_ED25519) {
                    return Err(IdentityError::BadKey {
                        path: path.to_path_buf(),
                        reason: "the key is not ed25519".into(),
                    });
                }
                Self::from_key_pair(kp)
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let id = Self::generate()?;
                id.save(path)?;
                Ok(id)
            }
            Err(cause) => Err(IdentityError::Io {
                path: path.to_path_buf(),
                cause,
            }),
        }
    }

    fn save(&self, path: &Path) -> Result<(), IdentityError> {
        let io = |cause| IdentityError::Io {
            path: path.to_path_buf(),
            cause,
        };
        let kp = self.key_pair()?;
        super::secret_file::write(path, kp.serialize_pem().as_bytes(), false).map_err(io)
    }

    fn key_pair(&self) -> Result<rcgen::KeyPair, IdentityError> {
        let der = PrivatePkcs8KeyDer::from(self.pkcs8.clone());
        rcgen::KeyPair::from_pkcs8_der_and_sign_algo(&der, &rcgen::PKCS_ED25519)
            .map_err(|e| IdentityError::Generate(e.to_string()))
    }

    fn from_key_pair(kp: rcgen::KeyPair) -> Result<Self, IdentityError> {
        let raw: [u8; 32] = kp
            .public_key_raw()
            .try_into()
            .map_err(|_| IdentityError::Generate("ed25519 public key is not 32 bytes".into()))?;
        let params = rcgen::CertificateParams::new(vec!["treecast.invalid".to_string()])
            .map_err(|e| IdentityError::Generate(e.to_string()))?;
        let cert = params
            .self_signed(&kp)
            .map_err(|e| IdentityError::Generate(e.to_string()))?;
        Ok(Identity {
            id: NodeId::from_bytes(raw),
            pkcs8: kp.serialize_der(),
            cert: cert.der().clone(),
        })
    }

    /// The public identity.
    pub fn id(&self) -> NodeId {
        self.id
    }

    /// The self-signed certificate carrying the public key.
    pub fn certificate(&self) -> CertificateDer<'static> {
        self.cert.clone()
    }

    /// The private key, for rustls.
    pub fn private_key(&self) -> PrivateKeyDer<'static> {
        PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(self.pkcs8.clone()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_id_text_roundtrip() {
        let id = Identity::generate().unwrap().id();
        let s = id.to_string();
        assert_eq!(s.len(), 52);
        assert_eq!(s.parse::<NodeId>().unwrap(), id);
        assert_eq!(s.to_ascii_uppercase().parse::<NodeId>().unwrap(), id);
        assert!("abc".parse::<NodeId>().is_err());
        assert!(s[..51].parse::<NodeId>().is_err());
    }

    #[test]
    fn identity_persists() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/identity.key");
        let a = Identity::load_or_create(&path).unwrap();
        let b = Identity::load_or_create(&path).unwrap();
        assert_eq!(a.id(), b.id());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }

    #[test]
    fn garbage_key_file_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("identity.key");
        std::fs::write(&path, "not a key").unwrap();
        let e = Identity::load_or_create(&path).unwrap_err();
        assert!(
            e.to_string().contains("not an ed25519 PKCS#8 PEM key"),
            "{e}"
        );
    }
}
