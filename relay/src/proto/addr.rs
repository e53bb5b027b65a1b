//! Peer addresses: `NODE_ID@HOST:PORT` (optionally prefixed `treecast://`).
//!
//! The node id is part of the address because it is what the connection is verified
//! against: a node prints its full address when it starts, and that is what others pass.

use core::net::SocketAddr;
use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use thiserror::Error;

use super::id::NodeId;

/// Where a peer is and who it must be.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct PeerAddr {
    /// The identity the peer must prove.
    pub id: NodeId,
    /// `host:port` (a name is resolved at connect time). Shared: addresses are copied
    /// into many candidate lists, and a copy must not cost an allocation.
    pub host: Arc<str>,
}

/// Why an address string is not valid.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum AddrError {
    /// No `@` separating node id and host.
    #[error(
        "address {0:?} has no node id: expected NODE_ID@HOST:PORT, as printed by the node at start"
    )]
    MissingId(String),
    /// The node id part is not valid.
    #[error("address {addr:?}: {reason}")]
    BadId {
        /// The whole address.
        addr: String,
        /// Why.
        reason: String,
    },
    /// The host part has no port.
    #[error("address {0:?} has no port: expected NODE_ID@HOST:PORT")]
    MissingPort(String),
}

impl PeerAddr {
    /// A peer address from parts.
    pub fn new(id: NodeId, addr: SocketAddr) -> Self {
        PeerAddr {
            id,
            host: addr.to_string().into(),
        }
    }
}

impl fmt::Display for PeerAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{}", self.id, self.host)
    }
}

impl FromStr for PeerAddr {
    type Err = AddrError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let t = s.trim();
        let t = t.strip_prefix("treecast://").unwrap_or(t);
        let Some((id, host)) = t.split_once('@') else {
            return Err(AddrError::MissingId(s.to_string()));
        };
        let id = id.parse::<NodeId>().map_err(|e| AddrError::BadId {
            addr: s.to_string(),
            reason: e.to_string(),
        })?;
        let host = host.trim_end_matches('/');
        let has_port = host
            .rsplit_once(':')
            .is_some_and(|(h, p)| !h.is_empty() && p.parse::<u16>().is_ok());
        if !has_port {
            return Err(AddrError::MissingPort(s.to_string()));
        }
        Ok(PeerAddr {
            id,
            host: host.into(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_and_display() {
        let id = NodeId::from_bytes([3; 32]);
        let s = format!("{id}@127.0.0.1:4433");
        let a: PeerAddr = s.parse().unwrap();
        assert_eq!(a.id, id);
        assert_eq!(&*a.host, "127.0.0.1:4433");
        assert_eq!(a.to_string(), s);
        let b: PeerAddr = format!("treecast://{id}@[::1]:9/").parse().unwrap();
        assert_eq!(&*b.host, "[::1]:9");
        let c: PeerAddr = format!("{id}@localhost:5000").parse().unwrap();
        assert_eq!(&*c.host, "localhost:5000");
    }

    #[test]
    fn errors_are_clear() {
        let id = NodeId::from_bytes([3; 32]);
        assert!(matches!(
            "127.0.0.1:4433".parse::<PeerAddr>(),
            Err(AddrError::MissingId(_))
        ));
        assert!(matches!(
            "zzz@127.0.0.1:4433".parse::<PeerAddr>(),
            Err(AddrError::BadId { .. })
        ));
        assert!(matches!(
            format!("{id}@127.0.0.1").parse::<PeerAddr>(),
            Err(AddrError::MissingPort(_))
        ));
        assert!(matches!(
            format!("{id}@host:99999").parse::<PeerAddr>(),
            Err(AddrError::MissingPort(_))
        ));
    }
}
