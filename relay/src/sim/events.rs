//! The event queue in virtual time: a binary heap ordered by (time, insertion order), so
//! events at the same microsecond run in the order they were scheduled.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use crate::proto::overlay::{ProbeInfo, Refused};
use crate::proto::tree_msg::{Candidate, TreeInfo};

/// Peers are numbered from 0 (the origin).
pub type Peer = u32;

/// Something that happens at a point in virtual time.
#[derive(Debug)]
pub enum Event {
    /// A peer starts (joins through the origin).
    Join(Peer),
    /// A peer's overlay timer may be due.
    Timer(Peer),
    /// A probe reaches its target: the prober's request on a connection a probe left
    /// open, or the first packet of a new connection's handshake, which the target
    /// answers unasked.
    ProbeRequest {
        /// Prober.
        from: Peer,
        /// Target.
        to: Peer,
        /// When the prober sent it.
        sent: u64,
        /// When its connection was up (`sent`, on one a probe left open).
        connected: u64,
        /// The RTT the prober will measure.
        rtt_us: u64,
    },
    /// A probe answer reaches the prober (`None`: the probe failed).
    ProbeReply {
        /// Prober.
        from: Peer,
        /// Target.
        to: Peer,
        /// Measured RTT and answer.
        reply: Option<(u64, ProbeInfo)>,
    },
    /// A connection `from` kept open to `to` went silent (`to` crashed).
    PeerSilent {
        /// The peer holding the connection.
        from: Peer,
        /// The silent peer.
        to: Peer,
    },
    /// A subscription reaches the would-be parent.
    AttachRequest {
        /// Child.
        from: Peer,
        /// Parent.
        to: Peer,
        /// Slot of a leaving child to take.
        replaces: Option<crate::proto::id::NodeId>,
        /// When the child sent it.
        sent: u64,
        /// When its connection was up (`sent`, on one a probe left open).
        connected: u64,
    },
    /// The answer reaches the child.
    AttachReply {
        /// Child.
        from: Peer,
        /// Parent.
        to: Peer,
        /// Accepted (tree info) or refused.
        result: Result<TreeInfo, Option<Refused>>,
    },
    /// A child ends its session with a parent.
    Detach {
        /// Child.
        child: Peer,
        /// Parent.
        parent: Peer,
    },
    /// A parent's tree message reaches a child.
    Tree {
        /// Parent.
        from: Peer,
        /// Child.
        to: Peer,
        /// Position.
        info: TreeInfo,
    },
    /// A child's status reaches its parent.
    Status {
        /// Child.
        from: Peer,
        /// Parent.
        to: Peer,
        /// Free slots.
        free: u32,
        /// Subtree size.
        subtree: u32,
        /// Rooms.
        rooms: Vec<Candidate>,
    },
    /// A goodbye (handover or move request) reaches a child.
    Goodbye {
        /// Parent.
        from: Peer,
        /// Child.
        to: Peer,
        /// Where to go.
        handover: Vec<Candidate>,
    },
    /// A child notices its parent's connection is gone.
    ParentLost {
        /// Child.
        child: Peer,
        /// Parent.
        parent: Peer,
    },
    /// A parent notices a child's connection is gone.
    ChildGone {
        /// Parent.
        parent: Peer,
        /// Child.
        child: Peer,
    },
    /// A peer starts leaving in order.
    Leave(Peer),
    /// A leaving peer closes its connections.
    Close(Peer),
    /// A peer crashes.
    Crash(Peer),
    /// Every current child of the origin crashes.
    CrashOriginChildren,
    /// The origin emits segment `n`.
    Segment(u32),
    /// Periodic measurement.
    Sample,
}

/// Pending events, earliest first.
///
/// The heap holds only (time, order, slot); the events themselves stay put in a slab, so
/// heap operations move 24 bytes, not whole messages.
#[derive(Default)]
pub struct Queue {
    heap: BinaryHeap<Reverse<(u64, u64, u32)>>,
    slab: Vec<Option<Event>>,
    free: Vec<u32>,
    seq: u64,
}

impl Queue {
    /// Schedules `event` at `at` (microseconds of virtual time).
    pub fn push(&mut self, at: u64, event: Event) {
        self.seq += 1;
        let slot = match self.free.pop() {
            Some(i) => {
                self.slab[i as usize] = Some(event);
                i
            }
            None => {
                self.slab.push(Some(event));
                (self.slab.len() - 1) as u32
            }
        };
        self.heap.push(Reverse((at, self.seq, slot)));
    }

    /// The earliest event, if it is due by `until`.
    pub fn pop_until(&mut self, until: u64) -> Option<(u64, Event)> {
        let Reverse((at, _, _)) = *self.heap.peek()?;
        if at > until {
            return None;
        }
        let Reverse((at, _, slot)) = self.heap.pop()?;
        self.free.push(slot);
        self.slab[slot as usize].take().map(|e| (at, e))
    }

    /// Events pending.
    pub fn len(&self) -> usize {
        self.heap.len()
    }

    /// Whether nothing is pending.
    pub fn is_empty(&self) -> bool {
        self.heap.is_empty()
    }
}
