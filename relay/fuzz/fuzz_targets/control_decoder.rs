//! Any bytes on a control stream, in any chunking: decode errors are fine, panics and
//! unbounded growth are not. Whatever decodes must re-encode to an equal message.
#![no_main]

use libfuzzer_sys::fuzz_target;
use treecast_relay::proto::Limits;
use treecast_relay::proto::control::{ControlDecoder, ControlMessage};

fuzz_target!(|data: &[u8]| {
    let Some((&split, rest)) = data.split_first() else { return };
    let cut = (split as usize).min(rest.len());
    let mut d = ControlDecoder::new(&Limits::default());
    let mut msgs: Vec<ControlMessage> = Vec::new();
    for part in [&rest[..cut], &rest[cut..]] {
        d.push(part);
        loop {
            match d.next_message() {
                Ok(Some(m)) => msgs.push(m),
                Ok(None) => break,
                Err(_) => return,
            }
        }
    }
    let _ = d.finish();
    for m in msgs {
        let mut again = ControlDecoder::new(&Limits::default());
        again.push(&m.to_bytes());
        let back = again.next_message().expect("re-encoded message decodes");
        // A catalog round-trips through JSON, which may normalise; others are exact.
        if !matches!(m, ControlMessage::Catalog(_)) {
            assert_eq!(back, Some(m));
        }
    }
});
