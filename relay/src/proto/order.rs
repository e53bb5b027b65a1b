//! Restores frame order across group streams.
//!
//! Each group travels on its own QUIC stream, and QUIC may deliver the start of group
//! N+1 before the tail of group N (streams are scheduled independently). A parent always
//! ends (finishes or resets) group N's stream before it starts group N+1 of the same track,
//! so a receiver keeps order by delivering, per track, only the frames of the *oldest open*
//! group stream, buffering newer ones until the older stream has ended. Bounded: when the
//! buffered bytes exceed the limit, the oldest group is abandoned.
//!
//! Driving it: call [`StreamOrderer::open`] when a group stream's header has been read (in
//! stream-accept order), [`StreamOrderer::frame`] for each decoded frame and
//! [`StreamOrderer::end`] when the stream finished, was reset or failed; each call appends
//! the frames that are ready, in order, to `out`.

use std::collections::{BTreeMap, HashMap, VecDeque};

use super::group::GroupHeader;
use super::media::{Frame, TrackId};

#[derive(Debug, Default)]
struct Pending {
    frames: VecDeque<Frame>,
    ended: bool,
}

#[derive(Debug, Default)]
struct TrackOrder {
    groups: BTreeMap<u64, Pending>,
}

/// Per-connection ordering state. See the module docs.
#[derive(Debug)]
pub struct StreamOrderer {
    tracks: HashMap<TrackId, TrackOrder>,
    buffered_bytes: usize,
    max_buffered_bytes: usize,
    dropped_frames: u64,
}

impl StreamOrderer {
    /// An orderer holding at most `max_buffered_bytes` of waiting frames.
    pub fn new(max_buffered_bytes: usize) -> Self {
        StreamOrderer {
            tracks: HashMap::new(),
            buffered_bytes: 0,
            max_buffered_bytes,
            dropped_frames: 0,
        }
    }

    /// A group stream with header `h` was opened. Returns false if a stream for the same
    /// group is already open (a protocol violation by the sender).
    pub fn open(&mut self, h: GroupHeader) -> bool {
        let t = self.tracks.entry(h.track).or_default();
        if t.groups.contains_key(&h.group) {
            return false;
        }
        t.groups.insert(h.group, Pending::default());
        true
    }

    /// A frame was decoded from an open group stream.
    pub fn frame(&mut self, frame: Frame, out: &mut Vec<Frame>) {
        let Some(t) = self.tracks.get_mut(&frame.track) else {
            self.dropped_frames += 1;
            return;
        };
        let Some((&oldest, _)) = t.groups.first_key_value() else {
            self.dropped_frames += 1;
            return;
        };
        if frame.group == oldest {
            out.push(frame);
        } else if let Some(p) = t.groups.get_mut(&frame.group) {
            self.buffered_bytes += frame.queued_size();
            p.frames.push_back(frame);
            if self.buffered_bytes > self.max_buffered_bytes {
                let track = frame_track(p);
                self.abandon_oldest(track, out);
            }
        } else {
            // Its stream was abandoned or never opened.
            self.dropped_frames += 1;
        }
    }

    /// The stream of group `h` ended (finished, reset or failed).
    pub fn end(&mut self, h: GroupHeader, out: &mut Vec<Frame>) {
        let Some(t) = self.tracks.get_mut(&h.track) else {
            return;
        };
        let Some(p) = t.groups.get_mut(&h.group) else {
            return;
        };
        p.ended = true;
        self.release(h.track, out);
    }

    /// Frames received but dropped because their stream was abandoned or unknown.
    pub fn dropped_frames(&self) -> u64 {
        self.dropped_frames
    }

    /// Bytes waiting behind an older group.
    pub fn buffered_bytes(&self) -> usize {
        self.buffered_bytes
    }

    fn abandon_oldest(&mut self, track: Option<TrackId>, out: &mut Vec<Frame>) {
        let Some(track) = track else { return };
        if let Some(t) = self.tracks.get_mut(&track)
            && let Some(mut first) = t.groups.first_entry()
        {
            first.get_mut().ended = true;
        }
        self.release(track, out);
    }

    /// Removes ended groups from the front and flushes the next group's waiting frames.
    fn release(&mut self, track: TrackId, out: &mut Vec<Frame>) {
        let Some(t) = self.tracks.get_mut(&track) else {
            return;
        };
        while let Some(mut first) = t.groups.first_entry() {
            for f in first.get_mut().frames.drain(..) {
                self.buffered_bytes -= f.queued_size();
                out.push(f);
            }
            if first.get().ended {
                first.remove();
            } else {
                break;
            }
        }
        if t.groups.is_empty() {
            self.tracks.remove(&track);
        }
    }
}

fn frame_track(p: &Pending) -> Option<TrackId> {
    p.frames.front().map(|f| f.track)
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn f(track: TrackId, group: u64, seq: u64) -> Frame {
        Frame {
            track,
            group,
            seq,
            pts: seq,
            dts: seq,
            duration: 0,
            keyframe: false,
            capture_us: 0,
            payload: Bytes::from_static(&[0; 100]),
            signature: None,
        }
    }
    fn h(track: TrackId, group: u64) -> GroupHeader {
        GroupHeader { track, group }
    }
    fn seqs(v: &[Frame]) -> Vec<u64> {
        v.iter().map(|f| f.seq).collect()
    }

    #[test]
    fn newer_group_waits_for_older_stream_to_end() {
        let mut o = StreamOrderer::new(1 << 20);
        let mut out = Vec::new();
        assert!(o.open(h(0, 1)));
        o.frame(f(0, 1, 10), &mut out);
        assert!(o.open(h(0, 2)));
        o.frame(f(0, 2, 12), &mut out); // arrives before the tail of group 1
        assert_eq!(seqs(&out), [10]);
        o.frame(f(0, 1, 11), &mut out);
        assert_eq!(seqs(&out), [10, 11]);
        o.end(h(0, 1), &mut out);
        assert_eq!(seqs(&out), [10, 11, 12]);
        o.frame(f(0, 2, 13), &mut out);
        assert_eq!(seqs(&out), [10, 11, 12, 13]);
        assert_eq!(o.buffered_bytes(), 0);
    }

    #[test]
    fn tracks_are_independent() {
        let mut o = StreamOrderer::new(1 << 20);
        let mut out = Vec::new();
        o.open(h(0, 1));
        o.open(h(1, 7));
        o.frame(f(1, 7, 100), &mut out);
        o.frame(f(0, 1, 1), &mut out);
        assert_eq!(seqs(&out), [100, 1]);
    }

    #[test]
    fn duplicate_open_is_rejected() {
        let mut o = StreamOrderer::new(1 << 20);
        assert!(o.open(h(0, 1)));
        assert!(!o.open(h(0, 1)));
    }

    #[test]
    fn bounded_buffer_abandons_the_oldest_group() {
        let mut o = StreamOrderer::new(250);
        let mut out = Vec::new();
        o.open(h(0, 1));
        o.open(h(0, 2));
        o.frame(f(0, 2, 5), &mut out);
        assert!(out.is_empty());
        o.frame(f(0, 2, 6), &mut out); // over 250 bytes: group 1 is abandoned
        assert_eq!(seqs(&out), [5, 6]);
        o.frame(f(0, 1, 1), &mut out); // late frame of the abandoned group
        assert_eq!(seqs(&out), [5, 6]);
        assert_eq!(o.dropped_frames(), 1);
        assert_eq!(o.buffered_bytes(), 0);
    }

    #[test]
    fn ending_the_newer_group_first_still_keeps_order() {
        let mut o = StreamOrderer::new(1 << 20);
        let mut out = Vec::new();
        o.open(h(0, 1));
        o.open(h(0, 2));
        o.frame(f(0, 2, 3), &mut out);
        o.end(h(0, 2), &mut out);
        assert!(out.is_empty());
        o.frame(f(0, 1, 2), &mut out);
        o.end(h(0, 1), &mut out);
        assert_eq!(seqs(&out), [2, 3]);
        assert!(o.tracks.is_empty());
    }
}
