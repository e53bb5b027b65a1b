//! Wire pieces of the overlay's control messages: candidate parents, tree positions and
//! probe answers.
//!
//! ```text
//! node_id    = 32 bytes
//! peer_addr  = node_id | varint len | host:port (UTF-8, at most 255 bytes)
//! candidate  = peer_addr | varint depth | varint free_slots
//! tree_info  = u8 rooted | varint n | node_id * n (the path, origin first)
//!              | varint m | candidate * m (backup parents)
//! probe_info = u8 rooted | varint depth | varint free | varint capacity
//!              | varint movable | varint m | candidate * m
//! ```

use bytes::{Buf, BufMut, Bytes};

use super::addr::PeerAddr;
use super::error::DecodeError;
use super::id::NodeId;
use super::varint;

/// Deepest tree a path may describe.
pub const MAX_PATH: usize = 64;
/// Most candidates in one message.
pub const MAX_CANDIDATES: usize = 16;
/// Longest host:port text.
pub const MAX_HOST: usize = 255;

/// A node that may serve as a parent, as another node last saw it.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Candidate {
    /// Where it is and who it is.
    pub addr: PeerAddr,
    /// Its depth (origin 0).
    pub depth: u32,
    /// Its free child slots.
    pub free: u32,
}

/// What a probed node says about itself: the body of a `ProbeReply`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProbeInfo {
    /// Whether the node is connected to the origin.
    pub rooted: bool,
    /// Its depth (origin 0).
    pub depth: u32,
    /// Free child slots.
    pub free: u32,
    /// Child slots in all.
    pub capacity: u32,
    /// Watch-only children a forwarding joiner may displace (it counts these as room).
    pub movable: u32,
    /// Other parents it knows, nearest the joiner's likely position first.
    pub candidates: Vec<Candidate>,
}

/// A node's position in the tree, as its parent tells it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TreeInfo {
    /// Whether the parent is connected to the origin (through its own ancestors).
    pub rooted: bool,
    /// Node ids from the origin down to the parent (inclusive). The child's depth is
    /// `path.len()`.
    pub path: Vec<NodeId>,
    /// Other parents to fall back on (grandparent first), with room as last seen.
    pub backups: Vec<Candidate>,
}

pub(crate) fn put_id(b: &mut impl BufMut, id: &NodeId) {
    b.put_slice(id.as_bytes());
}

pub(crate) fn get_id(b: &mut Bytes, what: &'static str) -> Result<NodeId, DecodeError> {
    if b.remaining() < 32 {
        return Err(DecodeError::Truncated(what));
    }
    let mut raw = [0u8; 32];
    b.copy_to_slice(&mut raw);
    Ok(NodeId::from_bytes(raw))
}

pub(crate) fn put_addr(b: &mut impl BufMut, a: &PeerAddr) {
    put_id(b, &a.id);
    let host = a.host.as_bytes();
    let host = &host[..host.len().min(MAX_HOST)];
    varint::put(b, host.len() as u64);
    b.put_slice(host);
}

pub(crate) fn get_addr(b: &mut Bytes) -> Result<PeerAddr, DecodeError> {
    let id = get_id(b, "peer address")?;
    let len = varint::get_complete(b, "peer address")?;
    if len > MAX_HOST as u64 {
        return Err(DecodeError::TooLarge {
            what: "peer host",
            len,
            max: MAX_HOST as u64,
        });
    }
    if (b.remaining() as u64) < len {
        return Err(DecodeError::Truncated("peer address"));
    }
    let raw = b.split_to(len as usize);
    let host =
        std::str::from_utf8(&raw).map_err(|_| DecodeError::Malformed("peer host is not UTF-8"))?;
    // The same rules as a typed address: a port is required.
    format!("{id}@{host}")
        .parse::<PeerAddr>()
        .map_err(|_| DecodeError::Malformed("peer host is not HOST:PORT"))
}

fn get_u32(b: &mut Bytes, what: &'static str) -> Result<u32, DecodeError> {
    let v = varint::get_complete(b, what)?;
    u32::try_from(v).map_err(|_| DecodeError::Malformed(what))
}

pub(crate) fn put_candidates(b: &mut impl BufMut, v: &[Candidate]) {
    let v = &v[..v.len().min(MAX_CANDIDATES)];
    varint::put(b, v.len() as u64);
    for c in v {
        put_addr(b, &c.addr);
        varint::put(b, u64::from(c.depth));
        varint::put(b, u64::from(c.free));
    }
}

pub(crate) fn get_candidates(b: &mut Bytes) -> Result<Vec<Candidate>, DecodeError> {
    let n = varint::get_complete(b, "candidates")?;
    if n > MAX_CANDIDATES as u64 {
        return Err(DecodeError::TooMany {
            what: "candidates",
            count: n,
            max: MAX_CANDIDATES as u64,
        });
    }
    let mut v = Vec::with_capacity(n as usize);
    for _ in 0..n {
        let addr = get_addr(b)?;
        let depth = get_u32(b, "candidate depth")?;
        let free = get_u32(b, "candidate free slots")?;
        v.push(Candidate { addr, depth, free });
    }
    Ok(v)
}

pub(crate) fn put_tree_info(b: &mut impl BufMut, t: &TreeInfo) {
    b.put_u8(u8::from(t.rooted));
    let path = &t.path[t.path.len().saturating_sub(MAX_PATH)..];
    varint::put(b, path.len() as u64);
    for id in path {
        put_id(b, id);
    }
    put_candidates(b, &t.backups);
}

/// The `rooted` flag that starts a tree info or a probe answer (`what` names it if missing).
fn get_rooted(b: &mut Bytes, what: &'static str) -> Result<bool, DecodeError> {
    if !b.has_remaining() {
        return Err(DecodeError::Truncated(what));
    }
    match b.get_u8() {
        0 => Ok(false),
        1 => Ok(true),
        _ => Err(DecodeError::Malformed("rooted flag")),
    }
}

pub(crate) fn get_tree_info(b: &mut Bytes) -> Result<TreeInfo, DecodeError> {
    let rooted = get_rooted(b, "tree info")?;
    let n = varint::get_complete(b, "tree path")?;
    if n > MAX_PATH as u64 {
        return Err(DecodeError::TooMany {
            what: "tree path",
            count: n,
            max: MAX_PATH as u64,
        });
    }
    let mut path = Vec::with_capacity(n as usize);
    for _ in 0..n {
        path.push(get_id(b, "tree path")?);
    }
    let backups = get_candidates(b)?;
    Ok(TreeInfo {
        rooted,
        path,
        backups,
    })
}

pub(crate) fn put_probe_info(b: &mut impl BufMut, p: &ProbeInfo) {
    b.put_u8(u8::from(p.rooted));
    varint::put(b, u64::from(p.depth));
    varint::put(b, u64::from(p.free));
    varint::put(b, u64::from(p.capacity));
    varint::put(b, u64::from(p.movable));
    put_candidates(b, &p.candidates);
}

pub(crate) fn get_probe_info(b: &mut Bytes) -> Result<ProbeInfo, DecodeError> {
    Ok(ProbeInfo {
        rooted: get_rooted(b, "probe reply")?,
        depth: get_u32(b, "probe reply depth")?,
        free: get_u32(b, "probe reply free slots")?,
        capacity: get_u32(b, "probe reply capacity")?,
        movable: get_u32(b, "probe reply movable")?,
        candidates: get_candidates(b)?,
    })
}

pub(crate) fn get_u32_field(b: &mut Bytes, what: &'static str) -> Result<u32, DecodeError> {
    get_u32(b, what)
}
