//! The per-child send queue's drop policy (sans-IO: time is passed in).

use std::time::{Duration, Instant};

use bytes::Bytes;
use treecast_relay::proto::media::{Frame, TrackId};
use treecast_relay::proto::send_queue::{DropStats, QueueLimits, SendQueue};
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
        signature: None,
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
