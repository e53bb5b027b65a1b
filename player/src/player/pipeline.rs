//! The playback pipeline:
//!
//! ```text
//! appsrc video (H.264 AU) ! tee ! queue ! h264parse ! avdec_h264 [! textoverlay] ! videoconvert ! video sink
//!                             └ queue ! h264parse ─────────────┐   (per mux: recording, output)
//! appsrc audio (Opus)     ! tee ! queue ! opusdec ! audioconvert ! audioresample ! audio sink
//!                             └ queue ! opusparse ! matroskamux ! filesink
//!                                                   mpegtsmux ! udpsink|srtsink (--output)
//! ```
//!
//! The `textoverlay` is there when the broadcast has a message track; [`super::Player::show_message`]
//! sets its text.
//!
//! Headless sinks are `fakesink`s (chosen explicitly: autovideosink probes for over a second
//! without a display). Windowed: `xvimagesink`, `ximagesink`, then `autovideosink`; audio
//! `autoaudiosink`, replaced by a `fakesink` (with a warning) when no sound device works.

use std::sync::Arc;
use std::time::{Duration, Instant};

use gstreamer as gst;
use gstreamer::prelude::*;
use gstreamer_app as gst_app;
use gstreamer_base as gst_base;
use gstreamer_base::prelude::*;
use tracing::{info, warn};

use super::Shared;
use super::output::Output;
use crate::MediaError;
use crate::elements::{self, make};
use crate::timing::unix_now_us;

/// Video track parameters from the catalog.
#[derive(Clone, Debug)]
pub(crate) struct VideoParams {
    pub width: u32,
    pub height: u32,
    pub fps_num: u32,
    pub fps_den: u32,
}

/// The built pipeline and its inputs.
pub(crate) struct Built {
    pub pipeline: gst::Pipeline,
    pub video: Option<gst_app::AppSrc>,
    pub audio: Option<gst_app::AppSrc>,
}

fn link_err(what: &str) -> impl Fn(gst::glib::BoolError) -> MediaError + '_ {
    move |e| MediaError::pipeline(what, format!("cannot link: {e}"))
}

fn link_chain(
    pipeline: &gst::Pipeline,
    chain: &[&gst::Element],
    what: &str,
) -> Result<(), MediaError> {
    pipeline
        .add_many(chain.iter().copied())
        .map_err(link_err(what))?;
    gst::Element::link_many(chain.iter().copied()).map_err(link_err(what))
}

/// A queue after a tee: deep enough for the playout buffer, all the re-buffering there
/// may be, plus a joining burst.
fn queue(name: &str, buffer: Duration) -> Result<gst::Element, MediaError> {
    let q = make("queue", name)?;
    let max_ns = (buffer + super::MAX_REBUFFERED + Duration::from_secs(5))
        .as_nanos()
        .min(u128::from(u64::MAX)) as u64;
    q.set_property("max-size-buffers", 0u32);
    q.set_property("max-size-bytes", 64u32 * 1024 * 1024);
    q.set_property("max-size-time", max_ns);
    Ok(q)
}

fn appsrc(name: &str, caps: gst::Caps) -> Result<gst_app::AppSrc, MediaError> {
    let src = make("appsrc", name)?
        .downcast::<gst_app::AppSrc>()
        .map_err(|_| MediaError::pipeline(name, "appsrc is not an AppSrc"))?;
    src.set_caps(Some(&caps));
    src.set_is_live(true);
    src.set_format(gst::Format::Time);
    src.set_property("block", false);
    // Buffers are pushed up to the playout delay (plus a joining burst) early; the bound
    // only matters if the pipeline stops consuming (e.g. a timestamp far in the future),
    // and then the oldest queued buffers are dropped instead of growing without limit.
    src.set_max_bytes(64 * 1024 * 1024);
    src.set_leaky_type(gst_app::AppLeakyType::Downstream);
    Ok(src)
}

/// Factories needed for this configuration (decoder checked separately).
pub(crate) fn required(
    video: bool,
    audio: bool,
    record: bool,
    output: Option<&Output>,
    overlay: bool,
) -> Vec<&'static str> {
    let mut v = vec!["appsrc", "tee", "queue", "fakesink"];
    if video {
        v.extend(["h264parse", "videoconvert"]);
        if overlay {
            v.push("textoverlay");
        }
    }
    if let Some(o) = output {
        v.extend(o.required());
        if audio {
            v.push("opusparse");
        }
    }
    if audio {
        v.extend(["opusdec", "audioconvert", "audioresample"]);
    }
    if record {
        v.extend(["matroskamux", "filesink"]);
        if audio {
            v.push("opusparse");
        }
    }
    v
}

pub(crate) fn build(
    video: Option<&VideoParams>,
    audio_channels: Option<u8>,
    overlay: bool,
    config: &super::PlayerConfig,
    shared: &Arc<Shared>,
) -> Result<Built, MediaError> {
    elements::require(&required(
        video.is_some(),
        audio_channels.is_some(),
        config.record.is_some(),
        config.output.as_ref(),
        overlay,
    ))?;
    let pipeline = gst::Pipeline::with_name("treecast-player");
    let rec = match &config.record {
        Some(path) => {
            let mux = make("matroskamux", "recmux")?;
            let sink = make("filesink", "recfile")?;
            let location = path.to_str().ok_or_else(|| {
                MediaError::InvalidSettings(format!("record path {} is not UTF-8", path.display()))
            })?;
            sink.set_property("location", location);
            sink.set_property("async", false);
            link_chain(&pipeline, &[&mux, &sink], "recording")?;
            Some(mux)
        }
        None => None,
    };
    let mut muxes: Vec<(&str, gst::Element)> = rec.into_iter().map(|m| ("rec", m)).collect();
    if let Some(o) = &config.output {
        muxes.push(("out", o.build(&pipeline)?));
    }
    let video_src = match video {
        Some(p) => Some(build_video(&pipeline, p, config, overlay, &muxes, shared)?),
        None => None,
    };
    let audio_src = match audio_channels {
        Some(ch) => Some(build_audio(&pipeline, ch, config, &muxes, shared)?),
        None => None,
    };
    Ok(Built {
        pipeline,
        video: video_src,
        audio: audio_src,
    })
}

fn video_caps(p: &VideoParams) -> gst::Caps {
    let mut b = gst::Caps::builder("video/x-h264")
        .field("stream-format", "byte-stream")
        .field("alignment", "au");
    if p.width > 0 && p.height > 0 {
        b = b
            .field("width", i32::try_from(p.width).unwrap_or(i32::MAX))
            .field("height", i32::try_from(p.height).unwrap_or(i32::MAX));
    }
    if p.fps_num > 0 && p.fps_den > 0 {
        let n = i32::try_from(p.fps_num).unwrap_or(i32::MAX);
        let d = i32::try_from(p.fps_den).unwrap_or(i32::MAX);
        b = b.field("framerate", gst::Fraction::new(n, d));
    }
    b.build()
}

fn decoder() -> Result<gst::Element, MediaError> {
    if elements::available("avdec_h264") {
        let dec = make("avdec_h264", "vdec")?;
        // Slice threading: no added frame latency.
        if dec.find_property("thread-type").is_some() {
            dec.set_property_from_str("thread-type", "slice");
        }
        Ok(dec)
    } else if elements::available("openh264dec") {
        warn!("avdec_h264 missing (gstreamer1.0-libav); using openh264dec");
        make("openh264dec", "vdec")
    } else {
        Err(elements::missing("avdec_h264"))
    }
}

fn build_video(
    pipeline: &gst::Pipeline,
    p: &VideoParams,
    config: &super::PlayerConfig,
    overlay: bool,
    muxes: &[(&str, gst::Element)],
    shared: &Arc<Shared>,
) -> Result<gst_app::AppSrc, MediaError> {
    let src = appsrc("video", video_caps(p))?;
    let tee = make("tee", "vtee")?;
    let q = queue("vqueue", config.buffer)?;
    let parse = make("h264parse", "vparse")?;
    let dec = decoder()?;
    let convert = make("videoconvert", "vconvert")?;
    let sink = video_sink(config.headless)?;
    let text = if overlay {
        let t = make("textoverlay", "overlay")?;
        t.set_property_from_str("valignment", "bottom");
        t.set_property_from_str("halignment", "center");
        t.set_property("shaded-background", true);
        t.set_property("wait-text", false);
        Some(t)
    } else {
        None
    };
    let mut chain: Vec<&gst::Element> = vec![src.upcast_ref(), &tee, &q, &parse, &dec];
    chain.extend(text.as_ref());
    chain.extend([&convert, &sink]);
    link_chain(pipeline, &chain, "video")?;
    for (tag, mux) in muxes {
        let rq = queue(&format!("v{tag}queue"), config.buffer)?;
        let rparse = make("h264parse", &format!("v{tag}parse"))?;
        link_chain(pipeline, &[&rq, &rparse], "video to a muxer")?;
        tee.link(&rq).map_err(link_err("video to a muxer"))?;
        rparse.link(mux).map_err(link_err("video to a muxer"))?;
    }
    count_renders(&sink, config.headless, shared);
    Ok(src)
}

fn build_audio(
    pipeline: &gst::Pipeline,
    channels: u8,
    config: &super::PlayerConfig,
    muxes: &[(&str, gst::Element)],
    shared: &Arc<Shared>,
) -> Result<gst_app::AppSrc, MediaError> {
    let caps = gst::Caps::builder("audio/x-opus")
        .field("rate", 48_000i32)
        .field("channels", i32::from(channels))
        .field("channel-mapping-family", 0i32)
        .build();
    let src = appsrc("audio", caps)?;
    let tee = make("tee", "atee")?;
    let q = queue("aqueue", config.buffer)?;
    let dec = make("opusdec", "adec")?;
    // Holes the player leaves in the timeline while it plays slower are concealed.
    dec.set_property("plc", true);
    let convert = make("audioconvert", "aconvert")?;
    let resample = make("audioresample", "aresample")?;
    let sink = audio_sink(config.headless)?;
    link_chain(
        pipeline,
        &[src.upcast_ref(), &tee, &q, &dec, &convert, &resample, &sink],
        "audio",
    )?;
    for (tag, mux) in muxes {
        let rq = queue(&format!("a{tag}queue"), config.buffer)?;
        let rparse = make("opusparse", &format!("a{tag}parse"))?;
        link_chain(pipeline, &[&rq, &rparse], "audio to a muxer")?;
        tee.link(&rq).map_err(link_err("audio to a muxer"))?;
        rparse.link(mux).map_err(link_err("audio to a muxer"))?;
    }
    if let Some(pad) = dec.static_pad("src") {
        let shared = shared.clone();
        pad.add_probe(gst::PadProbeType::BUFFER, move |_, _| {
            shared.metrics().on_audio_decoded();
            gst::PadProbeReturn::Ok
        });
    }
    Ok(src)
}

/// True if `element` can reach READY on its own (opens the display / sound device).
fn usable(element: &gst::Element) -> bool {
    let ok = element.set_state(gst::State::Ready).is_ok();
    let _ = element.set_state(gst::State::Null);
    ok
}

/// For autodetect bins: the factory of the sink they picked (after READY).
fn autodetect_choice(bin: &gst::Element) -> Option<String> {
    let bin = bin.downcast_ref::<gst::Bin>()?;
    let child = bin.children().into_iter().next()?;
    Some(child.factory()?.name().to_string())
}

fn fakesink(name: &str, video: bool) -> Result<gst::Element, MediaError> {
    let sink = make("fakesink", name)?;
    sink.set_property("sync", true);
    if video {
        sink.set_property("qos", false);
        sink.set_property("max-lateness", -1i64);
        sink.set_property("signal-handoffs", true);
    }
    Ok(sink)
}

fn video_sink(headless: bool) -> Result<gst::Element, MediaError> {
    if headless {
        return fakesink("videosink", true);
    }
    for factory in ["xvimagesink", "ximagesink"] {
        if elements::available(factory) {
            let sink = make(factory, "videosink")?;
            if usable(&sink) {
                info!("video sink: {factory}");
                return Ok(sink);
            }
        }
    }
    if elements::available("autovideosink") {
        let sink = make("autovideosink", "videosink")?;
        let ok = sink.set_state(gst::State::Ready).is_ok();
        let choice = autodetect_choice(&sink);
        let _ = sink.set_state(gst::State::Null);
        if ok && choice.as_deref().is_some_and(|c| c != "fakesink") {
            info!("video sink: autovideosink ({})", choice.unwrap_or_default());
            return Ok(sink);
        }
    }
    Err(MediaError::pipeline(
        "videosink",
        "no usable video sink (is DISPLAY set?); run headless instead",
    ))
}

fn audio_sink(headless: bool) -> Result<gst::Element, MediaError> {
    if !headless && elements::available("autoaudiosink") {
        let sink = make("autoaudiosink", "audiosink")?;
        let ok = sink.set_state(gst::State::Ready).is_ok();
        let choice = autodetect_choice(&sink);
        let _ = sink.set_state(gst::State::Null);
        if ok && choice.as_deref().is_some_and(|c| c != "fakesink") {
            info!("audio sink: autoaudiosink ({})", choice.unwrap_or_default());
            return Ok(sink);
        }
        warn!("no usable sound device; audio is decoded but not played");
    }
    fakesink("audiosink", false)
}

/// Counts rendered video frames and how late they reach the sink. Headless: fakesink's
/// `handoff`, emitted when the frame is rendered (after clock sync). Windowed: a probe on
/// the sink pad, which sees the frame before the sink waits for its time, so the render
/// instant is estimated as now + how far the frame's running time is ahead of the clock
/// (a frame more than [`super::LATE_FRAME`] behind it, the sink drops).
fn count_renders(sink: &gst::Element, headless: bool, shared: &Arc<Shared>) {
    let shared = shared.clone();
    if headless {
        sink.connect("handoff", false, move |args| {
            let pts = args
                .get(1)
                .and_then(|v| v.get::<gst::Buffer>().ok())
                .and_then(|b| b.pts())
                .map(|p| p.nseconds());
            let sink = args.first().and_then(|v| v.get::<gst::Element>().ok());
            let (_, late_ns) = playout_distance(sink.as_ref(), pts);
            shared.metrics().on_video_render(
                Instant::now(),
                unix_now_us(),
                pts,
                Duration::from_nanos(late_ns),
            );
            None
        });
        return;
    }
    let Some(pad) = sink.static_pad("sink") else {
        warn!("video sink has no sink pad; renders are not counted");
        return;
    };
    let weak_sink = sink.downgrade();
    pad.add_probe(gst::PadProbeType::BUFFER, move |_, info| {
        let pts = info.buffer().and_then(|b| b.pts()).map(|p| p.nseconds());
        let (ahead_ns, late_ns) = playout_distance(weak_sink.upgrade().as_ref(), pts);
        let ahead = Duration::from_nanos(ahead_ns);
        let unix = unix_now_us().saturating_add(ahead_ns / 1000);
        shared.metrics().on_video_render(
            Instant::now() + ahead,
            unix,
            pts,
            Duration::from_nanos(late_ns),
        );
        gst::PadProbeReturn::Ok
    });
}

/// The base sink doing the rendering: `sink` itself, or inside an autodetect bin.
fn base_sink(sink: &gst::Element) -> Option<gst_base::BaseSink> {
    if let Some(b) = sink.downcast_ref::<gst_base::BaseSink>() {
        return Some(b.clone());
    }
    let bin = sink.downcast_ref::<gst::Bin>()?;
    bin.iterate_sinks()
        .into_iter()
        .flatten()
        .find_map(|e| base_sink(&e))
}

/// How far (ns) a buffer with running time `pts` is ahead of, and behind, the instant
/// `sink` renders it: the sink waits for `pts` plus the pipeline's latency and its render
/// delay. `(0, 0)` when unknown.
fn playout_distance(sink: Option<&gst::Element>, pts: Option<u64>) -> (u64, u64) {
    let (Some(sink), Some(pts)) = (sink, pts) else {
        return (0, 0);
    };
    let Some(now) = sink.current_running_time().map(|t| t.nseconds()) else {
        return (0, 0);
    };
    let delay = base_sink(sink).map_or(0, |b| b.latency().nseconds() + b.render_delay().nseconds());
    let due = pts.saturating_add(delay);
    (due.saturating_sub(now), now.saturating_sub(due))
}
