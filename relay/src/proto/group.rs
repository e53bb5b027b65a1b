//! Media streams: one unidirectional QUIC stream per group.
//!
//! ```text
//! stream  = header frame*
//! header  = 0x10 | varint track | varint group
//! frame   = varint len | flags u8 | varint seq | varint pts | varint (pts - dts)
//!           | varint duration | varint capture_us | [signature(64)] | payload
//! ```
//!
//! `len` covers everything after itself and is bounded by
//! [`Limits::max_frame`](super::Limits). Bit 0 of `flags` marks a keyframe, bit 1 a
//! signed frame (the origin's 64-byte signature precedes the payload); other bits
//! must be zero. Sequence numbers strictly increase within a stream. The payload is
//! handed out as a [`Bytes`] slice of the receive buffer and shared, not copied, by every
//! child it is forwarded to.

use bytes::{Buf, BufMut, Bytes, BytesMut};

use super::error::DecodeError;
use super::limits::Limits;
use super::media::{Frame, TrackId};
use super::varint;

/// Type byte opening a group stream.
pub const GROUP_STREAM: u8 = 0x10;
const FLAG_KEYFRAME: u8 = 0x01;
const FLAG_SIGNED: u8 = 0x02;

/// The header of a group stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct GroupHeader {
    /// The track of every frame on this stream.
    pub track: TrackId,
    /// The group of every frame on this stream.
    pub group: u64,
}

impl GroupHeader {
    /// The encoded header.
    pub fn to_bytes(&self) -> Bytes {
        let mut b = BytesMut::with_capacity(17);
        b.put_u8(GROUP_STREAM);
        varint::put(&mut b, u64::from(self.track));
        varint::put(&mut b, self.group);
        b.freeze()
    }
}

/// The bytes that precede `frame.payload` on the wire. Send them, then the payload.
pub fn encode_frame_header(frame: &Frame) -> Bytes {
    let dts_delta = frame.pts.saturating_sub(frame.dts);
    let fields = 1
        + varint::size(frame.seq)
        + varint::size(frame.pts)
        + varint::size(dts_delta)
        + varint::size(u64::from(frame.duration))
        + varint::size(frame.capture_us)
        + if frame.signature.is_some() { 64 } else { 0 };
    let len = (fields + frame.payload.len()) as u64;
    let mut b = BytesMut::with_capacity(fields + varint::size(len));
    varint::put(&mut b, len);
    let mut flags = if frame.keyframe { FLAG_KEYFRAME } else { 0 };
    if frame.signature.is_some() {
        flags |= FLAG_SIGNED;
    }
    b.put_u8(flags);
    varint::put(&mut b, frame.seq);
    varint::put(&mut b, frame.pts);
    varint::put(&mut b, dts_delta);
    varint::put(&mut b, u64::from(frame.duration));
    varint::put(&mut b, frame.capture_us);
    if let Some(sig) = &frame.signature {
        b.put_slice(sig);
    }
    b.freeze()
}

/// Incremental decoder for one group stream.
#[derive(Debug)]
pub struct GroupDecoder {
    buf: BytesMut,
    header: Option<GroupHeader>,
    last_seq: Option<u64>,
    max_frame: u64,
}

impl GroupDecoder {
    /// A decoder enforcing `limits`.
    pub fn new(limits: &Limits) -> Self {
        GroupDecoder {
            buf: BytesMut::new(),
            header: None,
            last_seq: None,
            max_frame: limits.max_frame as u64,
        }
    }

    /// Appends received bytes.
    pub fn push(&mut self, data: &[u8]) {
        self.buf.extend_from_slice(data);
    }

    /// The stream header, once received.
    pub fn header(&mut self) -> Result<Option<GroupHeader>, DecodeError> {
        if self.header.is_none() {
            let mut peek = &self.buf[..];
            if !peek.has_remaining() {
                return Ok(None);
            }
            let ty = peek.get_u8();
            if ty != GROUP_STREAM {
                return Err(DecodeError::UnknownType {
                    what: "media stream",
                    ty,
                });
            }
            let Some(track) = varint::get(&mut peek)? else {
                return Ok(None);
            };
            let Some(group) = varint::get(&mut peek)? else {
                return Ok(None);
            };
            let track = TrackId::try_from(track)
                .map_err(|_| DecodeError::Malformed("track id above 2^32"))?;
            let used = self.buf.len() - peek.len();
            self.buf.advance(used);
            self.header = Some(GroupHeader { track, group });
        }
        Ok(self.header)
    }

    /// The next complete frame, `Ok(None)` if more bytes are needed.
    pub fn next_frame(&mut self) -> Result<Option<Frame>, DecodeError> {
        let Some(h) = self.header()? else {
            return Ok(None);
        };
        let mut peek = &self.buf[..];
        let Some(len) = varint::get(&mut peek)? else {
            return Ok(None);
        };
        if len > self.max_frame {
            return Err(DecodeError::TooLarge {
                what: "frame",
                len,
                max: self.max_frame,
            });
        }
        if (peek.len() as u64) < len {
            return Ok(None);
        }
        let prefix = self.buf.len() - peek.len();
        self.buf.advance(prefix);
        let mut body = self.buf.split_to(len as usize).freeze();
        if !body.has_remaining() {
            return Err(DecodeError::Truncated("frame header"));
        }
        let flags = body.get_u8();
        if flags & !(FLAG_KEYFRAME | FLAG_SIGNED) != 0 {
            return Err(DecodeError::Malformed("reserved frame flag bits set"));
        }
        let seq = varint::get_complete(&mut body, "frame header")?;
        let pts = varint::get_complete(&mut body, "frame header")?;
        let dts_delta = varint::get_complete(&mut body, "frame header")?;
        let duration = varint::get_complete(&mut body, "frame header")?;
        let capture_us = varint::get_complete(&mut body, "frame header")?;
        let signature = if flags & FLAG_SIGNED != 0 {
            if body.remaining() < 64 {
                return Err(DecodeError::Truncated("frame signature"));
            }
            let mut sig = [0u8; 64];
            body.copy_to_slice(&mut sig);
            Some(sig)
        } else {
            None
        };
        let dts = pts
            .checked_sub(dts_delta)
            .ok_or(DecodeError::Malformed("decode timestamp before zero"))?;
        let duration =
            u32::try_from(duration).map_err(|_| DecodeError::Malformed("frame duration"))?;
        if let Some(last) = self.last_seq
            && seq <= last
        {
            return Err(DecodeError::Malformed(
                "frame sequence does not increase within its group",
            ));
        }
        self.last_seq = Some(seq);
        Ok(Some(Frame {
            track: h.track,
            group: h.group,
            seq,
            pts,
            dts,
            duration,
            keyframe: flags & FLAG_KEYFRAME != 0,
            capture_us,
            payload: body,
            signature,
        }))
    }

    /// Call when the stream has ended (FIN): an error if a frame was cut short.
    pub fn finish(&self) -> Result<(), DecodeError> {
        if self.buf.is_empty() {
            Ok(())
        } else if self.header.is_none() {
            Err(DecodeError::Truncated("media stream header"))
        } else {
            Err(DecodeError::Truncated("frame"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn arb_frames() -> impl Strategy<Value = (GroupHeader, Vec<Frame>)> {
        (
            any::<u32>(),
            0..=varint::MAX,
            0..=varint::MAX / 2,
            proptest::collection::vec(
                (
                    1u64..1000,
                    proptest::option::of(any::<[u8; 32]>()),
                    0..=varint::MAX / 4,
                    0u64..1_000_000,
                    any::<u32>(),
                    0..=varint::MAX,
                    proptest::collection::vec(any::<u8>(), 0..300),
                ),
                0..8,
            ),
        )
            .prop_map(|(track, group, seq0, fs)| {
                let mut seq = seq0;
                let frames = fs
                    .into_iter()
                    .enumerate()
                    .map(
                        |(i, (step, sig, pts, back, duration, capture_us, payload))| {
                            seq += step;
                            Frame {
                                track,
                                group,
                                seq,
                                pts,
                                dts: pts.saturating_sub(back),
                                duration,
                                keyframe: i == 0,
                                capture_us,
                                payload: Bytes::from(payload),
                                signature: sig.map(|h| {
                                    let mut s = [0u8; 64];
                                    s[..32].copy_from_slice(&h);
                                    s[32..].copy_from_slice(&h);
                                    s
                                }),
                            }
                        },
                    )
                    .collect();
                (GroupHeader { track, group }, frames)
            })
    }

    fn wire(h: &GroupHeader, frames: &[Frame]) -> Vec<u8> {
        let mut w = h.to_bytes().to_vec();
        for f in frames {
            w.extend_from_slice(&encode_frame_header(f));
            w.extend_from_slice(&f.payload);
        }
        w
    }

    proptest! {
        #[test]
        fn roundtrip_in_any_chunking((h, frames) in arb_frames(), chunk in 1usize..64) {
            let w = wire(&h, &frames);
            let mut d = GroupDecoder::new(&Limits::default());
            let mut out = Vec::new();
            for c in w.chunks(chunk) {
                d.push(c);
                while let Some(f) = d.next_frame().unwrap() { out.push(f); }
            }
            d.finish().unwrap();
            prop_assert_eq!(d.header().unwrap(), Some(h));
            prop_assert_eq!(out, frames);
        }

        #[test]
        fn any_truncation_is_detected((h, frames) in arb_frames(), cut in any::<prop::sample::Index>()) {
            let w = wire(&h, &frames);
            let at = cut.index(w.len());
            let mut d = GroupDecoder::new(&Limits::default());
            d.push(&w[..at]);
            let mut n = 0;
            while let Some(_f) = d.next_frame().unwrap() { n += 1; }
            // Either we stopped exactly at a frame boundary, or finish() names the truncation.
            if d.finish().is_ok() {
                prop_assert!(n <= frames.len());
            }
        }

        #[test]
        fn garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let mut d = GroupDecoder::new(&Limits::default());
            d.push(&bytes);
            for _ in 0..64 {
                match d.next_frame() { Ok(Some(_)) => continue, _ => break }
            }
            let _ = d.finish();
        }
    }

    #[test]
    fn oversize_frame_is_refused() {
        let h = GroupHeader { track: 0, group: 1 };
        let mut w = h.to_bytes().to_vec();
        let mut b = BytesMut::new();
        varint::put(&mut b, 1 << 30);
        w.extend_from_slice(&b);
        let mut d = GroupDecoder::new(&Limits::default());
        d.push(&w);
        assert!(matches!(
            d.next_frame(),
            Err(DecodeError::TooLarge { what: "frame", .. })
        ));
    }

    #[test]
    fn wrong_stream_type_and_non_increasing_seq() {
        let mut d = GroupDecoder::new(&Limits::default());
        d.push(&[0x42]);
        assert!(matches!(
            d.next_frame(),
            Err(DecodeError::UnknownType { ty: 0x42, .. })
        ));
        let f = Frame {
            track: 0,
            group: 0,
            seq: 5,
            pts: 10,
            dts: 10,
            duration: 1,
            keyframe: true,
            capture_us: 0,
            payload: Bytes::from_static(b"abc"),
            signature: None,
        };
        let w = wire(&GroupHeader { track: 0, group: 0 }, &[f.clone(), f]);
        let mut d = GroupDecoder::new(&Limits::default());
        d.push(&w);
        assert!(d.next_frame().unwrap().is_some());
        assert!(matches!(d.next_frame(), Err(DecodeError::Malformed(_))));
    }

    #[test]
    fn payload_shares_the_receive_buffer() {
        let f = Frame {
            track: 1,
            group: 2,
            seq: 3,
            pts: 4,
            dts: 4,
            duration: 5,
            keyframe: true,
            capture_us: 6,
            payload: Bytes::from(vec![7u8; 1000]),
            signature: None,
        };
        let w = wire(
            &GroupHeader { track: 1, group: 2 },
            std::slice::from_ref(&f),
        );
        let mut d = GroupDecoder::new(&Limits::default());
        d.push(&w);
        let got = d.next_frame().unwrap().unwrap();
        // Cloning the decoded payload (what forwarding does) shares the allocation.
        let fwd = got.payload.clone();
        assert_eq!(fwd.as_ptr(), got.payload.as_ptr());
        assert_eq!(got, f);
    }
}
