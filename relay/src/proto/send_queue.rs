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
