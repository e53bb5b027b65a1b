//! Feeding frames to the pipeline: the order and keyframe checks, holding the first frames
//! until they cover the buffer, placing each on the playout clock, and concealing the holes
//! that playing slower leaves in the audio.

use std::sync::PoisonError;
use std::time::{Duration, Instant};

use gstreamer as gst;
use gstreamer::prelude::*;
use gstreamer_app as gst_app;
use tracing::{debug, info};
use treecast_relay::proto::media::{Frame, TrackId};
use treecast_relay::proto::playout::Playout;

use super::Player;
use super::metrics::Kind;
use crate::MediaError;

/// Shorter holes in the audio timeline are left to the sink (within its alignment
/// threshold, it plays on as if there were none).
const MIN_AUDIO_HOLE: Duration = Duration::from_millis(5);

/// One input track.
pub(super) struct Input {
    pub(super) id: TrackId,
    pub(super) kind: Kind,
    pub(super) src: gst_app::AppSrc,
    pub(super) last_seq: Option<u64>,
    /// Video: skip frames until a keyframe.
    pub(super) waiting_key: bool,
    /// Mark the next pushed buffer DISCONT.
    pub(super) discont: bool,
    /// Pipeline running time at which the last pushed buffer ends (audio: where the next
    /// one should start).
    pub(super) end_ns: Option<u64>,
}

/// What `push` works on, behind one lock.
pub(super) struct PushState {
    pub(super) inputs: Vec<Input>,
    /// Origin time → pipeline running time.
    pub(super) playout: Playout,
    /// Frames held until they cover the buffer and playback starts (input index, frame).
    pub(super) held: Vec<(usize, Frame)>,
}

impl Player {
    /// Feeds one frame. Frames of a track must come with increasing `seq` (gaps allowed,
    /// older or repeated frames are ignored). Returns the pipeline's error once it has one.
    pub fn push(&self, frame: &Frame) -> Result<(), MediaError> {
        if let Some(e) = self.shared.error() {
            return Err(e);
        }
        let now = Instant::now();
        let mut st = self.push.lock().unwrap_or_else(PoisonError::into_inner);
        let PushState {
            inputs,
            playout,
            held,
        } = &mut *st;
        let Some(idx) = inputs.iter().position(|i| i.id == frame.track) else {
            return Ok(());
        };
        let input = &mut inputs[idx];
        let lost = match input.last_seq {
            Some(last) if frame.seq <= last => {
                debug!(
                    track = frame.track,
                    seq = frame.seq,
                    last,
                    "stale frame ignored"
                );
                return Ok(());
            }
            Some(last) => frame.seq - last - 1,
            None => 0,
        };
        input.last_seq = Some(frame.seq);
        if lost > 0 {
            input.discont = true;
            input.waiting_key |= input.kind == Kind::Video;
        }
        self.shared
            .metrics()
            .on_received(now, lost, frame.payload.len());
        if input.waiting_key {
            if !frame.keyframe {
                return Ok(());
            }
            input.waiting_key = false;
        }
        if frame.payload.is_empty() {
            return Ok(());
        }
        let running = self.running_ns();
        if !playout.started() {
            let end = frame.pts.saturating_add(u64::from(frame.duration));
            if !playout.hold(frame.pts, end, running) {
                held.push((idx, frame.clone()));
                return Ok(());
            }
            self.play_held(inputs, playout, held, running)?;
        }
        self.emit(inputs, playout, idx, frame, running)
    }

    /// The pipeline's running time now (0 before it runs).
    fn running_ns(&self) -> u64 {
        self.pipeline
            .current_running_time()
            .map_or(0, |t| t.nseconds())
    }

    /// Places and pushes the frames held before playback started, in order.
    fn play_held(
        &self,
        inputs: &mut [Input],
        playout: &mut Playout,
        held: &mut Vec<(usize, Frame)>,
        running: u64,
    ) -> Result<(), MediaError> {
        for (i, f) in std::mem::take(held) {
            self.emit(inputs, playout, i, &f, running)?;
        }
        Ok(())
    }

    /// Places one frame on the playout clock (which has started) and pushes it.
    fn emit(
        &self,
        inputs: &mut [Input],
        playout: &mut Playout,
        idx: usize,
        frame: &Frame,
        running: u64,
    ) -> Result<(), MediaError> {
        let placed = playout.place(frame.pts, running);
        if placed.added_ns > 0 {
            let added = Duration::from_nanos(placed.added_ns);
            info!(
                track = frame.track,
                seq = frame.seq,
                "frames arrive after their playout time: re-buffering, playback {added:?} later"
            );
            // Every track jumps ahead in time: sinks resynchronise rather than interpolate.
            for i in inputs.iter_mut() {
                i.discont = true;
            }
            self.shared.metrics().on_rebuffer(added);
        }
        if placed.stretched_ns > 0 {
            let slowed = Duration::from_nanos(placed.stretched_ns);
            debug!(
                track = frame.track,
                seq = frame.seq,
                "the path leaves less than the buffer: playback {slowed:?} slower"
            );
            self.shared.metrics().on_slowed(slowed);
        }
        let input = &mut inputs[idx];
        let pts_ns = placed.pts_ns;
        if input.kind == Kind::Audio && !input.discont {
            self.conceal_audio_before(input, pts_ns);
        }
        let dts_ns = playout.dts_ns(frame.dts.min(frame.pts)).min(pts_ns);
        let mut buffer = gst::Buffer::from_slice(frame.payload.clone());
        {
            let b = buffer.make_mut();
            b.set_pts(gst::ClockTime::from_nseconds(pts_ns));
            b.set_dts(gst::ClockTime::from_nseconds(dts_ns));
            if frame.duration > 0 {
                b.set_duration(gst::ClockTime::from_useconds(u64::from(frame.duration)));
            }
            let mut flags = gst::BufferFlags::empty();
            if input.discont {
                flags |= gst::BufferFlags::DISCONT;
            }
            if input.kind == Kind::Video && !frame.keyframe {
                flags |= gst::BufferFlags::DELTA_UNIT;
            }
            b.set_flags(flags);
        }
        input.discont = false;
        // Without a duration there is no telling a hole from the next packet's start.
        input.end_ns = (frame.duration > 0).then(|| pts_ns + u64::from(frame.duration) * 1000);
        self.shared
            .metrics()
            .on_pushed(input.kind, frame.seq, pts_ns, frame.capture_us);
        input.src.push_buffer(buffer).map_err(|flow| {
            self.shared.error().unwrap_or_else(|| {
                MediaError::pipeline(input.src.name(), format!("buffer refused: {flow:?}"))
            })
        })?;
        Ok(())
    }

    /// Slowing down left a hole in the audio's timeline before `pts_ns` (the offset moved
    /// later since the last packet): tells the decoder about it as a gap, which it fills
    /// with concealment (Opus PLC) rather than the sink with silence or a resync.
    fn conceal_audio_before(&self, input: &Input, pts_ns: u64) {
        let Some(end_ns) = input.end_ns else {
            return;
        };
        let hole = pts_ns.saturating_sub(end_ns);
        if hole < MIN_AUDIO_HOLE.as_nanos() as u64 {
            return;
        }
        let gap = gst::event::Gap::builder(gst::ClockTime::from_nseconds(end_ns))
            .duration(gst::ClockTime::from_nseconds(hole))
            .build();
        if input.src.send_event(gap) {
            self.shared
                .metrics()
                .on_audio_concealed(Duration::from_nanos(hole));
        } else {
            debug!("the audio source refused a gap event");
        }
    }

    /// Ends every input's stream; frames still held (the stream ended before they covered
    /// the buffer) are played first.
    pub(super) fn end_of_stream(&self) {
        let mut st = self.push.lock().unwrap_or_else(PoisonError::into_inner);
        let PushState {
            inputs,
            playout,
            held,
        } = &mut *st;
        // The stream ended before it covered the buffer: play what there is.
        let running = self.running_ns();
        playout.start(running);
        if let Err(e) = self.play_held(inputs, playout, held, running) {
            debug!("a held frame was refused at the end: {e}");
        }
        for input in inputs.iter() {
            let _ = input.src.end_of_stream();
        }
    }
}
