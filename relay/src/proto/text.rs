//! Text messages on a data track: announcements broadcast through the same tree as the
//! media, e.g. `treecast publish --messages -`.
//!
//! Each message is its own group: one frame (a keyframe) whose payload holds the message
//! *and the ones before it* (at most [`HISTORY`]), each with its number. So:
//!
//! - a late joiner starts at the latest group (see [`crate::proto::cache`]) and at once
//!   gets the last few messages;
//! - a viewer that lost a frame finds the missing messages in the next one;
//! - a viewer shows every message once, in order: [`MessageReader`] keeps the number of
//!   the last message shown and skips repeats.
//!
//! Payload (integers are QUIC varints): `count`, then `count` times `number`, `length`,
//! UTF-8 bytes; numbers strictly increasing. Bounded by [`HISTORY`] and
//! [`MAX_MESSAGE_BYTES`].
//!
//! ```
//! use treecast_relay::proto::text::{MessageReader, MessageTrack};
//! let mut origin = MessageTrack::default();
//! let mut viewer = MessageReader::default();
//! let f = origin.frame("doors open at 8", 0, 0);
//! let shown = viewer.accept(&f.payload).unwrap();
//! assert_eq!(shown[0].text, "doors open at 8");
//! ```

use bytes::{Buf, BufMut, Bytes, BytesMut};
use std::collections::VecDeque;

use super::error::DecodeError;
use super::media::{Codec, Frame, TrackId, TrackInfo};
use super::varint;

/// Conventional track id of the message track.
pub const TEXT_TRACK: TrackId = 2;
/// Messages repeated in each frame (the newest included).
pub const HISTORY: usize = 8;
/// Longest message in bytes; longer input is cut at a character boundary.
pub const MAX_MESSAGE_BYTES: usize = 1024;

/// The catalog entry of the message track.
pub fn track_info() -> TrackInfo {
    TrackInfo {
        id: TEXT_TRACK,
        name: "messages".into(),
        codec: Codec::Text,
        bitrate: 0,
    }
}

/// One message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Message {
    /// Position in the broadcast's messages (0, 1, 2...).
    pub number: u64,
    /// The text (one line).
    pub text: String,
}

/// Encodes messages (numbers must increase; at most [`HISTORY`]).
pub fn encode(messages: &[Message]) -> Bytes {
    let mut b = BytesMut::new();
    varint::put(&mut b, messages.len() as u64);
    for m in messages {
        varint::put(&mut b, m.number);
        varint::put(&mut b, m.text.len() as u64);
        b.put_slice(m.text.as_bytes());
    }
    b.freeze()
}

/// Decodes a payload made by [`encode`]. Peer input: every count and length is bounded.
pub fn decode(mut buf: &[u8]) -> Result<Vec<Message>, DecodeError> {
    let truncated = DecodeError::Truncated("text message");
    let count = varint::get(&mut buf)?.ok_or(truncated.clone())?;
    if count > HISTORY as u64 {
        return Err(DecodeError::TooMany {
            what: "text messages",
            count,
            max: HISTORY as u64,
        });
    }
    let mut out: Vec<Message> = Vec::with_capacity(count as usize);
    for _ in 0..count {
        let number = varint::get(&mut buf)?.ok_or(truncated.clone())?;
        if out.last().is_some_and(|m| m.number >= number) {
            return Err(DecodeError::Malformed(
                "text message numbers not increasing",
            ));
        }
        let len = varint::get(&mut buf)?.ok_or(truncated.clone())?;
        if len > MAX_MESSAGE_BYTES as u64 {
            return Err(DecodeError::TooLarge {
                what: "text message",
                len,
                max: MAX_MESSAGE_BYTES as u64,
            });
        }
        let len = len as usize;
        if buf.remaining() < len {
            return Err(truncated);
        }
        let text = std::str::from_utf8(&buf[..len])
            .map_err(|_| DecodeError::Malformed("text message is not UTF-8"))?
            .to_string();
        buf.advance(len);
        out.push(Message { number, text });
    }
    if buf.has_remaining() {
        return Err(DecodeError::Malformed("bytes after the text messages"));
    }
    Ok(out)
}

/// Cuts `s` to at most [`MAX_MESSAGE_BYTES`] at a character boundary.
fn cut(s: &str) -> &str {
    if s.len() <= MAX_MESSAGE_BYTES {
        return s;
    }
    let mut end = MAX_MESSAGE_BYTES;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// The origin's side: turns lines into frames of [`TEXT_TRACK`].
#[derive(Debug, Default)]
pub struct MessageTrack {
    next: u64,
    history: VecDeque<Message>,
}

impl MessageTrack {
    /// The frame carrying `text` (and the previous messages). `pts` should be the media's
    /// current running time (µs) so the frame sorts with the media; `capture_us` is the
    /// wall clock now.
    pub fn frame(&mut self, text: &str, pts: u64, capture_us: u64) -> Frame {
        let number = self.next;
        self.next += 1;
        if self.history.len() == HISTORY {
            self.history.pop_front();
        }
        self.history.push_back(Message {
            number,
            text: cut(text).to_string(),
        });
        let payload = encode(self.history.make_contiguous());
        Frame {
            track: TEXT_TRACK,
            group: number,
            seq: number,
            pts,
            dts: pts,
            duration: 0,
            keyframe: true,
            capture_us,
            payload,
            signature: None,
        }
    }
}

/// The viewer's side: the messages not shown yet, in order, each once.
#[derive(Debug, Default)]
pub struct MessageReader {
    last: Option<u64>,
}

impl MessageReader {
    /// Decodes a frame's payload and returns the messages newer than any seen before.
    pub fn accept(&mut self, payload: &[u8]) -> Result<Vec<Message>, DecodeError> {
        let all = decode(payload)?;
        let last = self.last;
        let new: Vec<Message> = all
            .into_iter()
            .filter(|m| last.is_none_or(|l| m.number > l))
            .collect();
        if let Some(m) = new.last() {
            self.last = Some(m.number);
        }
        Ok(new)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn texts(v: &[Message]) -> Vec<&str> {
        v.iter().map(|m| m.text.as_str()).collect()
    }

    #[test]
    fn each_message_once_in_order_and_late_joiners_get_the_last_few() {
        let mut origin = MessageTrack::default();
        let mut early = MessageReader::default();
        let frames: Vec<Frame> = (0..12)
            .map(|i| origin.frame(&format!("m{i}"), i * 10, 0))
            .collect();
        let mut shown = Vec::new();
        for f in &frames {
            assert!(f.keyframe && f.group == f.seq);
            shown.extend(early.accept(&f.payload).unwrap());
        }
        assert_eq!(
            shown.iter().map(|m| m.number).collect::<Vec<_>>(),
            (0..12).collect::<Vec<_>>()
        );
        // A late joiner starts at the latest frame: the last HISTORY messages.
        let mut late = MessageReader::default();
        let got = late.accept(&frames[11].payload).unwrap();
        assert_eq!(
            texts(&got),
            ["m4", "m5", "m6", "m7", "m8", "m9", "m10", "m11"]
        );
        // A viewer that lost frames 5..=7 recovers them from frame 8.
        let mut lossy = MessageReader::default();
        let mut got = Vec::new();
        for f in frames.iter().take(5).chain(frames.iter().skip(8)) {
            got.extend(lossy.accept(&f.payload).unwrap());
        }
        assert_eq!(got.len(), 12);
        // Repeats are not shown again.
        assert!(lossy.accept(&frames[11].payload).unwrap().is_empty());
    }

    #[test]
    fn long_lines_are_cut_at_a_character_boundary() {
        let mut origin = MessageTrack::default();
        let long = "é".repeat(MAX_MESSAGE_BYTES);
        let f = origin.frame(&long, 0, 0);
        let m = decode(&f.payload).unwrap();
        assert_eq!(m[0].text.len(), MAX_MESSAGE_BYTES);
    }

    #[test]
    fn bad_payloads_are_typed_errors() {
        assert!(matches!(decode(&[]), Err(DecodeError::Truncated(_))));
        assert!(matches!(decode(&[9]), Err(DecodeError::TooMany { .. })));
        assert!(matches!(
            decode(&[1, 0, 3, b'a']),
            Err(DecodeError::Truncated(_))
        ));
        assert!(matches!(
            decode(&[1, 0, 2, 0xff, 0xfe]),
            Err(DecodeError::Malformed(_))
        ));
        assert!(matches!(
            decode(&[2, 1, 0, 1, 0]),
            Err(DecodeError::Malformed(_))
        ));
        assert!(matches!(decode(&[0, 0]), Err(DecodeError::Malformed(_))));
        let mut big = BytesMut::new();
        varint::put(&mut big, 1);
        varint::put(&mut big, 0);
        varint::put(&mut big, MAX_MESSAGE_BYTES as u64 + 1);
        assert!(matches!(decode(&big), Err(DecodeError::TooLarge { .. })));
    }

    proptest! {
        #[test]
        fn round_trip(start in 0u64..1_000_000, gaps in proptest::collection::vec(1u64..1000, 0..=HISTORY),
                      words in proptest::collection::vec("\\PC{0,40}", HISTORY)) {
            let mut number = start;
            let msgs: Vec<Message> = gaps.iter().zip(&words).map(|(g, w)| {
                number += g;
                Message { number, text: w.clone() }
            }).collect();
            prop_assert_eq!(decode(&encode(&msgs)).unwrap(), msgs);
        }

        #[test]
        fn any_bytes_decode_or_fail_cleanly(data in proptest::collection::vec(any::<u8>(), 0..200)) {
            if let Ok(m) = decode(&data) {
                prop_assert_eq!(decode(&encode(&m)).unwrap(), m);
            }
        }
    }
}
