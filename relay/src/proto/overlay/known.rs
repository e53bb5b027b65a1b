//! What a node knows about possible parents, and how it picks one.
//!
//! Bounded: at most `max` entries; the stalest unprobed ones go first, but a quarter of
//! the room is kept for unprobed candidates (see `make_room`).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use crate::proto::addr::PeerAddr;
use crate::proto::id::NodeId;
use crate::proto::tree_msg::Candidate;

/// One possible parent.
#[derive(Clone, Debug)]
pub(crate) struct Known {
    pub cand: Candidate,
    /// Measured round-trip time, once probed.
    pub rtt: Option<Duration>,
    /// Whether it said it is connected to the origin.
    pub rooted: bool,
    /// When we last heard of it.
    pub seen: Instant,
    /// When we last measured it ourselves.
    pub measured: Option<Instant>,
    /// Don't try it again before this (it refused us or failed).
    pub avoid_until: Option<Instant>,
}

#[derive(Debug)]
pub(crate) struct KnownSet {
    me: NodeId,
    max: usize,
    map: HashMap<NodeId, Known>,
    /// Nodes caught misbehaving (e.g. forging media): never used before the instant.
    banned: HashMap<NodeId, Instant>,
}

/// Most nodes remembered as banned (the oldest ban goes first).
const MAX_BANNED: usize = 64;

impl KnownSet {
    pub fn new(me: NodeId, max: usize) -> Self {
        KnownSet {
            me,
            max: max.max(4),
            map: HashMap::new(),
            banned: HashMap::new(),
        }
    }

    /// Never use `id` again before `until` (it misbehaved), whatever others say of it.
    pub fn ban(&mut self, id: &NodeId, until: Instant) {
        self.map.remove(id);
        if self.banned.len() >= MAX_BANNED && !self.banned.contains_key(id) {
            let oldest = self
                .banned
                .iter()
                .min_by_key(|(k, t)| (**t, **k))
                .map(|(k, _)| *k);
            if let Some(k) = oldest {
                self.banned.remove(&k);
            }
        }
        self.banned.insert(*id, until);
    }

    /// Whether `id` is banned at `now`.
    pub fn is_banned(&self, id: &NodeId, now: Instant) -> bool {
        self.banned.get(id).is_some_and(|t| now < *t)
    }

    /// Learns of a candidate from someone else (not measured yet). Keeps what we measured.
    pub fn hear(&mut self, now: Instant, c: &Candidate) {
        if c.addr.id == self.me || self.is_banned(&c.addr.id, now) {
            return;
        }
        match self.map.get_mut(&c.addr.id) {
            Some(k) => {
                // Second-hand news does not overwrite what the node told us itself,
                // except for a changed address.
                if k.rtt.is_none() {
                    k.cand = c.clone();
                }
                k.cand.addr = c.addr.clone();
                k.seen = now;
            }
            None => {
                self.make_room();
                self.map.insert(
                    c.addr.id,
                    Known {
                        cand: c.clone(),
                        rtt: None,
                        rooted: true,
                        seen: now,
                        measured: None,
                        avoid_until: None,
                    },
                );
            }
        }
    }

    /// Records what a node told us about itself and how far it is.
    pub fn probed(
        &mut self,
        now: Instant,
        addr: &PeerAddr,
        rtt: Duration,
        rooted: bool,
        depth: u32,
        free: u32,
    ) {
        if addr.id == self.me || self.is_banned(&addr.id, now) {
            return;
        }
        // A fresh measurement does not lift an avoidance (a refusal stands for a while).
        let avoid_until = self.map.get(&addr.id).and_then(|k| k.avoid_until);
        if !self.map.contains_key(&addr.id) {
            self.make_room();
        }
        self.map.insert(
            addr.id,
            Known {
                cand: Candidate {
                    addr: addr.clone(),
                    depth,
                    free,
                },
                rtt: Some(rtt),
                rooted,
                seen: now,
                measured: Some(now),
                avoid_until: avoid_until.filter(|t| *t > now),
            },
        );
    }

    pub fn avoid(&mut self, id: &NodeId, until: Instant) {
        if let Some(k) = self.map.get_mut(id) {
            k.avoid_until = Some(until);
        }
    }

    pub fn forget(&mut self, id: &NodeId) {
        self.map.remove(id);
    }

    pub fn get(&self, id: &NodeId) -> Option<&Known> {
        self.map.get(id)
    }

    /// The `n` nearest candidates we have measured, whatever their free slots were then
    /// (for re-measuring: slots free up).
    pub fn nearest(&self, now: Instant, n: usize, exclude: &[NodeId]) -> Vec<PeerAddr> {
        let mut v: Vec<&Known> = self
            .map
            .values()
            .filter(|k| {
                k.rtt.is_some() && self.usable(k, now) && !exclude.contains(&k.cand.addr.id)
            })
            .collect();
        v.sort_by_key(|k| (k.rtt, k.cand.addr.id));
        v.into_iter().take(n).map(|k| k.cand.addr.clone()).collect()
    }

    fn usable(&self, k: &Known, now: Instant) -> bool {
        k.avoid_until.is_none_or(|t| now >= t)
    }

    /// Unmeasured candidates worth probing: those reporting room first, shallower first.
    pub fn to_probe(&self, now: Instant, n: usize, exclude: &[NodeId]) -> Vec<PeerAddr> {
        let mut v: Vec<&Known> = self
            .map
            .values()
            .filter(|k| {
                k.rtt.is_none() && self.usable(k, now) && !exclude.contains(&k.cand.addr.id)
            })
            .collect();
        v.sort_by_key(|k| (k.cand.free == 0, k.cand.depth, k.cand.addr.id));
        v.into_iter().take(n).map(|k| k.cand.addr.clone()).collect()
    }

    /// The best measured parent with room: the nearest, preferring shallower ones among
    /// those within `tie` (relative) + `tie_abs` of the nearest.
    /// With `fresh_after`, only candidates measured since then count (after a crash,
    /// older measurements may describe dead nodes).
    pub fn best(
        &self,
        now: Instant,
        tie: f64,
        tie_abs: Duration,
        exclude: &[NodeId],
        fresh_after: Option<Instant>,
    ) -> Option<&Known> {
        let eligible: Vec<&Known> = self.eligible(now, exclude, fresh_after);
        let nearest = eligible.iter().filter_map(|k| k.rtt).min()?;
        let limit = nearest.mul_f64(1.0 + tie) + tie_abs;
        // Among near-ties: the shallowest; between equals, an order of our own (a hash of
        // both ids) so that siblings orphaned together spread over the equal parents
        // instead of all racing for the same slot.
        eligible
            .into_iter()
            .filter(|k| k.rtt.is_some_and(|r| r <= limit))
            .min_by_key(|k| (k.cand.depth, self.tiebreak(&k.cand.addr.id)))
    }

    /// A per-node order over candidates (FNV-1a of both ids).
    fn tiebreak(&self, other: &NodeId) -> u64 {
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for b in self.me.as_bytes().iter().chain(other.as_bytes()) {
            h ^= u64::from(*b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
        h
    }

    /// Measured, rooted candidates with room that are not avoided or excluded (and, with
    /// `fresh_after`, measured since then).
    fn eligible(
        &self,
        now: Instant,
        exclude: &[NodeId],
        fresh_after: Option<Instant>,
    ) -> Vec<&Known> {
        self.map
            .values()
            .filter(|k| {
                k.rtt.is_some()
                    && fresh_after.is_none_or(|t| k.measured.is_some_and(|m| m >= t))
                    && k.rooted
                    && k.cand.free > 0
                    && self.usable(k, now)
                    && !exclude.contains(&k.cand.addr.id)
            })
            .collect()
    }

    /// Every measured, rooted candidate with room (measured since `fresh_after`, if
    /// given), nearest first.
    pub fn ranked(
        &self,
        now: Instant,
        exclude: &[NodeId],
        fresh_after: Option<Instant>,
    ) -> Vec<PeerAddr> {
        let mut v: Vec<&Known> = self.eligible(now, exclude, fresh_after);
        v.sort_by_key(|k| (k.rtt, k.cand.addr.id));
        v.into_iter().map(|k| k.cand.addr.clone()).collect()
    }

    /// Backup parents in preference order (given ones first, then measured ones by RTT).
    pub fn fallbacks(
        &self,
        now: Instant,
        first: &[Candidate],
        exclude: &[NodeId],
    ) -> Vec<PeerAddr> {
        let mut out: Vec<PeerAddr> = Vec::new();
        for c in first {
            if c.addr.id != self.me
                && !exclude.contains(&c.addr.id)
                && !out.contains(&c.addr)
                && !self.is_banned(&c.addr.id, now)
            {
                let ok = self.map.get(&c.addr.id).is_none_or(|k| self.usable(k, now));
                if ok {
                    out.push(c.addr.clone());
                }
            }
        }
        let mut measured: Vec<&Known> = self
            .map
            .values()
            .filter(|k| {
                k.rtt.is_some()
                    && k.rooted
                    && self.usable(k, now)
                    && !exclude.contains(&k.cand.addr.id)
            })
            .collect();
        measured.sort_by_key(|k| (k.cand.free == 0, k.rtt, k.cand.addr.id));
        for k in measured {
            if !out.contains(&k.cand.addr) {
                out.push(k.cand.addr.clone());
            }
        }
        out
    }

    /// Up to `n` candidates to tell others about (room first, shallower first).
    pub fn share(&self, n: usize, exclude: &[NodeId]) -> Vec<Candidate> {
        let mut v: Vec<&Known> = self
            .map
            .values()
            .filter(|k| k.rooted && !exclude.contains(&k.cand.addr.id))
            .collect();
        v.sort_by_key(|k| (k.cand.free == 0, k.cand.depth, k.cand.addr.id));
        v.into_iter().take(n).map(|k| k.cand.clone()).collect()
    }

    /// Evicts until there is room for one more: the stalest unprobed entry, unless
    /// fewer than a quarter of the entries are unprobed; then the measurement that is
    /// least use (no room, measured longest ago) goes instead. Without that floor a node
    /// in a large tree fills up with old measurements of full parents, every newly heard
    /// candidate evicts the previous one, and a repair can starve for lack of candidates.
    fn make_room(&mut self) {
        while self.map.len() >= self.max {
            let unprobed = self.map.values().filter(|k| k.rtt.is_none()).count();
            let victim = if unprobed > self.max / 4 {
                self.map
                    .values()
                    .filter(|k| k.rtt.is_none())
                    .min_by_key(|k| (k.seen, k.cand.addr.id))
            } else {
                self.map
                    .values()
                    .min_by_key(|k| (k.rtt.is_none(), k.cand.free > 0, k.measured, k.cand.addr.id))
            }
            .map(|k| k.cand.addr.id);
            match victim {
                Some(id) => {
                    self.map.remove(&id);
                }
                None => return,
            }
        }
    }
}
