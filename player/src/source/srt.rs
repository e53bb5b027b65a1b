//! SRT ingest: MPEG-TS pushed by OBS, vMix or ffmpeg.
//!
//! ```text
//! srtsrc uri=srt://:PORT?mode=listener ! tsdemux
//!   first H.264 pad: queue ! h264parse config-interval=-1 ! byte-stream,au ! appsink  (passthrough)
//!   first audio pad, Opus: queue ! appsink                                          (passthrough)
//!   first audio pad, other: queue ! decodebin, then audioconvert ! audioresample ! opusenc ! appsink
//!   other pads:      fakesink
//! ```
//!
//! Video is not re-encoded: keyframes are found in the bitstream (IDR NAL units) and the
//! stream is checked for B-frames (refused with the setting to change) and long keyframe
//! intervals (a warning). Mono or stereo Opus is passed through; audio in any other codec
//! GStreamer decodes (AAC, MP2, AC-3...) is encoded to 48 kHz stereo Opus with the
//! [`EncodeSettings`] bitrate and frame size.
//!
//! [`start`] blocks until the caller has connected and the stream's tracks are known (the
//! catalog lists exactly the tracks the stream has, with the picture size from the SPS).
//! When the broadcaster disconnects, the source waits for it to come back (OBS reconnects
//! by itself) and goes on with increasing timestamps; it never ends on its own.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use gstreamer as gst;
use gstreamer::prelude::*;
use tokio::sync::mpsc;
use tracing::{debug, info, warn};
use treecast_relay::proto::media::{AUDIO_TRACK, Catalog, Codec, TrackInfo, VIDEO_TRACK};

use super::gst_pipelines::{add_branch, audio_encode_desc, frame_nick, sink_context};
use super::gst_source::{GstSource, Reopen, SinkContext, Timeline, set_state};
use super::h264::StreamCheck;
use super::{EncodeSettings, SourceEvent};
use crate::MediaError;

/// Factories the SRT source needs.
pub(crate) const SRT_ELEMENTS: &[&str] = &[
    "srtsrc",
    "tsdemux",
    "queue",
    "h264parse",
    "capsfilter",
    "appsink",
    "decodebin",
    "audioconvert",
    "audioresample",
    "opusenc",
    "fakesink",
];

/// How long after the stream's tracks are known the picture size may take to appear.
const CAPS_TIMEOUT: Duration = Duration::from_secs(10);
/// Bus polling while waiting for the caller (no deadline: the broadcaster may start later).
const POLL: Duration = Duration::from_millis(200);
const NO_MORE_PADS: &str = "treecast-srt-no-more-pads";
const QUEUE: &str = "queue max-size-buffers=0 max-size-bytes=0 max-size-time=3000000000";

/// Normalises a user's `srt://HOST:PORT[?options]`: without a host it listens on PORT
/// (`mode=listener` added unless a mode is given); with a host it calls it.
pub fn srt_uri(input: &str) -> Result<String, MediaError> {
    let bad = |why: &str| {
        MediaError::InvalidSettings(format!(
            "SRT address {input:?}: {why} (use srt://:PORT to listen or srt://HOST:PORT to call)"
        ))
    };
    let rest = input
        .strip_prefix("srt://")
        .ok_or_else(|| bad("not an srt:// URI"))?;
    let (hostport, query) = rest.split_once('?').unwrap_or((rest, ""));
    let (host, port) = hostport.rsplit_once(':').ok_or_else(|| bad("no port"))?;
    match port.parse::<u16>() {
        Ok(p) if p > 0 => {}
        _ => return Err(bad("the port must be 1..=65535")),
    }
    let has_mode = query.split('&').any(|kv| kv.starts_with("mode="));
    let mut uri = format!("srt://{host}:{port}");
    let mut params: Vec<&str> = query.split('&').filter(|s| !s.is_empty()).collect();
    if host.is_empty() && !has_mode {
        params.push("mode=listener");
    }
    if !params.is_empty() {
        uri.push('?');
        uri.push_str(&params.join("&"));
    }
    Ok(uri)
}

/// Which branches exist, and the first problem found while linking pads.
#[derive(Default)]
struct Seen {
    video: bool,
    audio: bool,
    /// Channels of an Opus track passed through as is (`None`: transcoded to stereo).
    opus_channels: Option<u8>,
    problem: Option<MediaError>,
}

/// Starts listening/calling and waits until the stream's tracks are known.
pub(crate) fn start(
    uri: &str,
    settings: &EncodeSettings,
) -> Result<(GstSource, Catalog), MediaError> {
    crate::elements::require(SRT_ELEMENTS)?;
    let uri = srt_uri(uri)?;
    let (tx, rx) = mpsc::channel(super::gst_source::CHANNEL_CAPACITY);
    let timeline = Arc::new(Timeline::default());
    let pipeline = gst::Pipeline::with_name("treecast-srt-source");
    let check = Arc::new(Mutex::new(StreamCheck::default()));
    let result = build(&pipeline, &uri, settings, &tx, &timeline, &check).and_then(|seen| {
        set_state(&pipeline, gst::State::Playing)?;
        info!(%uri, "waiting for the SRT stream");
        wait_for_tracks(&pipeline, &seen).map_err(|e| {
            let s = seen.lock().unwrap_or_else(PoisonError::into_inner);
            s.problem.clone().unwrap_or(e)
        })?;
        let s = seen.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(p) = &s.problem {
            return Err(p.clone());
        }
        if !s.video && !s.audio {
            return Err(MediaError::UnsupportedStream(
                "the SRT stream has no H.264 video and no audio".into(),
            ));
        }
        let mut tracks = Vec::new();
        if s.video {
            tracks.push(video_track(&pipeline)?);
        }
        if s.audio {
            tracks.push(settings.audio_track(s.opus_channels.unwrap_or(2)));
        }
        Ok(tracks)
    });
    let tracks = match result {
        Ok(t) => t,
        Err(e) => {
            let _ = pipeline.set_state(gst::State::Null);
            return Err(explain(e, &check));
        }
    };
    let catalog = Catalog {
        name: "srt".into(),
        tracks,
        ..Default::default()
    };
    // When the broadcaster disconnects, listen (or call) again: the broadcast goes on when
    // it comes back, with timestamps continuing from where they were.
    let (again_uri, again_settings, again_check) = (uri.clone(), settings.clone(), check.clone());
    let reopen: Reopen = Box::new(move |tx, timeline| {
        warn!(uri = %again_uri, "the SRT broadcaster disconnected; waiting for it to come back");
        let pipeline = gst::Pipeline::with_name("treecast-srt-source");
        build(
            &pipeline,
            &again_uri,
            &again_settings,
            tx,
            timeline,
            &again_check,
        )?;
        Ok(pipeline)
    });
    let src = GstSource::spawn_live(pipeline, Some(reopen), tx, rx, timeline)
        .map_err(|e| explain(e, &check))?;
    Ok((src, catalog))
}

/// Channels of an Opus stream that can be passed through (mono or stereo, mapping
/// family 0); `None` for anything else (transcoded).
fn passthrough_opus(caps: &gst::StructureRef) -> Option<u8> {
    if caps.name() != "audio/x-opus" {
        return None;
    }
    let family = caps.get::<i32>("channel-mapping-family").unwrap_or(0);
    match caps.get::<i32>("channels") {
        Ok(ch @ 1..=2) if family == 0 => u8::try_from(ch).ok(),
        _ => None,
    }
}

/// The stream check's finding (e.g. B-frames) explains a failure better than the flow
/// error it caused.
fn explain(e: MediaError, check: &Mutex<StreamCheck>) -> MediaError {
    let fatal = check
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .fatal
        .clone();
    fatal.map_or(e, |f| MediaError::UnsupportedStream(f.message()))
}

fn build(
    pipeline: &gst::Pipeline,
    uri: &str,
    s: &EncodeSettings,
    tx: &mpsc::Sender<SourceEvent>,
    timeline: &Arc<Timeline>,
    check: &Arc<Mutex<StreamCheck>>,
) -> Result<Arc<Mutex<Seen>>, MediaError> {
    let src = crate::elements::make("srtsrc", "srt")?;
    src.set_property("uri", uri);
    let demux = crate::elements::make("tsdemux", "demux")?;
    pipeline
        .add_many([&src, &demux])
        .and_then(|_| src.link(&demux))
        .map_err(|e| MediaError::pipeline("tsdemux", e.to_string()))?;
    let video_desc = format!(
        "{QUEUE} ! h264parse config-interval=-1 \
         ! video/x-h264,stream-format=byte-stream,alignment=au \
         ! appsink name=vsink sync=false async=false"
    );
    let audio_desc = audio_encode_desc(s, false, frame_nick(s)?);
    let opus_desc = format!("{QUEUE} ! appsink name=asink sync=false async=false");
    let mut video_ctx = sink_context(tx, timeline, VIDEO_TRACK, s.video_frame_us());
    video_ctx.check = Some(check.clone());
    let audio_ctx = sink_context(tx, timeline, AUDIO_TRACK, s.opus_frame_us());
    let seen = Arc::new(Mutex::new(Seen::default()));
    let seen2 = seen.clone();
    let weak = pipeline.downgrade();
    demux.connect_pad_added(move |_demux, pad| {
        let Some(pipeline) = weak.upgrade() else {
            return;
        };
        let caps = pad.current_caps().unwrap_or_else(|| pad.query_caps(None));
        let media = caps
            .structure(0)
            .map(|st| st.name().to_string())
            .unwrap_or_default();
        let mut seen = seen2.lock().unwrap_or_else(PoisonError::into_inner);
        let opus = caps.structure(0).and_then(passthrough_opus);
        let branch = if let (Some(ch), false) = (opus, seen.audio) {
            seen.audio = true;
            seen.opus_channels = Some(ch);
            Some((&opus_desc, "opus", &audio_ctx))
        } else if media == "video/x-h264" && !seen.video {
            seen.video = true;
            Some((&video_desc, "vsink", &video_ctx))
        } else if media.starts_with("video/") && !seen.video {
            let e = MediaError::UnsupportedStream(format!(
                "the SRT stream's video is {media}; treecast carries H.264: set the encoder to \
                 H.264 (OBS: Settings > Output > Video Encoder x264; ffmpeg: -c:v libx264)"
            ));
            // Also on the bus: a reconnecting broadcaster's new stream fails the same way.
            let _ = pipeline.post_message(
                gst::message::Error::builder(gst::StreamError::CodecNotFound, &e.to_string())
                    .src(&pipeline)
                    .build(),
            );
            seen.problem.get_or_insert(e);
            None
        } else if media.starts_with("audio/") && !seen.audio {
            seen.audio = true;
            Some((&audio_desc, "asink", &audio_ctx))
        } else {
            None
        };
        drop(seen);
        let linked = match branch {
            Some((desc, "asink", ctx)) => decode_audio(&pipeline, pad, desc.clone(), ctx.clone()),
            Some((desc, "opus", ctx)) => add_branch(&pipeline, pad, desc, "asink", ctx),
            Some((desc, sink, ctx)) => add_branch(&pipeline, pad, desc, sink, ctx),
            None => {
                debug!(%media, "ignoring stream");
                add_branch(
                    &pipeline,
                    pad,
                    "fakesink sync=false async=false",
                    "",
                    &audio_ctx,
                )
            }
        };
        if let Err(e) = linked {
            warn!("cannot link the SRT stream's {media} pad: {e}");
            seen2
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .problem
                .get_or_insert(e);
        }
    });
    demux.connect_no_more_pads(|demux| {
        let _ = demux.post_message(
            gst::message::Application::builder(gst::Structure::new_empty(NO_MORE_PADS))
                .src(demux)
                .build(),
        );
    });
    Ok(seen)
}

/// Links the demuxer's audio `pad` to `queue ! decodebin`, and the decoded audio to the
/// Opus branch `desc` once decodebin exposes it.
fn decode_audio(
    pipeline: &gst::Pipeline,
    pad: &gst::Pad,
    desc: String,
    ctx: SinkContext,
) -> Result<(), MediaError> {
    let queue = gst::parse::bin_from_description(QUEUE, true)
        .map_err(|e| MediaError::pipeline("audio queue", e.to_string()))?;
    let decode = crate::elements::make("decodebin", "adecode")?;
    let fail = |m: String| MediaError::pipeline("adecode", m);
    pipeline
        .add_many([queue.upcast_ref::<gst::Element>(), &decode])
        .map_err(|e| fail(e.to_string()))?;
    queue.link(&decode).map_err(|e| fail(e.to_string()))?;
    let weak = pipeline.downgrade();
    decode.connect_pad_added(move |_dec, dpad| {
        let Some(pipeline) = weak.upgrade() else {
            return;
        };
        let raw = dpad
            .current_caps()
            .and_then(|c| c.structure(0).map(|s| s.name() == "audio/x-raw"))
            .unwrap_or(false);
        if !raw {
            return;
        }
        if let Err(e) = add_branch(&pipeline, dpad, &desc, "asink", &ctx) {
            let _ = pipeline.post_message(
                gst::message::Error::builder(gst::CoreError::Negotiation, &e.to_string())
                    .src(&pipeline)
                    .build(),
            );
        }
    });
    let sink = queue
        .static_pad("sink")
        .ok_or_else(|| fail("audio queue has no sink pad".into()))?;
    pad.link(&sink)
        .map_err(|e| fail(format!("cannot link the audio: {e:?}")))?;
    for e in [queue.upcast_ref::<gst::Element>(), &decode] {
        e.sync_state_with_parent()
            .map_err(|e| fail(format!("cannot start audio decoding: {e}")))?;
    }
    Ok(())
}

/// Waits (without deadline: the broadcaster may start later) for the demuxer's
/// `no-more-pads`, then (bounded) for the video's caps.
fn wait_for_tracks(pipeline: &gst::Pipeline, seen: &Arc<Mutex<Seen>>) -> Result<(), MediaError> {
    let bus = pipeline
        .bus()
        .ok_or_else(|| MediaError::pipeline(pipeline.name(), "pipeline has no bus"))?;
    let poll = gst::ClockTime::from_nseconds(POLL.as_nanos() as u64);
    loop {
        let Some(msg) = bus.timed_pop_filtered(
            poll,
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
                return Err(MediaError::UnsupportedStream(
                    "the SRT stream ended before its tracks were found (is it MPEG-TS?)".into(),
                ));
            }
            gst::MessageView::Application(a)
                if a.structure().is_some_and(|s| s.name() == NO_MORE_PADS) =>
            {
                break;
            }
            _ => {}
        }
    }
    if !seen.lock().unwrap_or_else(PoisonError::into_inner).video {
        return Ok(());
    }
    let deadline = Instant::now() + CAPS_TIMEOUT;
    while Instant::now() < deadline {
        if video_caps(pipeline).is_some() {
            return Ok(());
        }
        if let Some(p) = &seen.lock().unwrap_or_else(PoisonError::into_inner).problem {
            return Err(p.clone());
        }
        // Wait a little, waking at once on an error.
        if let Some(msg) = bus.timed_pop_filtered(
            gst::ClockTime::from_mseconds(50),
            &[gst::MessageType::Error],
        ) && let gst::MessageView::Error(e) = msg.view()
        {
            return Err(MediaError::from_bus_error(e));
        }
    }
    Err(MediaError::UnsupportedStream(format!(
        "no decodable H.264 picture within {CAPS_TIMEOUT:?} of the stream's start"
    )))
}

fn video_caps(pipeline: &gst::Pipeline) -> Option<gst::Caps> {
    pipeline
        .by_name("vsink")?
        .static_pad("sink")?
        .current_caps()
}

/// The video track with the picture size and frame rate the parser read from the SPS.
fn video_track(pipeline: &gst::Pipeline) -> Result<TrackInfo, MediaError> {
    let caps = video_caps(pipeline)
        .ok_or_else(|| MediaError::pipeline("vsink", "no caps on the video branch"))?;
    let st = caps
        .structure(0)
        .ok_or_else(|| MediaError::pipeline("vsink", "empty caps"))?;
    let dim = |f: &str| {
        st.get::<i32>(f)
            .ok()
            .and_then(|v| u32::try_from(v).ok())
            .unwrap_or(0)
    };
    let (fps_num, fps_den) = st
        .get::<gst::Fraction>("framerate")
        .ok()
        .and_then(|f| {
            Some((
                u32::try_from(f.numer()).ok()?,
                u32::try_from(f.denom()).ok()?,
            ))
        })
        .unwrap_or((0, 1));
    Ok(TrackInfo {
        id: VIDEO_TRACK,
        name: "video".into(),
        codec: Codec::H264 {
            width: dim("width"),
            height: dim("height"),
            fps_num,
            fps_den,
        },
        bitrate: 0,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_mono_or_stereo_family_0_opus_is_passed_through() {
        crate::init().unwrap();
        let opus = |ch: i32, family: i32| {
            gst::Structure::builder("audio/x-opus")
                .field("channels", ch)
                .field("channel-mapping-family", family)
                .build()
        };
        assert_eq!(passthrough_opus(&opus(2, 0)), Some(2));
        assert_eq!(passthrough_opus(&opus(1, 0)), Some(1));
        assert_eq!(passthrough_opus(&opus(6, 1)), None);
        assert_eq!(passthrough_opus(&opus(2, 1)), None);
        let aac = gst::Structure::builder("audio/mpeg")
            .field("mpegversion", 4i32)
            .build();
        assert_eq!(passthrough_opus(&aac), None);
    }

    #[test]
    fn uris_listen_without_a_host_and_call_with_one() {
        assert_eq!(srt_uri("srt://:9000").unwrap(), "srt://:9000?mode=listener");
        assert_eq!(
            srt_uri("srt://:9000?latency=200").unwrap(),
            "srt://:9000?latency=200&mode=listener"
        );
        assert_eq!(
            srt_uri("srt://example.org:9000").unwrap(),
            "srt://example.org:9000"
        );
        assert_eq!(
            srt_uri("srt://:9000?mode=caller").unwrap(),
            "srt://:9000?mode=caller"
        );
        for bad in ["srt://:0", "srt://host", "udp://:9000", "srt://:x"] {
            let e = srt_uri(bad).unwrap_err().to_string();
            assert!(e.contains("srt://:PORT"), "{bad}: {e}");
        }
    }
}
