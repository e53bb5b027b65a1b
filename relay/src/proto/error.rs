//! Errors of the wire decoders. Every one of them is caused by the peer; the node answers
//! by closing that peer's connection with the matching [`ErrorCode`].

use thiserror::Error;

use super::codes::ErrorCode;

/// Why bytes received from a peer could not be decoded.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum DecodeError {
    /// The stream ended in the middle of a message or frame.
    #[error("truncated {0}")]
    Truncated(&'static str),
    /// A length prefix exceeds the configured bound.
    #[error("{what} of {len} bytes exceeds the limit of {max} bytes")]
    TooLarge {
        /// What was being decoded.
        what: &'static str,
        /// The announced length.
        len: u64,
        /// The bound in force.
        max: u64,
    },
    /// An unknown message or stream type byte.
    #[error("unknown {what} type 0x{ty:02x}")]
    UnknownType {
        /// What was being decoded.
        what: &'static str,
        /// The type byte received.
        ty: u8,
    },
    /// A field holds a value that makes no sense (explained in the text).
    #[error("malformed {0}")]
    Malformed(&'static str),
    /// A list holds more entries than allowed.
    #[error("{what}: {count} entries exceed the limit of {max}")]
    TooMany {
        /// What was being decoded.
        what: &'static str,
        /// Entries announced.
        count: u64,
        /// The bound in force.
        max: u64,
    },
    /// The catalog is not valid JSON of the expected shape.
    #[error("invalid catalog: {0}")]
    Catalog(String),
}

impl DecodeError {
    /// The connection close code that names this error to the peer.
    pub fn code(&self) -> ErrorCode {
        match self {
            DecodeError::Truncated(_) => ErrorCode::Truncated,
            DecodeError::TooLarge { .. } | DecodeError::TooMany { .. } => ErrorCode::TooLarge,
            DecodeError::UnknownType { .. }
            | DecodeError::Malformed(_)
            | DecodeError::Catalog(_) => ErrorCode::ProtocolViolation,
        }
    }
}
