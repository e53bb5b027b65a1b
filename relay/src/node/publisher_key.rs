//! Publisher key files: create, load, and the secrets derived from them.
//!
//! A publisher key is an ed25519 key in a PKCS#8 PEM file (mode 0600). It names the
//! publisher's streams (`KEY/NAME`) and signs their media and join tokens. The content key
//! of an encrypted stream is derived from it and the stream name, so `treecast token` can
//! hand it out later without storing anything else.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use ring::hkdf;
use ring::rand::{SecureRandom, SystemRandom};
use thiserror::Error;

use crate::proto::trust::{ContentKey, PublisherKey};

/// Why a publisher key file could not be used.
#[derive(Debug, Error)]
pub enum KeyFileError {
    /// Reading or writing the file failed.
    #[error("{path}: {cause}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        cause: std::io::Error,
    },
    /// The file holds no usable ed25519 key.
    #[error("{path} is not an ed25519 publisher key ({reason})")]
    BadKey {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// `keygen` would overwrite an existing key.
    #[error(
        "{0} already exists: it names your streams, so it is not overwritten (pass --force to replace it)"
    )]
    Exists(PathBuf),
    /// The system random source failed.
    #[error("cannot generate a key: {0}")]
    Generate(String),
}

/// A loaded publisher key with its PKCS#8 document (for deriving content keys).
#[derive(Clone, Debug)]
pub struct PublisherKeyFile {
    /// The signing key.
    pub key: Arc<PublisherKey>,
    der: Vec<u8>,
}

impl PublisherKeyFile {
    /// Creates a new key at `path` (refusing to overwrite unless `force`).
    pub fn create(path: &Path, force: bool) -> Result<PublisherKeyFile, KeyFileError> {
        let io = |cause| KeyFileError::Io {
            path: path.to_path_buf(),
            cause,
        };
        if path.exists() && !force {
            return Err(KeyFileError::Exists(path.to_path_buf()));
        }
        let kp = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519)
            .map_err(|e| KeyFileError::Generate(e.to_string()))?;
        super::secret_file::write(path, kp.serialize_pem().as_bytes(), force).map_err(io)?;
        Self::load(path)
    }

    /// A fresh key kept in memory only (demos and tests).
    pub fn generate() -> Result<PublisherKeyFile, KeyFileError> {
        let kp = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519)
            .map_err(|e| KeyFileError::Generate(e.to_string()))?;
        let der = kp.serialize_der();
        let key =
            PublisherKey::from_pkcs8(&der).map_err(|e| KeyFileError::Generate(e.to_string()))?;
        Ok(PublisherKeyFile {
            key: Arc::new(key),
            der,
        })
    }

    /// Loads the key at `path`.
    pub fn load(path: &Path) -> Result<PublisherKeyFile, KeyFileError> {
        let pem = std::fs::read_to_string(path).map_err(|cause| KeyFileError::Io {
            path: path.to_path_buf(),
            cause,
        })?;
        let bad = |reason: String| KeyFileError::BadKey {
            path: path.to_path_buf(),
            reason,
        };
        let kp = rcgen::KeyPair::from_pem(&pem).map_err(|e| bad(e.to_string()))?;
        if !kp.is_compatible(&rcgen::PKCS_ED25519) {
            return Err(bad("not ed25519".into()));
        }
        let der = kp.serialize_der();
        let key = PublisherKey::from_pkcs8(&der).map_err(|e| bad(e.to_string()))?;
        Ok(PublisherKeyFile {
            key: Arc::new(key),
            der,
        })
    }

    /// Loads the key at `path`, creating it first if there is none.
    pub fn load_or_create(path: &Path) -> Result<(PublisherKeyFile, bool), KeyFileError> {
        if path.exists() {
            Ok((Self::load(path)?, false))
        } else {
            Ok((Self::create(path, false)?, true))
        }
    }

    /// The content key of the encrypted stream `name` of this publisher.
    pub fn content_key(&self, name: &str) -> ContentKey {
        let salt = hkdf::Salt::new(hkdf::HKDF_SHA256, b"treecast-content-key-v1");
        let info = [name.as_bytes()];
        let mut raw = [0u8; 32];
        if let Ok(okm) = salt.extract(&self.der).expand(&info, hkdf::HKDF_SHA256) {
            let _ = okm.fill(&mut raw);
        }
        ContentKey::from_bytes(raw)
    }
}

/// A random 64-bit value from the system's secure source (e.g. an encryption epoch).
pub fn random_u64() -> Result<u64, KeyFileError> {
    let mut b = [0u8; 8];
    SystemRandom::new()
        .fill(&mut b)
        .map_err(|_| KeyFileError::Generate("the system random source failed".into()))?;
    Ok(u64::from_le_bytes(b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_persist_and_are_not_overwritten() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/publisher.key");
        let (a, created) = PublisherKeyFile::load_or_create(&path).unwrap();
        assert!(created);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let (b, created) = PublisherKeyFile::load_or_create(&path).unwrap();
        assert!(!created);
        assert_eq!(a.key.public(), b.key.public());
        assert_eq!(a.content_key("x"), b.content_key("x"));
        assert_ne!(a.content_key("x"), a.content_key("y"));
        assert!(matches!(
            PublisherKeyFile::create(&path, false),
            Err(KeyFileError::Exists(_))
        ));
        let c = PublisherKeyFile::create(&path, true).unwrap();
        assert_ne!(c.key.public(), a.key.public());
        assert_eq!(
            PublisherKeyFile::load(&path).unwrap().key.public(),
            c.key.public()
        );
        std::fs::write(&path, "junk").unwrap();
        assert!(matches!(
            PublisherKeyFile::load(&path),
            Err(KeyFileError::BadKey { .. })
        ));
    }
}
