//! `treecast relay`: forward a stream to children.

use std::time::Instant;

use anyhow::Result;
use treecast_relay::node::Node;

use crate::cli::RelayArgs;
use crate::node_setup::{self, Role};
use crate::status::{self, StatusLine, fmt_bytes_rate};

pub async fn run(args: RelayArgs) -> Result<()> {
    let mut cfg = node_setup::config(
        &args.node,
        Role::Relay,
        args.parent.clone(),
        args.join.clone(),
    )?;
    cfg.ingest_rate_limit = args.emulate_downlink_kbps.map(|k| k * 1000 / 8);
    cfg.trust = crate::trust_cmd::joiner_trust(&args.trust)?;
    let node = node_setup::start(cfg).await?;
    let addr = node_setup::public_addr(&node, &args.node);
    println!("treecast relay {addr}");
    if let Some(p) = node.parent() {
        println!("  parent:      {p}");
    }
    let _web = crate::observe::serve(&node, &args.node, Role::Relay).await?;
    let status = StatusLine::new(true);
    let mut events = node.events();
    let started = Instant::now();
    let mut tick = tokio::time::interval(status::STATUS_INTERVAL);
    let stop = async {
        tokio::select! {
            _ = status::shutdown_signal() => {}
            _ = status::maybe_sleep(args.duration) => {}
        }
    };
    tokio::pin!(stop);
    loop {
        tokio::select! {
            _ = tick.tick() => status.show(&relay_status(&node, started)),
            Ok(e) = events.recv() => crate::status::log_event(&e),
            _ = &mut stop => break,
        }
    }
    status.finish();
    node.shutdown().await;
    Ok(())
}

pub fn relay_status(node: &Node, started: Instant) -> String {
    let s = node.stats();
    let secs = started.elapsed().as_secs_f64().max(0.001);
    let parent = match (&s.parent, s.parent_rtt_ms) {
        (Some(p), Some(rtt)) => format!("parent {} rtt {rtt:.1} ms", &p[..8.min(p.len())]),
        _ => "parent: reconnecting".to_string(),
    };
    let depth = s.depth.map_or("-".to_string(), |d| d.to_string());
    format!(
        "relay | depth {depth} | {parent} | in {} frames {} | children {} | out {} | lost {} | dropped for slow children {}",
        s.frames_received,
        fmt_bytes_rate(s.bytes_received as f64 * 8.0 / secs),
        s.children,
        fmt_bytes_rate(s.bytes_forwarded as f64 * 8.0 / secs),
        s.frames_lost,
        s.child_dropped_frames,
    )
}
