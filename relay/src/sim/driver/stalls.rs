//! Why a viewer's playback paused: each [`Stall`] the media plane records is put down to
//! the nearest event in the viewer's path that came shortly before it.

use super::{NEVER, NONE, Peer, Sim};
use crate::sim::media::Stall;

/// How long before a stall an event in the viewer's path counts as its cause.
pub const CAUSE_WINDOW_US: u64 = 5_000_000;

/// What a pause of playback followed, the nearest cause first.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StallCause {
    /// The viewer's parent crashed.
    ParentCrashed,
    /// Its grandparent crashed (and the parent repaired).
    GrandparentCrashed,
    /// An ancestor farther up crashed: the subtree below it was re-placed, maybe deeper.
    AncestorCrashed,
    /// The viewer or an ancestor changed parent: a better parent, a handover from a
    /// parent that left in order, a slot given to a forwarder, a repair after a crash the
    /// path no longer shows.
    PathChanged,
    /// The viewer started playing moments before (the first group came as a burst from
    /// the parent's cache, slower than the stream when the parent's upload is shared).
    JustStarted,
    /// None of those in the window (an upload running behind).
    Other,
}

impl StallCause {
    /// Every cause, in the order of [`StallCause::index`].
    pub const ALL: [StallCause; 6] = [
        StallCause::ParentCrashed,
        StallCause::GrandparentCrashed,
        StallCause::AncestorCrashed,
        StallCause::PathChanged,
        StallCause::JustStarted,
        StallCause::Other,
    ];

    /// Its place in [`StallCause::ALL`].
    pub fn index(self) -> usize {
        self as usize
    }

    /// How the report names it.
    pub fn label(self) -> &'static str {
        match self {
            StallCause::ParentCrashed => "parent crashed",
            StallCause::GrandparentCrashed => "grandparent crashed",
            StallCause::AncestorCrashed => "an ancestor farther up crashed",
            StallCause::PathChanged => "the viewer or an ancestor changed parent",
            StallCause::JustStarted => "the viewer had just started",
            StallCause::Other => "none of those",
        }
    }
}

impl Sim {
    /// Takes the pauses the media plane recorded and counts each under its cause.
    pub(super) fn note_stalls(&mut self) {
        for s in self.media.take_stalls() {
            let cause = self.stall_cause(&s);
            self.m.stalls[cause.index()] += 1;
        }
    }

    fn stall_cause(&self, s: &Stall) -> StallCause {
        let recent = |t: u64| t != NEVER && t <= s.at && s.at - t <= CAUSE_WINDOW_US;
        let path = self.path_up(s.peer);
        for (level, p) in path.iter().enumerate() {
            if recent(self.lost_parent_at[*p as usize]) {
                return match level {
                    0 => StallCause::ParentCrashed,
                    1 => StallCause::GrandparentCrashed,
                    _ => StallCause::AncestorCrashed,
                };
            }
        }
        if path.iter().any(|p| recent(self.moved_at[*p as usize])) {
            StallCause::PathChanged
        } else if recent(self.media.first_at[s.peer as usize]) {
            StallCause::JustStarted
        } else {
            StallCause::Other
        }
    }

    /// `p` and its ancestors, below the origin (at most 64: a chain longer than that is a
    /// loop the invariants report).
    fn path_up(&self, p: Peer) -> Vec<Peer> {
        let mut out = Vec::new();
        let mut cur = p;
        while cur != 0 && cur != NONE && out.len() < 64 {
            out.push(cur);
            cur = self.parent[cur as usize];
        }
        out
    }
}
