//! QUIC-style variable-length integers (RFC 9000 §16): 1, 2, 4 or 8 bytes, values below
//! 2^62. Used for every integer on the treecast wire.

use bytes::{Buf, BufMut};

use super::error::DecodeError;

/// Largest value a varint can carry.
pub const MAX: u64 = (1 << 62) - 1;

/// Number of bytes `v` takes on the wire.
pub fn size(v: u64) -> usize {
    match v {
        0..=63 => 1,
        64..=16_383 => 2,
        16_384..=1_073_741_823 => 4,
        _ => 8,
    }
}

/// Appends `v` to `buf`. Values above [`MAX`] are a local programming error and are
/// clamped to `MAX` (the encoders never produce them: they come from our own counters).
pub fn put(buf: &mut impl BufMut, v: u64) {
    let v = v.min(MAX);
    match size(v) {
        1 => buf.put_u8(v as u8),
        2 => buf.put_u16(0x4000 | v as u16),
        4 => buf.put_u32(0x8000_0000 | v as u32),
        _ => buf.put_u64(0xc000_0000_0000_0000 | v),
    }
}

/// Reads a varint from the front of `buf`. Returns `Ok(None)` if `buf` holds only part of
/// one (read more and try again); nothing is consumed in that case.
pub fn get(buf: &mut impl Buf) -> Result<Option<u64>, DecodeError> {
    if !buf.has_remaining() {
        return Ok(None);
    }
    let first = buf.chunk()[0];
    let len = 1usize << (first >> 6);
    if buf.remaining() < len {
        return Ok(None);
    }
    let v = match len {
        1 => u64::from(buf.get_u8() & 0x3f),
        2 => u64::from(buf.get_u16() & 0x3fff),
        4 => u64::from(buf.get_u32() & 0x3fff_ffff),
        _ => buf.get_u64() & 0x3fff_ffff_ffff_ffff,
    };
    Ok(Some(v))
}

/// Reads a varint that must be complete (inside an already length-delimited message).
pub fn get_complete(buf: &mut impl Buf, what: &'static str) -> Result<u64, DecodeError> {
    get(buf)?.ok_or(DecodeError::Truncated(what))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn roundtrip(v in 0..=MAX) {
            let mut b = Vec::new();
            put(&mut b, v);
            prop_assert_eq!(b.len(), size(v));
            let mut s = &b[..];
            prop_assert_eq!(get(&mut s).unwrap(), Some(v));
            prop_assert!(s.is_empty());
        }

        #[test]
        fn partial_input_consumes_nothing(v in 64..=MAX) {
            let mut b = Vec::new();
            put(&mut b, v);
            let mut s = &b[..b.len() - 1];
            prop_assert_eq!(get(&mut s).unwrap(), None);
            prop_assert_eq!(s.len(), b.len() - 1);
        }
    }

    #[test]
    fn boundaries() {
        for (v, n) in [(0, 1), (63, 1), (64, 2), (16_383, 2), (16_384, 4), (MAX, 8)] {
            assert_eq!(size(v), n, "{v}");
        }
    }
}
