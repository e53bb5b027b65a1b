//! The playout clock: where on a player's running time each frame plays, and re-buffering
//! when frames come too late for it. Pure arithmetic (the running time is passed in), so
//! the player (`treecast-player`), the simulator's model of a viewer and the tree tests
//! all play by this one rule.
//!
//! The first frame fixes `offset = running time now + buffer − frame PTS`; every frame then
//! plays at `PTS + offset`, in the origin's rhythm. When a frame arrives after that instant
//! (its path got slower than the buffer allows: a long repair, a subtree re-placed deeper)
//! a sink would drop it, and every frame after it, for as long as the delay lasts: a frozen
//! picture that never recovers. Instead the player re-buffers: the late frame plays
//! `buffer` after it arrived, as the first frame did, so the offset moves later by the
//! frame's lateness plus the buffer. Playback pauses once for that long and then runs
//! smoothly again, `buffer` ahead of the new arrival pattern (a slower path) or further
//! ahead (a catch-up burst after an outage), with that much more latency. The offset never
//! moves earlier: that would skip media, and catching up by playing faster is not done.

use std::time::Duration;

/// Latency that re-buffering may add in total; past it, late frames play late (the sink
/// drops them) rather than the player queueing ever more media.
pub const MAX_REBUFFERED: Duration = Duration::from_secs(10);

/// Where one frame plays.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Placement {
    /// Pipeline running time (ns) at which the frame plays.
    pub pts_ns: u64,
    /// The offset moved later for this frame (playback paused for `added_ns`).
    pub added_ns: u64,
}

/// Origin time → pipeline running time, with re-buffering.
#[derive(Clone, Debug)]
pub struct Playout {
    buffer_ns: i128,
    offset_ns: Option<i128>,
    /// Latency added by re-buffering so far.
    added_ns: u64,
}

fn clamp_ns(v: i128) -> u64 {
    u64::try_from(v.max(0)).unwrap_or(u64::MAX)
}

impl Playout {
    /// A clock that plays every frame `buffer` after the first one arrived.
    pub fn new(buffer: Duration) -> Self {
        Playout {
            buffer_ns: buffer.as_nanos() as i128,
            offset_ns: None,
            added_ns: 0,
        }
    }

    /// Places a frame with origin PTS `pts_us` that arrives (is pushed) when the running
    /// time is `running_ns`.
    pub fn place(&mut self, pts_us: u64, running_ns: u64) -> Placement {
        let pts = i128::from(pts_us) * 1000;
        let running = i128::from(running_ns);
        let offset = *self.offset_ns.get_or_insert(running + self.buffer_ns - pts);
        let late = running - (pts + offset);
        let room = MAX_REBUFFERED.as_nanos() as i128 - i128::from(self.added_ns);
        if late <= 0 || room <= 0 {
            return Placement {
                pts_ns: clamp_ns(pts + offset),
                added_ns: 0,
            };
        }
        let added = (late + self.buffer_ns).min(room);
        self.offset_ns = Some(offset + added);
        self.added_ns = self.added_ns.saturating_add(clamp_ns(added));
        Placement {
            pts_ns: clamp_ns(pts + offset + added),
            added_ns: clamp_ns(added),
        }
    }

    /// Latency re-buffering has added so far.
    pub fn added(&self) -> Duration {
        Duration::from_nanos(self.added_ns)
    }

    /// Where a frame's decode timestamp goes (same offset, no re-buffering).
    pub fn dts_ns(&self, dts_us: u64) -> u64 {
        clamp_ns(i128::from(dts_us) * 1000 + self.offset_ns.unwrap_or(0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: u64 = 1_000_000;

    #[test]
    fn frames_play_buffer_after_the_first_in_the_origin_rhythm() {
        let mut p = Playout::new(Duration::from_millis(300));
        assert_eq!(p.place(5_000_000, 1_000 * MS).pts_ns, 1_300 * MS);
        // 33 ms later in origin time, pushed whenever (early or just in time): +33 ms.
        let next = p.place(5_033_000, 1_010 * MS);
        assert_eq!(
            next,
            Placement {
                pts_ns: 1_333 * MS,
                added_ns: 0
            }
        );
        assert_eq!(p.place(5_066_000, 1_366 * MS).added_ns, 0);
        assert_eq!(p.dts_ns(5_000_000), 1_300 * MS);
    }

    #[test]
    fn a_late_frame_plays_buffer_after_it_arrived_and_the_burst_behind_it_is_on_time() {
        let mut p = Playout::new(Duration::from_millis(1000));
        p.place(0, 0);
        // A 1.4 s outage: frame at origin 100 ms (due at 1.1 s) arrives at 1.5 s, 400 ms
        // late, with the frames behind it in a burst.
        let late = p.place(100_000, 1_500 * MS);
        assert_eq!(late.pts_ns, 2_500 * MS, "the buffer after its arrival");
        assert_eq!(late.added_ns, 1_400 * MS);
        for (i, at) in [(133_000, 1_501), (166_000, 1_502), (200_000, 1_503)] {
            let f = p.place(i, at * MS);
            assert_eq!(f.added_ns, 0);
            assert!(f.pts_ns > at * MS);
        }
        // Back to the old arrival pattern: 2.4 s of buffer now, no more re-buffering for
        // an outage of up to that.
        assert_eq!(p.place(2_000_000, 2_000 * MS).pts_ns, 4_400 * MS);
        assert_eq!(p.place(3_000_000, 5_300 * MS).added_ns, 0);
    }

    #[test]
    fn a_path_that_keeps_getting_slower_rebuffers_each_time_never_backwards() {
        let mut p = Playout::new(Duration::from_millis(200));
        p.place(0, 0);
        let mut last = 0;
        let mut delay = 0;
        let mut rebuffers = 0;
        for i in 1..200u64 {
            delay += 5 * MS; // the path slows down by 5 ms per frame
            let pts_us = i * 20_000;
            let f = p.place(pts_us, pts_us * 1000 + delay);
            assert!(f.pts_ns > last, "playout time never goes backwards");
            assert!(
                f.pts_ns >= pts_us * 1000 + delay,
                "never late after placement"
            );
            last = f.pts_ns;
            rebuffers += u32::from(f.added_ns > 0);
        }
        // 1 s of slowdown, a 200 ms buffer restored each time: one re-buffer per 40 frames.
        assert!((4..=6).contains(&rebuffers), "{rebuffers}");
    }

    #[test]
    fn rebuffering_stops_at_its_cap() {
        let mut p = Playout::new(Duration::from_millis(100));
        p.place(0, 0);
        let f = p.place(20_000, 30_000 * MS);
        assert_eq!(f.added_ns, MAX_REBUFFERED.as_nanos() as u64);
        let g = p.place(40_000, 60_000 * MS);
        assert_eq!(g.added_ns, 0, "no more once the cap is reached");
        assert!(g.pts_ns < 60_000 * MS, "so this frame plays late");
    }

    #[test]
    fn a_zero_buffer_plays_late_frames_as_they_arrive() {
        let mut p = Playout::new(Duration::ZERO);
        p.place(0, 0);
        let f = p.place(20_000, 50 * MS);
        assert_eq!((f.pts_ns, f.added_ns), (50 * MS, 30 * MS));
    }
}
