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

    /// The tree position we give `child`: our path plus us, our parent as its first
    /// backup, then its siblings with room.
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
        let child_depth = self.depth().map_or(1, |d| d + 1);
        for (id, c) in &self.children {
            if id != child && c.free > 0 && backups.len() < 6 {
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
        let (_, _, _, _, mut cands) = self.probe_reply();
        cands.retain(|c| c.addr.id != *asker);
        cands
    }

    /// Where our subtree has room (for our parent's probe replies): a child with free
    /// slots, else the shallowest room our children reported.
    pub(super) fn subtree_room(&self) -> Option<Candidate> {
        let child_depth = self.depth().map_or(1, |d| d + 1);
        let direct = self
            .children
            .values()
            .filter(|c| c.free > 0)
            .max_by_key(|c| (c.free, std::cmp::Reverse(c.addr.id)))
            .map(|c| Candidate {
                addr: c.addr.clone(),
                depth: child_depth,
                free: c.free,
            });
        direct.or_else(|| {
            self.children
                .values()
                .filter_map(|c| c.room.clone())
                .min_by_key(|r| (r.depth, std::cmp::Reverse(r.free), r.addr.id))
        })
    }

    pub(super) fn status_changed(&mut self) {
        let free = self.free_slots();
        let room = if free > 0 { None } else { self.subtree_room() };
        let now = (free, self.subtree_size(), room);
        if self.last_status.as_ref() != Some(&now) && self.parent.is_some() {
            self.actions.push_back(Action::SendStatus {
                free: now.0,
                subtree: now.1,
                room: now.2.clone(),
            });
            self.last_status = Some(now);
        }
    }
}
