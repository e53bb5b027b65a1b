//! The standby parent: a backup kept measured, so that a crash costs one attach.
//!
//! Every `standby_interval` (and about a second after taking a new parent) a settled
//! node re-probes the first few of the candidates that would survive the parent's
//! crash: the backups the parent gave it (the grandparent and the parent's siblings,
//! full ones too, not our own siblings, who would be orphaned with us) and the rooms
//! those siblings named below themselves (in a full tree often the only free slots near
//! us). Those with room go first, then the parent's siblings (to learn their rooms),
//! full ancestors last. The driver keeps the probe connections open, so each refresh is
//! one small request on a warm connection and keeps it warm.
//!
//! When the parent dies, one standby is attached to at once: one round trip on an open
//! connection instead of a probe round of new handshakes and then an attach. If it
//! refuses for lack of room, the rooms it names below itself are measured along with
//! the backups probed meanwhile, and the orphan chooses among those that answered (a
//! room named from a child's report may have crashed with the parent).
//!
//! - The parent's *heir* (its child with the largest subtree; the parent lists the
//!   grandparent with one free slot to it alone) asks the grandparent for the dead
//!   parent's slot. That slot exists for sure, and nobody else competes for it. The
//!   heir re-measures the grandparent at every refresh, however far it is, and gives
//!   the claim that grandparent's round trip on top of the usual wait.
//! - Every other orphan takes the nearest backup measured recently with a free slot (the
//!   shallowest among near-ties, equals spread by an order of our own). Any node
//!   measured lately above us counts as such a backup: it cannot hang below the parent.

use std::time::{Duration, Instant};

use super::{Action, Overlay, Phase, ProbeInfo, Refusal, Refused, Seeking};
use crate::proto::addr::PeerAddr;
use crate::proto::id::NodeId;
use crate::proto::tree_msg::Candidate;

/// Rooms below our uncles remembered as standby candidates.
const MAX_STANDBY_ROOMS: usize = 8;

impl Overlay {
    pub(super) fn schedule_standby(&mut self, now: Instant) {
        if self.config.standby_interval.is_zero() || self.config.origin || self.config.pinned {
            self.next_standby = None;
            return;
        }
        self.next_standby = Some(self.jittered(now, self.config.standby_interval));
    }

    /// A new parent means new backups, none measured yet: measure them within about a
    /// fifth of the interval (a second by default) rather than a whole one.
    pub(super) fn standby_soon(&mut self, now: Instant) {
        let due = self.next_standby;
        self.schedule_standby(now);
        if self.next_standby.is_some() {
            let soon = self.jittered(now, self.config.standby_interval / 5);
            self.next_standby = Some(due.map_or(soon, |d| d.min(soon)));
        }
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

    /// Notes the rooms a crash-proof backup that is not our ancestor (an uncle, say), or
    /// a room noted before, named below itself: they are outside our parent's subtree,
    /// so they survive its crash too. (Its list may end with others it knows of; a
    /// wrong one costs one refused attempt.)
    pub(super) fn note_standby_rooms(&mut self, from: &NodeId, info: &ProbeInfo) {
        let (Some(p), Some(depth)) = (&self.parent, self.depth()) else {
            return;
        };
        let outside = self.standby_rooms.contains(from)
            || (!p.info.path.contains(from)
                && self
                    .crash_proof_backups(&p.info.backups, depth)
                    .any(|c| c.addr.id == *from));
        if !outside {
            return;
        }
        let exclude = self.exclude_list();
        for c in &info.candidates {
            let id = c.addr.id;
            if c.free > 0 && c.depth > info.depth && !exclude.contains(&id) {
                self.standby_rooms.retain(|r| *r != id);
                self.standby_rooms.insert(0, id);
            }
        }
        self.standby_rooms.truncate(MAX_STANDBY_ROOMS);
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
        let mut cands: Vec<Candidate> = self
            .crash_proof_backups(&p.info.backups, depth)
            .cloned()
            .collect();
        // And the rooms below our uncles, as we know them.
        for id in &self.standby_rooms {
            if let Some(k) = self.known.get(id)
                && !cands.iter().any(|c| c.addr.id == *id)
            {
                cands.push(k.cand.clone());
            }
        }
        cands.retain(|c| !self.known.is_banned(&c.addr.id, now));
        // Those with room first; then full ones outside our path (an uncle names the
        // rooms below itself, which become standbys); full ancestors last (their rooms
        // may lie below our parent, and they have no slot for us).
        cands.sort_by_key(|c| {
            let k = self.known.get(&c.addr.id);
            let room = heir_slot == Some(c.addr.id) || k.map_or(c.free, |k| k.cand.free) > 0;
            let tier = if room {
                0
            } else if !p.info.path.contains(&c.addr.id) {
                1
            } else {
                2
            };
            (tier, k.and_then(|k| k.rtt), c.addr.id)
        });
        // The heir's grandparent is measured every time, however far: the claim on the
        // dead parent's slot then goes over a warm connection (a cold one costs a
        // handshake, and a far grandparent's claim missed its deadline).
        let targets: Vec<PeerAddr> = cands
            .into_iter()
            .enumerate()
            .filter(|(i, c)| *i < self.config.standby_probes || heir_slot == Some(c.addr.id))
            .map(|(_, c)| c.addr)
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
        // And any other node measured lately above us: it cannot be below the parent.
        let exclude = self.exclude_list();
        let ids: Vec<NodeId> = self
            .crash_proof_backups(backups, my_depth)
            .map(|c| c.addr.id)
            .chain(self.standby_rooms.iter().copied())
            .chain(self.known.measured_above(my_depth, since))
            .filter(|id| *id != old && !exclude.contains(id))
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

    /// A connection to `peer` other than our parent's session (one a probe left open,
    /// to a standby say) went silent, or the peer closed it going away: the peer crashed,
    /// is cut off or has left. It is not chosen
    /// for a while, and an attach waiting for its answer gives up at once, instead of
    /// at its deadline. (Often the very moment the parent is noticed lost, when both
    /// went down together.) The driver reports a lost parent session with
    /// [`Overlay::handle_parent_lost`] instead; this call ignores it.
    pub fn handle_peer_lost(&mut self, now: Instant, peer: &NodeId) {
        if self.parent.as_ref().is_some_and(|p| p.addr.id == *peer) {
            return;
        }
        self.known.avoid(peer, now + self.config.avoid_for);
        self.standby_rooms.retain(|r| r != peer);
        if let Phase::Attaching { to, .. } = &self.phase
            && to.id == *peer
        {
            let to = to.clone();
            self.handle_attach_result(now, &to, Err(None));
        }
    }

    /// The standby (or the grandparent asked for the dead parent's slot) refused for lack
    /// of room, naming rooms below itself: measure them along with the backups probed
    /// meanwhile and choose among all those, rather than attach to a room unmeasured. A
    /// room named from a child's report may have crashed since (it was often a sibling
    /// of the dead parent), and an attach to it waited out the whole attach timeout
    /// while a backup with room had already answered. Returns whether it took over.
    pub(super) fn standby_refused(&mut self, now: Instant, r: &Refused) -> bool {
        if !matches!(self.seeking, Seeking::Repair(_))
            || !self.repair_probe_due
            || r.why != Refusal::Full
        {
            return false;
        }
        self.repair_probe_due = false;
        let rooms = self.rooms_to_measure(now, r);
        let sent = self.send_probes(rooms);
        self.repair_pending.extend(sent);
        self.after_standby(now);
        true
    }

    /// How long to give the standby attach: a round trip or two on a warm connection
    /// (more when asking for a dead parent's slot: the grandparent first makes sure the
    /// parent is silent). No answer by then means the standby went down too.
    pub(super) fn standby_deadline(&self, now: Instant, to: &NodeId, replacing: bool) -> Instant {
        let cap = self.config.repair_probe_timeout;
        let wait = match self.known.get(to).and_then(|k| k.rtt) {
            Some(rtt) if !replacing => (rtt * 3 + Duration::from_millis(100)).min(cap),
            // The dead parent's slot is worth a far grandparent's round trip on top:
            // taking it keeps our whole subtree at its depth.
            Some(rtt) => cap + rtt,
            None => cap,
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
