//! `treecast demo`: an origin, a chain of relays and a viewer on loopback, in one process.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use tokio::sync::watch;
use treecast_relay::node::publisher_key::PublisherKeyFile;
use treecast_relay::node::{Identity, Node, NodeConfig, NodeId, PeerAddr, TrustConfig};
use treecast_relay::proto::trust::StreamName;

use crate::cli::{DemoArgs, EncodeArgs};
use crate::publish::{self, Source};
use crate::status;
use crate::watch::{self as watch_cmd, PlayOptions};

/// A demo node; with `join`, it finds its own place in the tree through that node.
async fn node(join: Option<PeerAddr>, max_children: usize, trust: &TrustConfig) -> Result<Node> {
    let mut cfg = NodeConfig::new(
        Identity::generate().context("creating an identity")?,
        SocketAddr::from(([127, 0, 0, 1], 0)),
    );
    cfg.join = join.into_iter().collect();
    cfg.max_children = max_children;
    cfg.trust = trust.clone();
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
    // A small origin fan-out, so the tree grows a few levels on one machine.
    // The demo's stream is signed like any other, with a key made for this run; every
    // other node accepts only media signed by it.
    let key = PublisherKeyFile::generate().context("creating a publisher key")?;
    let stream = StreamName::new(key.key.public(), "demo")?;
    let origin_trust = TrustConfig {
        stream: Some(stream.clone()),
        signer: Some(key.key.clone()),
        ..TrustConfig::default()
    };
    let joiner = TrustConfig {
        stream: Some(stream),
        ..TrustConfig::default()
    };
    let origin = node(None, 2, &origin_trust).await?;
    let origin_addr = origin.addr();
    // The origin's status page shows the demo's tree as it forms (best effort).
    let status_at = crate::observe::default_metrics(crate::node_setup::Role::Origin);
    let _web = match status_at {
        Some(at) => match treecast_relay::web::WebServer::bind(at, origin.observer()).await {
            Ok(s) => {
                println!("status page of the origin: http://{}/", s.local_addr());
                Some(s)
            }
            Err(e) => {
                tracing::warn!("no status page: cannot listen on {at}: {e}");
                None
            }
        },
        None => None,
    };
    let mut catalog = origin.catalog();
    let (stop_tx, stop_rx) = watch::channel(false);
    let origin_task = {
        let mut stop = stop_rx.clone();
        tokio::spawn(async move {
            let r = publish::broadcast(
                &origin,
                &demo_source(),
                publish::Input::media(&EncodeArgs::default(), "treecast demo"),
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
        run_tree(&args, headless, origin_addr, &joiner).await
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

async fn run_tree(
    args: &DemoArgs,
    headless: bool,
    origin: PeerAddr,
    trust: &TrustConfig,
) -> Result<()> {
    println!("treecast demo: origin {origin}");
    println!("every node joins through the origin and finds its own place in the tree");
    let mut nodes: Vec<(String, Node)> = Vec::new();
    for i in 0..args.relays {
        nodes.push((
            format!("relay {}", i + 1),
            node(Some(origin.clone()), 3, trust).await?,
        ));
    }
    for i in 0..args.viewers {
        nodes.push((
            format!("viewer {}", i + 1),
            node(Some(origin.clone()), 2, trust).await?,
        ));
    }
    let joined_at = Instant::now();
    let viewer = node(Some(origin.clone()), 2, trust).await?;
    let mut names: std::collections::HashMap<NodeId, String> = nodes
        .iter()
        .map(|(name, n)| (n.id(), name.clone()))
        .collect();
    names.insert(origin.id, "origin".into());
    names.insert(viewer.id(), "player".into());
    print_tree(
        &names,
        nodes.iter().map(|(_, n)| n).chain(std::iter::once(&viewer)),
    );
    println!(
        "playing ({}); press Ctrl-C to stop",
        if headless {
            "headless: no display, status below"
        } else {
            "in a window"
        }
    );
    let opts = PlayOptions {
        headless,
        record: None,
        buffer: Duration::from_millis(300),
        show_status: true,
        output: None,
    };
    let stop = async {
        tokio::select! {
            _ = status::shutdown_signal() => {}
            _ = status::maybe_sleep(args.duration) => {}
        }
    };
    let report = watch_cmd::play(&viewer, &opts, joined_at, stop).await;
    viewer.shutdown().await;
    for (_, n) in nodes.into_iter().rev() {
        n.shutdown().await;
    }
    let report = report?;
    println!(
        "demo stopped: {} frames rendered, {} audio packets, {} stalls, {} re-buffers, {:.0} ms played slower, {} lost, latency p50 {} ms",
        report["frames_rendered"],
        report["audio_packets_decoded"],
        report["stalls"],
        report["rebuffers"],
        report["slowed_ms"].as_f64().unwrap_or(0.0),
        report["frames_lost"],
        report["latency_ms"]["p50"],
    );
    if let Some(path) = &args.report {
        watch_cmd::write_report(path, &report)?;
    }
    Ok(())
}

/// Prints who sits where: each node with its parent and depth.
fn print_tree<'a>(
    names: &std::collections::HashMap<NodeId, String>,
    nodes: impl Iterator<Item = &'a Node>,
) {
    let mut rows: Vec<(u32, String, String)> = nodes
        .map(|n| {
            let s = n.stats();
            let parent = n
                .parent()
                .and_then(|p| names.get(&p.id).cloned())
                .unwrap_or_else(|| "-".into());
            let name = names.get(&n.id()).cloned().unwrap_or_default();
            (s.depth.unwrap_or(0), name, parent)
        })
        .collect();
    rows.sort();
    for (depth, name, parent) in rows {
        println!(
            "  {:indent$}{name} (depth {depth}, under {parent})",
            "",
            indent = 2 * depth as usize
        );
    }
}
