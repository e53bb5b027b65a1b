//! The overlay's public vocabulary: configuration, actions, events, refusals.

use std::time::Duration;

use crate::proto::addr::PeerAddr;
use crate::proto::id::NodeId;
use crate::proto::tree_msg::{Candidate, TreeInfo};

/// Tunables of the overlay.
#[derive(Clone, Debug)]
pub struct OverlayConfig {
    /// Children this node accepts.
    pub capacity: u32,
    /// This node is the origin (always rooted, never joins).
    pub origin: bool,
    /// Attach to the first bootstrap node directly instead of probing (a parent given by
    /// hand); repair still uses backups.
    pub pinned: bool,
    /// Probes in flight per round.
    pub probe_fanout: usize,
    /// Probe rounds before choosing (each round follows the candidates the last returned).
    pub probe_rounds: usize,
    /// How long to wait for a probe round.
    pub probe_timeout: Duration,
    /// Round trips a probe takes on a new connection: 1 when the answer comes with the
    /// handshake (the node sends it unasked to every new connection), 2 when the prober
    /// must first present a join token (a private stream).
    pub probe_round_trips: u32,
    /// How long a repair waits for its (parallel) probes of backup parents.
    pub repair_probe_timeout: Duration,
    /// Once one live parent with room has answered a repair probe, how long to wait for
    /// nearer ones.
    pub repair_grace: Duration,
    /// How long to wait for an attach to succeed.
    pub attach_timeout: Duration,
    /// Near-tie: candidates within this fraction (plus `near_tie_abs`) of the nearest
    /// one's RTT count as equally near, and the shallowest of them wins.
    pub near_tie: f64,
    /// Absolute part of the near-tie margin.
    pub near_tie_abs: Duration,
    /// How often to look for a better parent (zero: never).
    pub improve_interval: Duration,
    /// How often a settled node re-measures its standby parents (zero: never; a repair
    /// then always probes first).
    pub standby_interval: Duration,
    /// Standby parents re-measured each time.
    pub standby_probes: usize,
    /// How long the slot of a child that went away with children of its own is kept for
    /// its heir (the orphan it named to take it).
    pub slot_hold: Duration,
    /// Free slots kept for joiners that forward (capacity > 0).
    pub reserve: u32,
    /// Possible parents remembered (up to a quarter more between batched evictions).
    pub max_known: usize,
    /// How long a refusing or failing node is avoided.
    pub avoid_for: Duration,
    /// How long a node caught misbehaving (forged media) is never used as a parent.
    pub distrust_for: Duration,
}

impl Default for OverlayConfig {
    fn default() -> Self {
        OverlayConfig {
            capacity: 4,
            origin: false,
            pinned: false,
            probe_fanout: 8,
            probe_rounds: 4,
            probe_timeout: Duration::from_millis(1500),
            probe_round_trips: 1,
            repair_probe_timeout: Duration::from_millis(350),
            repair_grace: Duration::from_millis(60),
            attach_timeout: Duration::from_millis(1500),
            near_tie: 0.2,
            near_tie_abs: Duration::from_millis(2),
            improve_interval: Duration::from_secs(30),
            standby_interval: Duration::from_secs(5),
            standby_probes: 2,
            slot_hold: Duration::from_secs(1),
            reserve: 1,
            max_known: 64,
            avoid_for: Duration::from_secs(5),
            distrust_for: Duration::from_secs(600),
        }
    }
}

/// What the driver must do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Connect to `0`, ask it for a probe reply and measure the RTT; report with
    /// [`Overlay::handle_probe_result`](super::Overlay::handle_probe_result).
    Probe(PeerAddr),
    /// Subscribe to `to` (resuming from the last frame held) and report with
    /// [`Overlay::handle_attach_result`](super::Overlay::handle_attach_result). Keep the
    /// current parent until the new one is attached (the overlay then asks for a
    /// [`Action::Detach`]).
    Attach {
        /// The parent to attach to.
        to: PeerAddr,
        /// Ask it to give us the slot of this child of its (our leaving parent).
        replaces: Option<NodeId>,
    },
    /// End the session with this (former) parent.
    Detach(NodeId),
    /// Tell a child its position in the tree.
    SendTree {
        /// The child.
        child: NodeId,
        /// Its position.
        info: TreeInfo,
    },
    /// Tell the parent our free slots, subtree size and where in our subtree there is room.
    SendStatus {
        /// Free child slots.
        free: u32,
        /// Nodes in our subtree, us included.
        subtree: u32,
        /// Descendants with free slots (shallowest first, spread over our subtree).
        rooms: Vec<Candidate>,
    },
    /// We are leaving: tell the parent, whose slot for us our children may then take.
    AnnounceLeave,
    /// We are leaving: send every child a goodbye with these parents to move to.
    Handover(Vec<Candidate>),
    /// Ask one child to move to these parents (it gave its slot to a forwarder); it stays
    /// fed until it has moved.
    MoveChild {
        /// The child.
        child: NodeId,
        /// Where to go.
        to: Vec<Candidate>,
    },
}

/// Things worth logging or measuring.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OverlayEvent {
    /// Attached to a parent for the first time.
    Joined {
        /// The parent.
        parent: NodeId,
        /// Our depth.
        depth: u32,
        /// From the join request to the attach.
        took: Duration,
    },
    /// Lost the parent without a goodbye.
    Orphaned {
        /// The parent we lost.
        parent: NodeId,
    },
    /// Re-attached after losing the parent.
    Repaired {
        /// The new parent.
        parent: NodeId,
        /// From the loss to the attach.
        took: Duration,
        /// Whether it was the standby, attached to without probing.
        standby: bool,
    },
    /// Moved to a better parent, or to the one a leaving parent handed us to.
    Moved {
        /// The old parent.
        from: NodeId,
        /// The new parent.
        to: NodeId,
    },
    /// Found ourselves in our own path and left.
    LoopDetected,
    /// Every child has left after our handover.
    ChildrenHandedOver,
}

/// Why a child is refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// No free slot (for this kind of child).
    Full,
    /// We are not connected to the origin right now.
    NotRooted,
    /// The joiner is one of our ancestors (or ourselves).
    WouldLoop,
    /// We are leaving.
    Leaving,
}

/// A refusal and where to go instead.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refused {
    /// Why.
    pub why: Refusal,
    /// Where to try instead.
    pub redirect: Vec<Candidate>,
}
