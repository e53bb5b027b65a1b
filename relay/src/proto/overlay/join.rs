//! Finding a parent: probing, choosing, attaching, repairing.

use std::time::Instant;

use super::{Action, Overlay, OverlayEvent, Parent, Phase, Refusal, Refused, Seeking};
use crate::proto::addr::PeerAddr;
use crate::proto::id::NodeId;
use crate::proto::tree_msg::TreeInfo;

/// Refusers remembered in one search (each cost an attach round trip).
pub(super) const MAX_REFUSERS: usize = 32;
/// Parents lost lately that are remembered (see `cut_off`).
pub(super) const MAX_LOST: usize = 8;

impl Overlay {
    pub(super) fn seek(&mut self, now: Instant) {
        if self.config.pinned
            && let Some(first) = self.bootstrap.first().cloned()
        {
            let mut queue = vec![first];
            if let Some(p) = &self.parent {
                queue.retain(|a| a.id != p.addr.id);
            }
            self.try_next(now, queue);
            return;
        }
        self.probed_this_join.clear();
        let targets: Vec<PeerAddr> = self.bootstrap.clone();
        self.probe(now, 0, targets);
    }

    pub(super) fn probe(&mut self, now: Instant, round: usize, targets: Vec<PeerAddr>) {
        let deadline = now + self.config.probe_timeout;
        self.probe_until(now, round, targets, deadline);
    }

    pub(super) fn probe_until(
        &mut self,
        now: Instant,
        round: usize,
        targets: Vec<PeerAddr>,
        deadline: Instant,
    ) {
        let outstanding = self.send_probes(targets);
        self.await_probes(now, round, outstanding, deadline);
    }

    /// Probes those of `targets` not probed yet in this search (nor ourselves); returns
    /// whom it probed.
    pub(super) fn send_probes(
        &mut self,
        targets: impl IntoIterator<Item = PeerAddr>,
    ) -> Vec<NodeId> {
        let mut sent = Vec::new();
        for t in targets {
            if t.id == self.me || !self.probed_this_join.insert(t.id) {
                continue;
            }
            sent.push(t.id);
            self.actions.push_back(Action::Probe(t));
        }
        sent
    }

    /// Waits for the `outstanding` probes of `round` until `deadline`, or chooses at once
    /// if none is outstanding.
    fn await_probes(
        &mut self,
        now: Instant,
        round: usize,
        outstanding: Vec<NodeId>,
        deadline: Instant,
    ) {
        let done = outstanding.is_empty();
        self.phase = Phase::Probing {
            round,
            outstanding,
            deadline: if done { now } else { deadline },
            started: now,
        };
        if done {
            self.after_probe_round(now);
        }
    }

    /// From when the probes of this round still out can no longer change the choice.
    ///
    /// A probe on a new connection takes `probe_round_trips` (the answer comes with the
    /// handshake, or after it when the prober must present a token): one unanswered
    /// after `elapsed` is to a node more than `elapsed / probe_round_trips` away. Once
    /// that is beyond the near-tie margin of the nearest parent with room in hand, none
    /// of them could be chosen, and waiting for the far ones (a crowd spans continents)
    /// only lets the near slots fill up.
    pub(super) fn round_decided_at(&self, now: Instant) -> Option<Instant> {
        let Phase::Probing { started, .. } = &self.phase else {
            return None;
        };
        let exclude = self.exclude_list();
        let nearest = self.known.nearest_rtt(now, &exclude, self.fresh_after)?;
        let limit = nearest.mul_f64(1.0 + self.config.near_tie) + self.config.near_tie_abs;
        Some(*started + limit * self.config.probe_round_trips.max(1))
    }

    /// The parent to choose now (see [`KnownSet::best`](super::known::KnownSet::best)):
    /// its address and depth.
    pub(super) fn best_parent(&self, now: Instant) -> Option<(PeerAddr, u32)> {
        let exclude = self.exclude_list();
        self.known
            .best(
                now,
                self.config.near_tie,
                self.config.near_tie_abs,
                &exclude,
                self.fresh_after,
            )
            .map(|k| (k.cand.addr.clone(), k.cand.depth))
    }

    pub(super) fn after_probe_round(&mut self, now: Instant) {
        let Phase::Probing { round, .. } = self.phase else {
            return;
        };
        let exclude = self.exclude_list();
        let best = self.best_parent(now);
        let probed: Vec<NodeId> = self.probed_this_join.iter().copied().collect();
        let mut ex = exclude.clone();
        ex.extend(probed);
        let next = self.known.to_probe(now, self.config.probe_fanout, &ex);
        // Follow the candidates one more round while unmeasured ones with room remain:
        // a deeper node may well be nearer.
        let promising = next
            .iter()
            .any(|a| self.known.get(&a.id).is_some_and(|k| k.cand.free > 0));
        // Repairing, or choosing among a refuser's rooms (only fresh measurements count),
        // a parent with room in hand is taken at once; without one, the candidates the
        // probed nodes named are followed even in the last round.
        let fresh_only = self.fresh_after.is_some();
        let rounds = self.config.probe_rounds + if fresh_only { 2 } else { 0 };
        if promising && round + 1 < rounds && !(fresh_only && best.is_some()) {
            let wait = if fresh_only {
                self.config.repair_probe_timeout
            } else {
                self.config.probe_timeout
            };
            self.probe_until(now, round + 1, next, now + wait);
            return;
        }
        match best {
            Some((addr, _)) => {
                // The chosen one first, then the others that answered with room, nearest
                // first (while repairing, only those that answered this time).
                let queue = self.known.ranked(now, &exclude, self.fresh_after);
                let mut q = vec![addr.clone()];
                q.extend(queue.into_iter().filter(|a| *a != addr));
                self.try_next(now, q);
            }
            None if matches!(self.seeking, Seeking::Join(_)) && self.fresh_after.is_some() => {
                // None of a refuser's rooms had room after all: back to the parents we
                // measured before, as a join does without a refusal.
                self.fresh_after = None;
                self.after_probe_round(now);
            }
            None if self.seeking == Seeking::Handover => {
                // Handed over, and none of the rooms a full parent named has room: look
                // afresh (what we measured before is old, and walking through it took
                // seconds).
                self.fresh_after = None;
                self.out_of_parents(now);
            }
            None => {
                // Nobody with room: try again after a pause (short while repairing:
                // slots free up as the tree notices the same failure).
                let pause = if matches!(self.seeking, Seeking::Repair(_)) {
                    self.config.repair_grace * 5
                } else {
                    self.config.probe_timeout
                };
                self.phase = Phase::Backoff {
                    deadline: now + pause,
                };
            }
        }
    }

    /// Joining or handed over, and refused for lack of room: measures the rooms the
    /// refuser named (all at once, as one more probe round) and chooses among those
    /// alone; `false` if it named none to measure.
    ///
    /// In a crowd the other parents we measured have mostly filled up as well, and a
    /// room attached to unmeasured may be anywhere. Measured alone with `treecast sim`
    /// (steady-10k over 60 s), this cut the median stretch from 2.95 to 2.54 for about
    /// half a round trip more per join. Handed over, the leaver feeds us meanwhile, so
    /// measuring costs no playback; at churn-10k with a 1 s buffer it halved the pauses
    /// (the rooms tried blind were often far, or behind in the stream). A repair does
    /// the like with `standby_refused`.
    pub(super) fn measure_rooms(&mut self, now: Instant, r: &Refused) -> bool {
        if r.why != Refusal::Full {
            return false;
        }
        let rooms = self.rooms_to_measure(now, r);
        if rooms.is_empty() {
            return false;
        }
        // What we measured before the refusal is as stale as the refuser's room was.
        self.probed_this_join.clear();
        self.fresh_after = Some(now);
        self.probe(now, self.config.probe_rounds.saturating_sub(1), rooms);
        true
    }

    /// The rooms with room a refusal names that we could take: not ourselves, our
    /// parent or children, nor a banned node.
    fn rooms_named<'a>(
        &'a self,
        now: Instant,
        r: &'a Refused,
    ) -> impl Iterator<Item = PeerAddr> + 'a {
        let exclude = self.exclude_list();
        r.redirect
            .iter()
            .filter(move |c| {
                c.free > 0
                    && !exclude.contains(&c.addr.id)
                    && !self.known.is_banned(&c.addr.id, now)
            })
            .map(|c| c.addr.clone())
    }

    /// Those of [`Overlay::rooms_named`] one probe round takes.
    pub(super) fn rooms_to_measure(&self, now: Instant, r: &Refused) -> Vec<PeerAddr> {
        self.rooms_named(now, r)
            .take(self.config.probe_fanout)
            .collect()
    }

    /// Repairing with no parent with room in hand: probes the rooms a reply just named
    /// at once, instead of waiting for the round to end (backups that died with the
    /// parent never answer, and the round would wait for them).
    pub(super) fn follow_rooms_at_once(&mut self, now: Instant, rooms: &[PeerAddr]) {
        if !matches!(self.seeking, Seeking::Repair(_))
            || self.fresh_after.is_none()
            || self.best_parent(now).is_some()
        {
            return;
        }
        let Phase::Probing { .. } = self.phase else {
            return;
        };
        let exclude = self.exclude_list();
        let rooms: Vec<PeerAddr> = rooms
            .iter()
            .take(self.config.probe_fanout)
            .filter(|a| !exclude.contains(&a.id) && !self.known.is_banned(&a.id, now))
            .cloned()
            .collect();
        let launched = self.send_probes(rooms);
        if launched.is_empty() {
            return;
        }
        let wait = now + self.config.repair_probe_timeout;
        if let Phase::Probing {
            outstanding,
            deadline,
            ..
        } = &mut self.phase
        {
            outstanding.extend(launched);
            *deadline = (*deadline).max(wait);
        }
    }

    /// Repairing, refused for lack of room by a node that names among its rooms one that
    /// has refused us too a moment ago: their news of each other is stale. Following it
    /// kept one orphan of the simulator's churn-100k bouncing between two full nodes,
    /// each naming the other, for 8.7 s. Measures the rooms instead (a probe tells what
    /// a node has free now) and chooses among those that answer, as after the standby's
    /// refusal. Returns whether it took over.
    pub(super) fn measure_rooms_after_bounce(&mut self, now: Instant, r: &Refused) -> bool {
        if r.why != Refusal::Full || !matches!(self.seeking, Seeking::Repair(_)) {
            return false;
        }
        let rooms = self.rooms_to_measure(now, r);
        if !rooms.iter().any(|a| self.refused_full_lately(now, &a.id)) {
            return false;
        }
        for a in &rooms {
            // Measured before in this search or not, what it has free now is the point.
            self.probed_this_join.remove(&a.id);
        }
        self.fresh_after = Some(now);
        let round = self.config.probe_rounds.saturating_sub(1);
        self.probe_until(now, round, rooms, now + self.config.repair_probe_timeout);
        true
    }

    /// Which of a refuser's redirects to try before the rest of the queue: repairing
    /// (past the standby), every moment counts, and all its parents with room (near it,
    /// fresher than what we probed) go first, unmeasured, after the best parent that
    /// answered (see [`Overlay::retry_after_failure`]). (Joining, handed over, or
    /// refused by the standby, the rooms are measured first instead: see
    /// [`Overlay::measure_rooms`] and `standby_refused`.)
    pub(super) fn redirect_first(&self, now: Instant, r: &Refused) -> Vec<PeerAddr> {
        if r.why != Refusal::Full || !matches!(self.seeking, Seeking::Repair(_)) {
            return Vec::new();
        }
        self.rooms_named(now, r).collect()
    }

    /// An attempt failed (a refusal, an answer we cannot use, no answer by the
    /// deadline): attach to the next of `queue`. Repairing, the best parent that
    /// answered with room in this repair goes first, and the nodes this repair already
    /// knows cannot take us are dropped (see [`Overlay::ruled_out_in_repair`]): those
    /// probed that never answered most likely crashed with the parent, and an attach to
    /// one waits out the attach deadline. Going on with the queue as it was sent the
    /// slowest orphan of the simulator's 100k mass failure to four rooms named earlier,
    /// all crashed, one deadline each (6.7 s), while five nodes it had probed had
    /// answered with room; with this, that run had 17 stalls instead
    /// of 161 (and over 96 seeds of churn-10k with a 1 s buffer, doing so after a
    /// refusal for lack of room alone took the slowest repair of a run from up to 3.78 s
    /// to at most 1.78 s).
    pub(super) fn retry_after_failure(&mut self, now: Instant, queue: Vec<PeerAddr>) {
        let (Seeking::Repair(_), Some(since)) = (self.seeking, self.fresh_after) else {
            self.try_next(now, queue);
            return;
        };
        let mut q: Vec<PeerAddr> = self.best_parent(now).map(|(a, _)| a).into_iter().collect();
        for a in queue {
            if !self.ruled_out_in_repair(now, since, &a.id) && !q.contains(&a) {
                q.push(a);
            }
        }
        self.try_next(now, q);
    }

    /// Whether this repair (measuring since `since`) already knows that `id` cannot
    /// take us, so that an attach to it would only cost a round trip or a deadline:
    /// probed in this repair and never answered (it most likely crashed with the
    /// parent), answered that it is cut off from the origin, or refused us (or failed)
    /// a moment ago.
    ///
    /// A refuser's rooms are tried unmeasured, and after a crash they are often cut off
    /// too. In the simulator's mass failure (30% of 10,000 peers crash at once, seed 5)
    /// orphans made 12 attaches, each a round trip, to nodes whose probe answer in the
    /// same repair had said they were not rooted, and were refused as such. Skipping
    /// what the repair knows is worth little in pauses: over seeds 1-12 of that run,
    /// 653 -> 638 with a 1 s buffer (332 -> 312 after a parent's or grandparent's
    /// crash), less than the spread between seeds; 48 seeds of churn-10k paused
    /// exactly as before. It is kept because such an attempt can never succeed.
    fn ruled_out_in_repair(&self, now: Instant, since: Instant, id: &NodeId) -> bool {
        let known = self.known.get(id);
        let answered = known.is_some_and(|k| k.measured_since(since));
        let silent = self.probed_this_join.contains(id) && !answered;
        let cut_off = answered && known.is_some_and(|k| !k.rooted);
        let refused = known.is_some_and(|k| !k.usable(now));
        silent || cut_off || refused
    }

    /// The parent `id` went silent: remembered for `avoid_for` (bounded).
    fn note_lost(&mut self, now: Instant, id: NodeId) {
        self.lost.note(now, id, self.config.avoid_for);
    }

    /// Whether a parent whose position is `info` hangs below a parent we lost lately.
    ///
    /// Such a subtree is cut off from the origin, but its nodes answer as rooted until
    /// the news comes down to them, and the orphans of one crash probe each other's
    /// subtrees at once. An orphan attached there waits for its sibling's repair on top
    /// of its own, at the bottom of a deeper path, or closes a loop with it. Letting go
    /// at once (and trying the next parent) about halved the pauses of churn-10k with a
    /// 1 s buffer in `treecast sim` (96 seeds: 1,353 -> 749; 34 -> 15 after a near
    /// crash).
    pub(super) fn cut_off(&self, now: Instant, info: &TreeInfo) -> bool {
        self.lost
            .within(now, self.config.avoid_for)
            .any(|id| info.path.contains(id))
    }

    /// `id` refused us for lack of room: remembered (bounded) until we attach.
    pub(super) fn note_refused_full(&mut self, now: Instant, id: NodeId) {
        self.refused_full.note(now, id, self.config.avoid_for);
    }

    /// Whether `id` refused us for lack of room in this search, within `avoid_for`.
    pub(super) fn refused_full_lately(&self, now: Instant, id: &NodeId) -> bool {
        self.refused_full
            .within(now, self.config.avoid_for)
            .any(|n| n == id)
    }

    /// Nodes never probed or attached to: ourselves, the parent, and our subtree as far
    /// as we know it (the children and the rooms they report below themselves: they
    /// would refuse us as not rooted, a round trip lost, or be dead).
    pub(super) fn exclude_list(&self) -> Vec<NodeId> {
        let mut v = vec![self.me];
        v.extend(self.children.keys().copied());
        v.extend(
            self.children
                .values()
                .flat_map(|c| c.rooms.iter().map(|r| r.addr.id)),
        );
        if let Some(p) = &self.parent {
            v.push(p.addr.id);
        }
        v
    }

    /// Attach to the first of `queue`, keeping the rest for failures.
    pub(super) fn try_next(&mut self, now: Instant, queue: Vec<PeerAddr>) {
        self.try_next_replacing(now, queue, None);
    }

    pub(super) fn try_next_replacing(
        &mut self,
        now: Instant,
        mut queue: Vec<PeerAddr>,
        replaces: Option<NodeId>,
    ) {
        let exclude = self.exclude_list();
        queue.retain(|a| !exclude.contains(&a.id) && !self.known.is_banned(&a.id, now));
        if queue.is_empty() && self.repair_probe_due {
            self.repair_probe_due = false;
            self.after_standby(now);
            return;
        }
        if queue.is_empty() {
            self.out_of_parents(now);
            return;
        }
        let to = queue.remove(0);
        self.actions.push_back(Action::Attach {
            to: to.clone(),
            replaces,
        });
        self.phase = Phase::Attaching {
            to,
            queue,
            deadline: now + self.config.attach_timeout,
            replaces,
        };
    }

    /// Every parent on hand failed: a move by choice stays where it is (if it still
    /// can); anything else, a handover included (the parent no longer counts us as its
    /// child), looks afresh as a repair.
    fn out_of_parents(&mut self, now: Instant) {
        if matches!(self.seeking, Seeking::Move | Seeking::None) && self.parent.is_some() {
            self.seeking = Seeking::None;
            self.phase = Phase::Settled;
            return;
        }
        if matches!(
            self.seeking,
            Seeking::Move | Seeking::None | Seeking::Handover
        ) {
            self.seeking = Seeking::Repair(now);
        }
        self.seek_by_probing(now);
    }

    pub(super) fn seek_by_probing(&mut self, now: Instant) {
        if self.config.pinned {
            // A given parent: keep trying it (and nothing else), pausing between tries.
            self.phase = Phase::Backoff {
                deadline: now + self.config.probe_timeout,
            };
            return;
        }
        self.probed_this_join.clear();
        let mut targets = self.bootstrap.clone();
        let exclude = self.exclude_list();
        // Re-measure the parents we know (their free slots change) and try new ones.
        let known = self.known.fallbacks(now, &[], &exclude);
        let fresh = self.known.to_probe(now, self.config.probe_fanout, &exclude);
        for a in known
            .into_iter()
            .take(self.config.probe_fanout)
            .chain(fresh)
        {
            if !targets.contains(&a) {
                targets.push(a);
            }
        }
        self.probe(now, 0, targets);
    }

    pub(super) fn attached(&mut self, now: Instant, addr: PeerAddr, info: TreeInfo) {
        for b in &info.backups {
            self.known.hear(now, b);
        }
        let old = self.parent.take().map(|p| p.addr.id);
        let new_id = addr.id;
        let depth = info.path.len() as u32;
        self.parent = Some(Parent { addr, info });
        self.phase = Phase::Settled;
        match self.seeking {
            Seeking::Join(t) => self.events.push_back(OverlayEvent::Joined {
                parent: new_id,
                depth,
                took: now.saturating_duration_since(t),
            }),
            Seeking::Repair(t) => self.events.push_back(OverlayEvent::Repaired {
                parent: new_id,
                took: now.saturating_duration_since(t),
                standby: self.standby_attempt == Some(new_id),
            }),
            Seeking::Move | Seeking::Handover | Seeking::None => {
                if let Some(from) = old {
                    self.events
                        .push_back(OverlayEvent::Moved { from, to: new_id });
                }
            }
        }
        if let Some(old) = old
            && old != new_id
        {
            self.actions.push_back(Action::Detach(old));
        }
        self.seeking = Seeking::None;
        self.fresh_after = None;
        self.repair_probe_due = false;
        self.standby_attempt = None;
        self.repair_pending.clear();
        self.refused_full.clear();
        if old != Some(new_id) {
            self.standby_rooms.clear();
        }
        self.last_status = None;
        self.status_changed();
        self.tell_children();
        if self.next_improve.is_none() {
            self.schedule_improve(now);
        }
        self.standby_soon(now);
    }

    pub(super) fn lose_parent(&mut self, now: Instant, old: NodeId, failed: bool) {
        let my_depth = self.depth().unwrap_or(u32::MAX);
        let backups = self
            .parent
            .take()
            .map(|p| p.info.backups)
            .unwrap_or_default();
        if failed {
            self.known.forget(&old);
            self.note_lost(now, old);
        }
        self.seeking = Seeking::Repair(now);
        // Our subtree is cut off from the origin until we re-attach.
        self.tell_children();
        let queue = self.known.fallbacks(now, &backups, &[self.me, old]);
        if self.config.pinned {
            self.try_next(now, queue);
            return;
        }
        for b in &backups {
            self.known.hear(now, b);
        }
        let standby = self.standby(now, old, &backups, my_depth);
        let exclude = self.exclude_list();
        self.repair_backups = backups;
        if let Some((standby, replaces)) = standby {
            // The heir's slot, or a standby measured moments ago with room: attach at
            // once (one round trip on a warm connection).
            self.repair_probe_due = true;
            self.standby_attempt = Some(standby.id);
            let deadline = self.standby_deadline(now, &standby.id, replaces.is_some());
            // Meanwhile probe the other backups, in case the standby fails.
            let mut others = self.known.fallbacks(now, &self.repair_backups, &exclude);
            others.retain(|a| a.id != standby.id);
            others.truncate(self.config.probe_fanout);
            self.probed_this_join.clear();
            self.fresh_after = Some(now);
            self.repair_pending = others.iter().map(|a| a.id).collect();
            self.probed_this_join.insert(standby.id);
            for a in others {
                self.probed_this_join.insert(a.id);
                self.actions.push_back(Action::Probe(a));
            }
            self.try_next_replacing(now, vec![standby], replaces);
            if let Phase::Attaching { deadline: d, .. } = &mut self.phase {
                *d = deadline;
            }
            return;
        }
        // (Every orphan asking the grandparent for the dead parent's slot was measured:
        // it serialised a crashed relay's many orphans on one slot and made repairs
        // slower on loopback. Only the heir asks for it now; see `standby`.)
        self.repair_probe(now);
    }

    /// The standby attach failed: choose among the backups probed meanwhile, waiting a
    /// moment for those that have not answered yet (dead ones never will).
    pub(super) fn after_standby(&mut self, now: Instant) {
        let Seeking::Repair(lost_at) = self.seeking else {
            self.repair_probe(now);
            return;
        };
        let outstanding = std::mem::take(&mut self.repair_pending);
        let grace = now + self.config.repair_grace;
        let deadline = if self.best_parent(now).is_some() {
            grace
        } else {
            (lost_at + self.config.repair_probe_timeout).max(grace)
        };
        let round = self.config.probe_rounds.saturating_sub(1);
        self.await_probes(now, round, outstanding, deadline);
    }

    /// Probes the backups (grandparent first) and other known parents all at once and
    /// chooses among those that answer: a crash often takes backups with it, and trying
    /// them one by one would cost a timeout each.
    pub(super) fn repair_probe(&mut self, now: Instant) {
        let exclude = self.exclude_list();
        let mut queue = self.known.fallbacks(now, &self.repair_backups, &exclude);
        queue.truncate(self.config.probe_fanout);
        self.probed_this_join.clear();
        self.fresh_after = Some(now);
        let last_round = self.config.probe_rounds.saturating_sub(1);
        self.probe_until(
            now,
            last_round,
            queue,
            now + self.config.repair_probe_timeout,
        );
    }
}
