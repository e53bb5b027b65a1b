//! Prometheus metrics of one node.
//!
//! Every [`Node`](super::Node) owns its own [`Registry`] (tests run many nodes in one
//! process), reachable through [`Observer::registry`](super::Observer::registry) so that
//! the application can add its own metrics (the player's, for a viewer). Names follow the
//! Prometheus conventions: `treecast_..._total` counters, `_seconds` histograms and
//! `_bytes`. Per-frame counters are updated where frames pass; gauges (children, depth,
//! subtree totals, parent RTT) are refreshed from the node's state when scraped.

use prometheus::core::Collector;
use prometheus::{
    Encoder, Gauge, Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, Opts, Registry,
    TextEncoder,
};

use super::NodeStats;
use crate::proto::media::TrackId;
use crate::proto::report::Totals;

/// Latency buckets (seconds): a LAN hop to a slow intercontinental chain.
const LATENCY_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];
/// Join and repair duration buckets (seconds).
const DURATION_BUCKETS: &[f64] = &[0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 32.0];

/// The metrics of a node.
#[derive(Debug)]
pub(crate) struct Metrics {
    pub registry: Registry,
    pub frames_received: IntCounterVec,
    pub bytes_received: IntCounterVec,
    pub frames_forwarded: IntCounterVec,
    pub bytes_forwarded: IntCounterVec,
    pub frames_late: IntCounterVec,
    pub frames_lost: IntCounterVec,
    child_dropped_frames: IntCounter,
    child_dropped_groups: IntCounter,
    signature_failures: IntCounter,
    undecryptable_frames: IntCounter,
    pub protocol_errors: IntCounterVec,
    pub joins: IntCounter,
    pub repairs: IntCounter,
    pub parent_changes: IntCounter,
    pub parent_losses: IntCounter,
    pub children_attached: IntCounter,
    pub children_detached: IntCounter,
    pub join_seconds: Histogram,
    pub repair_seconds: Histogram,
    pub glass_to_glass_seconds: Histogram,
    pub hop_latency_seconds: Histogram,
    children: IntGauge,
    capacity: IntGauge,
    sessions: IntGauge,
    depth: IntGauge,
    rooted: IntGauge,
    cache_bytes: IntGauge,
    parent_rtt_seconds: Gauge,
    subtree_nodes: IntGauge,
    subtree_max_depth: IntGauge,
    subtree_spare_slots: IntGauge,
    subtree_worst_latency_seconds: Gauge,
}

fn reg<C: Collector + Clone + 'static>(r: &Registry, c: C) -> C {
    // Names are fixed and distinct, so registration cannot collide.
    let _ = r.register(Box::new(c.clone()));
    c
}

fn counter(r: &Registry, name: &str, help: &str) -> IntCounter {
    reg(
        r,
        IntCounter::with_opts(Opts::new(name, help)).expect("valid metric"),
    )
}

fn counter_vec(r: &Registry, name: &str, help: &str, label: &str) -> IntCounterVec {
    reg(
        r,
        IntCounterVec::new(Opts::new(name, help), &[label]).expect("valid metric"),
    )
}

fn gauge(r: &Registry, name: &str, help: &str) -> IntGauge {
    reg(
        r,
        IntGauge::with_opts(Opts::new(name, help)).expect("valid metric"),
    )
}

fn fgauge(r: &Registry, name: &str, help: &str) -> Gauge {
    reg(
        r,
        Gauge::with_opts(Opts::new(name, help)).expect("valid metric"),
    )
}

fn histogram(r: &Registry, name: &str, help: &str, buckets: &[f64]) -> Histogram {
    reg(
        r,
        Histogram::with_opts(HistogramOpts::new(name, help).buckets(buckets.to_vec()))
            .expect("valid metric"),
    )
}

impl Metrics {
    /// A fresh registry with every node metric (and the process metrics) in it.
    pub fn new() -> Self {
        let r = Registry::new();
        #[cfg(target_os = "linux")]
        let _ = r.register(Box::new(
            prometheus::process_collector::ProcessCollector::for_self(),
        ));
        Metrics {
            frames_received: counter_vec(
                &r,
                "treecast_frames_received_total",
                "Frames accepted from the parent (or the source, at the origin).",
                "track",
            ),
            bytes_received: counter_vec(
                &r,
                "treecast_received_bytes_total",
                "Payload bytes accepted from the parent (or the source).",
                "track",
            ),
            frames_forwarded: counter_vec(
                &r,
                "treecast_frames_forwarded_total",
                "Frames written to children (one per child).",
                "track",
            ),
            bytes_forwarded: counter_vec(
                &r,
                "treecast_forwarded_bytes_total",
                "Payload bytes written to children.",
                "track",
            ),
            frames_late: counter_vec(
                &r,
                "treecast_frames_late_total",
                "Frames refused on arrival as late or duplicate.",
                "track",
            ),
            frames_lost: counter_vec(
                &r,
                "treecast_frames_lost_total",
                "Frame sequence numbers skipped on arrival (lost upstream).",
                "track",
            ),
            child_dropped_frames: counter(
                &r,
                "treecast_child_dropped_frames_total",
                "Frames dropped from children's queues because a child was too slow.",
            ),
            child_dropped_groups: counter(
                &r,
                "treecast_child_dropped_groups_total",
                "Whole groups dropped from children's queues because a child was too slow.",
            ),
            signature_failures: counter(
                &r,
                "treecast_signature_failures_total",
                "Frames or catalogs refused because the publisher's signature did not verify \
                 (the parent that sent them was cut off).",
            ),
            undecryptable_frames: counter(
                &r,
                "treecast_undecryptable_frames_total",
                "Frames of an encrypted stream the local player could not decrypt.",
            ),
            protocol_errors: counter_vec(
                &r,
                "treecast_protocol_errors_total",
                "Connections closed because the peer sent something that does not decode or \
                 breaks the protocol, by close code.",
                "code",
            ),
            joins: counter(
                &r,
                "treecast_joins_total",
                "Times this node joined the tree.",
            ),
            repairs: counter(
                &r,
                "treecast_repairs_total",
                "Times this node re-attached after losing its parent.",
            ),
            parent_changes: counter(
                &r,
                "treecast_parent_changes_total",
                "Moves to a better parent (or away from a leaving one).",
            ),
            parent_losses: counter(
                &r,
                "treecast_parent_losses_total",
                "Times the parent went away without handing this node over.",
            ),
            children_attached: counter(
                &r,
                "treecast_children_attached_total",
                "Children that subscribed.",
            ),
            children_detached: counter(
                &r,
                "treecast_children_detached_total",
                "Children whose session ended.",
            ),
            join_seconds: histogram(
                &r,
                "treecast_join_duration_seconds",
                "Time from starting to join until attached to a parent.",
                DURATION_BUCKETS,
            ),
            repair_seconds: histogram(
                &r,
                "treecast_repair_duration_seconds",
                "Time from losing the parent until attached again.",
                DURATION_BUCKETS,
            ),
            glass_to_glass_seconds: histogram(
                &r,
                "treecast_glass_to_glass_latency_seconds",
                "Origin capture to arrival at this node (wall clocks; assumes synchronised clocks).",
                LATENCY_BUCKETS,
            ),
            hop_latency_seconds: histogram(
                &r,
                "treecast_hop_latency_seconds",
                "Latency added by the hop to each child: the child's reported glass-to-glass \
                 latency minus this node's, sampled at each child report.",
                LATENCY_BUCKETS,
            ),
            children: gauge(&r, "treecast_children", "Children attached now."),
            capacity: gauge(&r, "treecast_capacity", "Child slots in all."),
            sessions: gauge(
                &r,
                "treecast_child_sessions",
                "Child sessions being fed (children plus ones moving away).",
            ),
            depth: gauge(
                &r,
                "treecast_depth",
                "Depth in the tree (origin 0; -1 while not attached).",
            ),
            rooted: gauge(
                &r,
                "treecast_rooted",
                "1 while connected to the origin through the tree.",
            ),
            cache_bytes: gauge(&r, "treecast_cache_bytes", "Bytes held in the group cache."),
            parent_rtt_seconds: fgauge(
                &r,
                "treecast_parent_rtt_seconds",
                "Round-trip time to the parent (0 without one).",
            ),
            subtree_nodes: gauge(
                &r,
                "treecast_subtree_nodes",
                "Nodes in this node's subtree, itself included (at the origin: the audience).",
            ),
            subtree_max_depth: gauge(
                &r,
                "treecast_subtree_max_depth",
                "Depth of the deepest node in this node's subtree.",
            ),
            subtree_spare_slots: gauge(
                &r,
                "treecast_subtree_spare_slots",
                "Free child slots in this node's subtree.",
            ),
            subtree_worst_latency_seconds: fgauge(
                &r,
                "treecast_subtree_worst_latency_seconds",
                "Worst glass-to-glass latency reported in this node's subtree.",
            ),
            registry: r,
        }
    }

    /// Counts an accepted frame.
    pub fn received(&self, track: TrackId, bytes: u64, lost: u64) {
        let t = track.to_string();
        self.frames_received.with_label_values(&[&t]).inc();
        self.bytes_received.with_label_values(&[&t]).inc_by(bytes);
        if lost > 0 {
            self.frames_lost.with_label_values(&[&t]).inc_by(lost);
        }
    }

    /// Counts a frame written to a child.
    pub fn forwarded(&self, track: TrackId, bytes: u64) {
        let t = track.to_string();
        self.frames_forwarded.with_label_values(&[&t]).inc();
        self.bytes_forwarded.with_label_values(&[&t]).inc_by(bytes);
    }

    /// Brings the gauges (and the counters kept elsewhere) up to date.
    pub fn refresh(&self, s: &NodeStats, capacity: usize, rooted: bool, tree: Totals) {
        let gi = |v: usize| i64::try_from(v).unwrap_or(i64::MAX);
        self.children.set(gi(s.children));
        self.capacity.set(gi(capacity));
        self.sessions.set(gi(s.sessions));
        self.depth.set(s.depth.map_or(-1, i64::from));
        self.rooted.set(i64::from(rooted));
        self.cache_bytes.set(gi(s.cache_bytes));
        self.parent_rtt_seconds
            .set(s.parent_rtt_ms.map_or(0.0, |ms| ms / 1e3));
        self.subtree_nodes.set(i64::from(tree.count));
        self.subtree_max_depth.set(i64::from(tree.max_depth));
        self.subtree_spare_slots.set(i64::from(tree.spare));
        self.subtree_worst_latency_seconds
            .set(f64::from(tree.worst_latency_us) / 1e6);
        // Slow-child drops are counted per child queue; catch the counters up (they only
        // grow, apart from a moment while a finished child's drops are being moved).
        for (c, v) in [
            (&self.child_dropped_frames, s.child_dropped_frames),
            (&self.child_dropped_groups, s.child_dropped_groups),
            (&self.signature_failures, s.bad_signatures),
            (&self.undecryptable_frames, s.undecryptable),
        ] {
            let have = c.get();
            if v > have {
                c.inc_by(v - have);
            }
        }
    }

    /// The registry in Prometheus text format.
    pub fn encode(&self) -> String {
        let mut out = Vec::new();
        // Encoding well-formed metric families into a Vec cannot fail.
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut out);
        String::from_utf8(out).unwrap_or_default()
    }
}
