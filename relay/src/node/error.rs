//! Errors of the QUIC node, split between what a peer did and what went wrong locally.

use std::time::Duration;

use thiserror::Error;

use super::addr::PeerAddr;
use super::identity::IdentityError;
use super::tls::TlsConfigError;
use crate::proto::{DecodeError, ErrorCode};

/// Errors starting or running a node.
#[derive(Debug, Error)]
pub enum NodeError {
    /// The listen address could not be bound.
    #[error("cannot listen on {addr}: {cause}")]
    Bind {
        /// The address.
        addr: std::net::SocketAddr,
        /// Why.
        cause: std::io::Error,
    },
    /// Identity problems.
    #[error(transparent)]
    Identity(#[from] IdentityError),
    /// TLS configuration problems.
    #[error(transparent)]
    Tls(#[from] TlsConfigError),
    /// The parent could not be used.
    #[error(transparent)]
    Parent(#[from] PeerError),
    /// No place in the tree was found in time.
    #[error("could not join the tree within {0:?}: no node with a free slot answered")]
    JoinTimeout(std::time::Duration),
}

/// Errors talking to one peer. The node survives every one of them.
#[derive(Debug, Error)]
pub enum PeerError {
    /// The host part did not resolve.
    #[error("cannot resolve the host of {addr}: {cause}")]
    Resolve {
        /// The peer.
        addr: PeerAddr,
        /// Why.
        cause: std::io::Error,
    },
    /// No QUIC answer in time.
    #[error(
        "no answer from {addr} within {timeout:?}: is a treecast node running there, and is the address right?"
    )]
    Unreachable {
        /// The peer.
        addr: PeerAddr,
        /// How long we waited.
        timeout: Duration,
    },
    /// The TLS handshake or identity check failed.
    #[error("handshake with {addr} failed: {reason}")]
    Handshake {
        /// The peer.
        addr: PeerAddr,
        /// Why (e.g. it is not the node named in the address).
        reason: String,
    },
    /// The peer refused the subscription.
    #[error("{addr} refused to serve us: {code}: {reason}")]
    Refused {
        /// The peer.
        addr: PeerAddr,
        /// The named code.
        code: String,
        /// Its explanation.
        reason: String,
    },
    /// The peer closed the connection.
    #[error("connection to {addr} lost: {reason}")]
    Lost {
        /// The peer.
        addr: String,
        /// Why.
        reason: String,
    },
    /// The peer sent something that does not decode; we closed with the code shown.
    #[error("{addr} sent bad data, closed with {}: {error}", error.code())]
    Protocol {
        /// The peer.
        addr: String,
        /// What was wrong.
        error: DecodeError,
    },
    /// The peer broke a protocol rule not caught by a decoder.
    #[error("{addr} broke the protocol ({code}): {reason}")]
    Violation {
        /// The peer.
        addr: String,
        /// The code we closed with.
        code: ErrorCode,
        /// What it did.
        reason: String,
    },
}

/// A readable reason for a connection error, naming our application codes.
pub fn describe_connection_error(e: &quinn::ConnectionError) -> String {
    match e {
        quinn::ConnectionError::ApplicationClosed(c) => {
            let code = ErrorCode::from_value(c.error_code.into_inner())
                .map(|c| c.to_string())
                .unwrap_or_else(|| format!("code 0x{:x}", c.error_code.into_inner()));
            let reason = String::from_utf8_lossy(&c.reason);
            if reason.is_empty() {
                format!("closed by peer: {code}")
            } else {
                format!("closed by peer: {code}: {reason}")
            }
        }
        quinn::ConnectionError::TimedOut => "peer stopped answering (idle timeout)".into(),
        quinn::ConnectionError::LocallyClosed => "closed locally".into(),
        other => other.to_string(),
    }
}
