//! Periodic improvement: look for a clearly better parent, with hysteresis.

use std::time::{Duration, Instant};

use super::{Action, Overlay, Phase, Seeking};
use crate::proto::addr::PeerAddr;
use crate::proto::tree_msg::TreeInfo;

impl Overlay {
    pub(super) fn next_random(&mut self) -> u64 {
        // xorshift64*: deterministic from the seed.
        let mut x = self.rng;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.rng = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    pub(super) fn schedule_improve(&mut self, now: Instant) {
        if self.config.improve_interval.is_zero() || self.config.pinned || self.config.origin {
            self.next_improve = None;
            return;
        }
        self.next_improve = Some(self.jittered(now, self.config.improve_interval));
    }

    /// `now + base` give or take 25%, so that nodes do not act in lockstep.
    pub(super) fn jittered(&mut self, now: Instant, base: Duration) -> Instant {
        let jitter = (self.next_random() % 500) as f64 / 1000.0 - 0.25;
        now + base.mul_f64(1.0 + jitter)
    }

    pub(super) fn start_improve(&mut self, now: Instant) {
        if self.phase != Phase::Settled || self.improving.is_some() {
            return;
        }
        let Some(p) = &self.parent else { return };
        let mut targets: Vec<PeerAddr> = p
            .info
            .backups
            .iter()
            .filter(|c| c.addr.id != self.me)
            .map(|c| c.addr.clone())
            .take(3)
            .collect();
        let exclude = self.exclude_list();
        // New candidates, and the nearest ones we already know (their slots may have
        // freed up since we measured them).
        let fresh = self.known.to_probe(now, 3, &exclude);
        for a in fresh
            .into_iter()
            .chain(self.known.nearest(now, 3, &exclude))
        {
            if !targets.contains(&a) {
                targets.push(a);
            }
        }
        targets.retain(|a| !exclude.contains(&a.id));
        if targets.is_empty() {
            return;
        }
        let ids = targets.iter().map(|a| a.id).collect();
        for t in targets {
            self.actions.push_back(Action::Probe(t));
        }
        self.improving = Some((ids, now + self.config.probe_timeout));
    }

    /// Whether attaching at `info` would put us deeper than we are, on a move by choice.
    pub(super) fn move_goes_deeper(&self, info: &TreeInfo) -> bool {
        self.seeking == Seeking::Move && self.depth().is_some_and(|d| info.path.len() as u32 > d)
    }

    /// Moves to a clearly better parent: shallower and not much farther, or as deep and
    /// much nearer. The margins are the hysteresis that keeps nodes from oscillating.
    pub(super) fn consider_move(&mut self, now: Instant) {
        if self.phase != Phase::Settled {
            return;
        }
        let Some(p) = &self.parent else { return };
        let (my_parent, parent_depth) = (p.addr.id, p.info.path.len().saturating_sub(1) as u32);
        let parent_rtt = self.known.get(&my_parent).and_then(|k| k.rtt);
        let exclude = self.exclude_list();
        let Some(best) = self.known.best(
            now,
            self.config.near_tie,
            self.config.near_tie_abs,
            &exclude,
            None,
        ) else {
            return;
        };
        let (Some(rtt), Some(prtt)) = (best.rtt, parent_rtt) else {
            return;
        };
        let shallower =
            best.cand.depth < parent_depth && rtt <= prtt.mul_f64(1.2) + Duration::from_millis(5);
        let nearer =
            best.cand.depth <= parent_depth && rtt + Duration::from_millis(10) < prtt.mul_f64(0.7);
        if shallower || nearer {
            let to = best.cand.addr.clone();
            self.seeking = Seeking::Move;
            self.try_next(now, vec![to]);
        }
    }
}
