//! `treecast publish`: the origin.

use std::future::Future;
use std::time::{Duration, Instant};

#[cfg(feature = "media")]
use anyhow::Context;
use anyhow::{Result, bail};
use treecast_relay::node::Node;
#[cfg(feature = "media")]
use treecast_relay::node::Publisher;
#[cfg(feature = "media")]
use treecast_relay::proto::media::Codec;
use treecast_relay::proto::media::{Catalog, Packager, VIDEO_TRACK};
use treecast_relay::proto::synthetic::SyntheticSpec;
use treecast_relay::proto::text;

use crate::cli::{EncodeArgs, PublishArgs};
use crate::messages::MessageInput;
use crate::node_setup::{self, Role};
use crate::status::{self, StatusLine, fmt_bytes_rate};
use crate::trust_cmd;

/// What the origin broadcasts.
#[derive(Debug, Clone)]
pub enum Source {
    Synthetic(SyntheticSpec),
    #[cfg(feature = "media")]
    Media(treecast_player::SourceSpec),
}

/// Parses `--source` (`device` captures the default camera and microphone; see
/// [`devices`] to choose others).
pub fn parse_source(s: &str, looping: bool) -> Result<Source> {
    if s == "synthetic" || s.starts_with("synthetic:") {
        let spec = s.strip_prefix("synthetic").unwrap_or("");
        let spec = spec.strip_prefix(':').unwrap_or(spec);
        return Ok(Source::Synthetic(spec.parse()?));
    }
    #[cfg(feature = "media")]
    {
        use treecast_player::SourceSpec;
        if s == "test" {
            return Ok(Source::Media(SourceSpec::Test));
        }
        if let Some(p) = s.strip_prefix("file:") {
            return Ok(Source::Media(SourceSpec::File {
                path: p.into(),
                looping,
            }));
        }
        if let Some(p) = s.strip_prefix("wav:") {
            return Ok(Source::Media(SourceSpec::Wav {
                path: p.into(),
                looping,
            }));
        }
        if s.starts_with("srt://") {
            treecast_player::source::srt_uri(s)?;
            return Ok(Source::Media(SourceSpec::Srt { uri: s.into() }));
        }
        if s == "device" {
            return Ok(Source::Media(SourceSpec::Device(Default::default())));
        }
    }
    #[cfg(not(feature = "media"))]
    {
        let _ = looping;
        if s == "test"
            || s == "device"
            || s.starts_with("file:")
            || s.starts_with("wav:")
            || s.starts_with("srt://")
        {
            bail!(
                "source {s:?} needs media support, and this is a relay-only build (without the `media` feature): only synthetic sources are available"
            );
        }
    }
    bail!(
        "unknown source {s:?}: use test, file:PATH, wav:PATH, srt://:PORT, srt://HOST:PORT, device or synthetic[:fps=N,size=BYTES,group=FRAMES]"
    )
}

/// The capture devices chosen by `--video-device` / `--audio-device` (`none`: leave out).
#[cfg(feature = "media")]
pub fn devices(video: &str, audio: Option<&str>) -> treecast_player::source::Devices {
    let pick = |v: &str| (v != "none").then(|| v.to_string());
    treecast_player::source::Devices {
        video: pick(video),
        audio: match audio {
            Some(a) => pick(a),
            None => Some(String::new()),
        },
    }
}

#[cfg(feature = "media")]
pub fn encode_settings(e: &EncodeArgs) -> Result<treecast_player::EncodeSettings> {
    if e.width == 0 || e.height == 0 || e.fps == 0 || e.video_kbps == 0 || e.audio_kbps == 0 {
        bail!("width, height, fps and bitrates must be above zero");
    }
    if ![2.5f32, 5.0, 10.0, 20.0, 40.0, 60.0].contains(&e.opus_frame_ms) {
        bail!("--opus-frame-ms must be one of 2.5, 5, 10, 20, 40, 60");
    }
    if e.keyframe_interval < Duration::from_millis(100) {
        bail!("--keyframe-interval must be at least 100ms");
    }
    Ok(treecast_player::EncodeSettings {
        width: e.width,
        height: e.height,
        fps: e.fps,
        video_kbps: e.video_kbps,
        audio_kbps: e.audio_kbps,
        keyframe_interval: e.keyframe_interval,
        opus_frame_ms: e.opus_frame_ms,
    })
}

pub async fn run(args: PublishArgs) -> Result<()> {
    #[allow(unused_mut)]
    let mut source = parse_source(&args.source, args.looping)?;
    #[cfg(feature = "media")]
    if let Source::Media(treecast_player::SourceSpec::Device(d)) = &mut source {
        *d = devices(&args.video_device, args.audio_device.as_deref());
    }
    let messages = match &args.messages {
        Some(p) => MessageInput::open(p).await?,
        None => MessageInput::none(),
    };
    let with_messages = args.messages.is_some();
    let mut cfg = node_setup::config(&args.node, Role::Origin, None, vec![])?;
    cfg.trust = trust_cmd::origin_trust(
        &args.trust,
        &args.name,
        &node_setup::data_dir(&args.node),
        args.node.ephemeral,
    )?;
    let stream = cfg.trust.stream.clone();
    let private = cfg.trust.private;
    let node = node_setup::start(cfg).await?;
    let addr = node_setup::public_addr(&node, &args.node);
    let pin = stream.map(|s| format!(" --stream {s}")).unwrap_or_default();
    println!("treecast origin {addr}");
    if private {
        println!(
            "  private:     joining needs a token: treecast token --name {} --for WHO",
            args.name
        );
        println!("  watch with:  treecast watch {addr}{pin} --token TOKEN");
        println!("  relay with:  treecast relay --join {addr}{pin} --token TOKEN");
    } else {
        println!("  watch with:  treecast watch {addr}{pin}");
        println!("  relay with:  treecast relay --join {addr}{pin}");
    }
    let _web = crate::observe::serve(&node, &args.node, Role::Origin).await?;
    let stop = async {
        tokio::select! {
            _ = status::shutdown_signal() => {}
            _ = status::maybe_sleep(args.duration) => {}
        }
    };
    let input = Input {
        encode: &args.encode,
        name: &args.name,
        messages,
        with_messages,
    };
    let r = broadcast(&node, &source, input, stop, true).await;
    node.shutdown().await;
    r
}

/// What goes with the source into a broadcast.
pub struct Input<'a> {
    pub encode: &'a EncodeArgs,
    /// The broadcast's name.
    pub name: &'a str,
    /// Text messages to broadcast.
    pub messages: MessageInput,
    /// List the message track in the catalog.
    pub with_messages: bool,
}

impl Input<'_> {
    /// The encode settings and name, without messages.
    pub fn media<'a>(encode: &'a EncodeArgs, name: &'a str) -> Input<'a> {
        Input {
            encode,
            name,
            messages: MessageInput::none(),
            with_messages: false,
        }
    }
}

/// Reads `source` and publishes it on `node` until `stop` resolves or the source ends.
pub async fn broadcast(
    node: &Node,
    source: &Source,
    input: Input<'_>,
    stop: impl Future<Output = ()>,
    show_status: bool,
) -> Result<()> {
    let Input {
        encode,
        name,
        mut messages,
        with_messages,
    } = input;
    let add_text = |mut c: Catalog| {
        if with_messages {
            c.tracks.push(text::track_info());
        }
        c
    };
    let status = StatusLine::new(show_status);
    let started = Instant::now();
    let mut sent = Counts::default();
    let mut tick = tokio::time::interval(status::STATUS_INTERVAL);
    tokio::pin!(stop);
    // Running time of the latest media frame, for the messages' timestamps.
    let mut last_pts = 0u64;
    match source {
        Source::Synthetic(spec) => {
            let _ = encode;
            let publisher = node.publish(add_text(spec.catalog(name)));
            let mut packager = Packager::new(Some(VIDEO_TRACK), 1_000_000);
            let mut pace = tokio::time::interval(Duration::from_micros(spec.interval_us()));
            pace.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
            let mut index = 0u64;
            loop {
                tokio::select! {
                    _ = pace.tick() => {
                        if let Some(f) = packager.pack(spec.unit(index, now_us())) {
                            sent.add(f.payload.len());
                            last_pts = f.pts;
                            publisher.send(f);
                        }
                        index += 1;
                    }
                    line = messages.next() => {
                        publisher.send(messages.frame(&line, last_pts));
                    }
                    _ = tick.tick() => status.show(&origin_status(node, &sent, started)),
                    _ = &mut stop => break,
                }
            }
        }
        #[cfg(feature = "media")]
        Source::Media(spec) => {
            let settings = encode_settings(encode)?;
            treecast_player::init().context("initialising GStreamer")?;
            let Some(mut src) = start_source(spec, &settings, &mut stop).await? else {
                status.finish();
                return Ok(());
            };
            let mut catalog = add_text(src.catalog().clone());
            catalog.name = name.to_string();
            if show_status {
                println!("  live:        {}", describe(&catalog));
            }
            let has_video = catalog
                .tracks
                .iter()
                .any(|t| matches!(t.codec, Codec::H264 { .. }));
            let publisher: Publisher = node.publish(catalog);
            let mut packager = Packager::new(
                has_video.then_some(VIDEO_TRACK),
                settings.keyframe_interval.as_micros() as u64,
            );
            loop {
                tokio::select! {
                    u = src.next() => match u {
                        Some(Ok(u)) => {
                            if let Some(f) = packager.pack(u) {
                                sent.add(f.payload.len());
                                last_pts = last_pts.max(f.pts);
                                publisher.send(f);
                            }
                        }
                        Some(Err(e)) => {
                            status.finish();
                            return Err(e).context("media source failed");
                        }
                        None => {
                            status.finish();
                            eprintln!("source ended");
                            break;
                        }
                    },
                    line = messages.next() => {
                        publisher.send(messages.frame(&line, last_pts));
                    }
                    _ = tick.tick() => status.show(&origin_status(node, &sent, started)),
                    _ = &mut stop => break,
                }
            }
            src.stop();
        }
    }
    status.finish();
    Ok(())
}

/// Starts a media source on its own thread (an SRT listener waits there for the
/// broadcaster); `None` if `stop` came first.
#[cfg(feature = "media")]
async fn start_source(
    spec: &treecast_player::SourceSpec,
    settings: &treecast_player::EncodeSettings,
    stop: &mut std::pin::Pin<&mut impl Future<Output = ()>>,
) -> Result<Option<treecast_player::MediaSource>> {
    if let treecast_player::SourceSpec::Srt { uri } = spec {
        eprintln!(
            "waiting for an SRT stream (MPEG-TS, H.264 without B-frames) on {}",
            treecast_player::source::srt_uri(uri)?
        );
    }
    let (tx, rx) = tokio::sync::oneshot::channel();
    let (spec, settings) = (spec.clone(), settings.clone());
    // A plain thread, not the blocking pool: if we stop first, the runtime must not wait
    // for a listener that may never be called.
    std::thread::Builder::new()
        .name("treecast-source-start".into())
        .spawn(move || {
            let _ = tx.send(treecast_player::MediaSource::start(&spec, &settings));
        })
        .context("cannot start the source thread")?;
    tokio::select! {
        r = rx => {
            let src = r
                .context("the source thread failed")?
                .context("cannot start the media source")?;
            Ok(Some(src))
        }
        _ = stop.as_mut() => Ok(None),
    }
}

/// One line naming a catalog's tracks, e.g. `video H.264 1280x720 30 fps, audio Opus 2 ch`.
pub fn describe(catalog: &Catalog) -> String {
    use treecast_relay::proto::media::Codec;
    let tracks: Vec<String> = catalog
        .tracks
        .iter()
        .map(|t| match &t.codec {
            Codec::H264 {
                width,
                height,
                fps_num,
                fps_den,
            } => {
                let fps = f64::from(*fps_num) / f64::from((*fps_den).max(1));
                format!("{} H.264 {width}x{height} {fps:.0} fps", t.name)
            }
            Codec::Opus { channels, .. } => format!("{} Opus {channels} ch", t.name),
            Codec::Text => format!("{} text", t.name),
            Codec::Opaque => format!("{} opaque", t.name),
        })
        .collect();
    tracks.join(", ")
}

#[derive(Default)]
struct Counts {
    frames: u64,
    bytes: u64,
}

impl Counts {
    fn add(&mut self, n: usize) {
        self.frames += 1;
        self.bytes += n as u64;
    }
}

fn origin_status(node: &Node, sent: &Counts, started: Instant) -> String {
    let s = node.stats();
    let secs = started.elapsed().as_secs_f64().max(0.001);
    format!(
        "origin | children {} | sent {} frames | {} | upload {} | dropped for slow children {} | up {:.0}s",
        s.children,
        sent.frames,
        fmt_bytes_rate(sent.bytes as f64 * 8.0 / secs),
        fmt_bytes_rate(s.bytes_forwarded as f64 * 8.0 / secs),
        s.child_dropped_frames,
        secs
    )
}

pub fn now_us() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sources_parse() {
        assert!(matches!(
            parse_source("synthetic", false),
            Ok(Source::Synthetic(_))
        ));
        assert!(matches!(
            parse_source("synthetic:fps=60,size=100,group=30", false),
            Ok(Source::Synthetic(SyntheticSpec {
                fps: 60,
                frame_size: 100,
                group_len: 30
            }))
        ));
        assert!(parse_source("synthetic:fps=0", false).is_err());
        let e = parse_source("rtmp://x", false).unwrap_err().to_string();
        assert!(e.contains("unknown source"), "{e}");
        #[cfg(feature = "media")]
        {
            use treecast_player::SourceSpec;
            assert!(matches!(
                parse_source("srt://:9000", false),
                Ok(Source::Media(SourceSpec::Srt { .. }))
            ));
            assert!(parse_source("srt://:0", false).is_err());
            assert!(matches!(
                parse_source("device", false),
                Ok(Source::Media(SourceSpec::Device(_)))
            ));
            let d = devices("none", Some("mic1"));
            assert_eq!((d.video, d.audio.as_deref()), (None, Some("mic1")));
            let d = devices("/dev/video2", None);
            assert_eq!(
                (d.video.as_deref(), d.audio.as_deref()),
                (Some("/dev/video2"), Some(""))
            );
        }
        #[cfg(not(feature = "media"))]
        {
            let e = parse_source("srt://:9000", false).unwrap_err().to_string();
            assert!(e.contains("relay-only build"), "{e}");
        }
    }
}
