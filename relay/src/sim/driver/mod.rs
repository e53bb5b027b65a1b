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

mod actions;
mod deliver;
mod stalls;

pub use stalls::{CAUSE_WINDOW_US, StallCause};

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
use crate::proto::media::{Catalog, Codec, SignedCatalog, TrackInfo};
use crate::proto::overlay::{Action, Overlay, OverlayConfig, OverlayEvent, Refusal};

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
    /// The same, in round trips between the joiner and the origin.
    pub join_rtts: Dist,
    /// Overlay repair time (loss noticed to re-attach), ms.
    pub repair_ms: Dist,
    /// Parent crash or close to re-attach, ms.
    pub outage_ms: Dist,
    /// Parents lost without a goodbye.
    pub orphaned: u64,
    /// Repairs done by attaching straight to the standby (the heir's claim included).
    pub repaired_by_standby: u64,
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
    /// Pauses of playback (the player's re-buffering), by [`StallCause`].
    pub stalls: [u64; StallCause::ALL.len()],
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
    /// Whether a peer that stopped crashed (went silent) rather than closed in order.
    pub(super) crashed: Vec<bool>,
    pub(super) orphan_since: Vec<u64>,
    /// When each peer's parent last went down under it (crashed, without a goodbye).
    lost_parent_at: Vec<u64>,
    /// When each peer last changed parent (moved, handed over, repaired, cut off).
    moved_at: Vec<u64>,
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
            ..Default::default()
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
            crashed: Vec::new(),
            orphan_since: Vec::new(),
            lost_parent_at: Vec::new(),
            moved_at: Vec::new(),
            ctl_bytes: Vec::new(),
            media,
            m: Measures::default(),
            scratch: BytesMut::new(),
            catalog_len: 0,
            last_origin_bits: 0.0,
            spawned: 0,
            cfg,
        };
        // Counted as the origin sends it: signed.
        let mut signed = SignedCatalog::unsigned(catalog);
        signed.signature = Some([0; 64]);
        sim.catalog_len = sim.encoded_len(&ControlMessage::Catalog(signed));
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
            )
            .into(),
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
        self.crashed.push(false);
        self.orphan_since.push(NEVER);
        self.lost_parent_at.push(NEVER);
        self.moved_at.push(NEVER);
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
            // Whatever the reason (a move, a repair, a handover that fell through), the
            // subtree's path changed: a pause soon after is put down to it.
            self.moved_at[pu] = self.now;
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
            self.note_stalls();
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
}
