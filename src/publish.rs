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
use treecast_relay::proto::media::{Packager, VIDEO_TRACK};
use treecast_relay::proto::synthetic::SyntheticSpec;

use crate::cli::{EncodeArgs, PublishArgs};
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

/// Parses `--source`.
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
    }
    #[cfg(not(feature = "media"))]
    {
        let _ = looping;
        if s == "test" || s.starts_with("file:") || s.starts_with("wav:") {
            bail!(
                "source {s:?} needs media support, and this is a relay-only build (without the `media` feature): only synthetic sources are available"
            );
        }
    }
    bail!(
        "unknown source {s:?}: use test, file:PATH, wav:PATH or synthetic[:fps=N,size=BYTES,group=FRAMES]"
    )
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
    let source = parse_source(&args.source, args.looping)?;
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
    let r = broadcast(&node, &source, &args.encode, &args.name, stop, true).await;
    node.shutdown().await;
    r
}

/// Reads `source` and publishes it on `node` until `stop` resolves or the source ends.
pub async fn broadcast(
    node: &Node,
    source: &Source,
    encode: &EncodeArgs,
    name: &str,
    stop: impl Future<Output = ()>,
    show_status: bool,
) -> Result<()> {
    let status = StatusLine::new(show_status);
    let started = Instant::now();
    let mut sent = Counts::default();
    let mut tick = tokio::time::interval(status::STATUS_INTERVAL);
    tokio::pin!(stop);
    match source {
        Source::Synthetic(spec) => {
            let _ = encode;
            let publisher = node.publish(spec.catalog(name));
            let mut packager = Packager::new(Some(VIDEO_TRACK), 1_000_000);
            let mut pace = tokio::time::interval(Duration::from_micros(spec.interval_us()));
            pace.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
            let mut index = 0u64;
            loop {
                tokio::select! {
                    _ = pace.tick() => {
                        if let Some(f) = packager.pack(spec.unit(index, now_us())) {
                            sent.add(f.payload.len());
                            publisher.send(f);
                        }
                        index += 1;
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
            let mut src = treecast_player::MediaSource::start(spec, &settings)
                .context("cannot start the media source")?;
            let mut catalog = src.catalog().clone();
            catalog.name = name.to_string();
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
    }
}
