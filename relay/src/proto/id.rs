//! Node ids: a node's ed25519 public key, written as 52 lowercase base32 characters.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::hash::{BuildHasherDefault, Hasher};
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

/// A map keyed by node id, with [`IdHasher`].
pub type IdMap<V> = HashMap<NodeId, V, BuildHasherDefault<IdHasher>>;
/// A set of node ids, with [`IdHasher`].
pub type IdSet = HashSet<NodeId, BuildHasherDefault<IdHasher>>;

/// Hashes node ids for the overlay's maps. Ids are public keys, already uniformly
/// random, so a cheap multiplicative mix of their words is enough (the std hasher was a
/// tenth of a large simulation's time). Unlike the std hasher it is the same in every
/// run, keeping the sans-IO core free of hidden randomness. A peer grinding keys to
/// collide gains nothing: the maps it could reach hold at most a hundred entries.
#[derive(Clone, Copy, Default, Debug)]
pub struct IdHasher(u64);

impl IdHasher {
    const K: u64 = 0x517c_c1b7_2722_0a95;

    fn mix(&mut self, word: u64) {
        self.0 = (self.0.rotate_left(5) ^ word).wrapping_mul(Self::K);
    }
}

/// An order over ids that differs from one `viewer` to the next (a hash of both ids):
/// nodes that see the same equally good candidates each rank them differently, and so
/// spread over them instead of all racing for the first.
pub fn pair_order(viewer: &NodeId, other: &NodeId) -> u64 {
    pair_order_by(viewer.as_bytes(), other)
}

/// [`pair_order`] for a viewer known only by some bytes of its own (a prober answered
/// before its handshake has told who it is is known by its address).
pub fn pair_order_by(viewer: &[u8], other: &NodeId) -> u64 {
    let mut h = IdHasher::default();
    h.write(viewer);
    h.write(other.as_bytes());
    h.finish()
}

impl Hasher for IdHasher {
    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut w = [0u8; 8];
            w[..chunk.len()].copy_from_slice(chunk);
            self.mix(u64::from_le_bytes(w));
        }
    }

    fn write_usize(&mut self, n: usize) {
        self.mix(n as u64);
    }

    fn finish(&self) -> u64 {
        self.0
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

    #[test]
    fn id_hash_and_pair_order_are_stable_and_spread() {
        use std::hash::{BuildHasher, BuildHasherDefault};
        let a = NodeId::from_bytes([1; 32]);
        let b = NodeId::from_bytes([2; 32]);
        let build = BuildHasherDefault::<IdHasher>::default();
        // The same in every run (no random seed) and different for different ids.
        assert_eq!(build.hash_one(a), build.hash_one(a));
        assert_ne!(build.hash_one(a), build.hash_one(b));
        // Two viewers rank the same pair differently often enough to spread.
        let others: Vec<NodeId> = (10..60u8).map(|i| NodeId::from_bytes([i; 32])).collect();
        let rank = |v: &NodeId| {
            let mut o = others.clone();
            o.sort_by_key(|x| pair_order(v, x));
            o
        };
        assert_ne!(rank(&a), rank(&b));
        let firsts: IdSet = (100..140u8)
            .map(|i| rank(&NodeId::from_bytes([i; 32]))[0])
            .collect();
        assert!(firsts.len() > 10, "{} distinct first choices", firsts.len());
    }
}
