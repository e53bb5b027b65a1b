//! The playout clock: where on a player's running time each frame plays, re-buffering
//! when frames come too late for it, and slowing down a little to win back a buffer that
//! a slower path has worn down. Pure arithmetic (the running time is passed in), so the
//! player (`treecast-player`), the simulator's model of a viewer and the tree tests all
//! play by this one rule.
//!
//! **Starting.** A viewer that joins gets its parent's current group, which began at the
//! parent's latest keyframe, up to a group's length ago, as a burst, then the live
//! frames. The player holds the frames ([`Playout::hold`]) until they cover `buffer` of
//! the origin's time, and starts `buffer` after the first of them arrived or when that
//! much is held, whichever is later: `offset = start − PTS of the first frame`. Every
//! frame then plays at `PTS + offset`, in the origin's rhythm. When the burst comes
//! quickly this is `buffer` after the first frame, as a fixed delay would be; when it
//! comes slower than the stream (a parent whose upload is shared by one child too many)
//! playback starts later with a whole buffer, instead of starting on time with a buffer
//! that runs dry.
//!
//! **Re-buffering.** When a frame arrives after that instant (its path got slower than the
//! buffer allows: a long repair, a subtree re-placed deeper) a sink would drop it, and
//! every frame after it, for as long as the delay lasts: a frozen picture that never
//! recovers. Instead the player re-buffers: the late frame plays `buffer` after it
//! arrived, as the first frame did, so the offset moves later by the frame's lateness plus
//! the buffer. Playback pauses once for that long and then runs smoothly again, `buffer`
//! ahead of the new arrival pattern (a slower path) or further ahead (a catch-up burst
//! after an outage), with that much more latency.
//!
//! **Slowing down.** A path that gets slower by less than the buffer (a move or repair to
//! a parent further out) causes no pause, but it eats into the buffer for good: the next
//! outage then finds less than `buffer` to play from. So the clock watches the *base lag*
//! of the arrivals, the least `running time − PTS` over the last one to two seconds (the
//! path's own delay, not an outage's spike, which the catch-up burst after it takes back).
//! While `offset − base lag` — the buffer the path leaves — is short of `buffer` by at
//! least [`STRETCH_STEP`], the offset moves later by up to that shortfall, at most
//! [`STRETCH_RATE`] of the running time since the last such step: playback runs that much
//! slower (a frame held a little longer; the player conceals the audio it stretches over)
//! until the buffer is whole again. The offset never moves earlier: that would skip
//! media, and catching up by playing faster is not done.

use std::time::Duration;

/// Latency that re-buffering and slowing down may add in total; past it, late frames play
/// late (the sink drops them) rather than the player queueing ever more media.
pub const MAX_REBUFFERED: Duration = Duration::from_secs(10);

/// The smallest shortfall of the buffer that slowing down makes up, and the smallest step
/// it moves the offset by: one 20 ms Opus frame of concealed audio.
pub const STRETCH_STEP: Duration = Duration::from_millis(20);

/// How much slower than the origin playback runs while it wins back the buffer, as a
/// divisor: 1/20 = 5% (a 20 ms step per 400 ms, half a second won back in 10 s).
pub const STRETCH_RATE: u32 = 20;

/// The base lag is the least lag over the current window and the one before, each this
/// long in running time.
const LAG_WINDOW_NS: i128 = 1_000_000_000;

/// Where one frame plays.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Placement {
    /// Pipeline running time (ns) at which the frame plays.
    pub pts_ns: u64,
    /// The offset moved later for this frame by re-buffering (playback paused for
    /// `added_ns`).
    pub added_ns: u64,
    /// The offset moved later for this frame by slowing down (the frame before it plays
    /// `stretched_ns` longer).
    pub stretched_ns: u64,
}

/// Origin time → pipeline running time, with re-buffering and slowing down.
#[derive(Clone, Debug)]
pub struct Playout {
    buffer_ns: i128,
    offset_ns: Option<i128>,
    /// Latency added by re-buffering so far.
    added_ns: u64,
    /// Latency added by slowing down so far.
    stretched_ns: u64,
    lag: BaseLag,
    /// Running time from which slowing down accrues its allowance.
    stretch_from_ns: i128,
    /// Before the start: the frames held so far.
    held: Option<Held>,
}

/// What [`Playout::hold`] has taken in before playback started.
#[derive(Clone, Copy, Debug)]
struct Held {
    /// Running time the first of them arrived.
    first_running: i128,
    /// The earliest PTS among them.
    from: i128,
    /// The latest end (PTS + duration) among them.
    until: i128,
}

/// The least lag (running time − PTS) over the current window and the one before.
#[derive(Clone, Debug)]
struct BaseLag {
    current: i128,
    previous: i128,
    current_ends: i128,
}

impl BaseLag {
    /// Takes in one arrival's lag; returns the base lag, this arrival included.
    fn observe(&mut self, running: i128, lag: i128) -> i128 {
        if running >= self.current_ends {
            // The window before is the last one that had arrivals, however long ago.
            self.previous = self.current;
            self.current = i128::MAX;
            self.current_ends = running + LAG_WINDOW_NS;
        }
        self.current = self.current.min(lag);
        self.current.min(self.previous)
    }
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
            stretched_ns: 0,
            lag: BaseLag {
                current: i128::MAX,
                previous: i128::MAX,
                current_ends: i128::MIN,
            },
            stretch_from_ns: 0,
            held: None,
        }
    }

    /// Whether playback has started (the offset is fixed).
    pub fn started(&self) -> bool {
        self.offset_ns.is_some()
    }

    /// Before playback starts: takes in a frame covering origin time `pts_us..end_us`
    /// that arrived at running time `running_ns`, for the caller to hold. Returns true
    /// once the frames held cover `buffer`: playback starts, the offset is fixed (see the
    /// module docs), and the caller places every frame it held, then each new one, with
    /// [`Playout::place`] at this running time. After the start it returns true at once
    /// and takes nothing in.
    pub fn hold(&mut self, pts_us: u64, end_us: u64, running_ns: u64) -> bool {
        if self.started() {
            return true;
        }
        let (pts, running) = (i128::from(pts_us) * 1000, i128::from(running_ns));
        let end = i128::from(end_us.max(pts_us)) * 1000;
        let held = self.held.get_or_insert(Held {
            first_running: running,
            from: pts,
            until: end,
        });
        held.from = held.from.min(pts);
        held.until = held.until.max(end);
        if held.until - held.from < self.buffer_ns {
            return false;
        }
        let start = running.max(held.first_running + self.buffer_ns);
        self.offset_ns = Some(start - held.from);
        self.stretch_from_ns = running;
        true
    }

    /// Starts playback at running time `running_ns` with what [`Playout::hold`] took in,
    /// short of the buffer (the stream ended): the earliest frame held plays then. Does
    /// nothing if playback started or nothing was held.
    pub fn start(&mut self, running_ns: u64) {
        if let (None, Some(held)) = (self.offset_ns, self.held) {
            let running = i128::from(running_ns);
            self.offset_ns = Some(running - held.from);
            self.stretch_from_ns = running;
        }
    }

    /// Places a frame with origin PTS `pts_us` that arrives (is pushed) when the running
    /// time is `running_ns`. Called before playback started (no [`Playout::hold`]), it
    /// starts playback with this frame, `buffer` after its arrival.
    pub fn place(&mut self, pts_us: u64, running_ns: u64) -> Placement {
        let pts = i128::from(pts_us) * 1000;
        let running = i128::from(running_ns);
        let base_lag = self.lag.observe(running, running - pts);
        let offset = match self.offset_ns {
            Some(offset) => offset,
            None => {
                self.stretch_from_ns = running;
                *self.offset_ns.insert(running + self.buffer_ns - pts)
            }
        };
        let room = MAX_REBUFFERED.as_nanos() as i128
            - i128::from(self.added_ns)
            - i128::from(self.stretched_ns);
        let late = running - (pts + offset);
        if late > 0 && room > 0 {
            let added = (late + self.buffer_ns).min(room);
            self.offset_ns = Some(offset + added);
            self.added_ns = self.added_ns.saturating_add(clamp_ns(added));
            self.stretch_from_ns = running;
            return Placement {
                pts_ns: clamp_ns(pts + offset + added),
                added_ns: clamp_ns(added),
                stretched_ns: 0,
            };
        }
        let stretched = self.stretch(offset, base_lag, running, room);
        Placement {
            pts_ns: clamp_ns(pts + offset + stretched),
            added_ns: 0,
            stretched_ns: clamp_ns(stretched),
        }
    }

    /// Moves the offset later by what the buffer the path leaves is short of `buffer`, as
    /// far as the allowance accrued since the last step lets it; returns the step (0 when
    /// none is due).
    fn stretch(&mut self, offset: i128, base_lag: i128, running: i128, room: i128) -> i128 {
        let step_min = STRETCH_STEP.as_nanos() as i128;
        let short = self.buffer_ns - (offset - base_lag);
        if short < step_min {
            self.stretch_from_ns = running;
            return 0;
        }
        let allowed = (running - self.stretch_from_ns) / i128::from(STRETCH_RATE);
        let step = short.min(allowed).min(room);
        if step < step_min {
            return 0;
        }
        self.offset_ns = Some(offset + step);
        self.stretched_ns = self.stretched_ns.saturating_add(clamp_ns(step));
        self.stretch_from_ns = running;
        step
    }

    /// Latency re-buffering has added so far (the time playback was paused).
    pub fn added(&self) -> Duration {
        Duration::from_nanos(self.added_ns)
    }

    /// Latency slowing down has added so far (played, not paused).
    pub fn stretched(&self) -> Duration {
        Duration::from_nanos(self.stretched_ns)
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
                added_ns: 0,
                stretched_ns: 0
            }
        );
        assert_eq!(p.place(5_066_000, 1_366 * MS).added_ns, 0);
        assert_eq!(p.dts_ns(5_000_000), 1_300 * MS);
    }

    /// Holds 20 ms frames from origin time `from_ms`, frame `i` arriving at `at(i)`
    /// (ns), until the clock starts; then places the held ones at that running time and
    /// the rest on arrival, up to origin time `until_ms`. Returns the start's running
    /// time and the placements.
    fn start_and_play(
        p: &mut Playout,
        from_ms: u64,
        until_ms: u64,
        at: impl Fn(u64) -> u64,
    ) -> (u64, Vec<Placement>) {
        let (mut held, mut placed, mut start) = (Vec::new(), Vec::new(), None);
        for i in 0..(until_ms - from_ms) / 20 {
            let pts_us = (from_ms + i * 20) * 1000;
            let running = at(i);
            if start.is_none() {
                held.push(pts_us);
                if !p.hold(pts_us, pts_us + 20_000, running) {
                    continue;
                }
                start = Some(running);
                for h in held.drain(..) {
                    placed.push(p.place(h, running));
                }
                continue;
            }
            placed.push(p.place(pts_us, running));
        }
        (start.expect("it started"), placed)
    }

    #[test]
    fn a_quick_burst_starts_buffer_after_the_first_frame() {
        let mut p = Playout::new(Duration::from_secs(1));
        // A joiner's first group: 1.6 s old, all of it in 100 ms, then live frames.
        let at = |i: u64| {
            if i < 80 {
                i * 1_250_000
            } else {
                (i - 80) * 20 * MS + 100 * MS
            }
        };
        let (start, placed) = start_and_play(&mut p, 0, 10_000, at);
        assert!(start < 100 * MS, "held enough within the burst");
        assert!(p.started() && p.hold(0, 0, 0), "started once, for good");
        assert_eq!(
            placed[0].pts_ns,
            1_000 * MS,
            "as a fixed delay: buffer after arrival"
        );
        assert!(
            placed
                .iter()
                .all(|f| f.added_ns == 0 && f.stretched_ns == 0)
        );
    }

    #[test]
    fn a_burst_slower_than_the_stream_starts_later_with_a_whole_buffer() {
        // A joiner's first group (1.6 s old) and the live frames after it come at 70% of
        // the stream's pace for 4 s (its parent feeds one child too many), then the
        // parent catches up.
        let slow = |i: u64| {
            let paced = i * 20 * MS * 10 / 7;
            let live = (i.saturating_sub(80) * 20 + 200) * MS;
            if paced < 4_000 * MS {
                paced
            } else {
                live.max(4_000 * MS)
            }
        };
        let mut fixed = Playout::new(Duration::from_secs(1));
        let fixed_pauses = (0..500)
            .filter(|&i| fixed.place(i * 20_000, slow(i)).added_ns > 0)
            .count();
        assert!(fixed_pauses > 0, "a fixed delay runs dry");
        let mut p = Playout::new(Duration::from_secs(1));
        let (start, placed) = start_and_play(&mut p, 0, 10_000, slow);
        assert_eq!(start, slow(49), "once 1 s is held (50 frames)");
        assert_eq!(placed[0].pts_ns, start, "the first frame plays at once");
        assert!(placed.iter().all(|f| f.added_ns == 0), "no pause");
    }

    #[test]
    fn what_is_held_when_the_stream_ends_plays_at_once() {
        let mut p = Playout::new(Duration::from_secs(1));
        p.start(5 * MS);
        assert!(!p.started(), "nothing held, nothing to start");
        assert!(!p.hold(40_000, 60_000, 10 * MS));
        assert!(!p.hold(60_000, 80_000, 30 * MS));
        p.start(50 * MS);
        assert!(p.started());
        assert_eq!(p.place(40_000, 50 * MS).pts_ns, 50 * MS);
        assert_eq!(p.place(60_000, 50 * MS).pts_ns, 70 * MS);
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

    /// Feeds 20 ms frames for `secs` seconds, frame `i` arriving `lag(i)` after its PTS
    /// (the running time runs with origin time); returns the placements.
    fn feed(p: &mut Playout, secs: u64, lag: impl Fn(u64) -> u64) -> Vec<(u64, Placement)> {
        (0..secs * 50)
            .map(|i| {
                let pts_us = i * 20_000;
                let at = pts_us * 1000 + lag(i);
                (at, p.place(pts_us, at))
            })
            .collect()
    }

    #[test]
    fn a_path_slower_within_the_buffer_is_won_back_five_percent_at_a_time() {
        let mut p = Playout::new(Duration::from_secs(1));
        // From 2 s on, every frame arrives 400 ms later: 600 ms of buffer left.
        let placed = feed(&mut p, 30, |i| if i >= 100 { 400 * MS } else { 0 });
        assert!(placed.iter().all(|(_, f)| f.added_ns == 0), "no pause");
        let steps: Vec<(u64, u64)> = placed
            .iter()
            .filter(|(_, f)| f.stretched_ns > 0)
            .map(|(at, f)| (*at, f.stretched_ns))
            .collect();
        assert!(
            steps
                .iter()
                .all(|(_, s)| *s >= STRETCH_STEP.as_nanos() as u64)
        );
        // Not before the slower arrivals are the base lag (a window), then at 5%: 20 ms
        // per 400 ms, so the 400 ms take 8 s.
        let first = steps.first().expect("it slows down").0;
        assert!((2_400 * MS..=4_500 * MS).contains(&first), "{first}");
        for w in steps.windows(2) {
            assert!(w[1].0 - w[0].0 >= 20 * w[1].1, "at most 5% slower: {w:?}");
        }
        let last = steps.last().expect("steps").0;
        assert!(last - first <= 9_000 * MS, "{}", last - first);
        // The whole shortfall and no more: the buffer is whole again, and stays so.
        assert_eq!(p.stretched(), Duration::from_millis(400));
        let (at, f) = placed.last().expect("frames");
        assert_eq!(f.pts_ns - at, 1_000 * MS);
        assert_eq!(p.added(), Duration::ZERO);
    }

    #[test]
    fn an_outage_the_catch_up_takes_back_costs_no_latency() {
        let mut p = Playout::new(Duration::from_secs(1));
        // Frames 100..140 (0.8 s) held back until frame 140's time, then a burst; twice.
        let held = |i: u64| match i % 500 {
            100..140 => (140 - i % 500) * 20 * MS,
            _ => 0,
        };
        let placed = feed(&mut p, 20, held);
        assert!(placed.iter().all(|(_, f)| f.added_ns == 0));
        assert_eq!(
            p.stretched(),
            Duration::ZERO,
            "the buffer was only borrowed"
        );
    }

    #[test]
    fn jitter_within_a_step_is_left_alone() {
        let mut p = Playout::new(Duration::from_millis(300));
        // The first frame came quickly; the others 0-19 ms later than it.
        let placed = feed(&mut p, 20, |i| (i * 7 % 20) * MS);
        assert!(placed.iter().all(|(_, f)| f.added_ns == 0));
        assert_eq!(p.stretched(), Duration::ZERO);
    }

    #[test]
    fn slowing_down_and_rebuffering_share_one_cap() {
        let mut p = Playout::new(Duration::from_millis(100));
        // A path 90 ms slower (within the buffer) for 10 s is won back...
        feed(&mut p, 10, |i| if i >= 50 { 90 * MS } else { 0 });
        let slowed = p.stretched();
        assert!(slowed >= Duration::from_millis(80), "{slowed:?}");
        // ... and counts against the cap on what re-buffering may add.
        let f = p.place(10_000_000, 40_000 * MS);
        assert_eq!(
            f.added_ns,
            (MAX_REBUFFERED - slowed).as_nanos() as u64,
            "re-buffering gets what is left"
        );
        assert_eq!(feed(&mut p, 1, |_| 80_000 * MS)[0].1.stretched_ns, 0);
    }

    proptest::proptest! {
        /// Whatever the arrivals: frames play in order, none plays before it arrived
        /// while there is room under the cap, and re-buffering plus slowing down never
        /// add more than the cap.
        #[test]
        fn frames_play_in_order_and_never_before_they_arrive(
            buffer_ms in 0u64..1500,
            gaps in proptest::collection::vec((1u64..100, 0u64..3000), 1..300),
        ) {
            let mut p = Playout::new(Duration::from_millis(buffer_ms));
            let (mut pts_us, mut at_ns, mut last) = (0u64, 0u64, 0u64);
            for (step_ms, extra_ms) in gaps {
                pts_us += step_ms * 1000;
                // Arrivals are in order: never before the previous one.
                at_ns = at_ns.max(pts_us * 1000 + extra_ms * MS);
                let f = p.place(pts_us, at_ns);
                proptest::prop_assert!(f.pts_ns >= last, "in order");
                let used = p.added() + p.stretched();
                proptest::prop_assert!(used <= MAX_REBUFFERED);
                if used < MAX_REBUFFERED {
                    proptest::prop_assert!(f.pts_ns >= at_ns, "not before it arrived");
                }
                last = f.pts_ns;
            }
        }
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
