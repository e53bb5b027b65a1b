//! Trust: who may publish a stream, who may join it, and who may watch it.
//!
//! - [`stream`]: a stream is named by its publisher's ed25519 public key and a name
//!   (`KEY/NAME`); [`StreamName::tag`] binds signatures and tokens to that one stream.
//! - [`sign`]: the origin signs every frame and the catalog with the publisher key
//!   ([`PublisherKey`]); every node checks with a [`StreamVerifier`] before it caches,
//!   forwards or plays anything.
//! - [`token`]: join tokens for private streams, signed by the publisher, with a subject,
//!   an expiry and the stream they are valid for; nodes check a newcomer's token before
//!   they answer its probe or accept it as a child.
//! - [`seal`]: end-to-end payload encryption (AES-256-GCM) with a content key only viewer
//!   credentials carry, so relays forward what they cannot watch. Sealing happens before
//!   signing, so every node can still verify.
//!
//! Like the rest of `proto`, nothing here reads a clock or draws randomness: the caller
//! passes the time (Unix seconds) and any random values in.

pub mod seal;
pub mod sign;
pub mod stream;
pub mod token;

pub use seal::{ContentKey, Sealer};
pub use sign::{PublisherKey, SIGNATURE_LEN, StreamVerifier};
pub use stream::{PublicKey, StreamName};
pub use token::{Credential, JoinToken, TokenClaims};

use thiserror::Error;

use super::codes::ErrorCode;

/// Why media, a catalog or a token was not accepted.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum TrustError {
    /// A frame arrived without a signature on a signed stream.
    #[error("unsigned frame {seq} on track {track}")]
    Unsigned {
        /// Track of the frame.
        track: u32,
        /// Its sequence number.
        seq: u64,
    },
    /// A frame's signature does not match its contents and the publisher key.
    #[error("bad signature on frame {seq} of track {track} (altered or injected)")]
    BadFrameSignature {
        /// Track of the frame.
        track: u32,
        /// Its sequence number.
        seq: u64,
    },
    /// The catalog is not signed by the stream's publisher.
    #[error("the catalog is not signed by the publisher of {0}")]
    BadCatalogSignature(String),
    /// The catalog names another stream than the one asked for.
    #[error("the parent serves stream {got}, not {want}")]
    WrongStream {
        /// The stream the node was asked to join.
        want: String,
        /// The stream the catalog names.
        got: String,
    },
    /// An encrypted payload did not open with the content key.
    #[error("frame {seq} of track {track} does not decrypt with the content key")]
    Undecryptable {
        /// Track of the frame.
        track: u32,
        /// Its sequence number.
        seq: u64,
    },
    /// A join token was refused.
    #[error("join token refused: {0}")]
    Token(#[from] token::TokenError),
}

impl TrustError {
    /// The connection close code that names this error to the peer.
    pub fn code(&self) -> ErrorCode {
        match self {
            TrustError::Token(_) => ErrorCode::Unauthorized,
            _ => ErrorCode::BadSignature,
        }
    }
}
