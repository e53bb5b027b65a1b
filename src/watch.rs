//! `treecast watch`: join a stream, play it, and relay it to a few children.

use std::future::Future;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use treecast_relay::node::Node;

use crate::cli::WatchArgs;
#[cfg(feature = "media")]
use crate::messages::Messages;
use crate::node_setup::{self, Role};
use crate::status;
#[cfg(feature = "media")]
use crate::status::StatusLine;

/// How to play.
#[derive(Debug, Clone)]
#[cfg_attr(not(feature = "media"), allow(dead_code))]
pub struct PlayOptions {
    pub headless: bool,
    pub record: Option<PathBuf>,
    pub buffer: Duration,
    pub show_status: bool,
    /// Re-serve the stream as MPEG-TS here (`udp://HOST:PORT`, `srt://[HOST]:PORT`).
    pub output: Option<String>,
}

/// Whether a graphical display is available.
pub fn have_display() -> bool {
    ["DISPLAY", "WAYLAND_DISPLAY"]
        .iter()
        .any(|v| std::env::var_os(v).is_some_and(|x| !x.is_empty()))
}

pub async fn run(args: WatchArgs) -> Result<()> {
    if !args.headless && !have_display() {
        bail!(
            "no display found (DISPLAY/WAYLAND_DISPLAY unset): use --headless to decode without a window"
        );
    }
    // A bad --output is refused before joining, not after.
    #[cfg(feature = "media")]
    if let Some(o) = &args.output {
        o.parse::<treecast_player::player::Output>()
            .context("invalid --output")?;
    }
    let mut join = args.addrs.clone();
    join.extend(args.join.iter().cloned());
    if join.is_empty() && args.parent.is_none() {
        bail!(
            "give the address of the origin or of any node in the tree: treecast watch NODE_ID@HOST:PORT"
        );
    }
    let joined_at = Instant::now();
    let mut cfg = node_setup::config(&args.node, Role::Viewer, args.parent.clone(), join)?;
    cfg.trust = crate::trust_cmd::joiner_trust(&args.trust)?;
    let node = node_setup::start(cfg).await?;
    println!(
        "treecast viewer {}",
        node_setup::public_addr(&node, &args.node)
    );
    if let Some(p) = node.parent() {
        println!("  parent:      {p}");
    }
    let _web = crate::observe::serve(&node, &args.node, Role::Viewer).await?;
    let stop = async {
        tokio::select! {
            _ = status::shutdown_signal() => {}
            _ = status::maybe_sleep(args.duration) => {}
        }
    };
    let opts = PlayOptions {
        headless: args.headless,
        record: args.record.clone(),
        buffer: args.buffer,
        show_status: !args.quiet,
        output: args.output.clone(),
    };
    let r = play(&node, &opts, joined_at, stop).await;
    node.shutdown().await;
    let report = r?;
    if let Some(path) = &args.report {
        write_report(path, &report)?;
    }
    if let Some(rec) = &args.record {
        eprintln!("recording written to {}", rec.display());
    }
    Ok(())
}

pub fn write_report(path: &std::path::Path, report: &serde_json::Value) -> Result<()> {
    let text = serde_json::to_string_pretty(report)?;
    std::fs::write(path, text + "\n")
        .with_context(|| format!("cannot write the report to {}", path.display()))
}

#[cfg(not(feature = "media"))]
pub async fn play(
    _node: &Node,
    _opts: &PlayOptions,
    _joined_at: Instant,
    _stop: impl Future<Output = ()>,
) -> Result<serde_json::Value> {
    bail!(
        "this is a relay-only build (without the `media` feature): it cannot play a stream; use `treecast relay`"
    )
}

/// Plays the stream `node` receives until `stop` resolves; returns the JSON report.
#[cfg(feature = "media")]
pub async fn play(
    node: &Node,
    opts: &PlayOptions,
    joined_at: Instant,
    stop: impl Future<Output = ()>,
) -> Result<serde_json::Value> {
    use treecast_player::{Player, PlayerConfig};
    use treecast_relay::proto::media::Codec;

    treecast_player::init().context("initialising GStreamer")?;
    let output = opts
        .output
        .as_deref()
        .map(str::parse::<treecast_player::player::Output>)
        .transpose()
        .context("invalid --output")?;
    let mut cat = node.catalog();
    let catalog = cat
        .wait_for(|c| c.is_some())
        .await
        .context("the node stopped before the stream's catalog arrived")?
        .clone()
        .unwrap_or_default();
    if catalog.sealed_epoch.is_some() && !node.can_decrypt() {
        bail!(
            "this stream is encrypted end to end and your token carries no content key (a relay-only token?): ask the publisher for a viewer token"
        );
    }
    let mut messages = Messages::new(&catalog);
    let playable = catalog
        .tracks
        .iter()
        .any(|t| matches!(t.codec, Codec::H264 { .. } | Codec::Opus { .. }));
    if !playable {
        if !messages.enabled() {
            bail!("the broadcast has no H.264 or Opus track to play and no messages");
        }
        if output.is_some() || opts.record.is_some() {
            bail!("the broadcast carries only messages: nothing to record or re-serve");
        }
        return messages_only(node, messages, stop).await;
    }
    let player = Player::new(
        &catalog,
        PlayerConfig {
            headless: opts.headless,
            record: opts.record.clone(),
            buffer: opts.buffer,
            joined_at,
            output,
        },
    )
    .context("cannot start the player")?;
    let sub = node.subscribe_local();
    let metrics = crate::observe::PlayerMetrics::new(node.observer().registry())
        .context("registering the player metrics")?;
    let status = StatusLine::new(opts.show_status);
    let mut tick = tokio::time::interval(status::STATUS_INTERVAL);
    tokio::pin!(stop);
    let result: Result<()> = loop {
        tokio::select! {
            f = sub.next() => match f {
                Some(f) if messages.is_message(&f) => {
                    if let Some(last) = messages.accept(&f, &status) {
                        player.show_message(&last);
                    }
                }
                Some(f) => {
                    if let Err(e) = player.push(&f) {
                        break Err(e).context("playback failed");
                    }
                }
                None => break Ok(()),
            },
            _ = tick.tick() => {
                if let Some(e) = player.error() {
                    break Err(e).context("playback failed");
                }
                let stats = player.stats();
                metrics.update(&stats);
                status.show(&viewer_status(node, &stats));
            }
            _ = &mut stop => break Ok(()),
        }
    };
    status.finish();
    let local_drops = sub.dropped_frames();
    drop(sub);
    // finish() waits for the pipeline to drain: keep it off the async worker threads.
    let report = tokio::task::spawn_blocking(move || player.finish())
        .await
        .context("the player task failed")?
        .context("finishing playback")?;
    result?;
    let mut v = serde_json::to_value(&report)?;
    if let Some(o) = v.as_object_mut() {
        o.insert("node".into(), serde_json::to_value(node.stats())?);
        o.insert("local_queue_dropped_frames".into(), local_drops.into());
        o.insert("messages".into(), serde_json::to_value(messages.shown())?);
    }
    Ok(v)
}

/// A broadcast of messages only (no media): print them until `stop`.
#[cfg(feature = "media")]
async fn messages_only(
    node: &Node,
    mut messages: Messages,
    stop: impl Future<Output = ()>,
) -> Result<serde_json::Value> {
    let sub = node.subscribe_local();
    let status = StatusLine::new(false);
    tokio::pin!(stop);
    loop {
        tokio::select! {
            f = sub.next() => match f {
                Some(f) if messages.is_message(&f) => {
                    messages.accept(&f, &status);
                }
                Some(_) => {}
                None => break,
            },
            _ = &mut stop => break,
        }
    }
    Ok(serde_json::json!({
        "node": node.stats(),
        "messages": messages.shown(),
    }))
}

#[cfg(feature = "media")]
fn viewer_status(node: &Node, p: &treecast_player::PlayerStats) -> String {
    let s = node.stats();
    let parent = match (&s.parent, s.parent_rtt_ms) {
        (Some(a), Some(rtt)) => format!("parent {} rtt {rtt:.1} ms", &a[..8.min(a.len())]),
        _ => "parent: reconnecting".into(),
    };
    let opt = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.0} ms"));
    format!(
        "viewer | {parent} | latency {} | buffer {} | {:.0} kbit/s | frames {} | audio {} | stalls {} | rebuffers {} | slowed {:.0} ms | lost {} | children {}",
        opt(p.latency_ms),
        opt(p.buffer_ms),
        p.bitrate_kbps,
        p.frames_rendered,
        p.audio_packets_decoded,
        p.stalls,
        p.rebuffers,
        p.slowed_ms,
        p.frames_lost,
        s.children,
    )
}
