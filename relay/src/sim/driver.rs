//! Drives the shipped [`Overlay`] state machines in virtual time.
//!
//! Every peer has its own [`Overlay`]. The driver carries out the actions they emit as
//! messages that arrive after the link's one-way delay (a probe or an attach first opens a
//! connection, one RTT), calls the matching `handle_*` method on arrival, and fires each
//! overlay's timer when [`Overlay::poll_timeout`] is due. A crashed peer is noticed by its
//! neighbours after the node's idle timeout; one that leaves in order closes its
//! connections after its children have moved (or after the leave timeout).
//!
//! Virtual time is microseconds since the start; the overlay sees it as a fixed base
//! [`Instant`] plus that offset, so only differences matter and no result depends on the
//! wall clock.

use std::time::{Duration, Instant};

use bytes::BytesMut;

use super::SimConfig;
use super::events::{Event, Peer, Queue};
use super::media::{Links, Media, MediaConfig};
use super::metrics::{ControlBytes, Dist};
use super::scenario::{self, Exit};
use super::world::{self, Place, Placer, Rng};
use crate::proto::addr::PeerAddr;
use crate::proto::codes::ErrorCode;
use crate::proto::control::{ControlMessage, ResumePoint};
use crate::proto::id::NodeId;
use crate::proto::media::{Catalog, Codec, TrackInfo};
use crate::proto::overlay::{Action, Overlay, OverlayConfig, OverlayEvent, ProbeInfo, Refusal};

const NONE: u32 = u32::MAX;
const NEVER: u64 = u64::MAX;
/// How long the node keeps a probe's connection for a later attach (probe.rs `KEEP`).
const PROBE_CONN_KEEP_US: u64 = 10_000_000;

/// A peer's identity: its index in the first four bytes, then filler.
pub fn node_id(i: Peer) -> NodeId {
    let mut raw = [0u8; 32];
    raw[..4].copy_from_slice(&i.to_be_bytes());
    let mut x = u64::from(i).wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    for b in raw[4..].iter_mut() {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        *b = x as u8;
    }
    NodeId::from_bytes(raw)
}

/// The index of a peer's identity.
pub fn index(id: &NodeId) -> Peer {
    let b = id.as_bytes();
    u32::from_be_bytes([b[0], b[1], b[2], b[3]])
}

/// One point of the time series.
#[derive(Clone, Copy, Debug, Default)]
pub struct SamplePoint {
    /// Seconds since the start.
    pub t_s: f64,
    /// Peers running (origin excluded).
    pub alive: u64,
    /// Of those, connected to the origin.
    pub rooted: u64,
    /// Origin upload over the last second, Mbit/s.
    pub origin_mbps: f64,
}

/// Everything measured during a run.
#[derive(Default)]
pub struct Measures {
    /// Overlay join time (join request to attach), ms.
    pub join_attach_ms: Dist,
    /// Overlay repair time (loss noticed to re-attach), ms.
    pub repair_ms: Dist,
    /// Parent crash or close to re-attach, ms.
    pub outage_ms: Dist,
    /// Parents lost without a goodbye.
    pub orphaned: u64,
    /// Moves (improvement, handover, displacement).
    pub moved: u64,
    /// Loops detected.
    pub loops: u64,
    /// Children admitted beyond capacity (must stay 0).
    pub capacity_violations: u64,
    /// Control messages by kind.
    pub control: ControlBytes,
    /// Once a second.
    pub series: Vec<SamplePoint>,
}

/// The simulator.
pub struct Sim {
    pub(super) cfg: SimConfig,
    pub(super) now: u64,
    base: Instant,
    q: Queue,
    jitter: Rng,
    overlays: Vec<Option<Overlay>>,
    addrs: Vec<PeerAddr>,
    pub(super) place: Vec<Place>,
    pub(super) upload: Vec<f64>,
    pub(super) capacity: Vec<u32>,
    pub(super) alive: Vec<bool>,
    pub(super) kids: Vec<Vec<Peer>>,
    pub(super) parent: Vec<Peer>,
    conns: Vec<Vec<Peer>>,
    /// Connections a peer's probes left open (peer, when), reused by a later probe or
    /// attach within [`PROBE_CONN_KEEP_US`], as the node does.
    probe_conns: Vec<Vec<(Peer, u64)>>,
    timer_at: Vec<u64>,
    pub(super) joined_at: Vec<u64>,
    leaving: Vec<bool>,
    pub(super) down_at: Vec<u64>,
    pub(super) orphan_since: Vec<u64>,
    pub(super) ctl_bytes: Vec<u64>,
    pub(super) media: Media,
    pub(super) m: Measures,
    scratch: BytesMut,
    catalog_len: usize,
    last_origin_bits: f64,
    pub(super) spawned: usize,
}

fn track(id: u32, name: &str, codec: Codec, bitrate: u64) -> TrackInfo {
    TrackInfo {
        id,
        name: name.into(),
        codec,
        bitrate,
    }
}

impl Sim {
    /// A world for `cfg`: the origin and every scheduled session.
    pub fn new(cfg: SimConfig) -> Sim {
        let mut rng = Rng::new(cfg.seed);
        let mut place_rng = rng.fork();
        let mut plan_rng = rng.fork();
        let jitter = rng.fork();
        let seg_us = cfg.segment.as_micros() as u64;
        let media = Media::new(MediaConfig {
            seg_us,
            seg_bits: cfg.stream_bps() * cfg.segment.as_secs_f64(),
            group: (cfg.keyframe_interval.as_micros() as u64 / seg_us.max(1)).max(1) as u32,
            cache_groups: cfg.cache_groups,
            buffer_us: cfg.buffer.as_micros() as u64,
            frame_us: 33_333,
            max_wait_us: 1_000_000,
        });
        let catalog = Catalog {
            name: "treecast".into(),
            tracks: vec![
                track(
                    0,
                    "video",
                    Codec::H264 {
                        width: 1280,
                        height: 720,
                        fps_num: 30,
                        fps_den: 1,
                    },
                    1_500_000,
                ),
                track(
                    1,
                    "audio",
                    Codec::Opus {
                        sample_rate: 48_000,
                        channels: 2,
                    },
                    64_000,
                ),
            ],
        };
        let mut sim = Sim {
            base: Instant::now(),
            now: 0,
            q: Queue::default(),
            jitter,
            overlays: Vec::new(),
            addrs: Vec::new(),
            place: Vec::new(),
            upload: Vec::new(),
            capacity: Vec::new(),
            alive: Vec::new(),
            kids: Vec::new(),
            parent: Vec::new(),
            conns: Vec::new(),
            probe_conns: Vec::new(),
            timer_at: Vec::new(),
            joined_at: Vec::new(),
            leaving: Vec::new(),
            down_at: Vec::new(),
            orphan_since: Vec::new(),
            ctl_bytes: Vec::new(),
            media,
            m: Measures::default(),
            scratch: BytesMut::new(),
            catalog_len: 0,
            last_origin_bits: 0.0,
            spawned: 0,
            cfg,
        };
        sim.catalog_len = sim.encoded_len(&ControlMessage::Catalog(catalog));
        let placer = Placer::default();
        let duration = sim.duration_us();
        // The origin: peer 0, already settled.
        let origin_cfg = OverlayConfig {
            capacity: sim.cfg.origin_capacity,
            origin: true,
            ..sim.cfg.overlay.clone()
        };
        let up = world::Uplink {
            capacity: sim.cfg.origin_capacity,
            upload_bps: f64::from(sim.cfg.origin_capacity.max(1)) * sim.cfg.stream_bps() * 1.5,
        };
        sim.add_peer(placer.origin(), up, origin_cfg, 0, NEVER - 1);
        let (sessions, failure) =
            scenario::plan(sim.cfg.scenario, sim.cfg.peers, duration, &mut plan_rng);
        for s in sessions {
            let place = placer.place(&mut place_rng);
            let up = world::uplink(&mut place_rng, sim.cfg.stream_bps());
            let ocfg = OverlayConfig {
                capacity: up.capacity,
                origin: false,
                ..sim.cfg.overlay.clone()
            };
            let end = match s.exit {
                Exit::Stay => duration,
                Exit::Leave(t) | Exit::Crash(t) => t,
            };
            let p = sim.add_peer(place, up, ocfg, s.join, end);
            sim.q.push(s.join, Event::Join(p));
            match s.exit {
                Exit::Stay => {}
                Exit::Leave(t) => sim.q.push(t, Event::Leave(p)),
                Exit::Crash(t) => sim.q.push(t, Event::Crash(p)),
            }
        }
        if let (Some(t), super::Scenario::OriginChildren) = (failure, sim.cfg.scenario) {
            sim.q.push(t, Event::CrashOriginChildren);
        }
        sim.q.push(0, Event::Segment(0));
        sim.q.push(1_000_000, Event::Sample);
        sim
    }

    fn add_peer(
        &mut self,
        place: Place,
        up: world::Uplink,
        ocfg: OverlayConfig,
        join: u64,
        end: u64,
    ) -> Peer {
        let i = self.overlays.len() as Peer;
        let id = node_id(i);
        let seed = u64::from(i).wrapping_mul(0x2545_f491_4f6c_dd1d) ^ self.cfg.seed;
        self.overlays.push(Some(Overlay::new(id, ocfg, seed)));
        let ip = i + 1;
        self.addrs.push(PeerAddr {
            id,
            host: format!(
                "10.{}.{}.{}:4433",
                (ip >> 16) & 0xff,
                (ip >> 8) & 0xff,
                ip & 0xff
            ),
        });
        self.place.push(place);
        self.upload.push(up.upload_bps);
        self.capacity.push(up.capacity);
        self.alive.push(i == 0);
        self.kids.push(Vec::new());
        self.parent.push(NONE);
        self.conns.push(Vec::new());
        self.probe_conns.push(Vec::new());
        self.timer_at.push(NEVER);
        self.joined_at.push(join);
        self.leaving.push(false);
        self.down_at.push(NEVER);
        self.orphan_since.push(NEVER);
        self.ctl_bytes.push(0);
        self.media.add_peer(end);
        self.spawned += usize::from(i > 0);
        i
    }

    pub(super) fn duration_us(&self) -> u64 {
        self.cfg.duration.as_micros() as u64
    }

    fn at(&self, us: u64) -> Instant {
        self.base + Duration::from_micros(us)
    }

    fn to_us(&self, t: Instant) -> u64 {
        let ns = t.saturating_duration_since(self.base).as_nanos();
        ns.div_ceil(1000) as u64
    }

    pub(super) fn owd(&self, a: Peer, b: Peer) -> u64 {
        self.place[a as usize].owd_us(&self.place[b as usize])
    }

    /// An RTT as measured now: base plus up to 10% and 2 ms of jitter.
    fn rtt_measured(&mut self, a: Peer, b: Peer) -> u64 {
        let base = 2 * self.owd(a, b);
        let extra = (base as f64 * 0.1 * self.jitter.unit()) as u64 + self.jitter.below(2000);
        base + extra
    }

    pub(super) fn overlay(&self, p: Peer) -> Option<&Overlay> {
        self.overlays[p as usize].as_ref()
    }

    fn encoded_len(&mut self, m: &ControlMessage) -> usize {
        self.scratch.clear();
        m.encode(&mut self.scratch);
        self.scratch.len()
    }

    /// Counts a control message from `from` to `to`.
    fn count(&mut self, kind: &'static str, from: Peer, to: Peer, m: &ControlMessage) {
        let n = self.encoded_len(m);
        self.count_len(kind, from, to, n);
    }

    fn count_len(&mut self, kind: &'static str, from: Peer, to: Peer, n: usize) {
        self.m.control.add(kind, n);
        self.ctl_bytes[from as usize] += n as u64;
        self.ctl_bytes[to as usize] += n as u64;
    }

    /// Runs to the end, calling `progress` with (virtual seconds, peers alive, events
    /// pending) every 10 virtual seconds.
    pub fn run(&mut self, progress: &mut dyn FnMut(f64, u64, usize)) {
        let end = self.duration_us();
        let mut next_report = 10_000_000;
        while let Some((t, ev)) = self.q.pop_until(end) {
            self.now = t;
            if t >= next_report {
                next_report += 10_000_000;
                let alive = self.m.series.last().map_or(0, |s| s.alive);
                progress(t as f64 / 1e6, alive, self.q.len());
            }
            self.handle(ev);
        }
        self.now = end;
    }

    fn handle(&mut self, ev: Event) {
        let now = self.now;
        match ev {
            Event::Join(p) => {
                self.alive[p as usize] = true;
                let bootstrap = vec![self.addrs[0].clone()];
                let at = self.at(now);
                if let Some(o) = self.overlays[p as usize].as_mut() {
                    o.handle_join(at, bootstrap);
                }
                self.after(p);
            }
            Event::Timer(p) => {
                if !self.alive[p as usize] || self.timer_at[p as usize] != now {
                    return;
                }
                self.timer_at[p as usize] = NEVER;
                let parent = self
                    .overlay(p)
                    .and_then(|o| o.parent())
                    .map(|a| index(&a.id));
                let rtt = parent.map(|q| self.rtt_measured(p, q));
                let at = self.at(now);
                if let Some(o) = self.overlays[p as usize].as_mut() {
                    if let (Some(q), Some(rtt)) = (parent, rtt) {
                        o.handle_parent_rtt(at, &node_id(q), Duration::from_micros(rtt));
                    }
                    o.handle_timeout(at);
                }
                self.after(p);
            }
            Event::ProbeRequest {
                from,
                to,
                sent,
                rtt_us,
            } => {
                let Some(o) = self.overlays[to as usize]
                    .as_ref()
                    .filter(|_| self.alive[to as usize])
                else {
                    let t = sent + self.cfg.connect_timeout.as_micros() as u64;
                    self.q.push(
                        t.max(now),
                        Event::ProbeReply {
                            from,
                            to,
                            reply: None,
                        },
                    );
                    return;
                };
                let (rooted, depth, free, capacity, candidates) = o.probe_reply();
                let movable = o.movable();
                let msg = ControlMessage::ProbeReply {
                    rooted,
                    depth,
                    free,
                    capacity,
                    movable,
                    candidates,
                };
                self.count("probe reply", to, from, &msg);
                let ControlMessage::ProbeReply { candidates, .. } = msg else {
                    return;
                };
                let info = ProbeInfo {
                    rooted,
                    depth,
                    free,
                    movable,
                    candidates,
                };
                let _ = sent;
                self.q.push(
                    now + rtt_us / 2,
                    Event::ProbeReply {
                        from,
                        to,
                        reply: Some((rtt_us, info)),
                    },
                );
            }
            Event::ProbeReply { from, to, reply } => {
                if !self.alive[from as usize] {
                    return;
                }
                if reply.is_some() {
                    let cache = &mut self.probe_conns[from as usize];
                    cache.retain(|(q, t)| *q != to && now < t + PROBE_CONN_KEEP_US);
                    cache.push((to, now));
                }
                let at = self.at(now);
                let addr = self.addrs[to as usize].clone();
                if let Some(o) = self.overlays[from as usize].as_mut() {
                    let r = reply.map(|(rtt, info)| (Duration::from_micros(rtt), info));
                    o.handle_probe_result(at, &addr, r);
                }
                self.after(from);
            }
            Event::AttachRequest {
                from,
                to,
                replaces,
                sent,
            } => {
                if !self.alive[to as usize] || self.overlays[to as usize].is_none() {
                    let t = sent + self.cfg.connect_timeout.as_micros() as u64;
                    self.q.push(
                        t.max(now),
                        Event::AttachReply {
                            from,
                            to,
                            result: Err(None),
                        },
                    );
                    return;
                }
                let me = self.addrs[from as usize].clone();
                let cap = self.capacity[from as usize];
                let at = self.at(now);
                let Some(o) = self.overlays[to as usize].as_mut() else {
                    return;
                };
                let result = o.handle_child_request(at, &me, cap, replaces);
                if o.child_count() as u32 > self.capacity[to as usize] {
                    self.m.capacity_violations += 1;
                }
                match &result {
                    Ok(info) => {
                        let tree = ControlMessage::Tree(info.clone());
                        self.count("tree", to, from, &tree);
                        let n = self.catalog_len;
                        self.count_len("catalog", to, from, n);
                        if !self.conns[from as usize].contains(&to) {
                            self.conns[from as usize].push(to);
                        }
                        if !self.alive[from as usize] {
                            let t = now + self.cfg.idle_timeout.as_micros() as u64;
                            self.q.push(
                                t,
                                Event::ChildGone {
                                    parent: to,
                                    child: from,
                                },
                            );
                        }
                    }
                    Err(r) => {
                        let (code, reason) = match r.why {
                            Refusal::Full => (
                                ErrorCode::ParentFull,
                                "all 4 child slots of this node are taken (or kept for nodes that relay)",
                            ),
                            Refusal::NotRooted => (
                                ErrorCode::NotRooted,
                                "this node is not connected to the origin right now",
                            ),
                            Refusal::WouldLoop => {
                                (ErrorCode::WouldLoop, "you are an ancestor of this node")
                            }
                            Refusal::Leaving => (ErrorCode::GoingAway, "this node is leaving"),
                        };
                        let msg = ControlMessage::Refuse {
                            code: code.value(),
                            reason: reason.into(),
                            redirect: r.redirect.clone(),
                        };
                        self.count("refuse", to, from, &msg);
                    }
                }
                self.after(to);
                let owd = self.owd(from, to);
                self.q.push(
                    now + owd,
                    Event::AttachReply {
                        from,
                        to,
                        result: result.map_err(Some),
                    },
                );
            }
            Event::AttachReply { from, to, result } => {
                if !self.alive[from as usize] {
                    return;
                }
                let at = self.at(now);
                let addr = self.addrs[to as usize].clone();
                if let Some(o) = self.overlays[from as usize].as_mut() {
                    o.handle_attach_result(at, &addr, result);
                }
                self.after(from);
            }
            Event::Detach { child, parent } => {
                self.conns[child as usize].retain(|p| *p != parent);
                self.child_gone(parent, child);
            }
            Event::ChildGone { parent, child } => self.child_gone(parent, child),
            Event::Tree { from, to, info } => {
                if !self.alive[to as usize] {
                    return;
                }
                let at = self.at(now);
                if let Some(o) = self.overlays[to as usize].as_mut() {
                    o.handle_tree(at, &node_id(from), info);
                }
                self.after(to);
            }
            Event::Status {
                from,
                to,
                free,
                subtree,
                rooms,
            } => {
                if !self.alive[to as usize] {
                    return;
                }
                if let Some(o) = self.overlays[to as usize].as_mut() {
                    o.handle_child_status(&node_id(from), free, subtree, rooms);
                }
                self.after(to);
            }
            Event::Goodbye { from, to, handover } => {
                if !self.alive[to as usize] {
                    return;
                }
                let at = self.at(now);
                if let Some(o) = self.overlays[to as usize].as_mut() {
                    o.handle_goodbye(at, &node_id(from), handover);
                }
                self.after(to);
            }
            Event::ParentLost { child, parent } => {
                if !self.alive[child as usize] {
                    return;
                }
                let at = self.at(now);
                if let Some(o) = self.overlays[child as usize].as_mut() {
                    o.handle_parent_lost(at, &node_id(parent));
                }
                self.after(child);
            }
            Event::Leave(p) => {
                if !self.alive[p as usize] || self.leaving[p as usize] {
                    return;
                }
                self.leaving[p as usize] = true;
                let at = self.at(now);
                if let Some(o) = self.overlays[p as usize].as_mut() {
                    o.handle_leave(at);
                }
                self.after(p);
                let t = now + self.cfg.leave_timeout.as_micros() as u64;
                self.q.push(t, Event::Close(p));
            }
            Event::Close(p) => self.kill(p, true),
            Event::Crash(p) => self.kill(p, false),
            Event::CrashOriginChildren => {
                let victims: Vec<Peer> = self.kids[0]
                    .iter()
                    .copied()
                    .filter(|c| self.alive[*c as usize])
                    .collect();
                for v in victims {
                    // Their end was not known in advance: left out of the continuity index.
                    self.media.end[v as usize] = NEVER;
                    self.kill(v, false);
                }
            }
            Event::Segment(k) => {
                let links = Links {
                    alive: &self.alive,
                    place: &self.place,
                    upload: &self.upload,
                    kids: &self.kids,
                };
                self.media.segment(k, now, &links);
                let next = u64::from(k + 1) * self.cfg.segment.as_micros() as u64;
                self.q.push(next, Event::Segment(k + 1));
            }
            Event::Sample => {
                let alive = self.alive.iter().skip(1).filter(|a| **a).count() as u64;
                let rooted = (1..self.overlays.len())
                    .filter(|i| self.alive[*i])
                    .filter(|i| self.overlays[*i].as_ref().is_some_and(|o| o.is_rooted()))
                    .count() as u64;
                let bits = self.media.origin_bits - self.last_origin_bits;
                self.last_origin_bits = self.media.origin_bits;
                self.m.series.push(SamplePoint {
                    t_s: now as f64 / 1e6,
                    alive,
                    rooted,
                    origin_mbps: bits / 1e6,
                });
                self.q.push(now + 1_000_000, Event::Sample);
            }
        }
    }

    fn child_gone(&mut self, parent: Peer, child: Peer) {
        if !self.alive[parent as usize] {
            return;
        }
        if let Some(o) = self.overlays[parent as usize].as_mut() {
            o.handle_child_gone(&node_id(child));
        }
        self.after(parent);
    }

    /// `p` stops: its neighbours notice at once (an orderly close) or after the idle
    /// timeout (a crash).
    fn kill(&mut self, p: Peer, graceful: bool) {
        let pu = p as usize;
        if !self.alive[pu] || p == 0 {
            return;
        }
        self.alive[pu] = false;
        self.down_at[pu] = self.now;
        let wait = if graceful {
            0
        } else {
            self.cfg.idle_timeout.as_micros() as u64
        };
        let kids = self.kids[pu].clone();
        for c in kids {
            if self.alive[c as usize] && self.parent[c as usize] == p {
                let t = self.now + self.owd(p, c) + wait;
                self.q.push(
                    t,
                    Event::ParentLost {
                        child: c,
                        parent: p,
                    },
                );
            }
        }
        for q in std::mem::take(&mut self.conns[pu]) {
            let t = self.now + self.owd(p, q) + wait;
            self.q.push(
                t,
                Event::ChildGone {
                    parent: q,
                    child: p,
                },
            );
        }
        let old = self.parent[pu];
        if old != NONE {
            self.kids[old as usize].retain(|c| *c != p);
        }
        self.parent[pu] = NONE;
        self.overlays[pu] = None;
        self.timer_at[pu] = NEVER;
        self.probe_conns[pu] = Vec::new();
    }

    /// After any call into `p`'s overlay: carry out its actions, record its events, follow
    /// a change of parent, re-arm its timer.
    fn after(&mut self, p: Peer) {
        while let Some(a) = self.overlays[p as usize]
            .as_mut()
            .and_then(|o| o.poll_action())
        {
            self.dispatch(p, a);
        }
        while let Some(e) = self.overlays[p as usize]
            .as_mut()
            .and_then(|o| o.poll_event())
        {
            self.on_event(p, e);
        }
        self.sync_parent(p);
        let next = self
            .overlay(p)
            .and_then(|o| o.poll_timeout())
            .map(|t| self.to_us(t));
        match next {
            Some(t) => {
                let t = t.max(self.now + 1);
                if self.timer_at[p as usize] != t {
                    self.timer_at[p as usize] = t;
                    self.q.push(t, Event::Timer(p));
                }
            }
            None => self.timer_at[p as usize] = NEVER,
        }
    }

    fn sync_parent(&mut self, p: Peer) {
        let pu = p as usize;
        let new = self
            .overlay(p)
            .and_then(|o| o.parent())
            .map_or(NONE, |a| index(&a.id));
        let old = self.parent[pu];
        if new == old {
            return;
        }
        if old != NONE {
            self.kids[old as usize].retain(|c| *c != p);
        }
        self.parent[pu] = new;
        if new == NONE {
            return;
        }
        self.kids[new as usize].push(p);
        if self.alive[new as usize] {
            let links = Links {
                alive: &self.alive,
                place: &self.place,
                upload: &self.upload,
                kids: &self.kids,
            };
            self.media.attached(p, new, self.now, &links);
        } else {
            let t = self.now + self.cfg.idle_timeout.as_micros() as u64;
            self.q.push(
                t,
                Event::ParentLost {
                    child: p,
                    parent: new,
                },
            );
        }
    }

    fn on_event(&mut self, p: Peer, e: OverlayEvent) {
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        match e {
            OverlayEvent::Joined { took, .. } => self.m.join_attach_ms.add(ms(took)),
            OverlayEvent::Repaired { took, .. } => {
                self.m.repair_ms.add(ms(took));
                let since = self.orphan_since[p as usize];
                if since != NEVER {
                    self.m.outage_ms.add((self.now - since) as f64 / 1000.0);
                    self.orphan_since[p as usize] = NEVER;
                }
            }
            OverlayEvent::Orphaned { parent } => {
                self.m.orphaned += 1;
                let down = self.down_at[index(&parent) as usize];
                self.orphan_since[p as usize] = if down == NEVER { self.now } else { down };
            }
            OverlayEvent::Moved { .. } => self.m.moved += 1,
            OverlayEvent::LoopDetected => {
                self.m.loops += 1;
                self.orphan_since[p as usize] = self.now;
            }
            OverlayEvent::ChildrenHandedOver => {
                if self.leaving[p as usize] {
                    self.q.push(self.now, Event::Close(p));
                }
            }
        }
    }

    fn dispatch(&mut self, p: Peer, a: Action) {
        let now = self.now;
        match a {
            Action::Probe(addr) => {
                let to = index(&addr.id);
                self.count("probe", p, to, &ControlMessage::Probe);
                let rtt = self.rtt_measured(p, to);
                let setup = self.connect(p, to, rtt);
                self.q.push(
                    now + setup + rtt / 2,
                    Event::ProbeRequest {
                        from: p,
                        to,
                        sent: now,
                        rtt_us: rtt,
                    },
                );
            }
            Action::Attach { to, replaces } => {
                let to = index(&to.id);
                let msg = ControlMessage::Subscribe {
                    resume: vec![
                        ResumePoint {
                            track: 0,
                            next_seq: 1 << 20,
                        },
                        ResumePoint {
                            track: 1,
                            next_seq: 1 << 22,
                        },
                    ],
                    capacity: self.capacity[p as usize],
                    replaces,
                };
                self.count("subscribe", p, to, &msg);
                let rtt = self.rtt_measured(p, to);
                let setup = self.connect(p, to, rtt);
                self.q.push(
                    now + setup + rtt / 2,
                    Event::AttachRequest {
                        from: p,
                        to,
                        replaces,
                        sent: now,
                    },
                );
            }
            Action::Detach(parent) => {
                let parent = index(&parent);
                let t = now + self.owd(p, parent);
                self.q.push(t, Event::Detach { child: p, parent });
            }
            Action::SendTree { child, info } => {
                let child = index(&child);
                let msg = ControlMessage::Tree(info);
                self.count("tree", p, child, &msg);
                let ControlMessage::Tree(info) = msg else {
                    return;
                };
                let t = now + self.owd(p, child);
                self.q.push(
                    t,
                    Event::Tree {
                        from: p,
                        to: child,
                        info,
                    },
                );
            }
            Action::SendStatus {
                free,
                subtree,
                rooms,
            } => {
                let Some(parent) = self
                    .overlay(p)
                    .and_then(|o| o.parent())
                    .map(|a| index(&a.id))
                else {
                    return;
                };
                let msg = ControlMessage::Status {
                    free,
                    subtree,
                    rooms,
                };
                self.count("status", p, parent, &msg);
                let ControlMessage::Status { rooms, .. } = msg else {
                    return;
                };
                let t = now + self.owd(p, parent);
                self.q.push(
                    t,
                    Event::Status {
                        from: p,
                        to: parent,
                        free,
                        subtree,
                        rooms,
                    },
                );
            }
            Action::AnnounceLeave => {
                if let Some(parent) = self
                    .overlay(p)
                    .and_then(|o| o.parent())
                    .map(|a| index(&a.id))
                {
                    self.count("leaving", p, parent, &ControlMessage::Leaving);
                }
            }
            Action::MoveChild { child, to } => {
                let child = index(&child);
                self.goodbye(p, child, to);
            }
            Action::Handover(list) => {
                let kids: Vec<Peer> = self
                    .overlay(p)
                    .map(|o| o.children().map(|(id, _)| index(id)).collect())
                    .unwrap_or_default();
                for k in kids {
                    self.goodbye(p, k, list.clone());
                }
            }
        }
    }

    /// Time to get a connection from `p` to `to`: none if a probe left one open, else a
    /// handshake (one RTT).
    fn connect(&mut self, p: Peer, to: Peer, rtt: u64) -> u64 {
        let now = self.now;
        let cache = &mut self.probe_conns[p as usize];
        let hit = cache
            .iter()
            .position(|(q, t)| *q == to && now < t + PROBE_CONN_KEEP_US);
        match hit {
            Some(i) => {
                cache.swap_remove(i);
                0
            }
            None => {
                self.m.control.handshakes += 1;
                rtt
            }
        }
    }

    fn goodbye(&mut self, from: Peer, to: Peer, handover: Vec<crate::proto::tree_msg::Candidate>) {
        let msg = ControlMessage::Goodbye { handover };
        self.count("goodbye", from, to, &msg);
        let ControlMessage::Goodbye { handover } = msg else {
            return;
        };
        let t = self.now + self.owd(from, to);
        self.q.push(t, Event::Goodbye { from, to, handover });
    }
}
