//! The node's side of trust (see [`crate::proto::trust`]): the origin seals and signs, every
//! node verifies the catalog and each frame before it caches, forwards or plays it, and on
//! a private stream every node checks a newcomer's join token before answering it.

use std::sync::{Arc, Mutex, RwLock};
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;

use crate::proto::media::{Catalog, Frame, SignedCatalog};
use crate::proto::trust::token::TokenError;
use crate::proto::trust::{
    ContentKey, Credential, JoinToken, PublisherKey, Sealer, StreamName, StreamVerifier, TrustError,
};

/// How a node establishes trust in the stream it carries.
#[derive(Clone, Debug, Default)]
pub struct TrustConfig {
    /// The stream this node carries: only media signed by its publisher is accepted. When
    /// `None` the node trusts the stream named by the first signed catalog it receives
    /// (trust on first use) and holds every later parent to it.
    pub stream: Option<StreamName>,
    /// Origin: the publisher key that signs the catalog and every frame.
    pub signer: Option<Arc<PublisherKey>>,
    /// Origin: make the stream private (children and probers need a join token).
    pub private: bool,
    /// Origin: encrypt payloads end to end with this key (`epoch` draws the run's key).
    pub seal: Option<(ContentKey, u64)>,
    /// The join token this node presents, and the content key if it may watch.
    pub credential: Option<Credential>,
}

/// Trust state of a running node.
#[derive(Debug)]
pub(crate) struct Trust {
    config: TrustConfig,
    verifier: RwLock<Option<StreamVerifier>>,
    private: RwLock<bool>,
    origin_sealer: Option<Sealer>,
    opener: Mutex<Option<Arc<Sealer>>>,
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

impl Trust {
    pub fn new(config: TrustConfig) -> Trust {
        let origin_sealer = config.seal.as_ref().map(|(k, e)| Sealer::new(k, *e));
        Trust {
            verifier: RwLock::new(config.stream.clone().map(StreamVerifier::new)),
            private: RwLock::new(config.private),
            origin_sealer,
            opener: Mutex::new(None),
            config,
        }
    }

    /// Origin: the catalog as published (stream, privacy, sealing filled in), signed.
    pub fn publish_catalog(&self, mut catalog: Catalog) -> SignedCatalog {
        let stream = self.config.stream.as_ref();
        catalog.stream = stream.map(|s| s.to_string());
        catalog.private = self.config.private;
        catalog.sealed_epoch = self.config.seal.as_ref().map(|(_, e)| *e);
        if let Some((k, e)) = &self.config.seal {
            *lock(&self.opener) = Some(Arc::new(Sealer::new(k, *e)));
        }
        match (&self.config.signer, stream) {
            (Some(key), Some(s)) => SignedCatalog::signed(catalog, key, &s.tag()),
            _ => SignedCatalog::unsigned(catalog),
        }
    }

    /// Origin: seal (private, encrypted streams) and sign a frame before it is sent.
    pub fn seal_and_sign(&self, frame: &mut Frame) {
        if let Some(s) = &self.origin_sealer {
            s.seal(frame);
        }
        if let (Some(key), Some(v)) = (&self.config.signer, &*read(&self.verifier)) {
            key.sign_frame(v.tag(), frame);
        }
    }

    /// A catalog from a parent: it must name our stream and carry its publisher's
    /// signature. The first signed catalog fixes the stream when none was given.
    pub fn accept_catalog(&self, c: &SignedCatalog) -> Result<(), TrustError> {
        let mut verifier = write(&self.verifier);
        let named = c.catalog.stream.as_deref();
        match (&*verifier, named) {
            (Some(v), Some(name)) if name == v.stream().to_string() => {
                v.verify_catalog(&c.json, c.signature.as_ref())?;
            }
            (Some(v), other) => {
                return Err(TrustError::WrongStream {
                    want: v.stream().to_string(),
                    got: other.unwrap_or("(unsigned)").to_string(),
                });
            }
            (None, Some(name)) => {
                let stream: StreamName = name.parse().map_err(|_| TrustError::WrongStream {
                    want: "a valid stream name".into(),
                    got: name.to_string(),
                })?;
                let v = StreamVerifier::new(stream);
                v.verify_catalog(&c.json, c.signature.as_ref())?;
                tracing::info!(stream = %v.stream(), "trusting the stream named by the first catalog (pass --stream to pin it)");
                *verifier = Some(v);
            }
            // An unsigned stream (library use without a publisher key): nothing to check.
            (None, None) => {}
        }
        *write(&self.private) = c.catalog.private;
        let key = self
            .config
            .credential
            .as_ref()
            .and_then(|c| c.content_key.as_ref());
        *lock(&self.opener) = match (key, c.catalog.sealed_epoch) {
            (Some(k), Some(epoch)) => Some(Arc::new(Sealer::new(k, epoch))),
            _ => None,
        };
        Ok(())
    }

    /// A frame from a parent: Ok only if it carries the publisher's signature (on a
    /// signed stream).
    pub fn verify_frame(&self, frame: &Frame) -> Result<(), TrustError> {
        match &*read(&self.verifier) {
            Some(v) => v.verify_frame(frame),
            None => Ok(()),
        }
    }

    /// Checks the token a prober or would-be child presents.
    pub fn check_token(&self, token: Option<&Bytes>) -> Result<(), TokenError> {
        if !*read(&self.private) {
            return Ok(());
        }
        let token = token.ok_or(TokenError::Missing)?;
        let token = JoinToken::decode(token.clone())?;
        match &*read(&self.verifier) {
            Some(v) => token.verify(v, unix_now()),
            None => Err(TokenError::StreamUnknown),
        }
    }

    /// The token this node presents to others.
    pub fn own_token(&self) -> Option<Bytes> {
        self.config
            .credential
            .as_ref()
            .map(|c| c.token.as_bytes().clone())
    }

    /// The stream being carried, once known.
    pub fn stream(&self) -> Option<StreamName> {
        read(&self.verifier).as_ref().map(|v| v.stream().clone())
    }

    /// Whether payloads can be opened for the local player.
    pub fn can_open(&self) -> bool {
        lock(&self.opener).is_some()
    }

    /// Opens a sealed payload for the local player; `Err` if it does not open. Frames of
    /// a stream that is not sealed (or that this node has no key for) pass unchanged.
    pub fn open_for_local(&self, frame: &mut Frame) -> Result<(), TrustError> {
        let opener = lock(&self.opener).clone();
        match opener {
            Some(o) => o.open(frame),
            None => Ok(()),
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn read<T>(m: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    m.read().unwrap_or_else(|e| e.into_inner())
}

fn write<T>(m: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    m.write().unwrap_or_else(|e| e.into_inner())
}
