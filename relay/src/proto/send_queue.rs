//! The per-child send queue and its drop policy.
//!
//! Each child has its own bounded queue, so a slow child never slows its siblings. When a
//! child falls behind, the queue drops *whole stale groups*: the oldest group of a track
//! goes when a newer group of that track is waiting and the oldest frame has waited longer
//! than `max_wait`, or when the queue exceeds `max_bytes`. The rest of a dropped group is
//! refused as it arrives, so the child resumes cleanly at the next keyframe. Drops are
//! counted.
//!
//! Time is passed in (`now`), never read.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use super::media::{Frame, TrackId};

/// Bounds of a send queue.
#[derive(Clone, Copy, Debug)]
pub struct QueueLimits {
    /// Hard bound on queued bytes.
    pub max_bytes: usize,
    /// How long the oldest frame may wait before its group is dropped in favour of a newer
    /// group of the same track.
    pub max_wait: Duration,
}

impl Default for QueueLimits {
    fn default() -> Self {
        QueueLimits {
            max_bytes: 4 * 1024 * 1024,
            max_wait: Duration::from_millis(1000),
        }
    }
}

/// Counters of what a queue dropped.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DropStats {
    /// Whole groups dropped (or cut short).
    pub groups: u64,
    /// Frames dropped.
    pub frames: u64,
    /// Bytes dropped.
    pub bytes: u64,
}

/// See the module docs.
#[derive(Debug)]
pub struct SendQueue {
    frames: VecDeque<(Instant, Frame)>,
    bytes: usize,
    limits: QueueLimits,
    /// Per track: groups below this number are stale and refused.
    skip_before: HashMap<TrackId, u64>,
    /// Per track: the newest group queued or sent.
    newest_group: HashMap<TrackId, u64>,
    drops: DropStats,
}

impl SendQueue {
    /// An empty queue with these bounds.
    pub fn new(limits: QueueLimits) -> Self {
        SendQueue {
            frames: VecDeque::new(),
            bytes: 0,
            limits,
            skip_before: HashMap::new(),
            newest_group: HashMap::new(),
            drops: DropStats::default(),
        }
    }

    /// Queues a frame at time `now` and applies the drop policy.
    pub fn push(&mut self, now: Instant, frame: Frame) {
        if self.is_stale(frame.track, frame.group) {
            self.count_drop(&frame);
            return;
        }
        let newest = self.newest_group.entry(frame.track).or_insert(frame.group);
        *newest = (*newest).max(frame.group);
        self.bytes += frame.queued_size();
        self.frames.push_back((now, frame));
        self.enforce(now);
    }

    /// Takes the next frame to send.
    pub fn pop(&mut self) -> Option<Frame> {
        let (_, f) = self.frames.pop_front()?;
        self.bytes -= f.queued_size();
        Some(f)
    }

    /// Whether `group` of `track` has been dropped (the sender should abandon its stream).
    pub fn is_stale(&self, track: TrackId, group: u64) -> bool {
        self.skip_before.get(&track).is_some_and(|&s| group < s)
    }

    /// Frames waiting.
    pub fn len(&self) -> usize {
        self.frames.len()
    }

    /// True if nothing is waiting.
    pub fn is_empty(&self) -> bool {
        self.frames.is_empty()
    }

    /// Bytes waiting.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// What was dropped so far.
    pub fn drops(&self) -> DropStats {
        self.drops
    }

    /// Applies the policy again (call from a timer if nothing is pushed for a while).
    pub fn enforce(&mut self, now: Instant) {
        loop {
            let Some((since, front)) = self.frames.front() else {
                return;
            };
            let (track, group) = (front.track, front.group);
            let newer_waiting = self.newest_group.get(&track).is_some_and(|&n| n > group);
            let too_old = now.saturating_duration_since(*since) > self.limits.max_wait;
            let too_big = self.bytes > self.limits.max_bytes;
            if too_big || (too_old && newer_waiting) {
                self.drop_group(track, group);
            } else {
                return;
            }
        }
    }

    fn drop_group(&mut self, track: TrackId, group: u64) {
        let skip = self.skip_before.entry(track).or_insert(0);
        *skip = (*skip).max(group + 1);
        self.drops.groups += 1;
        let mut kept = VecDeque::with_capacity(self.frames.len());
        for (t, f) in self.frames.drain(..) {
            if f.track == track && f.group == group {
                self.bytes -= f.queued_size();
                self.drops.frames += 1;
                self.drops.bytes += f.payload.len() as u64;
            } else {
                kept.push_back((t, f));
            }
        }
        self.frames = kept;
    }

    fn count_drop(&mut self, f: &Frame) {
        self.drops.frames += 1;
        self.drops.bytes += f.payload.len() as u64;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn f(track: TrackId, group: u64, seq: u64, size: usize) -> Frame {
        Frame {
            track,
            group,
            seq,
            pts: seq,
            dts: seq,
            duration: 0,
            keyframe: false,
            capture_us: 0,
            payload: Bytes::from(vec![0; size]),
        }
    }

    fn limits(max_bytes: usize, ms: u64) -> QueueLimits {
        QueueLimits {
            max_bytes,
            max_wait: Duration::from_millis(ms),
        }
    }

    #[test]
    fn a_child_that_keeps_up_loses_nothing() {
        let mut q = SendQueue::new(limits(1 << 20, 100));
        let t0 = Instant::now();
        for i in 0..1000u64 {
            q.push(t0 + Duration::from_millis(i * 33), f(0, i / 60, i, 1000));
            assert_eq!(q.pop().map(|f| f.seq), Some(i));
        }
        assert_eq!(q.drops(), DropStats::default());
    }

    #[test]
    fn stale_group_is_dropped_whole_and_its_tail_refused() {
        let mut q = SendQueue::new(limits(1 << 20, 100));
        let t0 = Instant::now();
        q.push(t0, f(0, 1, 0, 10));
        q.push(t0, f(0, 1, 1, 10));
        // Same group, waited long: kept (no newer group to move to).
        q.enforce(t0 + Duration::from_secs(5));
        assert_eq!(q.len(), 2);
        // A newer group arrives after the wait bound: group 1 goes.
        q.push(t0 + Duration::from_secs(5), f(0, 2, 2, 10));
        assert_eq!(q.len(), 1);
        assert!(q.is_stale(0, 1));
        assert!(!q.is_stale(0, 2));
        // A late frame of group 1 is refused.
        q.push(t0 + Duration::from_secs(5), f(0, 1, 3, 10));
        assert_eq!(q.len(), 1);
        assert_eq!(q.drops().groups, 1);
        assert_eq!(q.drops().frames, 3);
        assert_eq!(q.pop().map(|f| f.seq), Some(2));
    }

    #[test]
    fn byte_bound_holds_and_other_tracks_survive() {
        let mut q = SendQueue::new(limits(5000, 10_000));
        let t0 = Instant::now();
        q.push(t0, f(1, 0, 0, 100)); // audio
        for i in 0..10 {
            q.push(t0, f(0, i, i, 1000));
            assert!(q.bytes() <= 5000);
        }
        // Audio survives until it is the oldest and the bound is hit again.
        assert!(q.drops().groups >= 5);
        let left: Vec<_> = std::iter::from_fn(|| q.pop())
            .map(|f| (f.track, f.group))
            .collect();
        assert!(left.iter().all(|&(t, _)| t == 0));
        assert_eq!(left.last(), Some(&(0, 9)));
    }

    #[test]
    fn fresh_burst_of_one_group_is_not_dropped_for_waiting() {
        let mut q = SendQueue::new(limits(1 << 20, 100));
        let t0 = Instant::now();
        for i in 0..60 {
            q.push(t0, f(0, 7, i, 1000));
        }
        q.enforce(t0 + Duration::from_secs(3));
        assert_eq!(q.len(), 60);
    }
}
