//! Playback measurements: what was received, rendered, lost, and how late. Pure
//! bookkeeping (times are passed in), so it is tested without a pipeline.

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

use serde::Serialize;

/// A render gap longer than this (after the first frame) counts as a stall.
pub const STALL_GAP: Duration = Duration::from_millis(100);
/// A video frame reaching the sink more than this after its playout time is late: what
/// GStreamer's video sinks drop by default (`max-lateness`).
pub const LATE_FRAME: Duration = Duration::from_millis(20);
/// Window of the received-bitrate estimate.
const BITRATE_WINDOW: Duration = Duration::from_secs(2);
/// Latency samples kept for the "recent" value in [`PlayerStats`].
const RECENT_LATENCY: usize = 64;
/// Pushed-but-not-rendered video frames remembered for latency lookup.
const MAX_PENDING: usize = 4096;
/// Latency histogram: 1 ms buckets up to this, then one overflow bucket.
const HISTOGRAM_MS: usize = 10_000;

/// Latency percentiles in milliseconds (`None` before any sample).
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct LatencySummary {
    /// Median.
    pub p50: Option<f64>,
    /// 99th percentile.
    pub p99: Option<f64>,
}

/// Summary of a playback session, returned by [`crate::Player::finish`].
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct PlayerReport {
    /// Video frames that reached the video sink.
    pub frames_rendered: u64,
    /// Audio buffers out of the Opus decoder.
    pub audio_packets_decoded: u64,
    /// From `PlayerConfig::joined_at` to the first rendered frame.
    pub first_frame_ms: Option<f64>,
    /// Render gaps longer than 100 ms after the first frame.
    pub stalls: u64,
    /// Largest wall-clock gap between two consecutive rendered frames.
    pub max_gap_ms: f64,
    /// Frames missing from the sequence numbers seen (all tracks).
    pub frames_lost: u64,
    /// Glass-to-glass latency (render wall clock − origin capture wall clock).
    pub latency_ms: LatencySummary,
    /// Video frames handed to the decoder by `push` (frames before the first keyframe,
    /// or between a gap and the next keyframe, are skipped and not counted).
    pub frames_received: u64,
    /// Audio packets handed to the decoder by `push`.
    pub audio_packets_received: u64,
    /// Sequence number of the first video frame handed to the decoder.
    pub first_video_seq: Option<u64>,
    /// Sequence number of the last video frame handed to the decoder.
    pub last_video_seq: Option<u64>,
    /// Rendered video frames whose timestamp went backwards.
    pub out_of_order: u64,
    /// Video frames that reached the sink more than 20 ms after their playout time (a
    /// window's video sink drops them; headless, they are shown late).
    pub frames_late: u64,
    /// Times playback paused to re-buffer because frames came after their playout time.
    pub rebuffers: u64,
    /// Latency those re-buffers added in total.
    pub rebuffered_ms: f64,
    /// Latency added by playing slower, to win back a buffer that a slower path had worn
    /// down (played, not paused).
    pub slowed_ms: f64,
    /// Audio the decoder concealed where playing slower stretched the audio's timeline.
    pub audio_concealed_ms: f64,
    /// Holes in the audio's timeline handed to the decoder to conceal (each may come out
    /// of it as an extra audio buffer).
    pub audio_gaps_concealed: u64,
}

/// A live snapshot for a status line, from [`crate::Player::stats`].
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct PlayerStats {
    /// Video frames rendered so far.
    pub frames_rendered: u64,
    /// Audio buffers decoded so far.
    pub audio_packets_decoded: u64,
    /// Stalls so far.
    pub stalls: u64,
    /// Re-buffers so far.
    pub rebuffers: u64,
    /// Latency added by playing slower so far (ms).
    pub slowed_ms: f64,
    /// Frames lost so far.
    pub frames_lost: u64,
    /// Median latency of the last 64 rendered frames (ms).
    pub latency_ms: Option<f64>,
    /// How far ahead of the playout clock the newest pushed frame is (ms; negative when
    /// frames arrive after their playout time).
    pub buffer_ms: Option<f64>,
    /// Received media bitrate over the last ~2 s (kbit/s).
    pub bitrate_kbps: f64,
    /// Time to first frame (ms), once rendered.
    pub first_frame_ms: Option<f64>,
}

/// Fixed-bucket histogram of millisecond values (bounded memory, ±0.5 ms resolution).
#[derive(Clone, Debug)]
pub(crate) struct Histogram {
    buckets: Vec<u32>,
    overflow: u64,
    count: u64,
    max: f64,
}

impl Histogram {
    pub(crate) fn new() -> Self {
        Histogram {
            buckets: vec![0; HISTOGRAM_MS],
            overflow: 0,
            count: 0,
            max: 0.0,
        }
    }

    pub(crate) fn record(&mut self, ms: f64) {
        let ms = if ms.is_finite() { ms.max(0.0) } else { 0.0 };
        let idx = ms.floor() as usize;
        match self.buckets.get_mut(idx) {
            Some(b) => *b = b.saturating_add(1),
            None => self.overflow += 1,
        }
        self.count += 1;
        self.max = self.max.max(ms);
    }

    /// The `q` quantile (0..=1): bucket midpoint, or the maximum for the overflow bucket.
    pub(crate) fn quantile(&self, q: f64) -> Option<f64> {
        if self.count == 0 {
            return None;
        }
        let rank = ((q.clamp(0.0, 1.0) * self.count as f64).ceil() as u64).max(1);
        let mut seen = 0u64;
        for (i, b) in self.buckets.iter().enumerate() {
            seen += u64::from(*b);
            if seen >= rank {
                return Some((i as f64 + 0.5).min(self.max));
            }
        }
        Some(self.max)
    }
}

/// Which media a pushed frame carried.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    Video,
    Audio,
}

#[derive(Debug)]
pub(crate) struct Metrics {
    joined_at: Instant,
    frames_received: u64,
    audio_received: u64,
    frames_lost: u64,
    first_video_seq: Option<u64>,
    last_video_seq: Option<u64>,
    first_receive: Option<Instant>,
    window: VecDeque<(Instant, usize)>,
    window_bytes: usize,
    newest_pts_ns: Option<u64>,
    /// Pushed video frames not yet rendered: pipeline PTS (ns) → capture time (µs).
    pending: BTreeMap<u64, u64>,
    frames_rendered: u64,
    audio_decoded: u64,
    first_render: Option<Instant>,
    last_render: Option<Instant>,
    stalls: u64,
    max_gap: Duration,
    last_rendered_pts: Option<u64>,
    out_of_order: u64,
    frames_late: u64,
    rebuffers: u64,
    rebuffered: Duration,
    slowed: Duration,
    audio_concealed: Duration,
    audio_gaps_concealed: u64,
    latency: Histogram,
    recent: VecDeque<f64>,
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

impl Metrics {
    pub(crate) fn new(joined_at: Instant) -> Self {
        Metrics {
            joined_at,
            frames_received: 0,
            audio_received: 0,
            frames_lost: 0,
            first_video_seq: None,
            last_video_seq: None,
            first_receive: None,
            window: VecDeque::new(),
            window_bytes: 0,
            newest_pts_ns: None,
            pending: BTreeMap::new(),
            frames_rendered: 0,
            audio_decoded: 0,
            first_render: None,
            last_render: None,
            stalls: 0,
            max_gap: Duration::ZERO,
            last_rendered_pts: None,
            out_of_order: 0,
            frames_late: 0,
            rebuffers: 0,
            rebuffered: Duration::ZERO,
            slowed: Duration::ZERO,
            audio_concealed: Duration::ZERO,
            audio_gaps_concealed: 0,
            latency: Histogram::new(),
            recent: VecDeque::new(),
        }
    }

    /// A frame of `bytes` arrived; `lost` frames are missing before it on its track.
    pub(crate) fn on_received(&mut self, now: Instant, lost: u64, bytes: usize) {
        self.frames_lost += lost;
        self.first_receive.get_or_insert(now);
        self.window.push_back((now, bytes));
        self.window_bytes += bytes;
        self.expire_window(now);
    }

    /// Frame `seq` was handed to the pipeline with pipeline PTS `pts_ns`.
    pub(crate) fn on_pushed(&mut self, kind: Kind, seq: u64, pts_ns: u64, capture_us: u64) {
        self.newest_pts_ns = Some(self.newest_pts_ns.map_or(pts_ns, |n| n.max(pts_ns)));
        match kind {
            Kind::Video => {
                self.frames_received += 1;
                self.first_video_seq.get_or_insert(seq);
                self.last_video_seq = Some(seq);
                self.pending.insert(pts_ns, capture_us);
                while self.pending.len() > MAX_PENDING {
                    self.pending.pop_first();
                }
            }
            Kind::Audio => self.audio_received += 1,
        }
    }

    fn expire_window(&mut self, now: Instant) {
        while let Some((t, b)) = self.window.front().copied() {
            if now.saturating_duration_since(t) <= BITRATE_WINDOW {
                break;
            }
            self.window.pop_front();
            self.window_bytes -= b;
        }
    }

    /// Playback was moved `added` later because a frame came after its playout time.
    pub(crate) fn on_rebuffer(&mut self, added: Duration) {
        self.rebuffers += 1;
        self.rebuffered += added;
    }

    /// Playback was moved `slowed` later by playing slower.
    pub(crate) fn on_slowed(&mut self, slowed: Duration) {
        self.slowed += slowed;
    }

    /// A hole of `hole` in the audio's timeline was handed to the decoder to conceal.
    pub(crate) fn on_audio_concealed(&mut self, hole: Duration) {
        self.audio_concealed += hole;
        self.audio_gaps_concealed += 1;
    }

    /// A video frame with pipeline PTS `pts_ns` was rendered at `at` (wall clock `unix_us`),
    /// `late` after its playout time.
    pub(crate) fn on_video_render(
        &mut self,
        at: Instant,
        unix_us: u64,
        pts_ns: Option<u64>,
        late: Duration,
    ) {
        self.frames_rendered += 1;
        if late > LATE_FRAME {
            self.frames_late += 1;
        }
        if self.first_render.is_none() {
            self.first_render = Some(at);
        }
        if let Some(last) = self.last_render {
            let gap = at.saturating_duration_since(last);
            if gap > STALL_GAP {
                self.stalls += 1;
            }
            self.max_gap = self.max_gap.max(gap);
        }
        self.last_render = Some(self.last_render.map_or(at, |l| l.max(at)));
        let Some(pts) = pts_ns else {
            return;
        };
        if self.last_rendered_pts.is_some_and(|l| pts < l) {
            self.out_of_order += 1;
        }
        self.last_rendered_pts = Some(pts);
        // Exact match, else the nearest pushed PTS within 1 ms (decoders keep PTS).
        let capture = self.pending.get(&pts).copied().or_else(|| {
            self.pending
                .range(pts.saturating_sub(1_000_000)..=pts.saturating_add(1_000_000))
                .min_by_key(|(k, _)| k.abs_diff(pts))
                .map(|(_, c)| *c)
        });
        self.pending.retain(|k, _| *k > pts);
        if let Some(capture_us) = capture {
            let latency = (unix_us as f64 - capture_us as f64) / 1000.0;
            self.latency.record(latency);
            if self.recent.len() == RECENT_LATENCY {
                self.recent.pop_front();
            }
            self.recent.push_back(latency.max(0.0));
        }
    }

    pub(crate) fn on_audio_decoded(&mut self) {
        self.audio_decoded += 1;
    }

    fn first_frame_ms(&self) -> Option<f64> {
        self.first_render
            .map(|f| ms(f.saturating_duration_since(self.joined_at)))
    }

    pub(crate) fn report(&self) -> PlayerReport {
        PlayerReport {
            frames_rendered: self.frames_rendered,
            audio_packets_decoded: self.audio_decoded,
            first_frame_ms: self.first_frame_ms(),
            stalls: self.stalls,
            max_gap_ms: ms(self.max_gap),
            frames_lost: self.frames_lost,
            latency_ms: LatencySummary {
                p50: self.latency.quantile(0.5),
                p99: self.latency.quantile(0.99),
            },
            frames_received: self.frames_received,
            audio_packets_received: self.audio_received,
            first_video_seq: self.first_video_seq,
            last_video_seq: self.last_video_seq,
            out_of_order: self.out_of_order,
            frames_late: self.frames_late,
            rebuffers: self.rebuffers,
            rebuffered_ms: ms(self.rebuffered),
            slowed_ms: ms(self.slowed),
            audio_concealed_ms: ms(self.audio_concealed),
            audio_gaps_concealed: self.audio_gaps_concealed,
        }
    }

    /// `running_ns`: the pipeline's current running time, if it is running.
    pub(crate) fn stats(&mut self, now: Instant, running_ns: Option<u64>) -> PlayerStats {
        self.expire_window(now);
        let span = self
            .first_receive
            .map_or(BITRATE_WINDOW, |f| now.saturating_duration_since(f))
            .clamp(Duration::from_millis(100), BITRATE_WINDOW);
        let mut recent: Vec<f64> = self.recent.iter().copied().collect();
        recent.sort_by(f64::total_cmp);
        PlayerStats {
            frames_rendered: self.frames_rendered,
            audio_packets_decoded: self.audio_decoded,
            stalls: self.stalls,
            rebuffers: self.rebuffers,
            slowed_ms: ms(self.slowed),
            frames_lost: self.frames_lost,
            latency_ms: recent.get(recent.len() / 2).copied(),
            buffer_ms: match (self.newest_pts_ns, running_ns) {
                (Some(p), Some(r)) => Some((p as f64 - r as f64) / 1e6),
                _ => None,
            },
            bitrate_kbps: self.window_bytes as f64 * 8.0 / span.as_secs_f64() / 1000.0,
            first_frame_ms: self.first_frame_ms(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_quantiles() {
        let mut h = Histogram::new();
        assert_eq!(h.quantile(0.5), None);
        for v in 1..=100 {
            h.record(f64::from(v));
        }
        let p50 = h.quantile(0.5).unwrap();
        let p99 = h.quantile(0.99).unwrap();
        assert!((p50 - 50.5).abs() <= 1.0, "{p50}");
        assert!((p99 - 99.5).abs() <= 1.0, "{p99}");
        h.record(50_000.0);
        h.record(f64::NAN);
        assert_eq!(h.quantile(1.0), Some(50_000.0));
    }

    #[test]
    fn renders_stalls_latency_and_order() {
        let t0 = Instant::now();
        let mut m = Metrics::new(t0);
        for i in 0..5u64 {
            m.on_received(t0, 0, 1000);
            m.on_pushed(Kind::Video, 10 + i, i * 33_000_000, 1_000_000 + i * 33_000);
        }
        // Render 0, 1 on time, then a 250 ms gap, then pts 3 before pts 2 (out of order).
        let r = |i: u64| t0 + Duration::from_millis(300 + i * 33);
        let on_time = Duration::from_millis(3);
        m.on_video_render(r(0), 1_000_000 + 150_000, Some(0), on_time);
        m.on_video_render(r(1), 1_033_000 + 150_000, Some(33_000_000), on_time);
        let late = r(1) + Duration::from_millis(250);
        let behind = Duration::from_millis(218);
        m.on_video_render(late, 1_099_000 + 150_000, Some(99_000_000), behind);
        m.on_video_render(
            late + Duration::from_millis(33),
            0,
            Some(66_000_000),
            behind,
        );
        m.on_rebuffer(Duration::from_millis(318));
        let rep = m.report();
        assert_eq!(rep.frames_rendered, 4);
        assert_eq!(rep.stalls, 1);
        assert!((rep.max_gap_ms - 250.0).abs() < 1.0);
        assert_eq!(rep.out_of_order, 1);
        assert_eq!(rep.frames_late, 2);
        assert_eq!((rep.rebuffers, rep.rebuffered_ms.round()), (1, 318.0));
        assert_eq!(rep.first_frame_ms.map(f64::round), Some(300.0));
        assert_eq!(rep.latency_ms.p50.map(f64::floor), Some(150.0));
        assert_eq!(
            (rep.first_video_seq, rep.last_video_seq),
            (Some(10), Some(14))
        );
        assert_eq!(rep.frames_received, 5);
    }

    #[test]
    fn stats_bitrate_and_buffer() {
        let t0 = Instant::now();
        let mut m = Metrics::new(t0);
        for i in 0..40u64 {
            let at = t0 + Duration::from_millis(i * 100);
            m.on_received(at, u64::from(i == 5), 1000);
            m.on_pushed(Kind::Audio, i, i * 100_000_000, 0);
        }
        let s = m.stats(t0 + Duration::from_millis(3900), Some(3_500_000_000));
        // ~21 packets of 8 kbit in the last 2 s.
        assert!((s.bitrate_kbps - 84.0).abs() < 10.0, "{}", s.bitrate_kbps);
        assert_eq!(s.buffer_ms.map(f64::round), Some(400.0));
        assert_eq!(s.frames_lost, 1);
        assert_eq!(m.report().audio_packets_received, 40);
    }
}
