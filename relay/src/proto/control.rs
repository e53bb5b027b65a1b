//! Control messages, carried on the one bidirectional stream a child opens to its parent.
//!
//! Framing: `varint length | type byte | fields`. The length covers type and fields and is
//! bounded by [`Limits::max_control_message`](super::Limits).
//!
//! | type | message      | direction      | fields                                      |
//! |------|--------------|----------------|---------------------------------------------|
//! | 0x01 | `Subscribe`  | child → parent | capacity, replaces, resume points, token     |
//! | 0x02 | `Catalog`    | parent → child | JSON (see [`Catalog`]), origin signature     |
//! | 0x03 | `Refuse`     | parent → child | error code, reason (UTF-8), redirect list   |
//! | 0x04 | `Goodbye`    | either         | handover list: where the children should go |
//! | 0x05 | `Probe`      | joiner → node  | token: who are you, whom do you know        |
//! | 0x06 | `ProbeReply` | node → joiner  | [`ProbeInfo`]: rooted, depth, free, candidates |
//! | 0x07 | `Tree`       | parent → child | [`TreeInfo`]: rooted, path, backups         |
//! | 0x08 | `Status`     | child → parent | free, subtree size, rooms (≤ 4 candidates)  |
//! | 0x09 | `Leaving`    | child → parent | (none): my children may ask for my slot     |
//! | 0x0a | `Report`     | child → parent | [`SubtreeReport`]: bounded subtree summary  |
//! |      |              | node → asker   | (also the answer to `TreeQuery`)            |
//! | 0x0b | `TreeQuery`  | asker → node   | (none): describe the tree below you         |
//!
//! Field encodings of candidates and tree info: [`super::tree_msg`]; of reports:
//! [`super::report`]. A token is `varint len | bytes` (len 0: none; at most
//! [`MAX_TOKEN`] bytes); a catalog is `varint len | JSON | 0 | 1 signature(64)`.

use bytes::{Buf, BufMut, Bytes, BytesMut};

use super::error::DecodeError;
use super::id::NodeId;
use super::limits::Limits;
use super::media::{Catalog, SignedCatalog, TrackId};
use super::report::SubtreeReport;
use super::tree_msg::{
    Candidate, ProbeInfo, TreeInfo, get_candidates, get_id, get_probe_info, get_tree_info,
    get_u32_field, put_candidates, put_id, put_probe_info, put_tree_info,
};
use super::trust::token::MAX_TOKEN;
use super::varint;

const T_SUBSCRIBE: u8 = 0x01;
const T_CATALOG: u8 = 0x02;
const T_REFUSE: u8 = 0x03;
const T_GOODBYE: u8 = 0x04;
const T_PROBE: u8 = 0x05;
const T_PROBE_REPLY: u8 = 0x06;
const T_TREE: u8 = 0x07;
const T_STATUS: u8 = 0x08;
const T_LEAVING: u8 = 0x09;
const T_REPORT: u8 = 0x0a;
const T_TREE_QUERY: u8 = 0x0b;

/// Most resume points a `Subscribe` may carry.
pub const MAX_RESUME_TRACKS: usize = 64;
/// Longest `Refuse` reason, in bytes.
pub const MAX_REASON: usize = 1024;
/// Most rooms a `Status` may report.
pub const MAX_ROOMS: usize = 4;

/// Where a child wants a track to resume: the next sequence number it lacks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ResumePoint {
    /// The track.
    pub track: TrackId,
    /// The first sequence number the child does not have yet.
    pub next_seq: u64,
}

/// A control message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ControlMessage {
    /// Child → parent: send me the broadcast. Empty `resume` means "start at the latest
    /// keyframe"; otherwise continue each listed track from `next_seq` when the parent's
    /// cache still holds it.
    Subscribe {
        /// Resume points, at most one per track.
        resume: Vec<ResumePoint>,
        /// How many children the subscriber itself accepts.
        capacity: u32,
        /// The subscriber was handed over by this (leaving) child of the parent and asks
        /// for its slot.
        replaces: Option<NodeId>,
        /// Join token (private streams), in its wire form.
        token: Option<Bytes>,
    },
    /// Parent → child: the tracks of the broadcast, as the origin signed them. Sent once,
    /// before any media.
    Catalog(SignedCatalog),
    /// Parent → child: the subscription is refused (the connection closes after it).
    Refuse {
        /// Why, as a numeric [`ErrorCode`](super::ErrorCode) value.
        code: u32,
        /// Human-readable explanation.
        reason: String,
        /// Where to try instead.
        redirect: Vec<Candidate>,
    },
    /// The sender leaves in order; a parent lists where its children should go.
    Goodbye {
        /// Parents to move to (empty from a child).
        handover: Vec<Candidate>,
    },
    /// Joiner → node: describe yourself and the parents you know.
    Probe {
        /// Join token (private streams), in its wire form.
        token: Option<Bytes>,
    },
    /// Node → joiner: the answer to a probe.
    ProbeReply(ProbeInfo),
    /// Parent → child: your position in the tree (on attach and on every change).
    Tree(TreeInfo),
    /// Child → parent: I am leaving in order; my children may ask for my slot.
    Leaving,
    /// Child → parent: my free slots and subtree size (on change).
    Status {
        /// Free child slots.
        free: u32,
        /// Nodes in its subtree, itself included.
        subtree: u32,
        /// Descendants with free slots, shallowest first, spread over the subtree
        /// (at most [`MAX_ROOMS`]).
        rooms: Vec<Candidate>,
    },
    /// Child → parent (periodically): a bounded summary of its subtree. Also a node's
    /// answer to a [`ControlMessage::TreeQuery`].
    Report(SubtreeReport),
    /// Asker (`treecast tree`, on a probe-style connection) → node: describe your
    /// subtree; the node answers with a [`ControlMessage::Report`].
    TreeQuery,
}

impl ControlMessage {
    /// Appends the framed message to `out`.
    pub fn encode(&self, out: &mut BytesMut) {
        let mut body = BytesMut::new();
        match self {
            ControlMessage::Subscribe {
                resume,
                capacity,
                replaces,
                token,
            } => {
                body.put_u8(T_SUBSCRIBE);
                varint::put(&mut body, u64::from(*capacity));
                match replaces {
                    Some(id) => {
                        body.put_u8(1);
                        put_id(&mut body, id);
                    }
                    None => body.put_u8(0),
                }
                varint::put(&mut body, resume.len() as u64);
                for r in resume {
                    varint::put(&mut body, u64::from(r.track));
                    varint::put(&mut body, r.next_seq);
                }
                put_token(&mut body, token.as_ref());
            }
            ControlMessage::Catalog(c) => {
                body.put_u8(T_CATALOG);
                varint::put(&mut body, c.json.len() as u64);
                body.put_slice(&c.json);
                match &c.signature {
                    Some(sig) => {
                        body.put_u8(1);
                        body.put_slice(sig);
                    }
                    None => body.put_u8(0),
                }
            }
            ControlMessage::Refuse {
                code,
                reason,
                redirect,
            } => {
                body.put_u8(T_REFUSE);
                varint::put(&mut body, u64::from(*code));
                let r = truncate_utf8(reason, MAX_REASON);
                varint::put(&mut body, r.len() as u64);
                body.put_slice(r.as_bytes());
                put_candidates(&mut body, redirect);
            }
            ControlMessage::Goodbye { handover } => {
                body.put_u8(T_GOODBYE);
                put_candidates(&mut body, handover);
            }
            ControlMessage::Probe { token } => {
                body.put_u8(T_PROBE);
                put_token(&mut body, token.as_ref());
            }
            ControlMessage::Leaving => body.put_u8(T_LEAVING),
            ControlMessage::ProbeReply(p) => {
                body.put_u8(T_PROBE_REPLY);
                put_probe_info(&mut body, p);
            }
            ControlMessage::Tree(t) => {
                body.put_u8(T_TREE);
                put_tree_info(&mut body, t);
            }
            ControlMessage::Status {
                free,
                subtree,
                rooms,
            } => {
                body.put_u8(T_STATUS);
                varint::put(&mut body, u64::from(*free));
                varint::put(&mut body, u64::from(*subtree));
                put_candidates(&mut body, &rooms[..rooms.len().min(MAX_ROOMS)]);
            }
            ControlMessage::Report(r) => {
                body.put_u8(T_REPORT);
                r.encode(&mut body);
            }
            ControlMessage::TreeQuery => body.put_u8(T_TREE_QUERY),
        }
        varint::put(out, body.len() as u64);
        out.extend_from_slice(&body);
    }

    /// The framed message as bytes.
    pub fn to_bytes(&self) -> Bytes {
        let mut b = BytesMut::new();
        self.encode(&mut b);
        b.freeze()
    }

    /// Decodes one message body (type byte and fields, without the length prefix).
    pub fn decode_body(mut body: Bytes) -> Result<ControlMessage, DecodeError> {
        if !body.has_remaining() {
            return Err(DecodeError::Malformed("empty control message"));
        }
        let ty = body.get_u8();
        let msg = match ty {
            T_SUBSCRIBE => {
                let capacity = get_u32_field(&mut body, "subscribe capacity")?;
                if !body.has_remaining() {
                    return Err(DecodeError::Truncated("subscribe"));
                }
                let replaces = match body.get_u8() {
                    0 => None,
                    1 => Some(get_id(&mut body, "subscribe")?),
                    _ => return Err(DecodeError::Malformed("subscribe replaces flag")),
                };
                let n = varint::get_complete(&mut body, "subscribe")?;
                if n > MAX_RESUME_TRACKS as u64 {
                    return Err(DecodeError::TooMany {
                        what: "subscribe resume points",
                        count: n,
                        max: MAX_RESUME_TRACKS as u64,
                    });
                }
                let mut resume = Vec::with_capacity(n as usize);
                for _ in 0..n {
                    let track = varint::get_complete(&mut body, "subscribe")?;
                    let track = TrackId::try_from(track)
                        .map_err(|_| DecodeError::Malformed("track id above 2^32"))?;
                    let next_seq = varint::get_complete(&mut body, "subscribe")?;
                    resume.push(ResumePoint { track, next_seq });
                }
                let token = get_token(&mut body)?;
                ControlMessage::Subscribe {
                    resume,
                    capacity,
                    replaces,
                    token,
                }
            }
            T_CATALOG => {
                let len = varint::get_complete(&mut body, "catalog")?;
                if (body.remaining() as u64) < len {
                    return Err(DecodeError::Truncated("catalog"));
                }
                let json = body.split_to(len as usize);
                let catalog: Catalog = serde_json::from_slice(&json)
                    .map_err(|e| DecodeError::Catalog(e.to_string()))?;
                if !body.has_remaining() {
                    return Err(DecodeError::Truncated("catalog signature flag"));
                }
                let signature = match body.get_u8() {
                    0 => None,
                    1 => {
                        if body.remaining() < 64 {
                            return Err(DecodeError::Truncated("catalog signature"));
                        }
                        let mut sig = [0u8; 64];
                        body.copy_to_slice(&mut sig);
                        Some(sig)
                    }
                    _ => return Err(DecodeError::Malformed("catalog signature flag")),
                };
                ControlMessage::Catalog(SignedCatalog {
                    catalog,
                    json,
                    signature,
                })
            }
            T_REFUSE => {
                let code = varint::get_complete(&mut body, "refuse")?;
                let code =
                    u32::try_from(code).map_err(|_| DecodeError::Malformed("refuse code"))?;
                let len = varint::get_complete(&mut body, "refuse")?;
                if len > MAX_REASON as u64 {
                    return Err(DecodeError::TooLarge {
                        what: "refuse reason",
                        len,
                        max: MAX_REASON as u64,
                    });
                }
                if (body.remaining() as u64) < len {
                    return Err(DecodeError::Truncated("refuse reason"));
                }
                let raw = body.split_to(len as usize);
                let reason = String::from_utf8(raw.to_vec())
                    .map_err(|_| DecodeError::Malformed("refuse reason is not UTF-8"))?;
                let redirect = get_candidates(&mut body)?;
                ControlMessage::Refuse {
                    code,
                    reason,
                    redirect,
                }
            }
            T_GOODBYE => ControlMessage::Goodbye {
                handover: get_candidates(&mut body)?,
            },
            T_PROBE => ControlMessage::Probe {
                token: get_token(&mut body)?,
            },
            T_LEAVING => ControlMessage::Leaving,
            T_PROBE_REPLY => ControlMessage::ProbeReply(get_probe_info(&mut body)?),
            T_TREE => ControlMessage::Tree(get_tree_info(&mut body)?),
            T_STATUS => {
                let free = get_u32_field(&mut body, "status free slots")?;
                let subtree = get_u32_field(&mut body, "status subtree")?;
                let rooms = get_candidates(&mut body)?;
                if rooms.len() > MAX_ROOMS {
                    return Err(DecodeError::TooMany {
                        what: "status rooms",
                        count: rooms.len() as u64,
                        max: MAX_ROOMS as u64,
                    });
                }
                ControlMessage::Status {
                    free,
                    subtree,
                    rooms,
                }
            }
            T_REPORT => ControlMessage::Report(SubtreeReport::decode(&mut body)?),
            T_TREE_QUERY => ControlMessage::TreeQuery,
            ty => {
                return Err(DecodeError::UnknownType {
                    what: "control message",
                    ty,
                });
            }
        };
        if body.has_remaining() {
            return Err(DecodeError::Malformed(
                "trailing bytes after control message",
            ));
        }
        Ok(msg)
    }
}

fn put_token(out: &mut BytesMut, token: Option<&Bytes>) {
    match token {
        Some(t) if t.len() <= MAX_TOKEN => {
            varint::put(out, t.len() as u64);
            out.put_slice(t);
        }
        _ => varint::put(out, 0),
    }
}

fn get_token(body: &mut Bytes) -> Result<Option<Bytes>, DecodeError> {
    let len = varint::get_complete(body, "join token")?;
    if len > MAX_TOKEN as u64 {
        return Err(DecodeError::TooLarge {
            what: "join token",
            len,
            max: MAX_TOKEN as u64,
        });
    }
    if (body.remaining() as u64) < len {
        return Err(DecodeError::Truncated("join token"));
    }
    Ok((len > 0).then(|| body.split_to(len as usize)))
}

/// `s` cut to at most `max` bytes, on a character boundary.
pub(crate) fn truncate_utf8(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// Incremental decoder for a control stream: feed it bytes as they arrive, take messages.
#[derive(Debug)]
pub struct ControlDecoder {
    buf: BytesMut,
    max_len: u64,
}

impl ControlDecoder {
    /// A decoder enforcing `limits`.
    pub fn new(limits: &Limits) -> Self {
        ControlDecoder {
            buf: BytesMut::new(),
            max_len: limits.max_control_message as u64,
        }
    }

    /// Appends received bytes.
    pub fn push(&mut self, data: &[u8]) {
        self.buf.extend_from_slice(data);
    }

    /// The next complete message, `Ok(None)` if more bytes are needed.
    pub fn next_message(&mut self) -> Result<Option<ControlMessage>, DecodeError> {
        let mut peek = &self.buf[..];
        let Some(len) = varint::get(&mut peek)? else {
            return Ok(None);
        };
        if len > self.max_len {
            return Err(DecodeError::TooLarge {
                what: "control message",
                len,
                max: self.max_len,
            });
        }
        let header = self.buf.len() - peek.len();
        if (peek.len() as u64) < len {
            return Ok(None);
        }
        self.buf.advance(header);
        let body = self.buf.split_to(len as usize).freeze();
        ControlMessage::decode_body(body).map(Some)
    }

    /// Call when the stream has ended: an error if a message was cut short.
    pub fn finish(&self) -> Result<(), DecodeError> {
        if self.buf.is_empty() {
            Ok(())
        } else {
            Err(DecodeError::Truncated("control message"))
        }
    }
}

#[cfg(test)]
mod tests;
