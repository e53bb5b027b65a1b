//! The relay cache: the most recent groups of each track.
//!
//! Every node keeps, per track, the frames of its latest `groups_per_track` groups (the
//! current group starting at its keyframe, plus older ones for resuming children). It also
//! enforces order: a frame whose sequence number is not above the last one accepted on its
//! track is refused as late or duplicate, and a jump in sequence numbers is reported as
//! lost frames.

use std::collections::{HashMap, VecDeque};

use super::control::ResumePoint;
use super::media::{Frame, TrackId};

/// What happened to a frame offered to the cache.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Admit {
    /// Accepted; `lost` frames of this track were skipped since the previous one.
    Accepted {
        /// Sequence numbers missing between the previous frame and this one.
        lost: u64,
    },
    /// Not newer than what the track already has: dropped.
    Late,
}

#[derive(Debug, Default)]
struct TrackCache {
    frames: VecDeque<Frame>,
    last_seq: Option<u64>,
}

/// See the module docs.
#[derive(Debug)]
pub struct GroupCache {
    groups_per_track: usize,
    tracks: HashMap<TrackId, TrackCache>,
    bytes: usize,
}

impl GroupCache {
    /// A cache keeping the latest `groups_per_track` groups (at least 1) of every track.
    pub fn new(groups_per_track: usize) -> Self {
        GroupCache {
            groups_per_track: groups_per_track.max(1),
            tracks: HashMap::new(),
            bytes: 0,
        }
    }

    /// Offers a frame; see [`Admit`].
    pub fn admit(&mut self, frame: &Frame) -> Admit {
        let t = self.tracks.entry(frame.track).or_default();
        let lost = match t.last_seq {
            Some(last) if frame.seq <= last => return Admit::Late,
            Some(last) => frame.seq - last - 1,
            None => 0,
        };
        t.last_seq = Some(frame.seq);
        t.frames.push_back(frame.clone());
        self.bytes += frame.queued_size();
        // Trim to the newest `groups_per_track` groups.
        let mut groups = 0;
        let mut keep_from = 0;
        let mut prev_group = None;
        for (i, f) in t.frames.iter().enumerate().rev() {
            if prev_group != Some(f.group) {
                groups += 1;
                prev_group = Some(f.group);
                if groups > self.groups_per_track {
                    keep_from = i + 1;
                    break;
                }
            }
        }
        for f in t.frames.drain(..keep_from) {
            self.bytes -= f.queued_size();
        }
        Admit::Accepted { lost }
    }

    /// The frames a new subscriber starts with, in decode order across tracks.
    ///
    /// For a track listed in `resume` whose next frame is still cached, the frames from
    /// there on; otherwise the latest group (from its keyframe), so playback starts at once.
    pub fn start_frames(&self, resume: &[ResumePoint]) -> Vec<Frame> {
        let mut out = Vec::new();
        for (&id, t) in &self.tracks {
            let want = resume.iter().find(|r| r.track == id).map(|r| r.next_seq);
            let from = match want {
                Some(next) if t.frames.front().is_some_and(|f| f.seq <= next) => {
                    t.frames.iter().position(|f| f.seq >= next)
                }
                _ => t.frames.iter().rposition(|f| f.keyframe),
            };
            if let Some(from) = from {
                out.extend(t.frames.iter().skip(from).cloned());
            }
        }
        out.sort_by_key(|f| (f.dts, f.track));
        out
    }

    /// The next sequence number wanted on each track (for resuming after a reconnect).
    pub fn resume_points(&self) -> Vec<ResumePoint> {
        let mut v: Vec<ResumePoint> = self
            .tracks
            .iter()
            .filter_map(|(&track, t)| {
                t.last_seq.map(|s| ResumePoint {
                    track,
                    next_seq: s + 1,
                })
            })
            .collect();
        v.sort_by_key(|r| r.track);
        v
    }

    /// Bytes held (payload plus per-frame overhead).
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Frames held, over all tracks.
    pub fn frames(&self) -> usize {
        self.tracks.values().map(|t| t.frames.len()).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn f(track: TrackId, group: u64, seq: u64, keyframe: bool) -> Frame {
        Frame {
            track,
            group,
            seq,
            pts: seq * 10,
            dts: seq * 10,
            duration: 10,
            keyframe,
            capture_us: 0,
            payload: Bytes::from_static(b"p"),
            signature: None,
        }
    }

    fn feed(c: &mut GroupCache, groups: u64, per_group: u64) {
        let mut seq = 0;
        for g in 0..groups {
            for i in 0..per_group {
                assert_eq!(c.admit(&f(0, g, seq, i == 0)), Admit::Accepted { lost: 0 });
                seq += 1;
            }
        }
    }

    #[test]
    fn keeps_the_latest_groups_and_starts_at_the_latest_keyframe() {
        let mut c = GroupCache::new(2);
        feed(&mut c, 5, 4);
        assert_eq!(c.frames(), 8);
        let start = c.start_frames(&[]);
        assert_eq!(
            start.iter().map(|f| f.seq).collect::<Vec<_>>(),
            [16, 17, 18, 19]
        );
        assert!(start[0].keyframe);
    }

    #[test]
    fn resume_continues_when_cached_else_latest_keyframe() {
        let mut c = GroupCache::new(2);
        feed(&mut c, 5, 4);
        let r = |next_seq| [ResumePoint { track: 0, next_seq }];
        let seqs = |v: Vec<Frame>| v.iter().map(|f| f.seq).collect::<Vec<_>>();
        assert_eq!(seqs(c.start_frames(&r(14))), [14, 15, 16, 17, 18, 19]);
        assert_eq!(seqs(c.start_frames(&r(20))), Vec::<u64>::new());
        assert_eq!(seqs(c.start_frames(&r(3))), [16, 17, 18, 19]);
        assert_eq!(c.resume_points(), r(20));
    }

    #[test]
    fn late_and_duplicate_frames_are_refused_and_gaps_counted() {
        let mut c = GroupCache::new(1);
        assert_eq!(c.admit(&f(0, 0, 5, true)), Admit::Accepted { lost: 0 });
        assert_eq!(c.admit(&f(0, 0, 5, false)), Admit::Late);
        assert_eq!(c.admit(&f(0, 0, 4, false)), Admit::Late);
        assert_eq!(c.admit(&f(0, 0, 9, false)), Admit::Accepted { lost: 3 });
        assert_eq!(c.admit(&f(1, 0, 0, true)), Admit::Accepted { lost: 0 });
    }

    #[test]
    fn tracks_interleave_by_decode_time() {
        let mut c = GroupCache::new(1);
        c.admit(&f(0, 0, 0, true));
        c.admit(&f(1, 0, 0, true));
        c.admit(&f(0, 0, 1, false));
        c.admit(&f(1, 0, 1, false));
        let v = c.start_frames(&[]);
        assert_eq!(
            v.iter().map(|f| (f.track, f.seq)).collect::<Vec<_>>(),
            [(0, 0), (1, 0), (0, 1), (1, 1)]
        );
    }

    #[test]
    fn bytes_are_accounted() {
        let mut c = GroupCache::new(1);
        feed(&mut c, 3, 2);
        assert_eq!(c.bytes(), 2 * f(0, 0, 0, true).queued_size());
    }
}
