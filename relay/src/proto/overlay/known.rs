//! What a node knows about possible parents, and how it picks one.
//!
//! Bounded: at most `max + max / 4` entries, cut back to `max` in batches; the stalest
//! unprobed ones go first, but a quarter of the room is kept for unprobed candidates
//! (see `make_room`).

use std::time::{Duration, Instant};

use crate::proto::addr::PeerAddr;
use crate::proto::id::{IdMap, NodeId, pair_order};
use crate::proto::tree_msg::Candidate;

/// One possible parent.
#[derive(Clone, Debug)]
pub(crate) struct Known {
    /// Its address and depth, and in `free` the room it has for us (watch-only children
    /// a forwarder may displace count; slots kept for forwarders do not if we are not).
    pub cand: Candidate,
    /// Its free slots as it told them: what we pass on.
    pub told_free: u32,
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
    /// The RTT of the nearest measured node that named it: a parent is chosen for being
    /// near, so the rooms a near node names tend to be near too.
    pub named_by: Option<Duration>,
}

impl Known {
    /// Whether it may be tried now: no refusal or failure of its still stands.
    pub fn usable(&self, now: Instant) -> bool {
        self.avoid_until.is_none_or(|t| now >= t)
    }

    /// Whether we measured it ourselves at or after `t`.
    pub fn measured_since(&self, t: Instant) -> bool {
        self.measured.is_some_and(|m| m >= t)
    }
}

#[derive(Debug)]
pub(crate) struct KnownSet {
    me: NodeId,
    max: usize,
    map: IdMap<Known>,
    /// Nodes caught misbehaving (e.g. forging media): never used before the instant.
    banned: IdMap<Instant>,
}

/// Most nodes remembered as banned (the oldest ban goes first).
const MAX_BANNED: usize = 64;

impl KnownSet {
    pub fn new(me: NodeId, max: usize) -> Self {
        KnownSet {
            me,
            max: max.max(4),
            map: IdMap::default(),
            banned: IdMap::default(),
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
                    k.told_free = c.free;
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
                        told_free: c.free,
                        rtt: None,
                        rooted: true,
                        seen: now,
                        measured: None,
                        avoid_until: None,
                        named_by: None,
                    },
                );
            }
        }
    }

    /// Learns of a candidate from a node we measured at `rtt` (in its probe reply or
    /// refusal), as [`KnownSet::hear`] does, remembering the nearest node that named it.
    pub fn hear_from(&mut self, now: Instant, c: &Candidate, rtt: Duration) {
        self.hear(now, c);
        if let Some(k) = self.map.get_mut(&c.addr.id) {
            k.named_by = Some(k.named_by.map_or(rtt, |r| r.min(rtt)));
        }
    }

    /// Records what a node told us about itself and how far it is: `free` slots as it
    /// told them, `room` of them for us.
    #[allow(clippy::too_many_arguments)]
    pub fn probed(
        &mut self,
        now: Instant,
        addr: &PeerAddr,
        rtt: Duration,
        rooted: bool,
        depth: u32,
        free: u32,
        room: u32,
    ) {
        if addr.id == self.me || self.is_banned(&addr.id, now) {
            return;
        }
        // A fresh measurement does not lift an avoidance (a refusal stands for a while).
        let avoid_until = self.map.get(&addr.id).and_then(|k| k.avoid_until);
        let named_by = self.map.get(&addr.id).and_then(|k| k.named_by);
        if !self.map.contains_key(&addr.id) {
            self.make_room();
        }
        self.map.insert(
            addr.id,
            Known {
                cand: Candidate {
                    addr: addr.clone(),
                    depth,
                    free: room,
                },
                told_free: free,
                rtt: Some(rtt),
                rooted,
                seen: now,
                measured: Some(now),
                avoid_until: avoid_until.filter(|t| *t > now),
                named_by,
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
            .filter(|k| k.rtt.is_some() && k.usable(now) && !exclude.contains(&k.cand.addr.id))
            .collect();
        smallest(&mut v, n, |k| (k.rtt, k.cand.addr.id));
        v.into_iter().map(|k| k.cand.addr.clone()).collect()
    }

    /// Unmeasured candidates worth probing: those reporting room first, then those named
    /// by the nearest nodes, shallower first.
    ///
    /// Ranking by who named them steers each round of a join towards the joiner's part
    /// of the tree: measured with `treecast sim`, it shortened joins (churn-10k p90 from
    /// about 17 to 13 round trips to the origin) and, since joiners in different places
    /// then look in different subtrees, fewer of them raced for the same slot.
    pub fn to_probe(&self, now: Instant, n: usize, exclude: &[NodeId]) -> Vec<PeerAddr> {
        let mut v: Vec<&Known> = self
            .map
            .values()
            .filter(|k| k.rtt.is_none() && k.usable(now) && !exclude.contains(&k.cand.addr.id))
            .collect();
        smallest(&mut v, n, |k| {
            (
                k.cand.free == 0,
                k.named_by.unwrap_or(Duration::MAX),
                k.cand.depth,
                k.cand.addr.id,
            )
        });
        v.into_iter().map(|k| k.cand.addr.clone()).collect()
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
        Self::nearest_then_shallowest(
            &self.me,
            self.eligible(now, exclude, fresh_after),
            tie,
            tie_abs,
        )
    }

    /// The RTT of the nearest of the parents [`KnownSet::best`] chooses among.
    pub fn nearest_rtt(
        &self,
        now: Instant,
        exclude: &[NodeId],
        fresh_after: Option<Instant>,
    ) -> Option<Duration> {
        self.eligible(now, exclude, fresh_after)
            .iter()
            .filter_map(|k| k.rtt)
            .min()
    }

    /// Those measured since `since` at a depth above `depth`: none of them can be below
    /// a parent of ours at `depth - 1`.
    pub fn measured_above(&self, depth: u32, since: Instant) -> Vec<NodeId> {
        self.map
            .values()
            .filter(|k| k.cand.depth < depth && k.measured.is_some_and(|m| m >= since))
            .map(|k| k.cand.addr.id)
            .collect()
    }

    /// Like [`KnownSet::best`], among `ids` only, measured since `since`.
    pub fn best_among(
        &self,
        now: Instant,
        tie: f64,
        tie_abs: Duration,
        ids: &[NodeId],
        since: Instant,
    ) -> Option<&Known> {
        let eligible: Vec<&Known> = ids
            .iter()
            .filter_map(|id| self.map.get(id))
            .filter(|k| {
                k.rtt.is_some()
                    && k.measured.is_some_and(|m| m >= since)
                    && k.rooted
                    && k.cand.free > 0
                    && k.usable(now)
            })
            .collect();
        Self::nearest_then_shallowest(&self.me, eligible, tie, tie_abs)
    }

    fn nearest_then_shallowest<'a>(
        me: &NodeId,
        eligible: Vec<&'a Known>,
        tie: f64,
        tie_abs: Duration,
    ) -> Option<&'a Known> {
        let nearest = eligible.iter().filter_map(|k| k.rtt).min()?;
        let limit = nearest.mul_f64(1.0 + tie) + tie_abs;
        // Among near-ties: the shallowest; between equals, an order of our own (a hash of
        // both ids) so that siblings orphaned together spread over the equal parents
        // instead of all racing for the same slot.
        eligible
            .into_iter()
            .filter(|k| k.rtt.is_some_and(|r| r <= limit))
            .min_by_key(|k| (k.cand.depth, pair_order(me, &k.cand.addr.id)))
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
                    && fresh_after.is_none_or(|t| k.measured_since(t))
                    && k.rooted
                    && k.cand.free > 0
                    && k.usable(now)
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
                let ok = self.map.get(&c.addr.id).is_none_or(|k| k.usable(now));
                if ok {
                    out.push(c.addr.clone());
                }
            }
        }
        let mut measured: Vec<&Known> = self
            .map
            .values()
            .filter(|k| {
                k.rtt.is_some() && k.rooted && k.usable(now) && !exclude.contains(&k.cand.addr.id)
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

    /// Up to `n` candidates to tell others about (room first, shallower first), learnt
    /// since `since`: free slots go fast while a crowd joins, and a stale "room" draws
    /// every joiner that hears of it into a probe and an attach that fail.
    pub fn share(&self, n: usize, exclude: &[NodeId], since: Instant) -> Vec<Candidate> {
        // The best n + |exclude| first, then the exclusions: checking every entry against
        // the list cost a fifth of a large simulation.
        let mut v: Vec<&Known> = self
            .map
            .values()
            .filter(|k| k.rooted && k.measured.unwrap_or(k.seen) >= since)
            .collect();
        smallest(&mut v, n + exclude.len(), |k| {
            (k.told_free == 0, k.cand.depth, k.cand.addr.id)
        });
        v.into_iter()
            .filter(|k| !exclude.contains(&k.cand.addr.id))
            .take(n)
            .map(|k| Candidate {
                free: k.told_free,
                ..k.cand.clone()
            })
            .collect()
    }

    /// Makes room for one more entry. Evicting is done in batches: the set may grow to
    /// `max + max / 4` entries, and is then cut back to `max - 1` in one pass (a scan per
    /// newly heard candidate was a fifth of a large simulation's time).
    ///
    /// Victims, in order: the stalest unprobed entries while more than a quarter of the
    /// `max` entries are unprobed, then the measurements that are least use (no room,
    /// measured longest ago). Without that floor a node in a large tree fills up with old
    /// measurements of full parents, every newly heard candidate evicts the previous one,
    /// and a repair can starve for lack of candidates.
    fn make_room(&mut self) {
        if self.map.len() < self.max + self.max / 4 {
            return;
        }
        let mut unprobed: Vec<(Instant, NodeId)> = Vec::new();
        let mut probed: Vec<(bool, Option<Instant>, NodeId)> = Vec::new();
        for k in self.map.values() {
            if k.rtt.is_none() {
                unprobed.push((k.seen, k.cand.addr.id));
            } else {
                probed.push((k.cand.free > 0, k.measured, k.cand.addr.id));
            }
        }
        // The loop "stalest unprobed while more than the floor are unprobed, then the
        // least useful measurement, then unprobed again" comes to these counts; the
        // victims are then the smallest of each list (keys are unique: they end in the id).
        let evict = self.map.len() + 1 - self.max;
        let floor = self.max / 4;
        let from_unprobed = unprobed.len().saturating_sub(floor).min(evict);
        let from_probed = (evict - from_unprobed).min(probed.len());
        let from_unprobed = (evict - from_probed).min(unprobed.len());
        smallest(&mut unprobed, from_unprobed, |e| *e);
        smallest(&mut probed, from_probed, |e| *e);
        for id in unprobed
            .iter()
            .map(|e| e.1)
            .chain(probed.iter().map(|e| e.2))
        {
            self.map.remove(&id);
        }
    }
}

/// Keeps the `n` smallest of `v` by `key`, in order (keys are unique: they end in the id).
fn smallest<T, K: Ord>(v: &mut Vec<T>, n: usize, key: impl Fn(&T) -> K) {
    if v.len() > n {
        if n == 0 {
            v.clear();
            return;
        }
        v.select_nth_unstable_by_key(n - 1, &key);
        v.truncate(n);
    }
    v.sort_unstable_by_key(key);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cand(b: u8, free: u32) -> Candidate {
        Candidate {
            addr: PeerAddr {
                id: NodeId::from_bytes([b; 32]),
                host: "10.0.0.1:4433".into(),
            },
            depth: 1,
            free,
        }
    }

    #[test]
    fn stays_bounded_and_keeps_the_useful_measurements() {
        let t0 = crate::test_epoch();
        let mut k = KnownSet::new(NodeId::from_bytes([0; 32]), 8);
        // Two measured parents with room, then many heard-of ones.
        for b in [1, 2] {
            let c = cand(b, 1);
            k.probed(t0, &c.addr, Duration::from_millis(5), true, 1, 1, 1);
        }
        for b in 10..200u8 {
            k.hear(t0 + Duration::from_millis(u64::from(b)), &cand(b, 1));
            assert!(k.map.len() <= 8 + 8 / 4, "{} entries", k.map.len());
        }
        for b in [1, 2] {
            assert!(k.get(&NodeId::from_bytes([b; 32])).is_some(), "{b} evicted");
        }
        // The freshest heard-of candidate is kept, the stalest are gone.
        assert!(k.get(&NodeId::from_bytes([199; 32])).is_some());
        assert!(k.get(&NodeId::from_bytes([10; 32])).is_none());
    }

    #[test]
    fn probes_first_the_rooms_named_by_the_nearest_nodes() {
        let t0 = crate::test_epoch();
        let ms = Duration::from_millis;
        let mut k = KnownSet::new(NodeId::from_bytes([0; 32]), 32);
        // 1 is far (80 ms) and names 11 and 12; 2 is near (10 ms) and names 21, 22 and 12.
        for c in [cand(11, 1), cand(12, 1)] {
            k.hear_from(t0, &c, ms(80));
        }
        for c in [cand(21, 1), cand(22, 1), cand(12, 1)] {
            k.hear_from(t0, &c, ms(10));
        }
        // Heard of without a measured referrer, and a full one named by the near node:
        // after those.
        k.hear(t0, &cand(3, 1));
        k.hear_from(t0, &cand(23, 0), ms(10));
        let id = |b: u8| NodeId::from_bytes([b; 32]);
        let order: Vec<NodeId> = k.to_probe(t0, 6, &[]).into_iter().map(|a| a.id).collect();
        // 12 counts as named by the near node (the nearest that named it).
        assert_eq!(order, [id(12), id(21), id(22), id(11), id(3), id(23)]);
        // Measuring a candidate keeps who named it (it is no longer to probe).
        k.probed(t0, &cand(21, 1).addr, ms(30), true, 1, 1, 1);
        assert_eq!(k.get(&id(21)).and_then(|e| e.named_by), Some(ms(10)));
        assert!(!k.to_probe(t0, 6, &[]).iter().any(|a| a.id == id(21)));
    }

    #[test]
    fn smallest_keeps_the_n_smallest_in_order() {
        let mut v = vec![5, 1, 9, 3, 7];
        smallest(&mut v, 3, |x| *x);
        assert_eq!(v, [1, 3, 5]);
        let mut w = vec![2, 1];
        smallest(&mut w, 5, |x| *x);
        assert_eq!(w, [1, 2]);
        smallest(&mut w, 0, |x| *x);
        assert!(w.is_empty());
    }
}
