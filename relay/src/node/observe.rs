//! What a node knows about itself and the tree below it: the subtree report it sends its
//! parent every [`NodeConfig::report_interval`](super::NodeConfig::report_interval), the
//! reports its children send it, and the [`Observer`] handle that the metrics endpoint,
//! the status page and tree queries read from.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use prometheus::Registry;

use super::hub::lock;
use super::identity::NodeId;
use super::{NodeStats, Shared};
use crate::proto::control::ControlMessage;
use crate::proto::report::{REPORT_DETAIL, ReportNode, SubtreeReport, Totals};

/// Weight of a new sample in the node's recent latency (an exponential average).
const LATENCY_WEIGHT: f64 = 1.0 / 16.0;

/// Records the glass-to-glass latency of a frame captured at `capture_us` (Unix µs).
pub(crate) fn frame_arrived(shared: &Shared, capture_us: u64) {
    let Ok(now) = SystemTime::now().duration_since(UNIX_EPOCH) else {
        return;
    };
    let now_ms = u64::try_from(now.as_millis()).unwrap_or(u64::MAX);
    shared.last_frame_ms.store(now_ms, Ordering::Relaxed);
    if capture_us == 0 {
        return;
    }
    let now_us = u64::try_from(now.as_micros()).unwrap_or(u64::MAX);
    // A capture time in the future (clock skew) or absurdly old says nothing useful.
    let Some(us) = now_us
        .checked_sub(capture_us)
        .filter(|&d| d < 3_600_000_000)
    else {
        return;
    };
    shared
        .metrics
        .glass_to_glass_seconds
        .observe(us as f64 / 1e6);
    let old = f64::from_bits(shared.latency_us.load(Ordering::Relaxed));
    let new = if old == 0.0 {
        us as f64
    } else {
        old + (us as f64 - old) * LATENCY_WEIGHT
    };
    shared.latency_us.store(new.to_bits(), Ordering::Relaxed);
}

/// This node's recent glass-to-glass latency, microseconds (0: unknown).
fn latency_us(shared: &Shared) -> u32 {
    let v = f64::from_bits(shared.latency_us.load(Ordering::Relaxed));
    v.clamp(0.0, f64::from(u32::MAX)) as u32
}

/// A child sent a report of its subtree.
pub(crate) fn child_reported(shared: &Shared, child: NodeId, report: SubtreeReport) {
    if report.root().id != child {
        // A report about someone else is meaningless here; ignore it.
        return;
    }
    let (mine, theirs) = (latency_us(shared), report.root().latency_us);
    if mine > 0 && theirs > 0 {
        let hop = f64::from(theirs.saturating_sub(mine)) / 1e6;
        shared.metrics.hop_latency_seconds.observe(hop);
    }
    lock(&shared.child_reports).insert(child, report);
}

/// A child's session ended: forget its report.
pub(crate) fn child_gone(shared: &Shared, child: &NodeId) {
    lock(&shared.child_reports).remove(child);
}

/// This node's report of its subtree, detailing at most `limit` nodes.
pub(crate) fn subtree_report(shared: &Shared, limit: usize) -> SubtreeReport {
    let (depth, parent, kids) = {
        let o = lock(&shared.overlay);
        let kids: Vec<_> = o
            .children()
            .map(|(id, addr)| (*id, addr.host.clone()))
            .collect();
        (o.depth(), o.parent().map(|p| p.id), kids)
    };
    let depth = depth.unwrap_or(0);
    let rtt_us = parent
        .and_then(|p| lock(&shared.parents).get(&p).map(|h| h.conn.rtt()))
        .map_or(0, |rtt| u32::try_from(rtt.as_micros()).unwrap_or(u32::MAX));
    let me = ReportNode {
        id: shared.config.identity.id(),
        parent: 0,
        host: String::new(),
        depth,
        rtt_us,
        latency_us: latency_us(shared),
        children: kids.len() as u32,
        capacity: shared.config.max_children as u32,
        totals: Totals::default(),
    };
    let children: Vec<(std::sync::Arc<str>, SubtreeReport)> = {
        let reports = lock(&shared.child_reports);
        kids.into_iter()
            .map(|(id, host)| {
                // A child that has not reported yet shows as a leaf.
                let r = reports.get(&id).cloned().unwrap_or_else(|| SubtreeReport {
                    nodes: vec![ReportNode {
                        id,
                        parent: 0,
                        host: String::new(),
                        depth: depth + 1,
                        rtt_us: 0,
                        latency_us: 0,
                        children: 0,
                        capacity: 0,
                        totals: Totals {
                            count: 1,
                            max_depth: depth + 1,
                            worst_latency_us: 0,
                            spare: 0,
                        },
                    }],
                });
                (host, r)
            })
            .collect()
    };
    SubtreeReport::build(me, &children, limit)
}

/// Sends the parent a report every `report_interval` until shutdown.
pub(crate) async fn report_loop(shared: Arc<Shared>) {
    let mut tick = tokio::time::interval(shared.config.report_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut shutdown = shared.shutdown.subscribe();
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = async { let _ = shutdown.wait_for(|s| *s).await; } => return,
        }
        let Some(parent) = lock(&shared.overlay).parent().map(|p| p.id) else {
            continue;
        };
        let report = subtree_report(&shared, REPORT_DETAIL);
        if let Some(h) = lock(&shared.parents).get(&parent) {
            // A full channel means the session is stuck; the next tick tries again.
            let _ = h.ctl.try_send(ControlMessage::Report(report));
        }
    }
}

/// A snapshot of the node's counters.
pub(crate) fn stats(shared: &Shared) -> NodeStats {
    let c = &shared.counters;
    let hub = lock(&shared.hub);
    let (mut df, mut dg) = (
        c.dropped_frames.load(Ordering::Relaxed),
        c.dropped_groups.load(Ordering::Relaxed),
    );
    for s in hub.children() {
        let d = s.drops();
        df += d.frames;
        dg += d.groups;
    }
    let (parent_id, depth, subtree, children) = {
        let o = lock(&shared.overlay);
        (
            o.parent().map(|p| p.id),
            o.depth(),
            o.subtree_size(),
            o.child_count(),
        )
    };
    let parent = parent_id.and_then(|id| {
        lock(&shared.parents)
            .get(&id)
            .map(|h| (h.addr.to_string(), h.conn.rtt().as_secs_f64() * 1e3))
    });
    let depth = if shared.config.parent.is_none() && shared.config.join.is_empty() {
        Some(0)
    } else {
        depth
    };
    NodeStats {
        frames_received: c.frames_in.load(Ordering::Relaxed),
        bytes_received: c.bytes_in.load(Ordering::Relaxed),
        frames_late: c.frames_late.load(Ordering::Relaxed),
        frames_lost: c.frames_lost.load(Ordering::Relaxed),
        frames_forwarded: c.frames_out.load(Ordering::Relaxed),
        bytes_forwarded: c.bytes_out.load(Ordering::Relaxed),
        child_dropped_frames: df,
        child_dropped_groups: dg,
        protocol_errors: c.protocol_errors.load(Ordering::Relaxed),
        children,
        sessions: hub.child_count(),
        cache_bytes: hub.cache_bytes(),
        parent_rtt_ms: parent.as_ref().map(|p| p.1),
        parent: parent.map(|p| p.0),
        depth,
        subtree,
        bad_signatures: c.bad_signatures.load(Ordering::Relaxed),
        undecryptable: c.undecryptable.load(Ordering::Relaxed),
    }
}

/// A cheap, cloneable read-only view of a running node, for metrics endpoints and status
/// pages (it stays valid after the node stops, showing its last state).
#[derive(Clone, Debug)]
pub struct Observer {
    shared: Arc<Shared>,
}

impl Observer {
    pub(crate) fn new(shared: Arc<Shared>) -> Self {
        Observer { shared }
    }

    /// The node's identity.
    pub fn id(&self) -> NodeId {
        self.shared.config.identity.id()
    }

    /// The node's counters.
    pub fn stats(&self) -> NodeStats {
        stats(&self.shared)
    }

    /// Whether the node is the origin.
    pub fn is_origin(&self) -> bool {
        self.shared.config.parent.is_none() && self.shared.config.join.is_empty()
    }

    /// The node's view of the tree below it: itself, then its subtree breadth-first, at
    /// most `limit` nodes in detail (see [`crate::proto::report`]).
    pub fn tree(&self, limit: usize) -> SubtreeReport {
        subtree_report(&self.shared, limit)
    }

    /// The node's Prometheus registry; the application may register its own metrics in
    /// it (they then appear in [`Observer::metrics_text`]).
    pub fn registry(&self) -> &Registry {
        &self.shared.metrics.registry
    }

    /// All metrics in the Prometheus text exposition format, gauges refreshed now.
    pub fn metrics_text(&self) -> String {
        let stats = self.stats();
        let tree = self.tree(1).totals();
        let rooted = lock(&self.shared.overlay).is_rooted();
        self.shared
            .metrics
            .refresh(&stats, self.shared.config.max_children, rooted, tree);
        self.shared.metrics.encode()
    }

    /// Time since the last frame arrived (`None` before the first).
    pub fn last_frame_age(&self) -> Option<Duration> {
        let at = self.shared.last_frame_ms.load(Ordering::Relaxed);
        if at == 0 {
            return None;
        }
        let now = SystemTime::now().duration_since(UNIX_EPOCH).ok()?;
        Some(now.saturating_sub(Duration::from_millis(at)))
    }

    /// Recent glass-to-glass latency (`None` while unknown).
    pub fn latency(&self) -> Option<Duration> {
        match latency_us(&self.shared) {
            0 => None,
            us => Some(Duration::from_micros(u64::from(us))),
        }
    }

    /// Whether the node is connected to the origin (the origin always is).
    pub fn is_rooted(&self) -> bool {
        lock(&self.shared.overlay).is_rooted()
    }

    /// How often the node reports to its parent (the status page refreshes as often).
    pub fn report_interval(&self) -> Duration {
        self.shared.config.report_interval
    }
}
