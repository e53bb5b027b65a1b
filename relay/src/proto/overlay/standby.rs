//! The standby parent: a backup kept measured, so that a crash costs one attach.
//!
//! Every `standby_interval` a settled node re-probes the first few of the backups its
//! parent gave it that would survive the parent's crash: the grandparent and the
//! parent's siblings with room (not our own siblings, who would be orphaned with us).
//! The driver keeps the probe connections open, so each refresh is one small request on
//! a warm connection and keeps it warm.
//!
//! When the parent dies, one standby is attached to at once: one round trip on an open
//! connection instead of a probe round of new handshakes and then an attach. If it
//! refuses or fails, the repair probes the backups in parallel as before.
//!
//! - The parent's *heir* (its child that forwards most; the parent lists the grandparent
//!   with one free slot to it alone) asks the grandparent for the dead parent's slot.
//!   That slot exists for sure, and nobody else competes for it.
//! - Every other orphan takes the nearest backup measured recently with a free slot (the
//!   shallowest among near-ties, equals spread by an order of our own).

use std::time::{Duration, Instant};

use super::{Action, Overlay, Phase};
use crate::proto::addr::PeerAddr;
use crate::proto::id::NodeId;
use crate::proto::tree_msg::Candidate;

impl Overlay {
    pub(super) fn schedule_standby(&mut self, now: Instant) {
        if self.config.standby_interval.is_zero() || self.config.origin || self.config.pinned {
            self.next_standby = None;
            return;
        }
        self.next_standby = Some(self.jittered(now, self.config.standby_interval));
    }

    /// The parent's backups that survive its crash: shallower than us (so not our
    /// siblings), and not ourselves or our children.
    fn crash_proof_backups<'a>(
        &self,
        backups: &'a [Candidate],
        my_depth: u32,
    ) -> impl Iterator<Item = &'a Candidate> {
        let exclude = self.exclude_list();
        backups
            .iter()
            .filter(move |c| c.depth < my_depth && !exclude.contains(&c.addr.id))
    }

    /// Re-measures the standby candidates (called when `next_standby` is due).
    pub(super) fn refresh_standby(&mut self, now: Instant) {
        self.schedule_standby(now);
        if self.phase != Phase::Settled {
            return;
        }
        let (Some(p), Some(depth)) = (&self.parent, self.depth()) else {
            return;
        };
        // Those with room first (the grandparent, if we are the heir), nearest first by
        // what we last measured.
        let heir_slot = heir_slot(&p.info.backups, depth).map(|c| c.addr.id);
        let mut cands: Vec<&Candidate> = self.crash_proof_backups(&p.info.backups, depth).collect();
        cands.retain(|c| !self.known.is_banned(&c.addr.id, now));
        cands.sort_by_key(|c| {
            let k = self.known.get(&c.addr.id);
            let room = heir_slot == Some(c.addr.id) || k.map_or(c.free, |k| k.cand.free) > 0;
            (!room, k.and_then(|k| k.rtt), c.addr.id)
        });
        let targets: Vec<PeerAddr> = cands
            .into_iter()
            .take(self.config.standby_probes)
            .map(|c| c.addr.clone())
            .collect();
        for t in targets {
            self.actions.push_back(Action::Probe(t));
        }
    }

    /// The standby to attach to straight away after losing the parent `old` whose
    /// backups were `backups` (we were at `my_depth`), and whose slot to ask for: the
    /// grandparent if we are the heir, else one measured since the last refresh round but
    /// one, rooted, with room.
    pub(super) fn standby(
        &self,
        now: Instant,
        old: NodeId,
        backups: &[Candidate],
        my_depth: u32,
    ) -> Option<(PeerAddr, Option<NodeId>)> {
        if self.config.standby_interval.is_zero() {
            return None;
        }
        if let Some(g) = heir_slot(backups, my_depth)
            && !self.known.is_banned(&g.addr.id, now)
        {
            return Some((g.addr.clone(), Some(old)));
        }
        let since = now.checked_sub(self.config.standby_interval.mul_f64(2.5))?;
        let ids: Vec<NodeId> = self
            .crash_proof_backups(backups, my_depth)
            .map(|c| c.addr.id)
            .collect();
        self.known
            .best_among(
                now,
                self.config.near_tie,
                self.config.near_tie_abs,
                &ids,
                since,
            )
            .map(|k| (k.cand.addr.clone(), None))
    }

    /// How long to give the standby attach: a round trip or two on a warm connection
    /// (more when asking for a dead parent's slot: the grandparent first makes sure the
    /// parent is silent). No answer by then means the standby went down too.
    pub(super) fn standby_deadline(&self, now: Instant, to: &NodeId, replacing: bool) -> Instant {
        let cap = self.config.repair_probe_timeout;
        let wait = match self.known.get(to).and_then(|k| k.rtt) {
            Some(rtt) if !replacing => (rtt * 3 + Duration::from_millis(100)).min(cap),
            _ => cap,
        };
        now + wait
    }
}

/// The grandparent, if the parent promised us its slot there (we are its heir): listed
/// first, one level above the parent, with a free slot.
fn heir_slot(backups: &[Candidate], my_depth: u32) -> Option<&Candidate> {
    backups
        .first()
        .filter(|g| g.free > 0 && g.depth.saturating_add(2) == my_depth)
}
