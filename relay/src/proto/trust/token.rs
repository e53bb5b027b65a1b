//! Join tokens for private streams.
//!
//! The publisher issues a token to each viewer or relay operator (`treecast token`). A
//! node presents it when it probes or subscribes; every node of a private stream checks
//! it with the publisher's key before answering. The token names the stream, a subject
//! (who it was issued to, for the publisher's records), a validity window and whether it
//! only allows relaying.
//!
//! ```text
//! token      = claims signature(64)
//! claims     = version(1)=1 | stream tag(32) | flags(1) | not_before u64 | expires u64
//!              | subject_len u8 | subject (UTF-8, at most 64 bytes)
//! text       = "tct1." base64url(token)
//! credential = text [ "." base64url(content key) ]      (the key part never leaves the node)
//! ```

use crate::proto::control::truncate_utf8;
use bytes::{Buf, BufMut, Bytes, BytesMut};
use data_encoding::BASE64URL_NOPAD;
use thiserror::Error;

use super::seal::ContentKey;
use super::sign::{PublisherKey, SIGNATURE_LEN, StreamVerifier};

const DOMAIN: &[u8] = b"treecast-token-v1\0";
const VERSION: u8 = 1;
const FLAG_RELAY_ONLY: u8 = 0x01;
const PREFIX: &str = "tct1.";
/// Longest subject, in bytes.
pub const MAX_SUBJECT: usize = 64;
/// Longest encoded token, in bytes (what a peer may send in a probe or subscription).
pub const MAX_TOKEN: usize = 1 + 32 + 1 + 8 + 8 + 1 + MAX_SUBJECT + SIGNATURE_LEN;

/// Why a token was refused.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum TokenError {
    /// The stream is private and no token was presented.
    #[error(
        "this stream is private: a join token is required (ask the publisher for one: `treecast token`)"
    )]
    Missing,
    /// The node asked has not learnt the stream yet (it is still joining).
    #[error("this node does not know the stream yet (it is still joining): try another node")]
    StreamUnknown,
    /// The bytes are not a token.
    #[error("malformed token: {0}")]
    Malformed(&'static str),
    /// Not signed by the stream's publisher (forged or altered).
    #[error("the token is not signed by the stream's publisher")]
    BadSignature,
    /// Valid for another stream.
    #[error("the token is for another stream")]
    WrongStream,
    /// Past its expiry.
    #[error("the token expired at {expired_at} (Unix time); ask for a new one")]
    Expired {
        /// Expiry, Unix seconds.
        expired_at: u64,
    },
    /// Before its start.
    #[error("the token is not valid before {not_before} (Unix time)")]
    NotYetValid {
        /// Start, Unix seconds.
        not_before: u64,
    },
}

/// What a token says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TokenClaims {
    /// The stream it is valid for ([`super::StreamName::tag`]).
    pub stream: [u8; 32],
    /// Who it was issued to.
    pub subject: String,
    /// Valid from (Unix seconds).
    pub not_before: u64,
    /// Valid until (Unix seconds).
    pub expires: u64,
    /// The holder may relay but was not given the content key.
    pub relay_only: bool,
}

impl TokenClaims {
    fn encode(&self, out: &mut BytesMut) {
        out.put_u8(VERSION);
        out.put_slice(&self.stream);
        out.put_u8(if self.relay_only { FLAG_RELAY_ONLY } else { 0 });
        out.put_u64(self.not_before);
        out.put_u64(self.expires);
        let subject = truncate_utf8(&self.subject, MAX_SUBJECT);
        out.put_u8(subject.len() as u8);
        out.put_slice(subject.as_bytes());
    }
}

/// A signed token, as presented to nodes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JoinToken {
    /// The claims.
    pub claims: TokenClaims,
    bytes: Bytes,
}

impl JoinToken {
    /// Issues a token: the publisher signs `claims`.
    pub fn issue(key: &PublisherKey, mut claims: TokenClaims) -> JoinToken {
        claims.subject = truncate_utf8(&claims.subject, MAX_SUBJECT).to_string();
        let mut b = BytesMut::new();
        claims.encode(&mut b);
        let mut msg = DOMAIN.to_vec();
        msg.extend_from_slice(&b);
        b.put_slice(&key.sign_raw(&msg));
        JoinToken {
            claims,
            bytes: b.freeze(),
        }
    }

    /// The wire form.
    pub fn as_bytes(&self) -> &Bytes {
        &self.bytes
    }

    /// Decodes the wire form (does not check the signature: see [`JoinToken::verify`]).
    pub fn decode(bytes: Bytes) -> Result<JoinToken, TokenError> {
        if bytes.len() > MAX_TOKEN {
            return Err(TokenError::Malformed("too long"));
        }
        let mut b = bytes.clone();
        let fixed = 1 + 32 + 1 + 8 + 8 + 1;
        if b.remaining() < fixed + SIGNATURE_LEN {
            return Err(TokenError::Malformed("truncated"));
        }
        if b.get_u8() != VERSION {
            return Err(TokenError::Malformed("unknown version"));
        }
        let mut stream = [0u8; 32];
        b.copy_to_slice(&mut stream);
        let flags = b.get_u8();
        if flags & !FLAG_RELAY_ONLY != 0 {
            return Err(TokenError::Malformed("unknown flags"));
        }
        let not_before = b.get_u64();
        let expires = b.get_u64();
        let n = usize::from(b.get_u8());
        if n > MAX_SUBJECT || b.remaining() != n + SIGNATURE_LEN {
            return Err(TokenError::Malformed("bad subject length"));
        }
        let subject = String::from_utf8(b.split_to(n).to_vec())
            .map_err(|_| TokenError::Malformed("subject is not UTF-8"))?;
        Ok(JoinToken {
            claims: TokenClaims {
                stream,
                subject,
                not_before,
                expires,
                relay_only: flags & FLAG_RELAY_ONLY != 0,
            },
            bytes,
        })
    }

    /// Checks the signature, the stream and the validity window at `now_unix`.
    pub fn verify(&self, stream: &StreamVerifier, now_unix: u64) -> Result<(), TokenError> {
        let split = self.bytes.len() - SIGNATURE_LEN;
        let mut msg = DOMAIN.to_vec();
        msg.extend_from_slice(&self.bytes[..split]);
        if !stream.verify_raw(&msg, &self.bytes[split..]) {
            return Err(TokenError::BadSignature);
        }
        if self.claims.stream != *stream.tag() {
            return Err(TokenError::WrongStream);
        }
        if now_unix < self.claims.not_before {
            return Err(TokenError::NotYetValid {
                not_before: self.claims.not_before,
            });
        }
        if now_unix >= self.claims.expires {
            return Err(TokenError::Expired {
                expired_at: self.claims.expires,
            });
        }
        Ok(())
    }
}

/// What a viewer or relay operator is handed: a token, plus the content key for viewers
/// of an encrypted stream.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Credential {
    /// The token the node presents.
    pub token: JoinToken,
    /// The key that opens encrypted payloads (viewers only).
    pub content_key: Option<ContentKey>,
}

impl Credential {
    /// The text form to hand out.
    pub fn to_text(&self) -> String {
        let mut s = format!("{PREFIX}{}", BASE64URL_NOPAD.encode(&self.token.bytes));
        if let Some(k) = &self.content_key {
            s.push('.');
            s.push_str(&BASE64URL_NOPAD.encode(k.as_bytes()));
        }
        s
    }

    /// Parses the text form.
    pub fn parse(text: &str) -> Result<Credential, TokenError> {
        let rest = text
            .trim()
            .strip_prefix(PREFIX)
            .ok_or(TokenError::Malformed("does not start with tct1."))?;
        let (tok, key) = match rest.split_once('.') {
            Some((t, k)) => (t, Some(k)),
            None => (rest, None),
        };
        let raw = BASE64URL_NOPAD
            .decode(tok.as_bytes())
            .map_err(|_| TokenError::Malformed("not base64url"))?;
        let token = JoinToken::decode(Bytes::from(raw))?;
        let content_key = match key {
            None => None,
            Some(k) => {
                let raw = BASE64URL_NOPAD
                    .decode(k.as_bytes())
                    .map_err(|_| TokenError::Malformed("content key is not base64url"))?;
                let arr: [u8; 32] = raw
                    .try_into()
                    .map_err(|_| TokenError::Malformed("content key is not 32 bytes"))?;
                Some(ContentKey::from_bytes(arr))
            }
        };
        Ok(Credential { token, content_key })
    }
}

#[cfg(test)]
mod tests {
    use super::super::sign::tests::key;
    use super::super::stream::StreamName;
    use super::*;
    use proptest::prelude::*;

    fn claims(s: &StreamName) -> TokenClaims {
        TokenClaims {
            stream: s.tag(),
            subject: "alice".into(),
            not_before: 100,
            expires: 200,
            relay_only: false,
        }
    }

    #[test]
    fn issued_tokens_verify_within_their_window_only() {
        let k = key();
        let s = StreamName::new(k.public(), "meeting").unwrap();
        let v = StreamVerifier::new(s.clone());
        let t = JoinToken::issue(&k, claims(&s));
        t.verify(&v, 150).unwrap();
        assert_eq!(
            t.verify(&v, 99),
            Err(TokenError::NotYetValid { not_before: 100 })
        );
        assert_eq!(
            t.verify(&v, 200),
            Err(TokenError::Expired { expired_at: 200 })
        );
        // Another stream of the same publisher.
        let other = StreamVerifier::new(StreamName::new(k.public(), "other").unwrap());
        assert_eq!(t.verify(&other, 150), Err(TokenError::WrongStream));
        // Signed by someone else.
        let forged = JoinToken::issue(&key(), claims(&s));
        assert_eq!(forged.verify(&v, 150), Err(TokenError::BadSignature));
        // Altered after signing: extend the expiry.
        let mut raw = t.as_bytes().to_vec();
        raw[1 + 32 + 1 + 8] ^= 0x40;
        let altered = JoinToken::decode(Bytes::from(raw)).unwrap();
        assert_eq!(altered.verify(&v, 150), Err(TokenError::BadSignature));
    }

    #[test]
    fn credentials_roundtrip_as_text() {
        let k = key();
        let s = StreamName::new(k.public(), "meeting").unwrap();
        let token = JoinToken::issue(&k, claims(&s));
        for content_key in [None, Some(ContentKey::from_bytes([9; 32]))] {
            let c = Credential {
                token: token.clone(),
                content_key,
            };
            assert_eq!(Credential::parse(&c.to_text()).unwrap(), c);
        }
        assert!(Credential::parse("hello").is_err());
        assert!(Credential::parse("tct1.!!").is_err());
    }

    proptest! {
        #[test]
        fn roundtrip(stream in any::<[u8; 32]>(), subject in "\\PC{0,40}", nb in any::<u64>(), ex in any::<u64>(), relay_only in any::<bool>()) {
            let k = key();
            let c = TokenClaims { stream, subject, not_before: nb, expires: ex, relay_only };
            let t = JoinToken::issue(&k, c);
            let back = JoinToken::decode(t.as_bytes().clone()).unwrap();
            prop_assert_eq!(back, t);
        }

        #[test]
        fn garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = JoinToken::decode(Bytes::from(bytes));
        }
    }
}
