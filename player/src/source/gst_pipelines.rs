//! The encoding pipelines of the GStreamer sources.
//!
//! Test (live, one pipeline so audio and video share one clock):
//!
//! ```text
//! videotestsrc is-live pattern=ball ! raw caps ! clockoverlay ! timeoverlay ! textoverlay
//!   ! videoconvert ! queue ! I420 ! x264enc ! profile caps ! h264parse ! AU caps ! appsink
//! audiotestsrc is-live ! audioconvert ! audioresample ! 48 kHz stereo ! opusenc ! appsink
//! ```
//!
//! File (paced in real time by `sync=true` appsinks): `filesrc ! decodebin`, and for each of
//! the first raw video / raw audio pads a branch `queue ! convert/scale/rate ! encoder ...
//! ! appsink` added on `pad-added`. Other pads go to a `fakesink`. The pipeline is prerolled
//! (PAUSED) until decodebin's `no-more-pads`, so the catalog lists exactly the file's tracks.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use gstreamer as gst;
use gstreamer::prelude::*;
use gstreamer_app as gst_app;
use tokio::sync::mpsc;
use tracing::{debug, warn};
use treecast_relay::proto::media::{AUDIO_TRACK, TrackId, VIDEO_TRACK};

use super::gst_source::{SinkContext, Timeline, attach_appsink, bus_error, set_state};
use super::{EncodeSettings, SourceEvent};
use crate::MediaError;

/// Factories the test source needs.
pub(crate) const TEST_ELEMENTS: &[&str] = &[
    "videotestsrc",
    "audiotestsrc",
    "clockoverlay",
    "timeoverlay",
    "textoverlay",
    "videoconvert",
    "queue",
    "capsfilter",
    "x264enc",
    "h264parse",
    "audioconvert",
    "audioresample",
    "opusenc",
    "appsink",
];

/// Factories the file source needs.
pub(crate) const FILE_ELEMENTS: &[&str] = &[
    "filesrc",
    "decodebin",
    "queue",
    "capsfilter",
    "videoconvert",
    "videoscale",
    "videorate",
    "x264enc",
    "h264parse",
    "audioconvert",
    "audioresample",
    "opusenc",
    "appsink",
    "fakesink",
];

/// How long opening a file may take (typefinding, demuxer and decoder setup).
const OPEN_TIMEOUT: Duration = Duration::from_secs(15);
/// Structure name of the application message posted on `no-more-pads`.
const NO_MORE_PADS: &str = "treecast-no-more-pads";

/// `x264enc ! ... ! appsink name=vsink` (input must be I420): H.264 Annex-B, one AU per buffer, SPS/PPS
/// before every IDR, fixed GOP (no scene-cut keyframes), no B-frames.
pub(crate) fn video_encode_desc(s: &EncodeSettings, sync: bool) -> String {
    format!(
        "x264enc tune=zerolatency speed-preset=ultrafast bframes=0 \
         key-int-max={ki} bitrate={kbps} option-string=scenecut=0 \
         ! video/x-h264,profile=constrained-baseline ! h264parse config-interval=-1 \
         ! video/x-h264,stream-format=byte-stream,alignment=au \
         ! appsink name=vsink sync={sync} async=false",
        ki = s.key_int_max(),
        kbps = s.video_kbps,
    )
}

/// `audioconvert ! ... ! opusenc ! appsink name=asink`: 48 kHz stereo Opus.
pub(crate) fn audio_encode_desc(s: &EncodeSettings, sync: bool, frame_nick: &str) -> String {
    format!(
        "audioconvert ! audioresample ! audio/x-raw,rate=48000,channels=2 \
         ! opusenc bitrate={bps} frame-size={frame_nick} \
         ! appsink name=asink sync={sync} async=false",
        bps = u64::from(s.audio_kbps) * 1000,
    )
}

pub(crate) fn frame_nick(s: &EncodeSettings) -> Result<&'static str, MediaError> {
    s.opus_nick().ok_or_else(|| {
        MediaError::InvalidSettings(format!("Opus frame size {} ms", s.opus_frame_ms))
    })
}

pub(crate) fn parse_error(what: &str, e: gst::glib::Error) -> MediaError {
    MediaError::pipeline(what, format!("cannot build pipeline: {e}"))
}

pub(crate) fn appsink(bin: &gst::Bin, name: &str) -> Result<gst_app::AppSink, MediaError> {
    bin.by_name(name)
        .and_then(|e| e.downcast::<gst_app::AppSink>().ok())
        .ok_or_else(|| MediaError::pipeline(name, "appsink not found in pipeline"))
}

pub(crate) fn sink_context(
    tx: &mpsc::Sender<SourceEvent>,
    timeline: &Arc<Timeline>,
    track: TrackId,
    default_duration_us: u64,
) -> SinkContext {
    SinkContext {
        tx: tx.clone(),
        timeline: timeline.clone(),
        track,
        default_duration_us,
        check: None,
    }
}

/// Builds (not starts) the live test pipeline.
pub(crate) fn build_test(
    s: &EncodeSettings,
    tx: &mpsc::Sender<SourceEvent>,
    timeline: &Arc<Timeline>,
) -> Result<gst::Pipeline, MediaError> {
    let desc = format!(
        "videotestsrc is-live=true pattern=ball \
           ! video/x-raw,width={w},height={h},framerate={fps}/1,pixel-aspect-ratio=1/1 \
           ! clockoverlay halignment=left valignment=top shaded-background=true \
           ! timeoverlay halignment=right valignment=top shaded-background=true \
           ! textoverlay name=counter halignment=center valignment=bottom \
             shaded-background=true text=\"frame 0\" \
           ! videoconvert ! queue ! video/x-raw,format=I420 ! {video} \
         audiotestsrc is-live=true wave=sine freq=440 volume=0.2 ! {audio}",
        w = s.width,
        h = s.height,
        fps = s.fps,
        video = video_encode_desc(s, false),
        audio = audio_encode_desc(s, false, frame_nick(s)?),
    );
    let pipeline = gst::parse::launch(&desc)
        .map_err(|e| parse_error("test source", e))?
        .downcast::<gst::Pipeline>()
        .map_err(|_| MediaError::pipeline("test source", "not a pipeline"))?;
    let bin = pipeline.upcast_ref::<gst::Bin>();
    attach_appsink(
        &appsink(bin, "vsink")?,
        sink_context(tx, timeline, VIDEO_TRACK, s.video_frame_us()),
    );
    attach_appsink(
        &appsink(bin, "asink")?,
        sink_context(tx, timeline, AUDIO_TRACK, s.opus_frame_us()),
    );
    // Frame counter: set the overlay text from a probe just before each frame is drawn.
    if let Some(pad) = bin
        .by_name("counter")
        .and_then(|c| c.static_pad("video_sink"))
    {
        let counter = AtomicU64::new(0);
        pad.add_probe(gst::PadProbeType::BUFFER, move |pad, _info| {
            let n = counter.fetch_add(1, Ordering::Relaxed);
            if let Some(overlay) = pad.parent_element() {
                overlay.set_property("text", format!("frame {n}"));
            }
            gst::PadProbeReturn::Ok
        });
    }
    Ok(pipeline)
}

/// A file pipeline prerolled up to `no-more-pads`.
pub(crate) struct FilePipeline {
    pub pipeline: gst::Pipeline,
    pub has_video: bool,
    pub has_audio: bool,
}

#[derive(Default)]
struct Branches {
    video: bool,
    audio: bool,
}

/// Builds the file pipeline, sets it to PAUSED and waits (bounded) until decodebin has
/// exposed all its pads. On error the pipeline is shut down.
pub(crate) fn open_file(
    path: &Path,
    s: &EncodeSettings,
    tx: &mpsc::Sender<SourceEvent>,
    timeline: &Arc<Timeline>,
) -> Result<FilePipeline, MediaError> {
    let pipeline = gst::Pipeline::with_name("treecast-file-source");
    let result = build_file(&pipeline, path, s, tx, timeline).and_then(|branches| {
        set_state(&pipeline, gst::State::Paused)?;
        wait_no_more_pads(&pipeline, path)?;
        let b = branches.lock().unwrap_or_else(PoisonError::into_inner);
        if !b.video && !b.audio {
            return Err(MediaError::FileUnreadable {
                path: path.to_path_buf(),
                reason: "no audio or video stream GStreamer can decode".into(),
            });
        }
        Ok((b.video, b.audio))
    });
    match result {
        Ok((has_video, has_audio)) => Ok(FilePipeline {
            pipeline,
            has_video,
            has_audio,
        }),
        Err(e) => {
            let _ = pipeline.set_state(gst::State::Null);
            Err(e)
        }
    }
}

fn build_file(
    pipeline: &gst::Pipeline,
    path: &Path,
    s: &EncodeSettings,
    tx: &mpsc::Sender<SourceEvent>,
    timeline: &Arc<Timeline>,
) -> Result<Arc<Mutex<Branches>>, MediaError> {
    let location = path.to_str().ok_or_else(|| MediaError::FileUnreadable {
        path: path.to_path_buf(),
        reason: "path is not valid UTF-8".into(),
    })?;
    let filesrc = crate::elements::make("filesrc", "file")?;
    filesrc.set_property("location", location);
    let decodebin = crate::elements::make("decodebin", "decode")?;
    pipeline
        .add_many([&filesrc, &decodebin])
        .and_then(|_| filesrc.link(&decodebin))
        .map_err(|e| MediaError::pipeline("decodebin", e.to_string()))?;

    let video_desc = format!(
        "queue max-size-buffers=0 max-size-bytes=0 max-size-time=3000000000 \
         ! videoconvert ! videoscale ! videorate \
         ! video/x-raw,format=I420,width={w},height={h},framerate={fps}/1,pixel-aspect-ratio=1/1 \
         ! {enc}",
        w = s.width,
        h = s.height,
        fps = s.fps,
        enc = video_encode_desc(s, true),
    );
    let audio_desc = format!(
        "queue max-size-buffers=0 max-size-bytes=0 max-size-time=3000000000 ! {enc}",
        enc = audio_encode_desc(s, true, frame_nick(s)?),
    );
    let branches = Arc::new(Mutex::new(Branches::default()));
    let video_ctx = sink_context(tx, timeline, VIDEO_TRACK, s.video_frame_us());
    let audio_ctx = sink_context(tx, timeline, AUDIO_TRACK, s.opus_frame_us());
    let seen = branches.clone();
    let weak = pipeline.downgrade();
    decodebin.connect_pad_added(move |_dec, pad| {
        let Some(pipeline) = weak.upgrade() else {
            return;
        };
        let caps = pad.current_caps().unwrap_or_else(|| pad.query_caps(None));
        let media = caps
            .structure(0)
            .map(|st| st.name().to_string())
            .unwrap_or_default();
        let mut b = seen.lock().unwrap_or_else(PoisonError::into_inner);
        let branch = if media == "video/x-raw" && !b.video {
            b.video = true;
            Some((&video_desc, "vsink", &video_ctx))
        } else if media == "audio/x-raw" && !b.audio {
            b.audio = true;
            Some((&audio_desc, "asink", &audio_ctx))
        } else {
            None
        };
        drop(b);
        let linked = match branch {
            Some((desc, sink_name, ctx)) => add_branch(&pipeline, pad, desc, sink_name, ctx),
            None => {
                debug!(%media, "ignoring stream");
                add_branch(
                    &pipeline,
                    pad,
                    "fakesink sync=false async=false",
                    "",
                    &video_ctx,
                )
            }
        };
        if let Err(e) = linked {
            warn!("cannot link decoded {media} stream: {e}");
            let _ = pipeline.post_message(
                gst::message::Error::builder(gst::CoreError::Negotiation, &e.to_string())
                    .src(&pipeline)
                    .build(),
            );
        }
    });
    decodebin.connect_no_more_pads(|dec| {
        let _ = dec.post_message(
            gst::message::Application::builder(gst::Structure::new_empty(NO_MORE_PADS))
                .src(dec)
                .build(),
        );
    });
    Ok(branches)
}

/// Adds a branch bin described by `desc` to the running pipeline and links `pad` to it.
/// `sink_name` names the branch's appsink ("" for none).
pub(crate) fn add_branch(
    pipeline: &gst::Pipeline,
    pad: &gst::Pad,
    desc: &str,
    sink_name: &str,
    ctx: &SinkContext,
) -> Result<(), MediaError> {
    let bin = gst::parse::bin_from_description(desc, true).map_err(|e| parse_error("branch", e))?;
    if !sink_name.is_empty() {
        attach_appsink(&appsink(&bin, sink_name)?, ctx.clone());
    }
    let fail = |m: String| MediaError::pipeline(bin.name(), m);
    pipeline
        .add(&bin)
        .map_err(|e| fail(format!("cannot add branch: {e}")))?;
    let sink_pad = bin
        .static_pad("sink")
        .ok_or_else(|| fail("branch has no sink pad".into()))?;
    pad.link(&sink_pad)
        .map_err(|e| fail(format!("cannot link branch: {e:?}")))?;
    bin.sync_state_with_parent()
        .map_err(|e| fail(format!("cannot start branch: {e}")))?;
    Ok(())
}

/// Waits for the `no-more-pads` message (or an error / the end of the file) on the bus.
fn wait_no_more_pads(pipeline: &gst::Pipeline, path: &Path) -> Result<(), MediaError> {
    let bus = pipeline
        .bus()
        .ok_or_else(|| MediaError::pipeline(pipeline.name(), "pipeline has no bus"))?;
    let deadline = Instant::now() + OPEN_TIMEOUT;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(
                bus_error(pipeline).unwrap_or_else(|| MediaError::FileUnreadable {
                    path: path.to_path_buf(),
                    reason: format!("no decodable stream found within {OPEN_TIMEOUT:?}"),
                }),
            );
        }
        let timeout = gst::ClockTime::from_nseconds(left.as_nanos() as u64);
        let Some(msg) = bus.timed_pop_filtered(
            timeout,
            &[
                gst::MessageType::Error,
                gst::MessageType::Application,
                gst::MessageType::Eos,
            ],
        ) else {
            continue;
        };
        match msg.view() {
            gst::MessageView::Error(e) => return Err(MediaError::from_bus_error(e)),
            gst::MessageView::Eos(_) => {
                return Err(MediaError::FileUnreadable {
                    path: path.to_path_buf(),
                    reason: "the file ended before any stream was found".into(),
                });
            }
            gst::MessageView::Application(a)
                if a.structure().is_some_and(|s| s.name() == NO_MORE_PADS) =>
            {
                return Ok(());
            }
            _ => {}
        }
    }
}
