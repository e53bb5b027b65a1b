//! `treecast demo`: an origin, a chain of relays and a viewer on loopback, in one process.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use tokio::sync::watch;
use treecast_relay::node::{Identity, Node, NodeConfig, PeerAddr};

use crate::cli::{DemoArgs, EncodeArgs};
use crate::publish::{self, Source};
use crate::status;
use crate::watch::{self as watch_cmd, PlayOptions};

async fn node(parent: Option<PeerAddr>, max_children: usize) -> Result<Node> {
    let mut cfg = NodeConfig::new(
        Identity::generate().context("creating an identity")?,
        SocketAddr::from(([127, 0, 0, 1], 0)),
    );
    cfg.parent = parent;
    cfg.max_children = max_children;
    Node::start(cfg).await.context("starting a demo node")
}

#[cfg(feature = "media")]
fn demo_source() -> Source {
    Source::Media(treecast_player::SourceSpec::Test)
}

#[cfg(not(feature = "media"))]
fn demo_source() -> Source {
    Source::Synthetic(Default::default())
}

pub async fn run(args: DemoArgs) -> Result<()> {
    let headless = args.headless || !watch_cmd::have_display();
    let origin = node(None, 4).await?;
    let origin_addr = origin.addr();
    let mut catalog = origin.catalog();
    let (stop_tx, stop_rx) = watch::channel(false);
    let origin_task = {
        let mut stop = stop_rx.clone();
        tokio::spawn(async move {
            let r = publish::broadcast(
                &origin,
                &demo_source(),
                &EncodeArgs::default(),
                "treecast demo",
                async move {
                    let _ = stop.wait_for(|s| *s).await;
                },
                false,
            )
            .await;
            (origin, r)
        })
    };
    // The broadcast is live once the origin has a catalog (or the source failed).
    let live = tokio::select! {
        c = catalog.wait_for(|c| c.is_some()) => c.is_ok(),
        _ = tokio::time::sleep(Duration::from_secs(20)) => false,
    };
    let result = if live {
        run_tree(&args, headless, origin_addr).await
    } else {
        Ok(())
    };
    stop_tx.send_replace(true);
    let (origin, broadcast_result) = origin_task.await.context("the origin task failed")?;
    origin.shutdown().await;
    broadcast_result.context("the origin's broadcast failed")?;
    if !live {
        anyhow::bail!("the origin's source did not start within 20 s");
    }
    result
}

async fn run_tree(args: &DemoArgs, headless: bool, origin: PeerAddr) -> Result<()> {
    println!("treecast demo: origin {origin}");
    let mut relays: Vec<Node> = Vec::new();
    for i in 0..args.relays {
        let parent = relays
            .last()
            .map(Node::addr)
            .unwrap_or_else(|| origin.clone());
        let r = node(Some(parent), 4).await?;
        println!("  relay {}: {}", i + 1, r.addr());
        relays.push(r);
    }
    let joined_at = Instant::now();
    let parent = relays
        .last()
        .map(Node::addr)
        .unwrap_or_else(|| origin.clone());
    let viewer = node(Some(parent), 2).await?;
    println!(
        "  viewer:  {} ({})",
        viewer.addr(),
        if headless {
            "headless: no display, status below"
        } else {
            "window"
        }
    );
    println!("press Ctrl-C to stop");
    let opts = PlayOptions {
        headless,
        record: None,
        buffer: Duration::from_millis(300),
        show_status: true,
    };
    let stop = async {
        tokio::select! {
            _ = status::shutdown_signal() => {}
            _ = status::maybe_sleep(args.duration) => {}
        }
    };
    let report = watch_cmd::play(&viewer, &opts, joined_at, stop).await;
    viewer.shutdown().await;
    for r in relays.into_iter().rev() {
        r.shutdown().await;
    }
    let report = report?;
    println!(
        "demo stopped: {} frames rendered, {} audio packets, {} stalls, {} lost, latency p50 {} ms",
        report["frames_rendered"],
        report["audio_packets_decoded"],
        report["stalls"],
        report["frames_lost"],
        report["latency_ms"]["p50"],
    );
    if let Some(path) = &args.report {
        watch_cmd::write_report(path, &report)?;
    }
    Ok(())
}
