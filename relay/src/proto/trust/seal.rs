//! End-to-end payload encryption for private streams (AES-256-GCM).
//!
//! The publisher holds a 32-byte content key and hands it only to viewers (inside their
//! credential). Each origin run draws a random `epoch` (carried in the signed catalog);
//! the payload key is HKDF-SHA256(content key, epoch), and the nonce is the frame's track
//! and sequence number, which never repeat within a run. The header fields are bound as
//! associated data. Only payloads are encrypted: relays still see group boundaries,
//! keyframe flags and timestamps, which they need to forward and cache.

use bytes::Bytes;
use ring::aead::{AES_256_GCM, Aad, LessSafeKey, Nonce, UnboundKey};
use ring::hkdf;

use super::TrustError;
use crate::proto::media::Frame;

/// The secret that opens a stream's payloads.
#[derive(Clone, PartialEq, Eq)]
pub struct ContentKey([u8; 32]);

impl std::fmt::Debug for ContentKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ContentKey(..)")
    }
}

impl ContentKey {
    /// A key from its bytes (drawn from a secure random source by the caller).
    pub fn from_bytes(b: [u8; 32]) -> ContentKey {
        ContentKey(b)
    }

    /// The key's bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

/// Seals and opens the payloads of one origin run.
pub struct Sealer {
    key: LessSafeKey,
}

impl std::fmt::Debug for Sealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Sealer(..)")
    }
}

/// Bytes sealing adds to a payload (the GCM tag).
pub const SEAL_OVERHEAD: usize = 16;

impl Sealer {
    /// The sealer for `epoch` of the stream with `key`.
    pub fn new(key: &ContentKey, epoch: u64) -> Sealer {
        let salt = hkdf::Salt::new(hkdf::HKDF_SHA256, b"treecast-seal-v1");
        let info = epoch.to_be_bytes();
        let info = [&info[..]];
        let mut raw = [0u8; 32];
        // HKDF-expand of 32 bytes from SHA-256 cannot fail.
        if let Ok(okm) = salt.extract(&key.0).expand(&info, &AES_256_GCM) {
            let _ = okm.fill(&mut raw);
        }
        let unbound = UnboundKey::new(&AES_256_GCM, &raw).expect("AES-256 takes any 32-byte key");
        Sealer {
            key: LessSafeKey::new(unbound),
        }
    }

    fn nonce(f: &Frame) -> Nonce {
        let mut n = [0u8; 12];
        n[..4].copy_from_slice(&f.track.to_be_bytes());
        n[4..].copy_from_slice(&f.seq.to_be_bytes());
        Nonce::assume_unique_for_key(n)
    }

    fn aad(f: &Frame) -> [u8; 20] {
        let mut a = [0u8; 20];
        a[..4].copy_from_slice(&f.track.to_be_bytes());
        a[4..12].copy_from_slice(&f.group.to_be_bytes());
        a[12..].copy_from_slice(&f.seq.to_be_bytes());
        a
    }

    /// Encrypts the frame's payload in place (before it is signed).
    pub fn seal(&self, frame: &mut Frame) {
        let mut buf = Vec::with_capacity(frame.payload.len() + SEAL_OVERHEAD);
        buf.extend_from_slice(&frame.payload);
        let aad = Self::aad(frame);
        // Sealing fails only for payloads beyond 2^36 bytes.
        if self
            .key
            .seal_in_place_append_tag(Self::nonce(frame), Aad::from(aad), &mut buf)
            .is_ok()
        {
            frame.payload = Bytes::from(buf);
        }
    }

    /// Decrypts the frame's payload in place.
    pub fn open(&self, frame: &mut Frame) -> Result<(), TrustError> {
        let mut buf = frame.payload.to_vec();
        let aad = Self::aad(frame);
        let n = self
            .key
            .open_in_place(Self::nonce(frame), Aad::from(aad), &mut buf)
            .map_err(|_| TrustError::Undecryptable {
                track: frame.track,
                seq: frame.seq,
            })?
            .len();
        buf.truncate(n);
        frame.payload = Bytes::from(buf);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(payload: &'static [u8]) -> Frame {
        Frame {
            track: 1,
            group: 2,
            seq: 3,
            pts: 4,
            dts: 4,
            duration: 20,
            keyframe: true,
            capture_us: 5,
            payload: Bytes::from_static(payload),
            signature: None,
        }
    }

    #[test]
    fn sealed_payloads_open_only_with_the_key_and_epoch() {
        let k = ContentKey::from_bytes([1; 32]);
        let s = Sealer::new(&k, 42);
        let mut f = frame(b"secret words");
        s.seal(&mut f);
        assert_ne!(&f.payload[..], b"secret words");
        assert_eq!(f.payload.len(), 12 + SEAL_OVERHEAD);
        let mut g = f.clone();
        s.open(&mut g).unwrap();
        assert_eq!(&g.payload[..], b"secret words");
        // Wrong epoch, wrong key, moved frame: refused.
        assert!(Sealer::new(&k, 43).open(&mut f.clone()).is_err());
        assert!(
            Sealer::new(&ContentKey::from_bytes([2; 32]), 42)
                .open(&mut f.clone())
                .is_err()
        );
        let mut moved = f.clone();
        moved.seq = 4;
        assert!(s.open(&mut moved).is_err());
    }
}
