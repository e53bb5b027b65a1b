//! The media plane: segments flow down the simulated tree.
//!
//! The origin emits one segment every `seg_us` (5 per second by default). A segment
//! (its first frame: relays forward frame by frame) reaches each child of a node after the
//! node's upload has sent that frame to all its children (fair share of its upload rate,
//! queued behind earlier segments when the upload cannot keep up) plus the link's one-way
//! delay; a node whose upload queue is more than `max_wait_us` behind drops the segment
//! for all its children, as the send queue drops stale groups. A node receives segments in order; one that was cut off misses them until it is
//! attached again, and then, as the real node does, resumes from the last segment it holds:
//! the new parent sends what it still has in its cache (`cache_groups` groups, i.e. whole
//! keyframe intervals) as a burst at the child's share of its upload; what fell out of the
//! cache is lost. A first attach starts at the parent's latest keyframe.
//!
//! Each peer holds what it receives until that covers its buffer, as the player does
//! ([`Playout::hold`]), and starts at `start = max(first arrival + buffer, arrival of
//! the segment that filled the buffer)`; it plays segment `j` at
//! `start + (j - first) * seg_us`, and the continuity index counts the segments that
//! arrived by then.
//!
//! The player does not keep that schedule when a frame comes too late for it: it
//! re-buffers (pauses, then plays the late frame `buffer` after its arrival, with that
//! much more latency from then on). Each peer also plays by the player's own clock
//! ([`Playout`]), and each such pause is recorded as a [`Stall`]: what a viewer of the
//! shipped player sees. A path that got slower for good then costs one pause, where the
//! fixed schedule counts every segment after it as late. A path that got slower within
//! the buffer costs no pause, and the player's clock plays up to 5% slower until the
//! buffer is whole again ([`Media::stretched_us`]); the fixed schedule does not.

use std::time::Duration;

use super::events::Peer;
use super::metrics::Hist;
use super::world::Place;
use crate::proto::playout::Playout;

/// Marks "no segment yet".
const NONE: u32 = u32::MAX;

/// One pause of a viewer's playback: a segment came after its playout time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stall {
    /// The viewer.
    pub peer: Peer,
    /// When the late segment arrived (playback resumes `buffer` later).
    pub at: u64,
    /// How long playback pauses, microseconds (the segment's lateness plus the buffer).
    pub pause_us: u64,
}

/// Stream parameters.
#[derive(Clone, Copy, Debug)]
pub struct MediaConfig {
    /// Segment duration, microseconds.
    pub seg_us: u64,
    /// Segment size, bits.
    pub seg_bits: f64,
    /// Segments per group (keyframe interval).
    pub group: u32,
    /// Groups kept in each node's cache.
    pub cache_groups: u32,
    /// Playout buffer, microseconds.
    pub buffer_us: u64,
    /// Frame duration, microseconds: relays forward frame by frame, so a segment's
    /// first frame leaves after one frame's share of the segment's sending time.
    pub frame_us: u64,
    /// How long a segment may wait in a node's upload queue before the node drops it
    /// (the send queue drops stale groups after `QueueLimits::max_wait`).
    pub max_wait_us: u64,
}

/// What the media plane needs to know of the network.
pub struct Links<'a> {
    /// Whether each peer runs.
    pub alive: &'a [bool],
    /// Where each peer is.
    pub place: &'a [Place],
    /// Upload rate of each peer, bits per second.
    pub upload: &'a [f64],
    /// The peers that take each peer as their parent.
    pub kids: &'a [Vec<Peer>],
}

impl Links<'_> {
    fn live_kids(&self, p: Peer) -> usize {
        self.kids[p as usize]
            .iter()
            .filter(|c| self.alive[**c as usize])
            .count()
    }

    /// Microseconds to send one segment to each of `p`'s live children.
    fn send_us(&self, p: Peer, seg_bits: f64) -> u64 {
        let n = self.live_kids(p).max(1) as f64;
        (seg_bits * n / self.upload[p as usize].max(1.0) * 1e6) as u64
    }

    fn owd(&self, a: Peer, b: Peer) -> u64 {
        self.place[a as usize].owd_us(&self.place[b as usize])
    }
}

/// Per-peer media state and the measures taken from it.
pub struct Media {
    cfg: MediaConfig,
    next_seg: Vec<u32>,
    first_seg: Vec<u32>,
    play_start: Vec<u64>,
    ontime: Vec<u32>,
    /// Each peer's playout clock, as the player keeps it.
    playout: Vec<Playout>,
    busy: Vec<u64>,
    /// When each peer received its first segment (`u64::MAX`: never).
    pub first_at: Vec<u64>,
    /// When each peer stops playing (`u64::MAX`: unknown in advance; such peers are left
    /// out of the continuity index).
    pub end: Vec<u64>,
    emitted: u32,
    avail: Vec<u64>,
    stamp: Vec<u32>,
    epoch: u32,
    order: Vec<Peer>,
    arr: Vec<u64>,
    /// End-to-end delay of live segments (emission to arrival), milliseconds.
    pub e2e: Hist,
    /// Bits the origin has uploaded.
    pub origin_bits: f64,
    /// Segments delivered from a cache after a repair or move.
    pub catchup_segments: u64,
    /// Segments a node dropped because its upload queue was too far behind.
    pub dropped: u64,
    /// Pauses not yet taken by the driver (see [`Media::take_stalls`]).
    stalls: Vec<Stall>,
}

impl Media {
    /// Media state for no peers yet.
    pub fn new(cfg: MediaConfig) -> Self {
        Media {
            cfg,
            next_seg: Vec::new(),
            first_seg: Vec::new(),
            play_start: Vec::new(),
            ontime: Vec::new(),
            playout: Vec::new(),
            busy: Vec::new(),
            first_at: Vec::new(),
            end: Vec::new(),
            emitted: 0,
            avail: Vec::new(),
            stamp: Vec::new(),
            epoch: 0,
            order: Vec::new(),
            arr: Vec::new(),
            e2e: Hist::new(1.0, 30_000),
            origin_bits: 0.0,
            catchup_segments: 0,
            dropped: 0,
            stalls: Vec::new(),
        }
    }

    /// Adds a peer that stops playing at `end`.
    pub fn add_peer(&mut self, end: u64) {
        self.next_seg.push(0);
        self.first_seg.push(NONE);
        self.play_start.push(0);
        self.ontime.push(0);
        self.playout
            .push(Playout::new(Duration::from_micros(self.cfg.buffer_us)));
        self.busy.push(0);
        self.first_at.push(u64::MAX);
        self.end.push(end);
        self.avail.push(0);
        self.stamp.push(0);
    }

    /// Segments emitted so far.
    pub fn emitted(&self) -> u32 {
        self.emitted
    }

    /// Records the arrival of segment `j` at `n`; false if `n` already had it.
    fn receive(&mut self, n: usize, j: u32, at: u64) -> bool {
        if self.first_seg[n] != NONE && j < self.next_seg[n] {
            return false;
        }
        if self.first_seg[n] == NONE {
            self.first_seg[n] = j;
            self.first_at[n] = at;
        }
        self.next_seg[n] = j + 1;
        if self.playout[n].started() {
            self.play(n, j, at);
            return true;
        }
        // The player holds what comes until it covers the buffer (segments arrive in
        // order, so those held are `first_seg..=j`), then starts.
        let pts_us = u64::from(j) * self.cfg.seg_us;
        if self.playout[n].hold(pts_us, pts_us + self.cfg.seg_us, at.saturating_mul(1000)) {
            self.play_start[n] = at.max(self.first_at[n] + self.cfg.buffer_us);
            for i in self.first_seg[n]..=j {
                self.play(n, i, at);
            }
        }
        true
    }

    /// Segment `j` reaches `n`'s player, which has started, at `at`.
    fn play(&mut self, n: usize, j: u32, at: u64) {
        let deadline = self.play_start[n] + u64::from(j - self.first_seg[n]) * self.cfg.seg_us;
        if at <= deadline && deadline <= self.end[n] {
            self.ontime[n] += 1;
        }
        // The player's clock, while the peer is still there to play: a segment that comes
        // after its time there pauses playback.
        let due = deadline + self.rebuffered_us(n) + self.stretched_us(n);
        if due <= self.end[n] {
            let pts_us = u64::from(j) * self.cfg.seg_us;
            let placed = self.playout[n].place(pts_us, at.saturating_mul(1000));
            if placed.added_ns > 0 {
                self.stalls.push(Stall {
                    peer: n as Peer,
                    at,
                    pause_us: placed.added_ns / 1000,
                });
            }
        }
    }

    /// When a segment's first frame is out, after its sending began: one frame's share of
    /// `send_us`, the time the whole segment takes (relays forward frame by frame).
    fn first_frame_us(&self, send_us: u64) -> u64 {
        send_us * self.cfg.frame_us / self.cfg.seg_us.max(1)
    }

    fn lacks(&self, n: usize, j: u32) -> bool {
        self.first_seg[n] == NONE || j >= self.next_seg[n]
    }

    fn next_epoch(&mut self) -> u32 {
        self.epoch = self.epoch.wrapping_add(1);
        if self.epoch == 0 {
            self.stamp.iter_mut().for_each(|s| *s = 0);
            self.epoch = 1;
        }
        self.epoch
    }

    /// The origin (peer 0) emits segment `k` at `t`; it flows down the current tree.
    pub fn segment(&mut self, k: u32, t: u64, links: &Links) {
        self.emitted = k + 1;
        self.receive(0, k, t);
        self.avail[0] = t;
        let epoch = self.next_epoch();
        self.order.clear();
        self.order.push(0);
        self.stamp[0] = epoch;
        let mut i = 0;
        while i < self.order.len() {
            let p = self.order[i];
            i += 1;
            let kids = &links.kids[p as usize];
            if kids.is_empty() {
                continue;
            }
            // The upload is busy for the whole segment; the first frame goes out after
            // its own share (cut-through at frame granularity).
            let start = self.avail[p as usize].max(self.busy[p as usize]);
            if start > self.avail[p as usize] + self.cfg.max_wait_us {
                // Too far behind: the queue drops it; nobody below gets it.
                self.dropped += 1;
                continue;
            }
            let send = links.send_us(p, self.cfg.seg_bits);
            self.busy[p as usize] = start + send;
            let finish = start + self.first_frame_us(send);
            if p == 0 {
                self.origin_bits += self.cfg.seg_bits * links.live_kids(0) as f64;
            }
            for &c in kids {
                let cu = c as usize;
                if !links.alive[cu] || self.stamp[cu] == epoch {
                    continue;
                }
                self.stamp[cu] = epoch;
                if self.lacks(cu, k) {
                    let at = finish + links.owd(p, c);
                    if self.receive(cu, k, at) {
                        self.e2e.add((at - t) as f64 / 1000.0);
                    }
                    self.avail[cu] = at;
                } else {
                    self.avail[cu] = t;
                }
                self.order.push(c);
            }
        }
    }

    fn group_start(&self, j: u32) -> u32 {
        j - j % self.cfg.group
    }

    /// `c` has just attached to `p` at `now`: `p` sends what `c` lacks from its cache,
    /// and `c` forwards it down its own subtree.
    pub fn attached(&mut self, c: Peer, p: Peer, now: u64, links: &Links) {
        let (cu, pu) = (c as usize, p as usize);
        if !links.alive[pu] || self.first_seg[pu] == NONE || self.next_seg[pu] == 0 {
            return;
        }
        let top = self.next_seg[pu];
        let latest_key = self.group_start(top - 1);
        let cache_start = latest_key
            .saturating_sub((self.cfg.cache_groups.max(1) - 1) * self.cfg.group)
            .max(self.first_seg[pu]);
        let from = if self.first_seg[cu] == NONE {
            latest_key.max(self.first_seg[pu])
        } else {
            self.next_seg[cu].max(cache_start)
        };
        if from >= top {
            return;
        }
        let m = (top - from) as usize;
        let share = links.upload[pu].max(1.0) / links.live_kids(p).max(1) as f64;
        let per = (self.cfg.seg_bits / share * 1e6) as u64;
        if p == 0 {
            self.origin_bits += self.cfg.seg_bits * m as f64;
        }
        let epoch = self.next_epoch();
        self.order.clear();
        self.arr.clear();
        self.order.push(c);
        self.stamp[cu] = epoch;
        // Frame by frame, as live segments go: a segment's first frame leaves once the
        // segments before it are sent, and one frame's share of its own sending time later.
        for i in 0..m {
            let at = now + i as u64 * per + self.first_frame_us(per);
            self.arr.push(at);
            if self.receive(cu, from + i as u32, at) {
                self.catchup_segments += 1;
            }
        }
        let mut qi = 0;
        while qi < self.order.len() {
            let q = self.order[qi];
            let per_q = links.send_us(q, self.cfg.seg_bits);
            for ci in 0..links.kids[q as usize].len() {
                let d = links.kids[q as usize][ci];
                let du = d as usize;
                if !links.alive[du] || self.stamp[du] == epoch || !self.lacks(du, top - 1) {
                    continue;
                }
                self.stamp[du] = epoch;
                let owd = links.owd(q, d);
                let base = qi * m;
                // `q` starts on a segment when its first frame is in and the previous
                // one is sent.
                let mut free_at = 0u64;
                for i in 0..m {
                    let start = self.arr[base + i].max(free_at);
                    free_at = start + per_q;
                    let at = start + self.first_frame_us(per_q) + owd;
                    self.arr.push(at);
                    if self.receive(du, from + i as u32, at) {
                        self.catchup_segments += 1;
                    }
                }
                self.order.push(d);
            }
            qi += 1;
        }
    }

    /// The pauses recorded since the last call, in the order the segments were placed.
    pub fn take_stalls(&mut self) -> Vec<Stall> {
        std::mem::take(&mut self.stalls)
    }

    /// Latency re-buffering has added to `n`'s playback.
    pub fn rebuffered_us(&self, n: usize) -> u64 {
        self.playout[n].added().as_micros() as u64
    }

    /// Latency slowing down has added to `n`'s playback.
    pub fn stretched_us(&self, n: usize) -> u64 {
        self.playout[n].stretched().as_micros() as u64
    }

    /// When `n`'s player started (None: it has not yet held a buffer's worth).
    pub fn play_start(&self, n: usize) -> Option<u64> {
        self.playout[n].started().then_some(self.play_start[n])
    }

    /// How long `n` has been playing by `until` (from its first playout), microseconds;
    /// None if it never started.
    pub fn playing_us(&self, n: usize, until: u64) -> Option<u64> {
        if !self.playout[n].started() {
            return None;
        }
        Some(until.saturating_sub(self.play_start[n]))
    }

    /// Segments `n` played on time and segments it should have played, up to `until`
    /// (None: it never started, or its end was not known in advance).
    pub fn continuity(&self, n: usize, until: u64) -> Option<(u64, u64)> {
        if self.first_seg[n] == NONE || self.end[n] == u64::MAX {
            return None;
        }
        if !self.playout[n].started() {
            // It left before the player held enough to start.
            return Some((0, 0));
        }
        let end = self.end[n].min(until);
        if end < self.play_start[n] {
            return Some((0, 0));
        }
        let by_time = (end - self.play_start[n]) / self.cfg.seg_us + 1;
        let by_emit = u64::from(self.emitted.saturating_sub(self.first_seg[n]));
        let expected = by_time.min(by_emit);
        Some((u64::from(self.ontime[n]).min(expected), expected))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::playout::MAX_REBUFFERED;

    const MS: u64 = 1_000;

    fn cfg(buffer_ms: u64) -> MediaConfig {
        MediaConfig {
            seg_us: 200 * MS,
            seg_bits: 300_000.0,
            group: 10,
            cache_groups: 2,
            buffer_us: buffer_ms * MS,
            frame_us: 40 * MS,
            max_wait_us: 1_000 * MS,
        }
    }

    #[test]
    fn a_late_segment_pauses_playback_once_and_the_schedule_moves_with_it() {
        let mut m = Media::new(cfg(300));
        m.add_peer(0);
        m.add_peer(10_000 * MS);
        m.receive(1, 0, 0);
        m.receive(1, 1, 250 * MS);
        assert!(m.take_stalls().is_empty(), "on time");
        // Due at 700 ms, in at 1.4 s: a pause of 700 ms late + 300 ms buffer.
        m.receive(1, 2, 1_400 * MS);
        assert_eq!(
            m.take_stalls(),
            vec![Stall {
                peer: 1,
                at: 1_400 * MS,
                pause_us: 1_000 * MS
            }]
        );
        // The path stays that slow: the player is on time again, the fixed schedule
        // is not.
        m.receive(1, 3, 1_600 * MS);
        m.receive(1, 4, 1_800 * MS);
        assert!(m.take_stalls().is_empty());
        assert_eq!(m.rebuffered_us(1), 1_000 * MS);
        assert_eq!(m.ontime[1], 2, "on time by the fixed schedule");
        assert_eq!(m.playing_us(1, 1_900 * MS), Some(1_600 * MS));
    }

    #[test]
    fn a_joiner_whose_first_segments_come_slowly_starts_once_it_holds_its_buffer() {
        let mut m = Media::new(cfg(1_000));
        m.add_peer(0);
        m.add_peer(100_000 * MS);
        // A segment per 280 ms (the stream makes one per 200 ms) for 2.8 s, then the
        // rest at once. Started 1 s after the first segment, segment 13 (due at 3.6 s,
        // in at 3.64 s) would pause playback.
        for j in 0..14 {
            m.receive(1, j, u64::from(j) * 280 * MS);
            assert_eq!(m.play_start(1).is_some(), j >= 4, "5 segments: 1 s held");
        }
        for j in 14..20 {
            m.receive(1, j, 3_700 * MS);
        }
        assert_eq!(m.play_start(1), Some(1_120 * MS), "when the 5th came in");
        assert!(m.take_stalls().is_empty());
        assert_eq!(m.ontime[1], 20);
        assert_eq!(m.playing_us(1, 2_000 * MS), Some(880 * MS));
    }

    #[test]
    fn re_buffering_stops_at_the_cap() {
        let mut m = Media::new(cfg(1_000));
        m.add_peer(0);
        m.add_peer(100_000 * MS);
        // A buffer's worth at once: playback starts at 1 s, segment 5 is due at 2 s.
        for j in 0..5 {
            m.receive(1, j, 0);
        }
        m.receive(1, 5, 8_000 * MS);
        m.receive(1, 6, 30_000 * MS);
        m.receive(1, 7, 60_000 * MS);
        let pauses: Vec<u64> = m.take_stalls().iter().map(|s| s.pause_us).collect();
        assert_eq!(pauses, vec![7_000 * MS, 3_000 * MS]);
        assert_eq!(m.rebuffered_us(1), MAX_REBUFFERED.as_micros() as u64);
    }

    /// A chain 0 → 1 → 2 → 3 in one place; 1 is cut off for segments 5..8, then
    /// re-attaches to 0.
    #[test]
    fn a_repaired_subtree_gets_what_it_missed_frame_by_frame() {
        let mut m = Media::new(cfg(1_000));
        for _ in 0..4 {
            m.add_peer(u64::MAX - 1);
        }
        let here = Place::at(40.0, -75.0, 2 * MS as u32, 0);
        let place = [here; 4];
        let alive = [true; 4];
        let upload = [10e6, 3e6, 3e6, 3e6];
        let mut kids = vec![vec![1], vec![2], vec![3], vec![]];
        let seg = |k: u32| u64::from(k) * 200 * MS;
        fn links<'a>(w: &'a ([bool; 4], [Place; 4], [f64; 4]), kids: &'a [Vec<Peer>]) -> Links<'a> {
            Links {
                alive: &w.0,
                place: &w.1,
                upload: &w.2,
                kids,
            }
        }
        let world = (alive, place, upload);
        for k in 0..5 {
            m.segment(k, seg(k), &links(&world, &kids));
        }
        kids[0].clear();
        for k in 5..8 {
            m.segment(k, seg(k), &links(&world, &kids));
        }
        kids[0].push(1);
        let now = seg(8);
        m.attached(1, 0, now, &links(&world, &kids));
        // Segments 5, 6, 7 went to 1, then down to 2 and 3, each hop starting on a
        // segment once its first frame is in (one frame's share of the sending time,
        // plus the link), not once the whole segment is.
        let owd = here.owd_us(&here);
        let frame = |per: u64| per / 5;
        let per0 = (300_000.0 / 10e6 * 1e6) as u64;
        let per = (300_000.0 / 3e6 * 1e6) as u64;
        let first_at_1 = now + frame(per0);
        let first_at_3 = first_at_1 + 2 * (frame(per) + owd);
        assert_eq!(m.arr[0], first_at_1);
        assert_eq!(m.arr[2 * 3], first_at_3);
        // Later segments follow at the pace of each upload.
        assert_eq!(m.arr[2 * 3 + 2] - m.arr[2 * 3 + 1], per);
        assert_eq!(m.catchup_segments, 9);
    }
}
