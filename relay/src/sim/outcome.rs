//! The end-of-run analysis: distributions, totals and invariants.

use super::SimConfig;
use super::driver::{SamplePoint, Sim, StallCause};
use super::metrics::{ControlBytes, Dist, Hist};

const NONE: u32 = u32::MAX;
const NEVER: u64 = u64::MAX;
/// Peers that joined at least this long before the end must be attached by then.
pub const SETTLE_US: u64 = 10_000_000;

/// Invariants checked at the end of a run.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Invariants {
    /// Parent chains that loop.
    pub cycles: u64,
    /// Children admitted beyond a node's capacity (during the run or at the end).
    pub capacity_violations: u64,
    /// Peers alive at the end and not connected to the origin although nothing excuses
    /// it: the top of their parent chain joined, lost its parent or saw it go down at
    /// least 10 s before the end.
    pub detached: u64,
}

/// Everything a run measured.
pub struct Outcome {
    /// What ran.
    pub config: SimConfig,
    /// Peers that took part (origin excluded).
    pub spawned: usize,
    /// Peers alive at the end.
    pub alive_end: u64,
    /// Peers whose overlay depth differs from their place in the tree at the end (a tree
    /// message still in flight).
    pub stale_depth: u64,
    /// Peers alive at the end, cut off from the origin by a recent join, loss or crash.
    pub recovering: u64,
    /// Join to first segment received, ms.
    pub first_frame_ms: Dist,
    /// Join to playback start (the player held a buffer's worth), ms.
    pub start_ms: Dist,
    /// Join to attached (the overlay's own measure), ms.
    pub join_attach_ms: Dist,
    /// The same, in round trips between the joiner and the origin.
    pub join_rtts: Dist,
    /// Tree depth at the end (origin 0).
    pub depth: Dist,
    /// Latency along the tree over the direct origin-peer latency, at the end.
    pub stretch: Dist,
    /// Emission to arrival of live segments, ms.
    pub e2e_ms: Hist,
    /// Children used over slots offered, per forwarding peer at the end.
    pub fanout_used: Dist,
    /// Slots used and offered at the end (origin excluded).
    pub slots: (u64, u64),
    /// Loss noticed to re-attached, ms.
    pub repair_ms: Dist,
    /// Parent crash (or close) to re-attached, ms.
    pub outage_ms: Dist,
    /// Orphanings, moves and loops seen.
    pub orphaned: u64,
    /// Repairs that attached straight to the standby.
    pub repaired_by_standby: u64,
    /// Moves.
    pub moved: u64,
    /// Loops detected.
    pub loops: u64,
    /// Per-peer continuity index.
    pub continuity: Dist,
    /// Segments played on time and segments due, over all peers.
    pub continuity_total: (u64, u64),
    /// Control message bytes per peer per second, per peer (sent and received).
    pub control_per_peer: Dist,
    /// Control message bytes (each counted once) per second of peer presence.
    pub control_mean_bps: f64,
    /// Handshakes per second of peer presence.
    pub handshakes_per_peer_s: f64,
    /// Control bytes the origin sent and received, per second.
    pub origin_control_bps: f64,
    /// Messages by kind.
    pub control: ControlBytes,
    /// Origin upload per second (after the audience has joined), Mbit/s.
    pub origin_mbps: Dist,
    /// Once a second.
    pub series: Vec<SamplePoint>,
    /// Segments sent from caches after repairs and moves.
    pub catchup_segments: u64,
    /// Segments dropped by overloaded upload queues.
    pub dropped_segments: u64,
    /// Pauses of playback as the player re-buffers, by [`StallCause`] (its `index`).
    pub stalls: [u64; StallCause::ALL.len()],
    /// Their total length, seconds.
    pub stall_s: f64,
    /// Time viewers spent playing (first playout to leaving or the end), seconds.
    pub playing_s: f64,
    /// Viewers that paused at least once, and viewers that played.
    pub viewers_stalled: (u64, u64),
    /// Latency re-buffering had added per viewer by the time it stopped, ms.
    pub rebuffered_ms: Dist,
    /// Latency slowing down (winning back a worn buffer) had added per viewer by the time
    /// it stopped, ms.
    pub stretched_ms: Dist,
    /// Invariants.
    pub invariants: Invariants,
}

/// Analyses a finished simulation.
pub fn analyse(mut sim: Sim) -> Outcome {
    let end = sim.duration_us();
    let n = sim.alive.len();
    let mut inv = Invariants {
        capacity_violations: sim.m.capacity_violations,
        ..Invariants::default()
    };
    // Depth and latency along the tree, from the origin down.
    let mut depth = vec![NONE; n];
    let mut lat = vec![0u64; n];
    depth[0] = 0;
    let mut order = vec![0u32];
    let mut i = 0;
    while i < order.len() {
        let p = order[i];
        i += 1;
        for &c in &sim.kids[p as usize] {
            let cu = c as usize;
            if sim.alive[cu] && depth[cu] == NONE && sim.parent[cu] == p {
                depth[cu] = depth[p as usize] + 1;
                lat[cu] = lat[p as usize] + sim.owd(p, c);
                order.push(c);
            }
        }
    }
    let mut out_depth = Dist::default();
    let mut stretch = Dist::default();
    let mut fanout = Dist::default();
    let (mut used, mut offered) = (0u64, 0u64);
    let mut alive_end = 0;
    let mut recovering = 0;
    let mut stale_depth = 0;
    let mut walk = vec![0u32; n];
    for p in 1..n {
        if !sim.alive[p] {
            continue;
        }
        alive_end += 1;
        let o = sim.overlay(p as u32);
        let kids = o.map_or(0, |o| o.child_count()) as u32;
        if kids > sim.capacity[p] {
            inv.capacity_violations += 1;
        }
        if depth[p] != NONE {
            out_depth.add(f64::from(depth[p]));
            let direct = sim.owd(0, p as u32).max(1);
            stretch.add(lat[p] as f64 / direct as f64);
            if o.and_then(|o| o.depth()) != Some(depth[p]) {
                stale_depth += 1;
            }
            if sim.capacity[p] > 0 {
                fanout.add(f64::from(kids) / f64::from(sim.capacity[p]));
                used += u64::from(kids);
                offered += u64::from(sim.capacity[p]);
            }
            continue;
        }
        // Not reached from the origin: does its parent chain loop, and if not, is its
        // top still recovering from something recent?
        let mark = p as u32 + 1;
        let mut cur = p as u32;
        let mut looped = false;
        loop {
            if walk[cur as usize] == mark {
                looped = true;
                break;
            }
            walk[cur as usize] = mark;
            let up = sim.parent[cur as usize];
            if up == NONE || !sim.alive[up as usize] || depth[up as usize] != NONE {
                break;
            }
            cur = up;
        }
        if looped {
            inv.cycles += 1;
            continue;
        }
        let recent = |t: u64| t != NEVER && t + SETTLE_US > end;
        let top = cur as usize;
        let up = sim.parent[top];
        let excused = recent(sim.joined_at[top])
            || recent(sim.orphan_since[top])
            || (up != NONE && recent(sim.down_at[up as usize]));
        if excused {
            recovering += 1;
        } else {
            inv.detached += 1;
        }
    }
    // Continuity, first frame, control traffic per peer.
    let mut continuity = Dist::default();
    let mut total = (0u64, 0u64);
    let mut first = Dist::default();
    let mut start = Dist::default();
    let mut per_peer = Dist::default();
    let mut peer_seconds = 0.0;
    let mut playing_us = 0u64;
    let mut stall_us = 0u64;
    let mut viewers_stalled = (0u64, 0u64);
    let mut rebuffered_ms = Dist::default();
    let mut stretched_ms = Dist::default();
    for p in 1..n {
        // Every pause adds its length to the viewer's latency: the sum is the time paused.
        let rebuffered = sim.media.rebuffered_us(p);
        stall_us += rebuffered;
        if let Some(t) = sim.media.playing_us(p, sim.down_at[p].min(end))
            && t > 0
        {
            playing_us += t;
            viewers_stalled.0 += u64::from(rebuffered > 0);
            viewers_stalled.1 += 1;
            rebuffered_ms.add(rebuffered as f64 / 1000.0);
            stretched_ms.add(sim.media.stretched_us(p) as f64 / 1000.0);
        }
        if let Some((ok, due)) = sim.media.continuity(p, end)
            && due > 0
        {
            continuity.add(ok as f64 / due as f64);
            total.0 += ok;
            total.1 += due;
        }
        if sim.media.first_at[p] != NEVER && sim.media.first_at[p] <= end {
            first.add((sim.media.first_at[p] - sim.joined_at[p]) as f64 / 1000.0);
        }
        if let Some(t) = sim.media.play_start(p)
            && t <= end
        {
            start.add(t.saturating_sub(sim.joined_at[p]) as f64 / 1000.0);
        }
        if sim.joined_at[p] < end {
            let stop = sim.down_at[p].min(end);
            let life = stop.saturating_sub(sim.joined_at[p]) as f64 / 1e6;
            peer_seconds += life;
            if life >= 20.0 {
                per_peer.add(sim.ctl_bytes[p] as f64 / life);
            }
        }
    }
    let ramp_s = sim
        .joined_at
        .iter()
        .skip(1)
        .copied()
        .filter(|t| *t < end)
        .fold(0, u64::max) as f64
        / 1e6;
    let mut origin_mbps = Dist::default();
    for s in &sim.m.series {
        if s.t_s > ramp_s.min(end as f64 / 1e6 / 3.0) + 1.0 {
            origin_mbps.add(s.origin_mbps);
        }
    }
    let peer_seconds = peer_seconds.max(1e-9);
    let m = std::mem::take(&mut sim.m);
    Outcome {
        spawned: sim.spawned,
        alive_end,
        recovering,
        stale_depth,
        first_frame_ms: first,
        start_ms: start,
        join_attach_ms: m.join_attach_ms,
        join_rtts: m.join_rtts,
        depth: out_depth,
        stretch,
        e2e_ms: sim.media.e2e.clone(),
        fanout_used: fanout,
        slots: (used, offered),
        repair_ms: m.repair_ms,
        outage_ms: m.outage_ms,
        orphaned: m.orphaned,
        repaired_by_standby: m.repaired_by_standby,
        moved: m.moved,
        loops: m.loops,
        continuity,
        continuity_total: total,
        control_per_peer: per_peer,
        control_mean_bps: m.control.total() as f64 / peer_seconds,
        handshakes_per_peer_s: m.control.handshakes as f64 / peer_seconds,
        origin_control_bps: sim.ctl_bytes[0] as f64 / (end as f64 / 1e6),
        control: m.control,
        origin_mbps,
        series: m.series,
        catchup_segments: sim.media.catchup_segments,
        dropped_segments: sim.media.dropped,
        stalls: m.stalls,
        stall_s: stall_us as f64 / 1e6,
        playing_s: playing_us as f64 / 1e6,
        viewers_stalled,
        rebuffered_ms,
        stretched_ms,
        invariants: inv,
        config: sim.cfg.clone(),
    }
}

impl Outcome {
    /// The aggregate continuity index (segments on time over segments due).
    pub fn continuity_index(&self) -> f64 {
        if self.continuity_total.1 == 0 {
            return 0.0;
        }
        self.continuity_total.0 as f64 / self.continuity_total.1 as f64
    }

    /// Pauses that followed a crash of the viewer's parent or grandparent.
    pub fn stalls_after_near_crash(&self) -> u64 {
        self.stalls[StallCause::ParentCrashed.index()]
            + self.stalls[StallCause::GrandparentCrashed.index()]
    }

    /// Whether every invariant held.
    pub fn sound(&self) -> bool {
        self.invariants == Invariants::default()
    }
}
