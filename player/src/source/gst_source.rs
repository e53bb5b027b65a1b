//! GStreamer-backed sources (test pattern, files): the driver thread that owns the
//! pipeline, and the appsink callbacks that turn encoded buffers into [`EncodedUnit`]s.
//!
//! Timestamps: every buffer's PTS/DTS is converted to *running time* with the sample's
//! segment (encoders start their segments late, so raw PTS would be hours off), then
//! offset by the pipeline instance's start: `pts = offset + running time`, where the first
//! pipeline has offset 0 and a pipeline rebuilt for a loop starts at
//! `max(end of everything sent so far, its base time − the first pipeline's base time)`.
//! So timestamps never go backwards and stay in step with the wall clock across loops.
//! `capture_us` maps the clock time `base time + running time` to the Unix clock through a
//! [`WallClockAnchor`] taken once per pipeline.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::Duration;

use bytes::Bytes;
use gstreamer as gst;
use gstreamer::prelude::*;
use gstreamer_app as gst_app;
use tokio::sync::mpsc;
use tracing::{debug, warn};
use treecast_relay::proto::media::{AUDIO_TRACK, Catalog, EncodedUnit, TrackId, VIDEO_TRACK};

use super::gst_pipelines::{self, FilePipeline};
use super::h264::{self, Finding, StreamCheck};
use super::{EncodeSettings, SourceEvent, catalog_name, open_file};
use crate::MediaError;
use crate::timing::{WallClockAnchor, ns_to_us, unix_now_us};

/// Encoded units buffered between the pipeline and [`GstSource::next`] (a few seconds of
/// media); when full, the pipeline waits (back-pressure) rather than dropping units.
pub(crate) const CHANNEL_CAPACITY: usize = 512;
/// How often the driver thread checks for a stop request while no bus message arrives.
const BUS_POLL: Duration = Duration::from_millis(100);

/// Source-wide timestamp state, shared by both tracks and by every pipeline instance.
#[derive(Debug, Default)]
pub(crate) struct Timeline {
    inner: Mutex<TimelineInner>,
}

#[derive(Debug, Default)]
struct TimelineInner {
    /// Base time (ns) of the first pipeline instance.
    base0: Option<u64>,
    /// Offset (µs) of the current instance, set by its first buffer.
    offset: Option<u64>,
    /// Wall-clock anchor of the current instance.
    anchor: Option<WallClockAnchor>,
    /// Largest `pts + duration` sent so far (µs).
    end_us: u64,
    /// Last (pts, dts) sent per track: [video, audio].
    last: [Option<(u64, u64)>; 2],
}

/// Timestamps of one buffer, in running time of its pipeline instance.
#[derive(Clone, Copy, Debug)]
pub(crate) struct BufferTimes {
    pub pts_rt_ns: Option<u64>,
    pub dts_rt_ns: Option<u64>,
    pub duration_us: u64,
}

/// Final timestamps of a unit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Stamped {
    pub pts: u64,
    pub dts: u64,
    pub capture_us: u64,
}

impl Timeline {
    fn lock(&self) -> std::sync::MutexGuard<'_, TimelineInner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Called before a new pipeline instance (a loop) starts producing.
    pub(crate) fn new_instance(&self) {
        let mut t = self.lock();
        t.offset = None;
        t.anchor = None;
    }

    /// Stamps one buffer of `track`. `base_ns` is the instance's base time, `clock` its
    /// clock (for the wall-clock anchor).
    pub(crate) fn stamp(
        &self,
        track: TrackId,
        times: BufferTimes,
        base_ns: u64,
        clock: Option<&gst::Clock>,
    ) -> Stamped {
        let mut t = self.lock();
        let base0 = *t.base0.get_or_insert(base_ns);
        let end_us = t.end_us;
        let offset = *t
            .offset
            .get_or_insert_with(|| ns_to_us(base_ns.saturating_sub(base0)).max(end_us));
        if t.anchor.is_none() {
            t.anchor = clock.map(WallClockAnchor::now);
        }
        let idx = usize::from(track != VIDEO_TRACK);
        let last = t.last[idx];
        // A buffer without timestamp continues from the previous one of its track.
        let pts_rt_us = match times.pts_rt_ns {
            Some(ns) => ns_to_us(ns),
            None => last.map_or(0, |(p, _)| {
                p.saturating_sub(offset).saturating_add(times.duration_us)
            }),
        };
        let dts_rt_us = times.dts_rt_ns.map_or(pts_rt_us, ns_to_us).min(pts_rt_us);
        let mut pts = offset.saturating_add(pts_rt_us);
        let mut dts = offset.saturating_add(dts_rt_us);
        // Our encoders never reorder frames (no B-frames), so both stamps must increase.
        if let Some((lp, ld)) = last {
            if pts <= lp {
                debug!(track, pts, last = lp, "non-increasing pts bumped");
                pts = lp + 1;
            }
            dts = dts.max(ld);
        }
        dts = dts.min(pts);
        t.last[idx] = Some((pts, dts));
        t.end_us = t.end_us.max(pts.saturating_add(times.duration_us));
        let clock_ns = base_ns.saturating_add(pts_rt_us.saturating_mul(1000));
        let capture_us = t
            .anchor
            .map_or_else(unix_now_us, |a| a.unix_us_at(clock_ns));
        Stamped {
            pts,
            dts,
            capture_us,
        }
    }
}

/// Everything an appsink callback needs.
#[derive(Clone)]
pub(crate) struct SinkContext {
    pub tx: mpsc::Sender<SourceEvent>,
    pub timeline: Arc<Timeline>,
    pub track: TrackId,
    /// Used when a buffer has no duration.
    pub default_duration_us: u64,
    /// Video from an outside encoder: keyframes are read from the bitstream (not from
    /// buffer flags) and the stream is checked for settings the tree cannot carry.
    pub check: Option<Arc<Mutex<StreamCheck>>>,
}

/// Installs the new-sample callback on `sink`.
pub(crate) fn attach_appsink(sink: &gst_app::AppSink, ctx: SinkContext) {
    sink.set_callbacks(
        gst_app::AppSinkCallbacks::builder()
            .new_sample(move |sink| on_sample(sink, &ctx))
            .build(),
    );
}

fn on_sample(
    sink: &gst_app::AppSink,
    ctx: &SinkContext,
) -> Result<gst::FlowSuccess, gst::FlowError> {
    let sample = sink.pull_sample().map_err(|_| gst::FlowError::Flushing)?;
    let Some(buffer) = sample.buffer() else {
        return Ok(gst::FlowSuccess::Ok);
    };
    let segment = sample
        .segment()
        .and_then(|s| s.downcast_ref::<gst::ClockTime>());
    let running = |t: Option<gst::ClockTime>| -> Option<u64> {
        let seg = segment?;
        seg.to_running_time(t?).map(|c| c.nseconds())
    };
    let times = BufferTimes {
        pts_rt_ns: running(buffer.pts()),
        dts_rt_ns: running(buffer.dts()),
        duration_us: buffer
            .duration()
            .map(|d| d.useconds())
            .filter(|d| *d > 0)
            .unwrap_or(ctx.default_duration_us),
    };
    let base_ns = sink.base_time().map_or(0, |b| b.nseconds());
    let clock = sink.clock();
    let stamped = ctx
        .timeline
        .stamp(ctx.track, times, base_ns, clock.as_ref());
    let map = buffer.map_readable().map_err(|_| gst::FlowError::Error)?;
    let keyframe = match &ctx.check {
        Some(check) => {
            let info = h264::inspect(map.as_slice());
            let pts_us = times.pts_rt_ns.map_or(stamped.pts, ns_to_us);
            let mut check = check.lock().unwrap_or_else(PoisonError::into_inner);
            let finding = check.video(&info, pts_us, times.dts_rt_ns.map(ns_to_us));
            match finding {
                Some(f @ Finding::BFrames { .. }) => {
                    let err = MediaError::UnsupportedStream(f.message());
                    // Kept for the caller that sees the pipeline fail before this event.
                    check.fatal = Some(f);
                    drop(check);
                    let _ = ctx.tx.blocking_send(SourceEvent::Error(err));
                    return Err(gst::FlowError::Error);
                }
                Some(f) => warn!("{}", f.message()),
                None => {}
            }
            info.idr
        }
        None => ctx.track == AUDIO_TRACK || !buffer.flags().contains(gst::BufferFlags::DELTA_UNIT),
    };
    let unit = EncodedUnit {
        track: ctx.track,
        pts: stamped.pts,
        dts: stamped.dts,
        duration: u32::try_from(times.duration_us).unwrap_or(u32::MAX),
        keyframe,
        capture_us: stamped.capture_us,
        payload: Bytes::copy_from_slice(map.as_slice()),
    };
    drop(map);
    // Blocks when the consumer is behind (back-pressure); fails once it is gone.
    ctx.tx
        .blocking_send(SourceEvent::Unit(unit))
        .map_err(|_| gst::FlowError::Flushing)?;
    Ok(gst::FlowSuccess::Ok)
}

/// Sets `pipeline` to `state`, turning a refusal into the error the pipeline posted.
pub(crate) fn set_state(pipeline: &gst::Pipeline, state: gst::State) -> Result<(), MediaError> {
    match pipeline.set_state(state) {
        Ok(_) => Ok(()),
        Err(_) => Err(bus_error(pipeline).unwrap_or_else(|| {
            MediaError::pipeline(
                pipeline.name(),
                format!("state change to {state:?} refused"),
            )
        })),
    }
}

/// The first error message waiting on the pipeline's bus, if any.
pub(crate) fn bus_error(pipeline: &gst::Pipeline) -> Option<MediaError> {
    let msg = pipeline.bus()?.pop_filtered(&[gst::MessageType::Error])?;
    match msg.view() {
        gst::MessageView::Error(e) => Some(MediaError::from_bus_error(e)),
        _ => None,
    }
}

/// A running GStreamer source: the receiving end of the unit channel and the driver thread.
pub(crate) struct GstSource {
    rx: Option<mpsc::Receiver<SourceEvent>>,
    stop: Arc<AtomicBool>,
    driver: Option<JoinHandle<()>>,
    ended: bool,
}

/// How the driver builds the next pipeline when one ends (a looping file, an SRT listener
/// waiting for the broadcaster to come back). The new pipeline is returned unstarted.
pub(crate) type Reopen = Box<
    dyn FnMut(&mpsc::Sender<SourceEvent>, &Arc<Timeline>) -> Result<gst::Pipeline, MediaError>
        + Send,
>;

impl GstSource {
    pub(crate) fn start_test(
        settings: &EncodeSettings,
    ) -> Result<(GstSource, Catalog), MediaError> {
        crate::elements::require(gst_pipelines::TEST_ELEMENTS)?;
        let (tx, rx) = mpsc::channel(CHANNEL_CAPACITY);
        let timeline = Arc::new(Timeline::default());
        let pipeline = gst_pipelines::build_test(settings, &tx, &timeline)?;
        let catalog = Catalog {
            name: "test".into(),
            tracks: vec![settings.video_track(), settings.audio_track(2)],
            ..Default::default()
        };
        let src = GstSource::spawn(pipeline, None, tx, rx, timeline)?;
        Ok((src, catalog))
    }

    pub(crate) fn start_file(
        path: &Path,
        looping: bool,
        settings: &EncodeSettings,
    ) -> Result<(GstSource, Catalog), MediaError> {
        crate::elements::require(gst_pipelines::FILE_ELEMENTS)?;
        drop(open_file(path)?);
        let (tx, rx) = mpsc::channel(CHANNEL_CAPACITY);
        let timeline = Arc::new(Timeline::default());
        let opened = gst_pipelines::open_file(path, settings, &tx, &timeline)?;
        let mut tracks = Vec::new();
        if opened.has_video {
            tracks.push(settings.video_track());
        }
        if opened.has_audio {
            tracks.push(settings.audio_track(2));
        }
        let catalog = Catalog {
            name: catalog_name(path),
            tracks,
            ..Default::default()
        };
        let reopen = looping.then(|| {
            let (path, settings) = (path.to_path_buf(), settings.clone());
            Box::new(
                move |tx: &mpsc::Sender<SourceEvent>, timeline: &Arc<Timeline>| {
                    debug!(path = %path.display(), "end of file, looping");
                    gst_pipelines::open_file(&path, &settings, tx, timeline)
                        .map(|FilePipeline { pipeline, .. }| pipeline)
                },
            ) as Reopen
        });
        let src = GstSource::spawn(opened.pipeline, reopen, tx, rx, timeline)?;
        Ok((src, catalog))
    }

    fn spawn(
        pipeline: gst::Pipeline,
        reopen: Option<Reopen>,
        tx: mpsc::Sender<SourceEvent>,
        rx: mpsc::Receiver<SourceEvent>,
        timeline: Arc<Timeline>,
    ) -> Result<GstSource, MediaError> {
        if let Err(e) = set_state(&pipeline, gst::State::Playing) {
            let _ = pipeline.set_state(gst::State::Null);
            return Err(e);
        }
        let stop = Arc::new(AtomicBool::new(false));
        let driver = Driver {
            pipeline,
            reopen,
            tx,
            timeline,
            stop: stop.clone(),
        };
        let handle = std::thread::Builder::new()
            .name("treecast-source".into())
            .spawn(move || driver.run())
            .map_err(|e| MediaError::pipeline("source", format!("cannot spawn thread: {e}")))?;
        Ok(GstSource {
            rx: Some(rx),
            stop,
            driver: Some(handle),
            ended: false,
        })
    }

    /// Starts a live pipeline (SRT, devices); `reopen` builds the next one when it ends.
    pub(crate) fn spawn_live(
        pipeline: gst::Pipeline,
        reopen: Option<Reopen>,
        tx: mpsc::Sender<SourceEvent>,
        rx: mpsc::Receiver<SourceEvent>,
        timeline: Arc<Timeline>,
    ) -> Result<GstSource, MediaError> {
        GstSource::spawn(pipeline, reopen, tx, rx, timeline)
    }

    pub(crate) async fn next(&mut self) -> Option<Result<EncodedUnit, MediaError>> {
        if self.ended {
            return None;
        }
        let rx = self.rx.as_mut()?;
        match rx.recv().await {
            Some(SourceEvent::Unit(u)) => Some(Ok(u)),
            Some(SourceEvent::Error(e)) => {
                self.ended = true;
                Some(Err(e))
            }
            Some(SourceEvent::End) | None => {
                self.ended = true;
                None
            }
        }
    }
}

impl Drop for GstSource {
    fn drop(&mut self) {
        // Drop the receiver first: a streaming thread blocked on a full channel wakes up
        // with an error, so the pipeline can shut down.
        self.rx = None;
        self.stop.store(true, Ordering::SeqCst);
        if let Some(h) = self.driver.take() {
            let _ = h.join();
        }
    }
}

/// Owns the pipeline: watches its bus, reports errors and the end, rebuilds it to loop.
struct Driver {
    pipeline: gst::Pipeline,
    reopen: Option<Reopen>,
    tx: mpsc::Sender<SourceEvent>,
    timeline: Arc<Timeline>,
    stop: Arc<AtomicBool>,
}

impl Driver {
    fn run(mut self) {
        let end = self.watch();
        let _ = self.pipeline.set_state(gst::State::Null);
        if let Some(ev) = end {
            // Fails only if the consumer is gone, which is fine.
            let _ = self.tx.blocking_send(ev);
        }
    }

    /// Runs until the source ends; returns the event to send last (if any).
    fn watch(&mut self) -> Option<SourceEvent> {
        loop {
            if self.stop.load(Ordering::SeqCst) {
                return None;
            }
            let bus = self.pipeline.bus()?;
            let Some(msg) =
                bus.timed_pop(gst::ClockTime::from_nseconds(BUS_POLL.as_nanos() as u64))
            else {
                continue;
            };
            match msg.view() {
                gst::MessageView::Error(e) => {
                    return Some(SourceEvent::Error(MediaError::from_bus_error(e)));
                }
                gst::MessageView::Warning(w) => {
                    warn!(
                        element = %w.src().map(|s| s.path_string().to_string()).unwrap_or_default(),
                        "GStreamer warning: {}",
                        w.error()
                    );
                }
                gst::MessageView::Eos(_) => {
                    let Some(reopen) = &mut self.reopen else {
                        return Some(SourceEvent::End);
                    };
                    let _ = self.pipeline.set_state(gst::State::Null);
                    self.timeline.new_instance();
                    match reopen(&self.tx, &self.timeline) {
                        Ok(pipeline) => {
                            self.pipeline = pipeline;
                            if let Err(e) = set_state(&self.pipeline, gst::State::Playing) {
                                return Some(SourceEvent::Error(e));
                            }
                        }
                        Err(e) => return Some(SourceEvent::Error(e)),
                    }
                }
                _ => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn times(pts_ms: Option<u64>, dur_us: u64) -> BufferTimes {
        BufferTimes {
            pts_rt_ns: pts_ms.map(|m| m * 1_000_000),
            dts_rt_ns: None,
            duration_us: dur_us,
        }
    }

    #[test]
    fn loop_instances_continue_timestamps() {
        let t = Timeline::default();
        // First instance, base time 10 s.
        let a = t.stamp(VIDEO_TRACK, times(Some(0), 33_333), 10_000_000_000, None);
        assert_eq!((a.pts, a.dts), (0, 0));
        let b = t.stamp(VIDEO_TRACK, times(Some(966), 33_333), 10_000_000_000, None);
        assert_eq!(b.pts, 966_000);
        t.stamp(AUDIO_TRACK, times(Some(980), 20_000), 10_000_000_000, None);
        // Second instance started "early" (base time only 0.5 s later): end of data wins.
        t.new_instance();
        let c = t.stamp(VIDEO_TRACK, times(Some(0), 33_333), 10_500_000_000, None);
        assert_eq!(c.pts, 1_000_000);
        // Third instance started late: wall-clock distance wins.
        t.new_instance();
        let d = t.stamp(AUDIO_TRACK, times(Some(0), 20_000), 15_000_000_000, None);
        assert_eq!(d.pts, 5_000_000);
    }

    #[test]
    fn timestamps_never_go_backwards() {
        let t = Timeline::default();
        let a = t.stamp(AUDIO_TRACK, times(Some(100), 20_000), 0, None);
        let b = t.stamp(AUDIO_TRACK, times(Some(50), 20_000), 0, None);
        assert!(b.pts > a.pts && b.dts >= a.dts);
        let c = t.stamp(AUDIO_TRACK, times(None, 20_000), 0, None);
        assert!(c.pts > b.pts);
    }
}
