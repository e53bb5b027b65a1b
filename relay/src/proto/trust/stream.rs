//! Stream names: the publisher's public key and a short name, `KEY/NAME` in text.

use std::fmt;
use std::str::FromStr;

use data_encoding::BASE32_NOPAD;
use ring::digest;
use thiserror::Error;

/// An ed25519 public key (a publisher's), shown as 52 lowercase base32 characters.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PublicKey(pub [u8; 32]);

impl fmt::Display for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&BASE32_NOPAD.encode(&self.0).to_ascii_lowercase())
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey({self})")
    }
}

/// Why a stream name or key did not parse.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum StreamNameError {
    /// Not `KEY/NAME`.
    #[error("stream {0:?} is not KEY/NAME (the line `treecast publish` prints as \"stream:\")")]
    Shape(String),
    /// The key part is not a 52-character base32 key.
    #[error("stream key {0:?} is not a 52-character base32 public key")]
    Key(String),
    /// The name part is empty, too long or has characters outside `A-Za-z0-9._-`.
    #[error("stream name {0:?} must be 1 to 64 characters of A-Z a-z 0-9 . _ -")]
    Name(String),
}

impl FromStr for PublicKey {
    type Err = StreamNameError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bytes = BASE32_NOPAD
            .decode(s.to_ascii_uppercase().as_bytes())
            .map_err(|_| StreamNameError::Key(s.to_string()))?;
        let arr: [u8; 32] = bytes
            .try_into()
            .map_err(|_| StreamNameError::Key(s.to_string()))?;
        Ok(PublicKey(arr))
    }
}

/// A stream: who publishes it and what it is called.
#[derive(Clone, PartialEq, Eq, Hash, Debug)]
pub struct StreamName {
    /// The publisher's public key: only media signed by it is accepted.
    pub publisher: PublicKey,
    /// The name the publisher gave it.
    pub name: String,
}

impl StreamName {
    /// A stream name, checking the name's characters.
    pub fn new(publisher: PublicKey, name: &str) -> Result<StreamName, StreamNameError> {
        let ok = !name.is_empty()
            && name.len() <= 64
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
        if !ok {
            return Err(StreamNameError::Name(name.to_string()));
        }
        Ok(StreamName {
            publisher,
            name: name.to_string(),
        })
    }

    /// 32 bytes naming this stream inside signatures and tokens, so a signature made for
    /// one stream is worthless on another stream of the same publisher.
    pub fn tag(&self) -> [u8; 32] {
        let mut ctx = digest::Context::new(&digest::SHA256);
        ctx.update(b"treecast-stream-v1\0");
        ctx.update(&self.publisher.0);
        ctx.update(self.name.as_bytes());
        let mut out = [0u8; 32];
        out.copy_from_slice(ctx.finish().as_ref());
        out
    }
}

impl fmt::Display for StreamName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.publisher, self.name)
    }
}

impl FromStr for StreamName {
    type Err = StreamNameError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (key, name) = s
            .split_once('/')
            .ok_or_else(|| StreamNameError::Shape(s.to_string()))?;
        StreamName::new(key.parse()?, name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn text_roundtrip(key in any::<[u8; 32]>(), name in "[A-Za-z0-9._-]{1,64}") {
            let s = StreamName::new(PublicKey(key), &name).unwrap();
            let back: StreamName = s.to_string().parse().unwrap();
            prop_assert_eq!(&back, &s);
            prop_assert_eq!(back.tag(), s.tag());
        }

        #[test]
        fn garbage_never_panics(s in "\\PC{0,80}") {
            let _ = s.parse::<StreamName>();
        }
    }

    #[test]
    fn bad_names_are_named() {
        let k = PublicKey([1; 32]).to_string();
        assert!(matches!(
            "nokey".parse::<StreamName>(),
            Err(StreamNameError::Shape(_))
        ));
        assert!(matches!(
            "abc/x".parse::<StreamName>(),
            Err(StreamNameError::Key(_))
        ));
        assert!(matches!(
            format!("{k}/").parse::<StreamName>(),
            Err(StreamNameError::Name(_))
        ));
        assert!(matches!(
            format!("{k}/a b").parse::<StreamName>(),
            Err(StreamNameError::Name(_))
        ));
        let a: StreamName = format!("{k}/a").parse().unwrap();
        let b: StreamName = format!("{k}/b").parse().unwrap();
        assert_ne!(a.tag(), b.tag());
    }
}
