//! Telling children their place in the tree, and the parent where there is room.

use std::time::Instant;

use super::{Action, Child, Overlay};
use crate::proto::id::NodeId;
use crate::proto::tree_msg::{Candidate, TreeInfo};

impl Overlay {
    pub(super) fn tell_children(&mut self) {
        self.told_heir = self.heir();
        let ids: Vec<NodeId> = self.children.keys().copied().collect();
        for child in ids {
            let info = self.info_for(&child);
            self.actions.push_back(Action::SendTree { child, info });
        }
    }

    /// The tree position we give `child`: our path plus us, and its backups:
    /// 1. our parent, with one free slot for our *heir* only: the child that takes our
    ///    slot there if we crash (see [`Overlay::heir`]); for the others it is full;
    /// 2. our siblings (the child's uncles; with room first, full ones too): they survive
    ///    our crash, and the full ones name the rooms below them, which the child keeps
    ///    as standbys;
    /// 3. our own backups above us (our grandparent first);
    /// 4. the child's siblings, with room first (useful when we leave in order; to the
    ///    child's children, they are uncles).
    pub(super) fn info_for(&self, child: &NodeId) -> TreeInfo {
        const UNCLES: usize = 3;
        const ABOVE: usize = 6;
        const ALL: usize = 8;
        let mut path = self.path().to_vec();
        path.push(self.me);
        let mut backups = Vec::new();
        let depth = self.depth();
        if let (Some(p), Some(d)) = (&self.parent, depth) {
            backups.push(Candidate {
                addr: p.addr.clone(),
                depth: d.saturating_sub(1),
                free: u32::from(self.heir() == Some(*child)),
            });
        }
        if let Some(d) = depth {
            let ours: Vec<Candidate> = self
                .parent_backups()
                .filter(|b| b.addr.id != *child && b.addr.id != self.me)
                .collect();
            let mut siblings: Vec<&Candidate> = ours.iter().filter(|b| b.depth == d).collect();
            siblings.sort_by_key(|b| b.free == 0);
            backups.extend(siblings.into_iter().take(UNCLES).cloned());
            for b in ours.iter().filter(|b| b.depth < d) {
                if backups.len() >= ABOVE {
                    break;
                }
                backups.push(b.clone());
            }
        }
        let child_depth = depth.map_or(1, |d| d + 1);
        let mut kids: Vec<(&NodeId, &Child)> = self
            .children
            .iter()
            .filter(|(id, _)| *id != child)
            .collect();
        kids.sort_by_key(|(_, c)| c.free == 0);
        for (_, c) in kids.into_iter().take(ALL.saturating_sub(backups.len())) {
            backups.push(Candidate {
                addr: c.addr.clone(),
                depth: child_depth,
                free: c.free,
            });
        }
        TreeInfo {
            rooted: self.is_rooted(),
            path,
            backups,
        }
    }

    /// The child that inherits our slot at our parent if we crash: the one with the
    /// largest subtree (every node in it would pay for each hop a deeper parent adds),
    /// then the one that forwards most, the lowest id among equals. The heir last told
    /// stays while its subtree is at least three quarters of the largest and it forwards
    /// as much, so that subtrees growing side by side do not swap it back and forth.
    pub(super) fn heir(&self) -> Option<NodeId> {
        let (best, b) = self
            .children
            .iter()
            .max_by_key(|(id, c)| (c.subtree, c.capacity, std::cmp::Reverse(**id)))?;
        if let Some(told) = self.told_heir
            && let Some(t) = self.children.get(&told)
            && u64::from(t.subtree) * 4 >= u64::from(b.subtree) * 3
            && t.capacity >= b.capacity
        {
            return Some(told);
        }
        Some(*best)
    }

    /// Tells the old and the new heir when the heir changes (children came or went),
    /// except `told`, a new child whose answer already says.
    pub(super) fn heir_may_have_changed(&mut self, told: Option<NodeId>) {
        let heir = self.heir();
        if heir == self.told_heir {
            return;
        }
        let old = std::mem::replace(&mut self.told_heir, heir);
        for child in [old, heir].into_iter().flatten() {
            if Some(child) != told && self.children.contains_key(&child) {
                let info = self.info_for(&child);
                self.actions.push_back(Action::SendTree { child, info });
            }
        }
    }

    /// Our parent's backups as we pass them on: its promise of a slot to its heir (us,
    /// perhaps) is ours alone.
    pub(super) fn parent_backups(&self) -> impl Iterator<Item = Candidate> + '_ {
        let grandparent = self.parent.as_ref().and_then(|p| {
            let n = p.info.path.len();
            (n >= 2).then(|| p.info.path[n - 2])
        });
        self.parent
            .iter()
            .flat_map(|p| p.info.backups.iter())
            .map(move |b| {
                let mut b = b.clone();
                if Some(b.addr.id) == grandparent {
                    b.free = 0;
                }
                b
            })
    }

    pub(super) fn redirect_list(&self, now: Instant, asker: &NodeId) -> Vec<Candidate> {
        let mut cands = self.probe_answer(now, asker.as_bytes()).candidates;
        cands.retain(|c| c.addr.id != *asker);
        cands
    }

    /// Where our subtree has room (for our parent's probe replies): our children with
    /// free slots, then the rooms our children reported, taken in turn from each child so
    /// the list covers the whole subtree; shallowest first, at most `MAX_ROOMS`.
    pub(super) fn subtree_rooms(&self) -> Vec<Candidate> {
        let max = crate::proto::control::MAX_ROOMS;
        let child_depth = self.depth().map_or(1, |d| d + 1);
        let mut out: Vec<Candidate> = self
            .children
            .values()
            .filter(|c| c.free > 0)
            .map(|c| Candidate {
                addr: c.addr.clone(),
                depth: child_depth,
                free: c.free,
            })
            .collect();
        out.sort_by_key(|c| (std::cmp::Reverse(c.free), c.addr.id));
        out.truncate(max);
        let lists: Vec<&Vec<Candidate>> = self.children.values().map(|c| &c.rooms).collect();
        let mut i = 0;
        while out.len() < max && lists.iter().any(|l| l.len() > i) {
            for l in &lists {
                if let Some(r) = l.get(i)
                    && out.len() < max
                    && !out.iter().any(|o| o.addr.id == r.addr.id)
                {
                    out.push(r.clone());
                }
            }
            i += 1;
        }
        out.sort_by_key(|r| r.depth);
        out
    }

    pub(super) fn status_changed(&mut self) {
        let free = self.free_slots();
        let now = (free, self.subtree_size(), self.subtree_rooms());
        if self.last_status.as_ref() != Some(&now) && self.parent.is_some() {
            self.actions.push_back(Action::SendStatus {
                free: now.0,
                subtree: now.1,
                rooms: now.2.clone(),
            });
            self.last_status = Some(now);
        }
    }
}
