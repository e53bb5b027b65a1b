//! Node ids: a node's ed25519 public key, written as 52 lowercase base32 characters.

use std::fmt;
use std::str::FromStr;

use data_encoding::BASE32_NOPAD;
use thiserror::Error;

/// A node's public identity: its ed25519 public key.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NodeId([u8; 32]);

impl NodeId {
    /// The raw public key.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// From a raw public key.
    pub fn from_bytes(b: [u8; 32]) -> Self {
        NodeId(b)
    }

    /// The first 8 characters, for logs.
    pub fn short(&self) -> String {
        self.to_string()[..8].to_string()
    }
}

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&BASE32_NOPAD.encode(&self.0).to_ascii_lowercase())
    }
}

impl fmt::Debug for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "NodeId({})", self.short())
    }
}

/// Why a node id string is not valid.
#[derive(Debug, Error, PartialEq, Eq)]
#[error("invalid node id {0:?}: expected the 52-character base32 key a node prints at start")]
pub struct ParseNodeIdError(pub String);

impl FromStr for NodeId {
    type Err = ParseNodeIdError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bytes = BASE32_NOPAD
            .decode(s.to_ascii_uppercase().as_bytes())
            .map_err(|_| ParseNodeIdError(s.to_string()))?;
        let arr: [u8; 32] = bytes
            .try_into()
            .map_err(|_| ParseNodeIdError(s.to_string()))?;
        Ok(NodeId(arr))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_roundtrip() {
        let id = NodeId::from_bytes([7; 32]);
        let s = id.to_string();
        assert_eq!(s.len(), 52);
        assert_eq!(s.parse::<NodeId>().unwrap(), id);
        assert_eq!(s.to_ascii_uppercase().parse::<NodeId>().unwrap(), id);
        assert!("abc".parse::<NodeId>().is_err());
        assert!(s[..51].parse::<NodeId>().is_err());
    }
}
