//! The self-organising tree on real QUIC, in one process on loopback: 50 nodes placed on
//! a plane, link delays from their distances (emulated in code: `tc netem` is not
//! available), joining one origin; then a fifth of them crash at once, then a tenth
//! leave in order. Every frame sequence must stay gap-free. Each member also plays its
//! frames on the player's clock with a 1 s buffer: the pauses a viewer would have seen
//! are counted after each phase (printed for the crashes, none allowed for the leaves).

mod common;

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;
use treecast_relay::node::netem::CoordinateLinks;
use treecast_relay::node::{Node, NodeEvent, NodeId, PeerAddr, Publisher};
use treecast_relay::proto::overlay::OverlayEvent;
use treecast_relay::proto::playout::Playout;
use treecast_relay::proto::synthetic::SyntheticSpec;

const BASE: Duration = Duration::from_millis(2);
/// The playout buffer the issue names for repairs.
const PLAYOUT_BUFFER: Duration = Duration::from_secs(1);

/// What a member's local subscriber saw.
struct Seen {
    seqs: Vec<u64>,
    last_arrival: Option<Instant>,
    max_gap: Duration,
    /// The player's playout clock with a [`PLAYOUT_BUFFER`], on arrival times since
    /// `started`. The first frame is the cached group's keyframe, as for a viewer, so the
    /// cushion is the buffer plus that group's age when the member joined.
    playout: Playout,
    started: Instant,
    /// Pauses (re-buffers) since the last [`take_stalls`].
    stalls: u32,
}

/// Viewers whose playback would have paused since the last call, and the pauses; the
/// counts start again from zero.
fn take_stalls(members: &HashMap<NodeId, Member>) -> (usize, u32) {
    let mut viewers = 0;
    let mut pauses = 0;
    for m in members.values() {
        let mut s = m.seen.lock().unwrap_or_else(|e| e.into_inner());
        viewers += usize::from(s.stalls > 0);
        pauses += s.stalls;
        s.stalls = 0;
    }
    (viewers, pauses)
}

struct Member {
    node: Node,
    cap: usize,
    pos: (f64, f64),
    seen: Arc<Mutex<Seen>>,
    last_seq: tokio::sync::watch::Receiver<u64>,
}

fn free_port() -> SocketAddr {
    let s = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
    s.local_addr().expect("addr")
}

fn rtt(a: (f64, f64), b: (f64, f64)) -> f64 {
    ((a.0 - b.0).powi(2) + (a.1 - b.1).powi(2)).sqrt() + 2.0 * BASE.as_secs_f64() * 1e3
}

struct Lcg(u64);
impl Lcg {
    fn next(&mut self, n: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 33) % n
    }
}

async fn start_member(
    links: &Arc<CoordinateLinks>,
    join: Vec<PeerAddr>,
    cap: usize,
    pos: (f64, f64),
) -> Member {
    let listen = free_port();
    links.place(listen, pos.0, pos.1);
    let mut cfg = config(None);
    cfg.listen = listen;
    cfg.join = join;
    cfg.max_children = cap;
    cfg.link_model = Some(links.clone());
    let node = Node::start(cfg).await.expect("joins");
    let seen = Arc::new(Mutex::new(Seen {
        seqs: Vec::new(),
        last_arrival: None,
        max_gap: Duration::ZERO,
        playout: Playout::new(PLAYOUT_BUFFER),
        started: Instant::now(),
        stalls: 0,
    }));
    let sub = node.subscribe_local();
    let s = seen.clone();
    let (last_tx, last_seq) = tokio::sync::watch::channel(0u64);
    tokio::spawn(async move {
        while let Some(f) = sub.next().await {
            last_tx.send_replace(f.seq);
            let mut s = s.lock().unwrap_or_else(|e| e.into_inner());
            let now = Instant::now();
            if let Some(t) = s.last_arrival {
                s.max_gap = s.max_gap.max(now - t);
            }
            s.last_arrival = Some(now);
            s.seqs.push(f.seq);
            let running_ns = now.duration_since(s.started).as_nanos() as u64;
            if s.playout.place(f.pts, running_ns).added_ns > 0 {
                s.stalls += 1;
            }
        }
    });
    Member {
        node,
        cap,
        pos,
        seen,
        last_seq,
    }
}

fn pump(publisher: Publisher, spec: SyntheticSpec) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut src = Source::new(spec);
        let mut tick = tokio::time::interval(Duration::from_micros(spec.interval_us()));
        loop {
            tick.tick().await;
            publisher.send(src.next_frame());
        }
    })
}

/// Checks the tree formed by `members` under `origin`: everyone attached, capacities
/// held, no cycle, depths consistent. Returns the maximum depth.
fn check_tree(origin: &Node, members: &HashMap<NodeId, Member>) -> u32 {
    let origin_id = origin.id();
    let mut max_depth = 0;
    for (id, m) in members {
        let kids = m.node.children();
        assert!(
            kids.len() <= m.cap,
            "{id:?} has {} children, allows {}",
            kids.len(),
            m.cap
        );
        let mut cur = *id;
        let mut hops: u32 = 0;
        while cur != origin_id {
            let p = members[&cur]
                .node
                .parent()
                .unwrap_or_else(|| panic!("{cur:?} is not attached"))
                .id;
            assert!(
                p == origin_id || members.contains_key(&p),
                "{cur:?}'s parent {p:?} is gone"
            );
            cur = p;
            hops += 1;
            assert!(hops as usize <= members.len(), "cycle through {id:?}");
        }
        assert_eq!(m.node.stats().depth, Some(hops), "depth of {id:?}");
        max_depth = max_depth.max(hops);
    }
    assert!(origin.children().len() <= 4);
    max_depth
}

fn assert_no_gaps(members: &HashMap<NodeId, Member>, what: &str) {
    for (id, m) in members {
        let s = m.seen.lock().unwrap_or_else(|e| e.into_inner());
        assert!(!s.seqs.is_empty(), "{what}: {id:?} received nothing");
        for w in s.seqs.windows(2) {
            assert_eq!(
                w[1],
                w[0] + 1,
                "{what}: {id:?} has a gap after seq {}",
                w[0]
            );
        }
    }
}

async fn wait_frames(members: &HashMap<NodeId, Member>, beyond: u64) {
    for (id, m) in members {
        let mut rx = m.last_seq.clone();
        tokio::time::timeout(WAIT, rx.wait_for(|s| *s >= beyond))
            .await
            .unwrap_or_else(|_| panic!("{id:?} stopped receiving"))
            .expect("subscriber alive");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_nodes_self_organise_survive_crashes_and_leave_in_order() {
    init_tracing();
    let links = Arc::new(CoordinateLinks::new(BASE));
    let origin_pos = (50.0, 50.0);
    let origin_listen = free_port();
    links.place(origin_listen, origin_pos.0, origin_pos.1);
    let mut ocfg = config(None);
    ocfg.listen = origin_listen;
    ocfg.max_children = 4;
    ocfg.link_model = Some(links.clone());
    let origin = Node::start(ocfg).await.expect("origin");
    // 30 fps, 2 s groups: the cache (2 groups) covers any repair.
    let spec = SyntheticSpec {
        fps: 30,
        frame_size: 600,
        group_len: 60,
    };
    let publisher = origin.publish(spec.catalog("tree"));
    let _pump = pump(publisher, spec);

    let mut rng = Lcg(7);
    let mut members: HashMap<NodeId, Member> = HashMap::new();
    let caps = |i: usize| match i % 10 {
        0 | 5 => 6, // dedicated relays
        3 | 8 => 0, // watch-only
        _ => 2,     // viewers that relay a little
    };

    // 1. Fifteen nodes join one at a time: each attaches near the nearest node with room.
    let mut far_from_best = Vec::new();
    for i in 0..15 {
        let pos = (rng.next(100) as f64, rng.next(100) as f64);
        let cap = caps(i);
        // Who has room for this joiner right now (a watch-only joiner leaves one slot).
        let mut best = rtt(pos, origin_pos);
        let need = if cap == 0 { 2 } else { 1 };
        if 4 - origin.children().len() < need {
            best = f64::INFINITY;
        }
        for m in members.values() {
            let free = m.cap.saturating_sub(m.node.children().len());
            let need = if cap == 0 && m.cap >= 2 { 2 } else { 1 };
            if free >= need {
                best = best.min(rtt(pos, m.pos));
            }
        }
        let m = start_member(&links, vec![origin.addr()], cap, pos).await;
        let parent = m.node.parent().expect("attached").id;
        let prtt = if parent == origin.id() {
            rtt(pos, origin_pos)
        } else {
            rtt(pos, members[&parent].pos)
        };
        far_from_best.push(prtt - best);
        // Near-ties prefer a shallower parent (within 20% + 2 ms); allow for that.
        if prtt > best * 1.25 + 5.0 {
            eprintln!("joiner {i} at {pos:?} cap {cap}: parent {parent:?}");
            for (id, mm) in &members {
                eprintln!(
                    "  {id:?} at {:?} cap {} kids {} depth {:?} rtt {:.1} parent {:?}",
                    mm.pos,
                    mm.cap,
                    mm.node.children().len(),
                    mm.node.stats().depth,
                    rtt(pos, mm.pos),
                    mm.node.parent().map(|p| p.id)
                );
            }
        }
        assert!(
            prtt <= best * 1.25 + 5.0,
            "node {i}: parent at {prtt:.1} ms, nearest with room {best:.1} ms"
        );
        members.insert(m.node.id(), m);
    }
    eprintln!("sequential joins: parent RTT minus nearest-with-room RTT (ms): {far_from_best:.1?}");

    // 2. Thirty-five more join concurrently, in batches, via random members.
    for batch in 0..5 {
        let mut joins = Vec::new();
        for j in 0..7 {
            let i = 15 + batch * 7 + j;
            let pos = (rng.next(100) as f64, rng.next(100) as f64);
            let ids: Vec<NodeId> = members.keys().copied().collect();
            let via = members[&ids[rng.next(ids.len() as u64) as usize]]
                .node
                .addr();
            let links = links.clone();
            joins.push(async move { start_member(&links, vec![via], caps(i), pos).await });
        }
        for m in futures_join_all(joins).await {
            members.insert(m.node.id(), m);
        }
    }
    assert_eq!(members.len(), 50);
    let max_depth = check_tree(&origin, &members);
    eprintln!("50 nodes joined; max depth {max_depth}");
    // Mean capacity ~2.2 (origin 4): a balanced tree would be ~5 deep; geography makes
    // nearer, deeper trees. Bound it at twice that.
    assert!(max_depth <= 10, "max depth {max_depth}");
    let last = origin.stats().frames_received;
    wait_frames(&members, last + 30).await;
    assert_no_gaps(&members, "after joining");
    let (viewers, pauses) = take_stalls(&members);
    eprintln!(
        "joining: {viewers} viewers would have paused ({pauses} pauses) with a {PLAYOUT_BUFFER:?} buffer"
    );

    // 3. A fifth crash at once (no goodbye): orphans re-attach within a few seconds and
    //    nobody loses a frame.
    let mut ids: Vec<NodeId> = members.keys().copied().collect();
    ids.sort();
    let mut crashed = HashSet::new();
    while crashed.len() < 10 {
        crashed.insert(ids[rng.next(ids.len() as u64) as usize]);
    }
    let orphans: Vec<NodeId> = members
        .iter()
        .filter(|(id, m)| {
            !crashed.contains(id) && m.node.parent().is_some_and(|p| crashed.contains(&p.id))
        })
        .map(|(id, _)| *id)
        .collect();
    let mut orphan_events: Vec<_> = orphans
        .iter()
        .map(|id| (*id, members[id].node.events()))
        .collect();
    let t0 = Instant::now();
    for id in &crashed {
        members[id].node.crash();
    }
    // Every orphan is watched at once, so each time is its own.
    let watchers: Vec<_> = orphan_events
        .drain(..)
        .map(|(id, mut rx)| {
            tokio::spawn(async move {
                let e = wait_event(&mut rx, "an orphan to re-attach", |e| {
                    matches!(
                        e,
                        NodeEvent::Overlay(
                            OverlayEvent::Repaired { .. } | OverlayEvent::Joined { .. }
                        )
                    )
                })
                .await;
                (id, t0.elapsed(), e)
            })
        })
        .collect();
    let mut repair_ms = Vec::new();
    for w in watchers {
        let (id, took, e) = w.await.expect("watcher");
        repair_ms.push(took.as_millis() as u64);
        assert!(
            took < Duration::from_secs(5),
            "{id:?} took {took:?} ({e:?})"
        );
    }
    repair_ms.sort();
    eprintln!(
        "crashed 10, {} orphans re-attached after (ms): {repair_ms:?}",
        orphans.len()
    );
    for id in &crashed {
        members.remove(id);
    }
    let last = origin.stats().frames_received;
    wait_frames(&members, last + 60).await;
    check_tree(&origin, &members);
    assert_no_gaps(&members, "after the crashes");
    let worst = members
        .values()
        .map(|m| m.seen.lock().unwrap_or_else(|e| e.into_inner()).max_gap)
        .max()
        .unwrap_or_default();
    // How long orphans went without frames is reported, not asserted (timing is the
    // benchmark's job): usually 0.5-0.9 s, longer when an orphan's standby crashed too
    // and it falls back to the backups it probed meanwhile. What must hold is checked
    // above: no frame was lost.
    let (viewers, pauses) = take_stalls(&members);
    eprintln!(
        "crashes: worst arrival gap {worst:?}; {viewers} of {} viewers would have paused ({pauses} pauses) with a {PLAYOUT_BUFFER:?} buffer",
        members.len()
    );
    for m in members.values() {
        m.seen.lock().unwrap_or_else(|e| e.into_inner()).max_gap = Duration::ZERO;
    }

    // 4. A tenth leave in order: their children move first; no gap and no stall.
    let mut ids: Vec<NodeId> = members.keys().copied().collect();
    ids.sort();
    let mut leaving = HashSet::new();
    while leaving.len() < 5 {
        leaving.insert(ids[rng.next(ids.len() as u64) as usize]);
    }
    let mut leavers = Vec::new();
    for id in &leaving {
        if let Some(m) = members.remove(id) {
            leavers.push(m.node);
        }
    }
    futures_join_all(leavers.into_iter().map(|n| n.shutdown())).await;
    let last = origin.stats().frames_received;
    wait_frames(&members, last + 60).await;
    check_tree(&origin, &members);
    assert_no_gaps(&members, "after the graceful leaves");
    let worst = members
        .values()
        .map(|m| m.seen.lock().unwrap_or_else(|e| e.into_inner()).max_gap)
        .max()
        .unwrap_or_default();
    let (viewers, pauses) = take_stalls(&members);
    eprintln!(
        "graceful leaves: worst arrival gap {worst:?}; {viewers} of {} viewers would have paused ({pauses} pauses) with a {PLAYOUT_BUFFER:?} buffer",
        members.len()
    );
    assert_eq!(pauses, 0, "a graceful leave made {viewers} viewers pause");
    assert!(
        worst < Duration::from_secs(1),
        "a viewer would stall with a 1 s buffer: {worst:?}"
    );
    // The origin still has at most its 4 children.
    assert!(origin.children().len() <= 4);
}

async fn futures_join_all<F>(futs: impl IntoIterator<Item = F>) -> Vec<F::Output>
where
    F: std::future::Future + Send + 'static,
    F::Output: Send + 'static,
{
    let handles: Vec<_> = futs.into_iter().map(tokio::spawn).collect();
    let mut out = Vec::new();
    for h in handles {
        out.push(h.await.expect("task"));
    }
    out
}
