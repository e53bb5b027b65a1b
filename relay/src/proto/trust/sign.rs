//! Origin signatures on frames and catalogs, and their verification at every node.
//!
//! The signed bytes are a domain string, the stream's [tag](super::StreamName::tag), every
//! header field of the frame and its payload, so a relay can neither alter a byte, move a
//! frame to another track, group or position, nor replay it on another stream.

use ring::signature::{self, Ed25519KeyPair, KeyPair, UnparsedPublicKey};

use super::TrustError;
use super::stream::{PublicKey, StreamName};
use crate::proto::media::Frame;

/// Bytes of an ed25519 signature.
pub const SIGNATURE_LEN: usize = 64;

/// A signature as carried on the wire.
pub type Signature = [u8; SIGNATURE_LEN];

const FRAME_DOMAIN: &[u8] = b"treecast-frame-v1\0";
const CATALOG_DOMAIN: &[u8] = b"treecast-catalog-v1\0";

fn frame_message(tag: &[u8; 32], f: &Frame) -> Vec<u8> {
    let mut m = Vec::with_capacity(FRAME_DOMAIN.len() + 32 + 49 + f.payload.len());
    m.extend_from_slice(FRAME_DOMAIN);
    m.extend_from_slice(tag);
    m.extend_from_slice(&f.track.to_be_bytes());
    m.extend_from_slice(&f.group.to_be_bytes());
    m.extend_from_slice(&f.seq.to_be_bytes());
    m.extend_from_slice(&f.pts.to_be_bytes());
    m.extend_from_slice(&f.dts.to_be_bytes());
    m.extend_from_slice(&f.duration.to_be_bytes());
    m.push(u8::from(f.keyframe));
    m.extend_from_slice(&f.capture_us.to_be_bytes());
    m.extend_from_slice(&f.payload);
    m
}

fn catalog_message(tag: &[u8; 32], json: &[u8]) -> Vec<u8> {
    let mut m = Vec::with_capacity(CATALOG_DOMAIN.len() + 32 + json.len());
    m.extend_from_slice(CATALOG_DOMAIN);
    m.extend_from_slice(tag);
    m.extend_from_slice(json);
    m
}

/// A publisher's signing key (ed25519), loaded from its PKCS#8 document.
pub struct PublisherKey {
    pair: Ed25519KeyPair,
}

impl std::fmt::Debug for PublisherKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PublisherKey({})", self.public())
    }
}

impl PublisherKey {
    /// Loads a key from a PKCS#8 (v1 or v2) document.
    pub fn from_pkcs8(doc: &[u8]) -> Result<PublisherKey, ring::error::KeyRejected> {
        let pair = Ed25519KeyPair::from_pkcs8(doc)
            .or_else(|_| Ed25519KeyPair::from_pkcs8_maybe_unchecked(doc))?;
        Ok(PublisherKey { pair })
    }

    /// The public half, which names the publisher's streams.
    pub fn public(&self) -> PublicKey {
        let mut k = [0u8; 32];
        k.copy_from_slice(self.pair.public_key().as_ref());
        PublicKey(k)
    }

    /// Signs `frame` for `stream` (sets its signature).
    pub fn sign_frame(&self, stream: &[u8; 32], frame: &mut Frame) {
        let sig = self.pair.sign(&frame_message(stream, frame));
        let mut s = [0u8; SIGNATURE_LEN];
        s.copy_from_slice(sig.as_ref());
        frame.signature = Some(s);
    }

    /// Signs a catalog's JSON bytes for `stream`.
    pub fn sign_catalog(&self, stream: &[u8; 32], json: &[u8]) -> Signature {
        let sig = self.pair.sign(&catalog_message(stream, json));
        let mut s = [0u8; SIGNATURE_LEN];
        s.copy_from_slice(sig.as_ref());
        s
    }

    /// Signs arbitrary bytes under a domain string (join tokens).
    pub(crate) fn sign_raw(&self, msg: &[u8]) -> Signature {
        let mut s = [0u8; SIGNATURE_LEN];
        s.copy_from_slice(self.pair.sign(msg).as_ref());
        s
    }
}

/// Checks frames and catalogs of one stream against its publisher's key.
#[derive(Clone, Debug)]
pub struct StreamVerifier {
    stream: StreamName,
    tag: [u8; 32],
}

impl StreamVerifier {
    /// A verifier for `stream`.
    pub fn new(stream: StreamName) -> StreamVerifier {
        let tag = stream.tag();
        StreamVerifier { stream, tag }
    }

    /// The stream checked.
    pub fn stream(&self) -> &StreamName {
        &self.stream
    }

    /// The stream's tag.
    pub fn tag(&self) -> &[u8; 32] {
        &self.tag
    }

    fn check(&self, msg: &[u8], sig: &[u8]) -> bool {
        UnparsedPublicKey::new(&signature::ED25519, &self.stream.publisher.0)
            .verify(msg, sig)
            .is_ok()
    }

    /// Ok if `frame` carries the publisher's signature over exactly its contents.
    pub fn verify_frame(&self, frame: &Frame) -> Result<(), TrustError> {
        let sig = frame.signature.as_ref().ok_or(TrustError::Unsigned {
            track: frame.track,
            seq: frame.seq,
        })?;
        if self.check(&frame_message(&self.tag, frame), sig) {
            Ok(())
        } else {
            Err(TrustError::BadFrameSignature {
                track: frame.track,
                seq: frame.seq,
            })
        }
    }

    /// Ok if `sig` is the publisher's signature over the catalog bytes `json`.
    pub fn verify_catalog(&self, json: &[u8], sig: Option<&Signature>) -> Result<(), TrustError> {
        match sig {
            Some(s) if self.check(&catalog_message(&self.tag, json), s) => Ok(()),
            _ => Err(TrustError::BadCatalogSignature(self.stream.to_string())),
        }
    }

    /// Ok if `sig` is the publisher's signature over `msg` (join tokens).
    pub(crate) fn verify_raw(&self, msg: &[u8], sig: &[u8]) -> bool {
        self.check(msg, sig)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use bytes::Bytes;
    use ring::rand::SystemRandom;

    pub(crate) fn key() -> PublisherKey {
        let doc = Ed25519KeyPair::generate_pkcs8(&SystemRandom::new()).unwrap();
        PublisherKey::from_pkcs8(doc.as_ref()).unwrap()
    }

    fn frame() -> Frame {
        Frame {
            track: 0,
            group: 3,
            seq: 90,
            pts: 1000,
            dts: 900,
            duration: 33,
            keyframe: true,
            capture_us: 7,
            payload: Bytes::from_static(b"hello world"),
            signature: None,
        }
    }

    #[test]
    fn signed_frames_verify_and_any_change_is_caught() {
        let k = key();
        let s = StreamName::new(k.public(), "show").unwrap();
        let v = StreamVerifier::new(s.clone());
        let mut f = frame();
        assert!(matches!(
            v.verify_frame(&f),
            Err(TrustError::Unsigned { .. })
        ));
        k.sign_frame(&s.tag(), &mut f);
        v.verify_frame(&f).unwrap();
        let mut changes: Vec<Frame> = Vec::new();
        let mut g = f.clone();
        g.payload = Bytes::from_static(b"hello worle");
        changes.push(g);
        for edit in [
            |g: &mut Frame| g.track = 1,
            |g: &mut Frame| g.group += 1,
            |g: &mut Frame| g.seq += 1,
            |g: &mut Frame| g.pts += 1,
            |g: &mut Frame| g.dts += 1,
            |g: &mut Frame| g.duration += 1,
            |g: &mut Frame| g.keyframe = false,
            |g: &mut Frame| g.capture_us += 1,
        ] {
            let mut g = f.clone();
            edit(&mut g);
            changes.push(g);
        }
        for g in changes {
            assert!(matches!(
                v.verify_frame(&g),
                Err(TrustError::BadFrameSignature { .. })
            ));
        }
        // The same publisher's other stream does not accept it.
        let other = StreamVerifier::new(StreamName::new(k.public(), "other").unwrap());
        assert!(other.verify_frame(&f).is_err());
        // Nor does another publisher's stream of the same name.
        let k2 = key();
        let v2 = StreamVerifier::new(StreamName::new(k2.public(), "show").unwrap());
        assert!(v2.verify_frame(&f).is_err());
    }

    #[test]
    fn catalogs_verify() {
        let k = key();
        let s = StreamName::new(k.public(), "show").unwrap();
        let v = StreamVerifier::new(s.clone());
        let sig = k.sign_catalog(&s.tag(), b"{}");
        v.verify_catalog(b"{}", Some(&sig)).unwrap();
        assert!(v.verify_catalog(b"{ }", Some(&sig)).is_err());
        assert!(v.verify_catalog(b"{}", None).is_err());
    }
}
