//! The viewer side: decode and render (or discard, headless) the frames received from the
//! tree, optionally record them to Matroska, and measure the experience.
//!
//! ```no_run
//! # fn run(catalog: treecast_relay::proto::media::Catalog,
//! #        frames: Vec<treecast_relay::proto::media::Frame>) -> Result<(), treecast_player::MediaError> {
//! use treecast_player::player::{Player, PlayerConfig};
//! let player = Player::new(&catalog, PlayerConfig { headless: true, ..PlayerConfig::default() })?;
//! for frame in &frames {
//!     player.push(frame)?; // in order per track; gaps allowed
//! }
//! println!("{:?}", player.stats());
//! let report = player.finish()?; // drains, finalises the recording
//! # let _ = report; Ok(()) }
//! ```
//!
//! Timing (`treecast_relay::proto::playout`, the clock the simulator's viewers play by
//! too): the player holds the first frames (any track) until they cover `buffer` of the
//! origin's time, then starts: the earliest of them plays `buffer` after the first one
//! arrived, or at once if filling the buffer took longer (a joiner's first group that came
//! slower than the stream), so playback always starts with a whole buffer. That fixes
//! `offset = start − first PTS`; every buffer gets `PTS = frame.pts + offset`. One offset
//! for all tracks keeps audio and video in the origin's sync, in the origin's rhythm. A frame that arrives after its playout
//! time moves the offset later (a re-buffer: one pause, then smooth playback with more
//! latency) instead of every following frame being dropped as late. A path that got
//! slower within the buffer wears it down without a pause; the clock then moves the offset
//! later in steps of at least 20 ms, at most 5% of the time played, until the buffer is
//! whole again. A video frame is held that much longer; the hole each step leaves in the
//! audio's timeline goes to the Opus decoder as a gap event, which it fills with packet
//! loss concealment rather than the sink with silence.
//!
//! Video frames are only fed from a keyframe on: before the first keyframe, and after a
//! sequence gap until the next keyframe, video frames are skipped (a frozen picture rather
//! than a corrupted one). Frames of tracks not in the catalog are ignored.

mod feed;
mod metrics;
mod output;
mod pipeline;

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use gstreamer as gst;
use gstreamer::prelude::*;
use tracing::warn;
use treecast_relay::proto::media::{Catalog, Codec};

pub use metrics::{LATE_FRAME, LatencySummary, PlayerReport, PlayerStats, STALL_GAP};
pub use output::Output;
pub use treecast_relay::proto::playout::MAX_REBUFFERED;

use crate::MediaError;
use feed::{Input, PushState};
use metrics::{Kind, Metrics};
use treecast_relay::proto::playout::Playout;

/// How long [`Player::finish`] waits for the pipeline to drain.
const FINISH_TIMEOUT: Duration = Duration::from_secs(5);
/// Bus polling interval of the watcher thread (bounds how long shutdown waits for it).
const BUS_POLL: Duration = Duration::from_millis(100);
/// Largest playout delay accepted.
const MAX_BUFFER: Duration = Duration::from_secs(60);

/// How to play.
#[derive(Clone, Debug)]
pub struct PlayerConfig {
    /// No window, no sound device: `fakesink`s that still keep time.
    pub headless: bool,
    /// Also write the received H.264/Opus (not re-encoded) to this Matroska file.
    pub record: Option<PathBuf>,
    /// Playout delay: the first frame is rendered this long after it was pushed, or once
    /// the frames pushed cover this much of the stream if that takes longer.
    pub buffer: Duration,
    /// When the viewer started joining (for time-to-first-frame).
    pub joined_at: Instant,
    /// Also re-serve the stream as MPEG-TS (not re-encoded) here.
    pub output: Option<Output>,
}

impl Default for PlayerConfig {
    /// Windowed, no recording, no output, 300 ms buffer, joined now.
    fn default() -> Self {
        PlayerConfig {
            headless: false,
            record: None,
            buffer: Duration::from_millis(300),
            joined_at: Instant::now(),
            output: None,
        }
    }
}

#[derive(Debug, Default)]
struct BusState {
    error: Option<MediaError>,
    eos: bool,
}

/// State shared with the pipeline's callbacks and the bus thread.
pub(crate) struct Shared {
    metrics: Mutex<Metrics>,
    bus: Mutex<BusState>,
    changed: Condvar,
}

impl Shared {
    pub(crate) fn metrics(&self) -> MutexGuard<'_, Metrics> {
        self.metrics.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn bus(&self) -> MutexGuard<'_, BusState> {
        self.bus.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn error(&self) -> Option<MediaError> {
        self.bus().error.clone()
    }

    fn set_error(&self, e: MediaError) {
        let mut b = self.bus();
        if b.error.is_none() {
            warn!("player pipeline error: {e}");
            b.error = Some(e);
        }
        self.changed.notify_all();
    }

    fn set_eos(&self) {
        self.bus().eos = true;
        self.changed.notify_all();
    }
}

/// Decodes and renders one broadcast. `Send`; call `push` from one task at a time.
pub struct Player {
    pipeline: gst::Pipeline,
    push: Mutex<PushState>,
    shared: Arc<Shared>,
    buffer: Duration,
    recording: bool,
    bus_stop: Arc<AtomicBool>,
    bus_thread: Option<JoinHandle<()>>,
    finished: bool,
}

impl std::fmt::Debug for Player {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Player")
            .field("buffer", &self.buffer)
            .field("recording", &self.recording)
            .finish_non_exhaustive()
    }
}

impl Player {
    /// Builds the pipeline for the catalog's first H.264 and first Opus track and starts it.
    pub fn new(catalog: &Catalog, config: PlayerConfig) -> Result<Player, MediaError> {
        crate::init()?;
        if config.buffer > MAX_BUFFER {
            return Err(MediaError::InvalidSettings(format!(
                "playout buffer {:?} (at most {MAX_BUFFER:?})",
                config.buffer
            )));
        }
        let video = catalog.tracks.iter().find_map(|t| match t.codec {
            Codec::H264 {
                width,
                height,
                fps_num,
                fps_den,
            } => Some((
                t.id,
                pipeline::VideoParams {
                    width,
                    height,
                    fps_num,
                    fps_den,
                },
            )),
            _ => None,
        });
        let audio = catalog.tracks.iter().find_map(|t| match t.codec {
            Codec::Opus { channels, .. } => Some((t.id, channels)),
            _ => None,
        });
        if let Some((_, ch)) = audio
            && !(1..=2).contains(&ch)
        {
            return Err(MediaError::InvalidSettings(format!(
                "Opus track with {ch} channels (1 or 2 supported)"
            )));
        }
        if video.is_none() && audio.is_none() {
            return Err(MediaError::InvalidSettings(
                "the catalog has no H.264 or Opus track to play".into(),
            ));
        }
        let shared = Arc::new(Shared {
            metrics: Mutex::new(Metrics::new(config.joined_at)),
            bus: Mutex::new(BusState::default()),
            changed: Condvar::new(),
        });
        let overlay = catalog.tracks.iter().any(|t| t.codec == Codec::Text);
        let built = pipeline::build(
            video.as_ref().map(|(_, p)| p),
            audio.map(|(_, ch)| ch),
            overlay,
            &config,
            &shared,
        )?;
        let mut inputs = Vec::new();
        if let (Some((id, _)), Some(src)) = (video, built.video) {
            inputs.push(Input {
                id,
                kind: Kind::Video,
                src,
                last_seq: None,
                waiting_key: true,
                discont: true,
                end_ns: None,
            });
        }
        if let (Some((id, _)), Some(src)) = (audio, built.audio) {
            inputs.push(Input {
                id,
                kind: Kind::Audio,
                src,
                last_seq: None,
                waiting_key: false,
                discont: true,
                end_ns: None,
            });
        }
        let pipeline = built.pipeline;
        if pipeline.set_state(gst::State::Playing).is_err() {
            let err = pipeline
                .bus()
                .and_then(|b| b.pop_filtered(&[gst::MessageType::Error]))
                .and_then(|m| match m.view() {
                    gst::MessageView::Error(e) => Some(MediaError::from_bus_error(e)),
                    _ => None,
                })
                .unwrap_or_else(|| MediaError::pipeline("treecast-player", "cannot start"));
            let _ = pipeline.set_state(gst::State::Null);
            return Err(err);
        }
        let bus_stop = Arc::new(AtomicBool::new(false));
        let bus_thread = spawn_bus_thread(&pipeline, shared.clone(), bus_stop.clone());
        Ok(Player {
            pipeline,
            push: Mutex::new(PushState {
                inputs,
                playout: Playout::new(config.buffer),
                held: Vec::new(),
            }),
            shared,
            buffer: config.buffer,
            recording: config.record.is_some(),
            bus_stop,
            bus_thread,
            finished: false,
        })
    }

    /// Shows `text` over the picture (replacing the previous message) when the broadcast
    /// has a message track and a video track; otherwise does nothing.
    pub fn show_message(&self, text: &str) {
        if let Some(overlay) = self.pipeline.by_name("overlay") {
            overlay.set_property("text", text);
        }
    }

    /// A live snapshot (cheap; for a status line).
    pub fn stats(&self) -> PlayerStats {
        let running = self.pipeline.current_running_time().map(|t| t.nseconds());
        self.shared.metrics().stats(Instant::now(), running)
    }

    /// The first error the pipeline reported, if any.
    pub fn error(&self) -> Option<MediaError> {
        self.shared.error()
    }

    /// Ends the stream: sends EOS, waits (at most 5 s) until everything pushed has been
    /// played and the recording is finalised, stops the pipeline and returns the report.
    /// Blocks the calling thread; from async code call it in `spawn_blocking`.
    /// Returns the pipeline's error if it had one, or an error if a recording could not be
    /// finalised in time.
    pub fn finish(mut self) -> Result<PlayerReport, MediaError> {
        let drained = self.shutdown(true);
        if let Some(e) = self.shared.error() {
            return Err(e);
        }
        if !drained {
            if self.recording {
                return Err(MediaError::pipeline(
                    "recmux",
                    format!(
                        "recording not finalised: end of stream not reached within {FINISH_TIMEOUT:?}"
                    ),
                ));
            }
            warn!("player did not drain within {FINISH_TIMEOUT:?}");
        }
        Ok(self.shared.metrics().report())
    }

    /// Stops the pipeline (after draining it if `drain`); true if it drained.
    fn shutdown(&mut self, drain: bool) -> bool {
        if self.finished {
            return false;
        }
        self.finished = true;
        let mut drained = false;
        if drain {
            {
                self.end_of_stream();
            }
            let deadline = Instant::now() + FINISH_TIMEOUT;
            let mut bus = self.shared.bus();
            while !bus.eos && bus.error.is_none() {
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    break;
                }
                bus = self
                    .shared
                    .changed
                    .wait_timeout(bus, left)
                    .unwrap_or_else(PoisonError::into_inner)
                    .0;
            }
            drained = bus.eos;
        }
        let _ = self.pipeline.set_state(gst::State::Null);
        self.bus_stop.store(true, Ordering::SeqCst);
        if let Some(h) = self.bus_thread.take() {
            let _ = h.join();
        }
        drained
    }
}

impl Drop for Player {
    fn drop(&mut self) {
        self.shutdown(false);
    }
}

fn spawn_bus_thread(
    pipeline: &gst::Pipeline,
    shared: Arc<Shared>,
    stop: Arc<AtomicBool>,
) -> Option<JoinHandle<()>> {
    let bus = pipeline.bus()?;
    let poll = gst::ClockTime::from_nseconds(BUS_POLL.as_nanos() as u64);
    let spawned = std::thread::Builder::new()
        .name("treecast-player-bus".into())
        .spawn(move || {
            while !stop.load(Ordering::SeqCst) {
                let Some(msg) = bus.timed_pop(poll) else {
                    continue;
                };
                match msg.view() {
                    gst::MessageView::Error(e) => shared.set_error(MediaError::from_bus_error(e)),
                    gst::MessageView::Warning(w) => warn!(
                        element = %w.src().map(|s| s.path_string().to_string()).unwrap_or_default(),
                        "GStreamer warning: {}",
                        w.error()
                    ),
                    gst::MessageView::Eos(_) => shared.set_eos(),
                    _ => {}
                }
            }
        });
    match spawned {
        Ok(h) => Some(h),
        Err(e) => {
            warn!("cannot spawn the player's bus thread: {e}; errors will not be reported");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use treecast_relay::proto::media::TrackInfo;

    fn catalog(text: bool) -> Catalog {
        let mut tracks = vec![TrackInfo {
            id: 0,
            name: "video".into(),
            codec: Codec::H264 {
                width: 160,
                height: 120,
                fps_num: 30,
                fps_den: 1,
            },
            bitrate: 0,
        }];
        if text {
            tracks.push(TrackInfo {
                id: 2,
                name: "messages".into(),
                codec: Codec::Text,
                bitrate: 0,
            });
        }
        Catalog {
            name: "t".into(),
            tracks,
            ..Default::default()
        }
    }

    fn overlay_text(p: &Player) -> Option<String> {
        let overlay = p.pipeline.by_name("overlay")?;
        overlay.property::<Option<String>>("text")
    }

    #[test]
    fn messages_are_overlaid_when_the_broadcast_has_a_message_track() {
        let config = || PlayerConfig {
            headless: true,
            ..PlayerConfig::default()
        };
        let with = Player::new(&catalog(true), config()).unwrap();
        with.show_message("doors open at 8");
        assert_eq!(overlay_text(&with).as_deref(), Some("doors open at 8"));
        with.finish().unwrap();
        let without = Player::new(&catalog(false), config()).unwrap();
        without.show_message("ignored");
        assert_eq!(overlay_text(&without), None);
        without.finish().unwrap();
    }

    #[test]
    fn a_bad_output_is_refused_before_the_pipeline_starts() {
        let e = "tcp://x:1".parse::<Output>().unwrap_err();
        assert!(e.to_string().contains("udp://HOST:PORT"), "{e}");
    }
}
