//! Graceful leave: a leaving node hands its children a list of parents, and a child
//! handed over moves there before the leaver closes (make before break).
//!
//! The leaver lists its parent first (its heir asks there for the leaver's slot), then
//! its other backups and its children with room. A child that is not the heir takes a
//! free slot on the list; refused by a full parent, it measures the rooms that parent
//! names and chooses among them (see `measure_rooms`); if none has room, it looks
//! afresh.

use std::time::Instant;

use super::{Action, Overlay, OverlayEvent, Phase, Seeking};
use crate::proto::id::NodeId;
use crate::proto::tree_msg::Candidate;

impl Overlay {
    /// The parent is leaving and hands us to these parents.
    pub fn handle_goodbye(&mut self, now: Instant, from: &NodeId, handover: Vec<Candidate>) {
        let Some(parent) = self.parent.as_ref().filter(|p| p.addr.id == *from) else {
            return;
        };
        if !parent.info.rooted {
            // The leaver is cut off from the origin itself (its parent went down): the
            // parents it names are its other children, or stale. Look for one as after
            // a crash (measured in the simulator: its children tried those one by one,
            // each a timeout, and paused).
            self.lose_parent(now, *from, true);
            return;
        }
        self.known.forget(from);
        for c in &handover {
            self.known.hear(now, c);
        }
        // Then at most two parents measured before, with room then: in a crowd the rest
        // have long filled up, and trying them one by one took seconds. (A refusal
        // names fresh rooms, tried first: see `redirect_first`.)
        let mut exclude = self.exclude_list();
        exclude.push(*from);
        let mut queue = self.known.fallbacks(now, &handover, &exclude);
        queue.truncate(handover.len() + 2);
        if queue.is_empty() {
            queue = self.bootstrap.clone();
        }
        queue.retain(|a| a.id != *from);
        self.seeking = Seeking::Handover;
        // A leaver lists its parent first, for its slot there. That slot is its heir's
        // (we know whether we are: see `info_for`): only the heir asks for it, and only
        // there (a parent that gave our slot to a forwarder lists the forwarder first);
        // the others take a free slot there if there is one.
        let heir = self
            .backups()
            .first()
            .is_some_and(|g| g.free > 0 && queue.first().is_some_and(|q| q.id == g.addr.id));
        self.try_next_replacing(now, queue, heir.then_some(*from));
    }

    /// Leave in order: hand the children over (then the driver closes when they are gone
    /// or after its own deadline).
    pub fn handle_leave(&mut self, _now: Instant) {
        self.phase = Phase::Leaving;
        self.seeking = Seeking::None;
        // Tell our parent first: our children will ask it for our slot.
        if self.parent.is_some() {
            self.actions.push_back(Action::AnnounceLeave);
        }
        self.next_improve = None;
        self.next_standby = None;
        self.improving = None;
        if self.children.is_empty() {
            self.events.push_back(OverlayEvent::ChildrenHandedOver);
            return;
        }
        // Grandparent first, then our other backups and the children with room (a child
        // never picks itself).
        let mut handover = Vec::new();
        if let (Some(p), Some(d)) = (&self.parent, self.depth()) {
            handover.push(Candidate {
                addr: p.addr.clone(),
                depth: d.saturating_sub(1),
                free: 1,
            });
            handover.extend(p.info.backups.iter().cloned());
        }
        let child_depth = self.depth().map_or(1, |d| d + 1);
        for c in self.children.values() {
            if c.free > 0 {
                handover.push(Candidate {
                    addr: c.addr.clone(),
                    depth: child_depth,
                    free: c.free,
                });
            }
        }
        handover.truncate(crate::proto::tree_msg::MAX_CANDIDATES);
        self.actions.push_back(Action::Handover(handover));
    }
}
