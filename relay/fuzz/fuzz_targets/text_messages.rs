//! Any bytes as a text-message payload: decode errors are fine, panics are not. Whatever
//! decodes re-encodes to messages that decode equal, and a reader shows each number once.
#![no_main]

use libfuzzer_sys::fuzz_target;
use treecast_relay::proto::text::{MessageReader, decode, encode};

fuzz_target!(|data: &[u8]| {
    if let Ok(msgs) = decode(data) {
        assert_eq!(decode(&encode(&msgs)).expect("re-encoded payload decodes"), msgs);
    }
    let mut reader = MessageReader::default();
    let mut last = None;
    for part in data.chunks(17) {
        if let Ok(new) = reader.accept(part) {
            for m in new {
                assert!(last.is_none_or(|l| m.number > l));
                last = Some(m.number);
            }
        }
    }
});
