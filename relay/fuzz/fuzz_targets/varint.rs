//! Varints: whatever decodes re-encodes to a value that decodes the same.
#![no_main]

use libfuzzer_sys::fuzz_target;
use treecast_relay::proto::varint;

fuzz_target!(|data: &[u8]| {
    let mut s = data;
    while let Ok(Some(v)) = varint::get(&mut s) {
        assert!(v <= varint::MAX);
        let mut b = Vec::new();
        varint::put(&mut b, v);
        assert_eq!(varint::get(&mut &b[..]), Ok(Some(v)));
    }
});
