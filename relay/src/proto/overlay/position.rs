//! Telling children their place in the tree, and the parent where there is room.

use super::{Action, Overlay};
use crate::proto::id::NodeId;
use crate::proto::tree_msg::{Candidate, TreeInfo};

impl Overlay {
    pub(super) fn tell_children(&mut self) {
        let ids: Vec<NodeId> = self.children.keys().copied().collect();
        for child in ids {
            let info = self.info_for(&child);
            self.actions.push_back(Action::SendTree { child, info });
        }
    }

    /// The tree position we give `child`: our path plus us; as backups our parent first,
    /// then our own backups, then the child's siblings with room.
    pub(super) fn info_for(&self, child: &NodeId) -> TreeInfo {
        let mut path = self.path().to_vec();
        path.push(self.me);
        let mut backups = Vec::new();
        if let (Some(p), Some(d)) = (&self.parent, self.depth()) {
            backups.push(Candidate {
                addr: p.addr.clone(),
                depth: d.saturating_sub(1),
                free: 0,
            });
        }
        // Then our own backups: the great-grandparent and the child's uncles with room.
        // These survive our crash, unlike the child's siblings (orphaned with it).
        if let Some(p) = &self.parent {
            for b in &p.info.backups {
                if b.addr.id != *child && b.addr.id != self.me && backups.len() < 6 {
                    backups.push(b.clone());
                }
            }
        }
        // Then the child's siblings with room (useful when we leave in order).
        let child_depth = self.depth().map_or(1, |d| d + 1);
        for (id, c) in &self.children {
            if id != child && c.free > 0 && backups.len() < 8 {
                backups.push(Candidate {
                    addr: c.addr.clone(),
                    depth: child_depth,
                    free: c.free,
                });
            }
        }
        TreeInfo {
            rooted: self.is_rooted(),
            path,
            backups,
        }
    }

    pub(super) fn redirect_list(&self, asker: &NodeId) -> Vec<Candidate> {
        let (_, _, _, _, mut cands) = self.probe_reply(asker);
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
