//! Join and repair times of the self-organising tree on loopback (a benchmark: it
//! measures, it does not assert).
//!
//! For N = 50, 100 and 200 nodes in this process (real QUIC on 127.0.0.1, no emulated
//! delay): every node joins through the origin, in concurrent batches of 10, while a
//! 30 fps stream runs. **Join time** is from the start of `Node::start` to the first frame
//! at the node's local subscriber. Then 10% of the non-origin nodes crash at once (their
//! sockets go silent); **repair time** is from the crash to the first frame an orphan
//! receives after it re-attached (it includes the ~0.3-0.4 s it takes to notice the crash).
//!
//! Writes `TREECAST_BENCH_OUT` (default `target/bench-results/tree_join.json`).
//! Run: `cargo bench --bench tree_join` (`BENCH_SIZES=50` for a quick look).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::json;
use treecast_relay::node::netem::{LinkParams, UniformLink};
use treecast_relay::node::{Identity, Node, NodeConfig, NodeEvent, NodeId, PeerAddr};
use treecast_relay::proto::media::{Packager, VIDEO_TRACK};
use treecast_relay::proto::overlay::OverlayEvent;
use treecast_relay::proto::synthetic::SyntheticSpec;

fn now_us() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

fn config(join: Option<PeerAddr>, cap: usize) -> NodeConfig {
    let mut c = NodeConfig::new(
        Identity::generate().expect("identity"),
        SocketAddr::from(([127, 0, 0, 1], 0)),
    );
    c.join = join.into_iter().collect();
    c.max_children = cap;
    // No delay: an emulated socket only so that a crash can silence it.
    c.link_model = Some(Arc::new(UniformLink(LinkParams::default())));
    c
}

struct Member {
    node: Node,
    arrivals: Arc<Mutex<Vec<Instant>>>,
}

fn percentiles(mut v: Vec<f64>) -> serde_json::Value {
    if v.is_empty() {
        return json!(null);
    }
    v.sort_by(|a, b| a.total_cmp(b));
    let p = |q: f64| v[((v.len() - 1) as f64 * q).round() as usize];
    json!({ "n": v.len(), "p50": p(0.5), "p90": p(0.9), "p99": p(0.99), "max": p(1.0) })
}

async fn run(n: usize) -> serde_json::Value {
    let origin = Node::start(config(None, 4)).await.expect("origin");
    let spec = SyntheticSpec {
        fps: 30,
        frame_size: 600,
        group_len: 60,
    };
    let publisher = origin.publish(spec.catalog("bench"));
    let pump = tokio::spawn(async move {
        let mut packager = Packager::new(Some(VIDEO_TRACK), 1_000_000);
        let mut tick = tokio::time::interval(Duration::from_micros(spec.interval_us()));
        for i in 0.. {
            tick.tick().await;
            if let Some(f) = packager.pack(spec.unit(i, now_us())) {
                publisher.send(f);
            }
        }
    });
    let caps = |i: usize| match i % 10 {
        0 | 5 => 6,
        3 | 8 => 0,
        _ => 2,
    };
    let mut members: HashMap<NodeId, Member> = HashMap::new();
    let mut join_ms = Vec::new();
    let mut i = 0;
    while i < n {
        let mut batch = Vec::new();
        for _ in 0..10.min(n - i) {
            let cfg = config(Some(origin.addr()), caps(i));
            i += 1;
            batch.push(tokio::spawn(async move {
                let t0 = Instant::now();
                let node = Node::start(cfg).await.expect("joins");
                let sub = node.subscribe_local();
                let first = sub.next().await;
                let took = t0.elapsed();
                let arrivals = Arc::new(Mutex::new(Vec::new()));
                let a = arrivals.clone();
                tokio::spawn(async move {
                    let _ = first;
                    while sub.next().await.is_some() {
                        a.lock()
                            .unwrap_or_else(|e| e.into_inner())
                            .push(Instant::now());
                    }
                });
                (node, arrivals, took)
            }));
        }
        for h in batch {
            let (node, arrivals, took) = h.await.expect("join task");
            join_ms.push(took.as_secs_f64() * 1e3);
            members.insert(node.id(), Member { node, arrivals });
        }
    }
    let max_depth = members
        .values()
        .filter_map(|m| m.node.stats().depth)
        .max()
        .unwrap_or(0);
    tokio::time::sleep(Duration::from_secs(2)).await;

    // Crash 10%: prefer nodes that have children, so there are orphans to measure.
    let mut ids: Vec<NodeId> = members.keys().copied().collect();
    ids.sort_by_key(|id| std::cmp::Reverse(members[id].node.children().len()));
    let crashed: Vec<NodeId> = ids.into_iter().take(n / 10).collect();
    let orphans: Vec<NodeId> = members
        .iter()
        .filter(|(id, m)| {
            !crashed.contains(id) && m.node.parent().is_some_and(|p| crashed.contains(&p.id))
        })
        .map(|(id, _)| *id)
        .collect();
    let repaired_at: Arc<Mutex<HashMap<NodeId, Instant>>> = Arc::default();
    for id in &orphans {
        let mut rx = members[id].node.events();
        let (id, r) = (*id, repaired_at.clone());
        tokio::spawn(async move {
            loop {
                match rx.recv().await {
                    Ok(NodeEvent::Overlay(
                        OverlayEvent::Repaired { .. } | OverlayEvent::Joined { .. },
                    )) => {
                        r.lock()
                            .unwrap_or_else(|e| e.into_inner())
                            .insert(id, Instant::now());
                        return;
                    }
                    // A busy node may emit more events than the channel holds: skip on.
                    Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                    Err(_) => return,
                }
            }
        });
    }
    let t_crash = Instant::now();
    for id in &crashed {
        members[id].node.crash();
    }
    tokio::time::sleep(Duration::from_secs(8)).await;
    let mut repair_ms = Vec::new();
    let mut unrepaired = 0;
    for id in &orphans {
        let at = repaired_at
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(id)
            .copied();
        let Some(at) = at else {
            unrepaired += 1;
            continue;
        };
        let arrivals = members[id]
            .arrivals
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        if let Some(first) = arrivals.iter().find(|t| **t >= at) {
            repair_ms.push((*first - t_crash).as_secs_f64() * 1e3);
        } else {
            unrepaired += 1;
        }
    }
    pump.abort();
    for (_, m) in members {
        m.node.stop_now().await;
    }
    origin.stop_now().await;
    let row = json!({
        "nodes": n,
        "max_depth": max_depth,
        "join_ms": percentiles(join_ms),
        "crashed": crashed.len(),
        "orphans": orphans.len(),
        "orphans_not_repaired_within_8s": unrepaired,
        "repair_ms": percentiles(repair_ms),
    });
    eprintln!("{row}");
    row
}

fn main() {
    let sizes: Vec<usize> = std::env::var("BENCH_SIZES")
        .ok()
        .map(|s| s.split(',').filter_map(|x| x.trim().parse().ok()).collect())
        .filter(|v: &Vec<usize>| !v.is_empty())
        .unwrap_or_else(|| vec![50, 100, 200]);
    let out_path = std::env::var("TREECAST_BENCH_OUT")
        .unwrap_or_else(|_| "target/bench-results/tree_join.json".into());
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let rows: Vec<_> = sizes.iter().map(|&n| rt.block_on(run(n))).collect();
    let defaults = config(None, 0);
    let out = json!({
        "benchmark": "tree_join",
        "stream": { "fps": 30, "frame_bytes": 600, "group_frames": 60 },
        "crash_detection": {
            "keep_alive_ms": defaults.keep_alive.as_millis() as u64,
            "idle_timeout_ms": defaults.idle_timeout.as_millis() as u64,
        },
        "results": rows,
    });
    if let Some(dir) = std::path::Path::new(&out_path).parent() {
        let _ = std::fs::create_dir_all(dir);
    }
    match std::fs::write(
        &out_path,
        serde_json::to_string_pretty(&out).unwrap_or_default(),
    ) {
        Ok(()) => eprintln!("wrote {out_path}"),
        Err(e) => eprintln!("cannot write {out_path}: {e}"),
    }
}
