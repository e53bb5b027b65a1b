//! The child-facing side: answering probes and admitting, updating and losing children.

use std::time::{Duration, Instant};

use super::{Action, Child, Overlay, OverlayEvent, Phase, ProbeInfo, Refusal, Refused};
use crate::proto::addr::PeerAddr;
use crate::proto::id::{NodeId, pair_order_by};
use crate::proto::tree_msg::{Candidate, TreeInfo};

/// How recent what we know of another node must be for us to pass it on.
const SHARE_FRESH: Duration = Duration::from_secs(2);

impl Overlay {
    /// Watch-only children, which a forwarding joiner may displace (none while leaving:
    /// nobody may join).
    pub fn movable(&self) -> u32 {
        if self.phase == Phase::Leaving {
            return 0;
        }
        self.children.values().filter(|c| c.capacity == 0).count() as u32
    }

    /// The answer to a probe by `asker` (its id's bytes, or any bytes of its own, such as
    /// its address, when the answer goes out before its handshake has told its id).
    ///
    /// Equally good rooms are listed in an order of the asker's own (a hash of both):
    /// joiners who all ask the same node then spread over its free slots instead of all
    /// racing for the first one (measured in the simulator: most attach attempts of a
    /// crowd were refusals before).
    pub fn probe_answer(&self, now: Instant, asker: &[u8]) -> ProbeInfo {
        let mut cands: Vec<Candidate> = Vec::new();
        let mut kids: Vec<(&NodeId, &Child)> = self.children.iter().collect();
        kids.sort_by_cached_key(|(id, c)| (c.free == 0, pair_order_by(asker, id)));
        let child_depth = self.depth().map_or(u32::MAX, |d| d + 1);
        for (_, c) in &kids {
            if c.free > 0 {
                cands.push(Candidate {
                    addr: c.addr.clone(),
                    depth: child_depth,
                    free: c.free,
                });
            }
        }
        // Full children: offer where their subtree has room instead, shallowest first.
        let mut rooms: Vec<&Candidate> = kids
            .iter()
            .filter(|(_, c)| c.free == 0)
            .flat_map(|(_, c)| c.rooms.iter())
            .collect();
        rooms.sort_by_cached_key(|r| (r.depth, pair_order_by(asker, &r.addr.id)));
        cands.extend(rooms.into_iter().cloned());
        // And the full children themselves: probing one lists its own children.
        for (_, c) in &kids {
            if c.free == 0 {
                cands.push(Candidate {
                    addr: c.addr.clone(),
                    depth: child_depth,
                    free: 0,
                });
            }
        }
        let mut exclude: Vec<NodeId> = cands.iter().map(|c| c.addr.id).collect();
        exclude.push(self.me);
        for b in self.parent_backups() {
            if !exclude.contains(&b.addr.id) {
                exclude.push(b.addr.id);
                cands.push(b);
            }
        }
        if cands.len() < crate::proto::tree_msg::MAX_CANDIDATES {
            let since = now.checked_sub(SHARE_FRESH).unwrap_or(now);
            cands.extend(self.known.share(8, &exclude, since));
        }
        cands.truncate(crate::proto::tree_msg::MAX_CANDIDATES);
        ProbeInfo {
            rooted: self.is_rooted(),
            depth: self.depth().unwrap_or(u32::MAX),
            free: self.free_slots(),
            capacity: self.config.capacity,
            movable: self.movable(),
            candidates: cands,
        }
    }

    /// A node asks to become our child.
    ///
    /// `replaces`: the requester was handed over by this child of ours, which is leaving,
    /// or is the heir of this child, which crashed: it may take that child's slot (the
    /// driver checks first that the child has announced its leave or gone silent).
    pub fn handle_child_request(
        &mut self,
        now: Instant,
        addr: &PeerAddr,
        capacity: u32,
        replaces: Option<NodeId>,
    ) -> Result<TreeInfo, Refused> {
        let redirect = self.redirect_list(now, &addr.id);
        if self.phase == Phase::Leaving {
            return Err(Refused {
                why: Refusal::Leaving,
                redirect,
            });
        }
        if !self.is_rooted() {
            return Err(Refused {
                why: Refusal::NotRooted,
                redirect,
            });
        }
        if addr.id == self.me || self.path().contains(&addr.id) {
            return Err(Refused {
                why: Refusal::WouldLoop,
                redirect,
            });
        }
        let mut displaced = false;
        if self.children.contains_key(&addr.id) {
            // A re-subscription of a known child (e.g. after a reconnect): keep its slot.
        } else if let Some(i) = replaces.and_then(|r| self.held.iter().position(|h| h.0 == r)) {
            // The heir of a child we lost: the slot was kept for it.
            self.held.swap_remove(i);
        } else if let Some(r) = replaces.filter(|r| *r != addr.id && self.children.contains_key(r))
        {
            // Take over the slot of a leaving child (it is fed until it closes, but no
            // longer counts as a child).
            self.children.remove(&r);
        } else {
            let free = self.free_slots();
            // The last `reserve` slots are kept for forwarders while our subtree has room
            // elsewhere for a watch-only joiner; otherwise it may have them.
            let reserve = if self.config.capacity >= 2 && !self.subtree_rooms().is_empty() {
                self.config.reserve
            } else {
                0
            };
            let needed = if capacity == 0 { reserve + 1 } else { 1 };
            if free < needed {
                // A forwarder may take a watch-only child's slot; that child moves under
                // the forwarder, one level further out.
                let displace = (capacity > 0)
                    .then(|| {
                        self.children
                            .iter()
                            .filter(|(_, c)| c.capacity == 0)
                            .map(|(id, _)| *id)
                            .max()
                    })
                    .flatten();
                let Some(victim) = displace else {
                    return Err(Refused {
                        why: Refusal::Full,
                        redirect,
                    });
                };
                self.children.remove(&victim);
                displaced = true;
                let depth = self.depth().map_or(1, |d| d + 1);
                // The forwarder first, then where else our subtree has room: the
                // forwarder's slots may be gone by the time the child gets there (a
                // crowd is joining), and it is fed by us until it has moved.
                let mut to = vec![Candidate {
                    addr: addr.clone(),
                    depth,
                    free: capacity,
                }];
                to.extend(self.redirect_list(now, &victim).into_iter().filter(|c| {
                    c.free > 0 && c.addr.id != addr.id && c.depth > depth.saturating_sub(1)
                }));
                to.truncate(crate::proto::tree_msg::MAX_CANDIDATES);
                self.actions
                    .push_back(Action::MoveChild { child: victim, to });
            }
        }
        self.children.insert(
            addr.id,
            Child {
                addr: addr.clone(),
                capacity,
                // One of its slots is promised to the child it displaced: not ours to
                // offer (until its own status says otherwise).
                free: capacity.saturating_sub(u32::from(displaced)),
                subtree: 1,
                rooms: Vec::new(),
            },
        );
        self.status_changed();
        let info = self.info_for(&addr.id);
        self.heir_may_have_changed(Some(addr.id));
        Ok(info)
    }

    /// A child reported its free slots, subtree size and where its subtree has room.
    pub fn handle_child_status(
        &mut self,
        child: &NodeId,
        free: u32,
        subtree: u32,
        rooms: Vec<Candidate>,
    ) {
        let me = self.me;
        if let Some(c) = self.children.get_mut(child) {
            c.free = free.min(c.capacity);
            c.subtree = subtree.max(1);
            c.rooms = rooms
                .into_iter()
                .filter(|r| r.addr.id != me && r.free > 0)
                .take(crate::proto::control::MAX_ROOMS)
                .collect();
            self.status_changed();
            self.heir_may_have_changed(None);
        }
    }

    /// A child's session ended in order (it detached or moved).
    pub fn handle_child_gone(&mut self, child: &NodeId) {
        if self.children.remove(child).is_some() {
            self.child_removed();
        }
    }

    /// A child vanished: it crashed (went silent) or announced its leave and closed.
    ///
    /// If it had children of its own, its slot is held for
    /// [`OverlayConfig::slot_hold`](super::OverlayConfig::slot_hold) for its heir, which
    /// comes asking for it with `replaces`.
    pub fn handle_child_lost(&mut self, now: Instant, child: &NodeId) {
        if let Some(c) = self.children.remove(child) {
            if c.subtree > 1 && !self.config.slot_hold.is_zero() && self.phase != Phase::Leaving {
                self.held.push((*child, now + self.config.slot_hold));
            }
            self.child_removed();
        }
    }

    fn child_removed(&mut self) {
        self.status_changed();
        self.heir_may_have_changed(None);
        if self.phase == Phase::Leaving && self.children.is_empty() {
            self.events.push_back(OverlayEvent::ChildrenHandedOver);
        }
    }
}
