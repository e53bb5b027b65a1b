//! Any bytes on a media stream: frames that decode re-encode to the same bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use treecast_relay::proto::Limits;
use treecast_relay::proto::group::{GroupDecoder, encode_frame_header};

fuzz_target!(|data: &[u8]| {
    let limits = Limits { max_frame: 64 * 1024, ..Limits::default() };
    let mut d = GroupDecoder::new(&limits);
    for chunk in data.chunks(7) {
        d.push(chunk);
        loop {
            match d.next_frame() {
                Ok(Some(f)) => {
                    assert!(f.dts <= f.pts);
                    let mut again = GroupDecoder::new(&limits);
                    let mut wire = treecast_relay::proto::group::GroupHeader {
                        track: f.track,
                        group: f.group,
                    }
                    .to_bytes()
                    .to_vec();
                    wire.extend_from_slice(&encode_frame_header(&f));
                    wire.extend_from_slice(&f.payload);
                    again.push(&wire);
                    assert_eq!(again.next_frame().ok().flatten(), Some(f));
                }
                Ok(None) => break,
                Err(_) => return,
            }
        }
    }
    let _ = d.finish();
});
