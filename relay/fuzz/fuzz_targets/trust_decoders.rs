//! Join tokens, credentials and stream names from untrusted bytes: never panic, and what
//! decodes re-encodes to the same bytes.
#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use treecast_relay::proto::trust::{Credential, JoinToken, StreamName};

fuzz_target!(|data: &[u8]| {
    if let Ok(t) = JoinToken::decode(Bytes::copy_from_slice(data)) {
        assert_eq!(&t.as_bytes()[..], data);
    }
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(c) = Credential::parse(text) {
            assert_eq!(Credential::parse(&c.to_text()), Ok(c));
        }
        if let Ok(s) = text.parse::<StreamName>() {
            assert_eq!(s.to_string().parse::<StreamName>(), Ok(s));
        }
    }
});
