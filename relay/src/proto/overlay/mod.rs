//! The overlay: who is my parent, whom do I accept as a child, when do I repair or move.
//!
//! A deterministic state machine in the sans-IO style. It owns no sockets, tasks,
//! clocks or randomness: the driver (the QUIC node, or a simulator) calls `handle_*`
//! with the current time when something happens, carries out the [`Action`]s it drains
//! with [`Overlay::poll_action`], reports their outcome back, and calls
//! [`Overlay::handle_timeout`] when [`Overlay::poll_timeout`] is reached.
//!
//! How the tree forms and heals:
//! - **Join**: probe the bootstrap nodes; each answers with its depth, free slots and the
//!   candidate parents it knows (its children with room first). Probe the most promising
//!   of those (a few rounds at most): with room, named by the nearest node measured (a
//!   parent is chosen for being near, so the rooms a near node names tend to be near
//!   too), shallower first. Then attach to the nearest with room, preferring a shallower
//!   one among near-ties. A round ends as soon as the probes still out can no longer win
//!   (unanswered after `probe_round_trips` times the near-tie margin of the nearest
//!   with room: the node driver answers a probe with its handshake, one round trip).
//!   A full or unsuitable parent refuses with a redirect; a joiner refused for lack of
//!   room measures the rooms the refuser names (fresh from its children's reports) and
//!   chooses among them, or else among the parents it measured before.
//! - **Loop freedom**: a node accepts children only while it is *rooted* (its ancestors
//!   reach the origin) and never accepts one of its own ancestors. Every parent tells its
//!   children their path from the origin; a node that finds itself in its own path has
//!   joined a loop and leaves at once. An orphan lets go of a new parent whose path runs
//!   through the parent it lost (see `cut_off`).
//! - **Capacity**: never more children than `capacity`; a watch-only joiner (capacity 0)
//!   is refused the last `reserve` free slots, so forwarding nodes settle nearer the
//!   origin and watch-only nodes at the edge.
//! - **Repair**: a settled node keeps a *standby*: every `standby_interval` it re-measures
//!   the backups that would survive its parent's crash (grandparent, the parent's
//!   siblings, full or not, and the rooms they name below themselves) over connections
//!   that stay open. Each parent names one child its *heir* and holds that child's slot
//!   for a moment when it vanishes. When the parent is lost,
//!   the heir asks the grandparent for the dead parent's slot (a grandparent it keeps
//!   measured, however far, so the claim goes over a warm connection) and every other
//!   orphan attaches to the nearest standby with room: one round trip. Meanwhile the
//!   other backups are probed, and if the standby fails the best of those that answered
//!   is taken; if it refuses for lack of room, the rooms it names are measured with them
//!   rather than attached to blind. While none of them has room, the rooms each answer
//!   names are probed at once: backups often died with the parent, and waiting for them
//!   to stay silent cost a third of a second per round. The orphan resumes from the
//!   last frame it holds.
//! - **Graceful leave**: a leaving node hands its children a list of parents to move to;
//!   they attach there before the leaver closes (make before break). Its heir asks the
//!   leaver's parent for the leaver's slot; the others try the list (measuring the rooms
//!   a full parent names before choosing), then probe afresh rather than walk through
//!   old candidates.
//! - **Improvement**: every `improve_interval`, probe a few known nodes and move to one
//!   that is shallower or much nearer, with hysteresis so a node never oscillates.

mod children;
mod improve;
mod join;
mod known;
mod leave;
mod position;
mod recent;
mod standby;
mod types;

pub use crate::proto::tree_msg::ProbeInfo;
pub use types::{Action, OverlayConfig, OverlayEvent, Refusal, Refused};

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

use known::KnownSet;
use recent::Recent;

use super::addr::PeerAddr;
use super::id::{IdSet, NodeId};
use super::tree_msg::{Candidate, TreeInfo};

#[derive(Clone, Debug)]
struct Parent {
    addr: PeerAddr,
    info: TreeInfo,
}

#[derive(Clone, Debug)]
struct Child {
    addr: PeerAddr,
    capacity: u32,
    free: u32,
    subtree: u32,
    rooms: Vec<Candidate>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Phase {
    /// Origin, or not asked to join yet.
    Idle,
    /// Probing candidates before choosing.
    Probing {
        round: usize,
        outstanding: Vec<NodeId>,
        deadline: Instant,
        started: Instant,
    },
    /// Waiting for an attach. `queue` holds the next parents to try on failure.
    Attaching {
        to: PeerAddr,
        queue: Vec<PeerAddr>,
        deadline: Instant,
        replaces: Option<NodeId>,
    },
    /// Nobody had room: try again at `deadline`.
    Backoff { deadline: Instant },
    /// Attached (or the origin) and settled.
    Settled,
    /// Leaving: children are being handed over.
    Leaving,
}

/// Why we are looking for a parent right now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Seeking {
    Join(Instant),
    Repair(Instant),
    /// Moving by choice (improvement): if nothing works out, we stay.
    Move,
    /// Told to go by the parent (it is leaving, or gave our slot to a forwarder): if the
    /// parents offered do not work out, we must find another, not stay.
    Handover,
    None,
}

/// See the module docs.
#[derive(Debug)]
pub struct Overlay {
    me: NodeId,
    config: OverlayConfig,
    phase: Phase,
    seeking: Seeking,
    parent: Option<Parent>,
    children: BTreeMap<NodeId, Child>,
    known: KnownSet,
    bootstrap: Vec<PeerAddr>,
    probed_this_join: IdSet,
    /// Those that refused us for lack of room since we last attached, and when: a
    /// refusal naming one of them is measured, not followed (see
    /// `measure_rooms_after_bounce`).
    refused_full: Recent,
    /// Parents lost without a goodbye lately, and when: a parent whose path runs through
    /// one of them is cut off from the origin, whatever it says (see `cut_off`).
    lost: Recent,
    improving: Option<(Vec<NodeId>, Instant)>,
    /// While repairing, or choosing among the rooms a refuser named: only parents
    /// measured since then are chosen.
    fresh_after: Option<Instant>,
    /// The lost parent's backups, for the repair probe.
    repair_backups: Vec<Candidate>,
    /// A standby (or the heir's claim) was tried first: if it fails, choose among the
    /// backups probed meanwhile (`repair_pending`) instead of following redirects.
    repair_probe_due: bool,
    /// The standby a repair attached to first, if any.
    standby_attempt: Option<NodeId>,
    /// Backups probed while the standby attach is under way, not answered yet.
    repair_pending: Vec<NodeId>,
    /// Rooms below our uncles (as they named them when we measured them): standby
    /// candidates too, and often the only ones with room in a full tree.
    standby_rooms: Vec<NodeId>,
    /// The heir our children were last told of.
    told_heir: Option<NodeId>,
    /// Slots of children that went away with a subtree, kept until the instant for the
    /// heir of each (see `standby`).
    held: Vec<(NodeId, Instant)>,
    next_improve: Option<Instant>,
    /// When to re-measure the standby parents next.
    next_standby: Option<Instant>,
    last_status: Option<(u32, u32, Vec<Candidate>)>,
    rng: u64,
    actions: VecDeque<Action>,
    events: VecDeque<OverlayEvent>,
}

impl Overlay {
    /// A node `me` with `config`; `seed` drives the jitter of its timers.
    pub fn new(me: NodeId, config: OverlayConfig, seed: u64) -> Self {
        let origin = config.origin;
        Overlay {
            me,
            known: KnownSet::new(me, config.max_known),
            config,
            phase: if origin { Phase::Settled } else { Phase::Idle },
            seeking: Seeking::None,
            parent: None,
            children: BTreeMap::new(),
            bootstrap: Vec::new(),
            probed_this_join: IdSet::default(),
            refused_full: Recent::new(join::MAX_REFUSERS),
            lost: Recent::new(join::MAX_LOST),
            improving: None,
            fresh_after: None,
            repair_backups: Vec::new(),
            repair_probe_due: false,
            standby_attempt: None,
            repair_pending: Vec::new(),
            standby_rooms: Vec::new(),
            told_heir: None,
            held: Vec::new(),
            next_improve: None,
            next_standby: None,
            last_status: None,
            rng: seed | 1,
            actions: VecDeque::new(),
            events: VecDeque::new(),
        }
    }

    // ----- queries -----

    /// This node.
    pub fn id(&self) -> NodeId {
        self.me
    }

    /// Whether this node is connected to the origin (the origin always is).
    pub fn is_rooted(&self) -> bool {
        self.config.origin || self.parent.as_ref().is_some_and(|p| p.info.rooted)
    }

    /// Our depth (origin 0), if rooted.
    pub fn depth(&self) -> Option<u32> {
        if self.config.origin {
            return Some(0);
        }
        self.parent.as_ref().map(|p| p.info.path.len() as u32)
    }

    /// The current parent.
    pub fn parent(&self) -> Option<&PeerAddr> {
        self.parent.as_ref().map(|p| &p.addr)
    }

    /// Ids from the origin down to our parent.
    pub fn path(&self) -> &[NodeId] {
        self.parent.as_ref().map_or(&[], |p| &p.info.path)
    }

    /// The backup parents our parent gave us (its parent first; listed with a free slot
    /// if we are its heir).
    pub fn backups(&self) -> &[Candidate] {
        self.parent.as_ref().map_or(&[], |p| &p.info.backups)
    }

    /// The children.
    pub fn children(&self) -> impl Iterator<Item = (&NodeId, &PeerAddr)> {
        self.children.iter().map(|(id, c)| (id, &c.addr))
    }

    /// Number of children.
    pub fn child_count(&self) -> usize {
        self.children.len()
    }

    /// Free child slots (not counting those held for a lost child's heir). None while
    /// leaving: a leaver refuses children, and the slots its children empty as they move
    /// away would only send others to it, in probe replies and in what its parent names.
    pub fn free_slots(&self) -> u32 {
        if self.phase == Phase::Leaving {
            return 0;
        }
        self.config
            .capacity
            .saturating_sub((self.children.len() + self.held.len()) as u32)
    }

    /// Nodes in our subtree, us included (as our children last reported).
    pub fn subtree_size(&self) -> u32 {
        1 + self.children.values().map(|c| c.subtree).sum::<u32>()
    }

    // ----- outputs -----

    /// The next thing to do.
    pub fn poll_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    /// The next event.
    pub fn poll_event(&mut self) -> Option<OverlayEvent> {
        self.events.pop_front()
    }

    /// When to call [`Overlay::handle_timeout`] next.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let phase = match &self.phase {
            Phase::Probing { deadline, .. }
            | Phase::Attaching { deadline, .. }
            | Phase::Backoff { deadline } => Some(*deadline),
            _ => None,
        };
        [
            phase,
            self.next_improve,
            self.next_standby,
            self.held.iter().map(|h| h.1).min(),
            self.improving.as_ref().map(|i| i.1),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    // ----- inputs -----

    /// Start joining via `bootstrap` (any nodes in the tree).
    pub fn handle_join(&mut self, now: Instant, bootstrap: Vec<PeerAddr>) {
        if self.config.origin {
            return;
        }
        self.bootstrap = bootstrap;
        self.seeking = Seeking::Join(now);
        self.seek(now);
    }

    /// A probe finished: `Some((rtt, reply))` on success, `None` if it failed.
    pub fn handle_probe_result(
        &mut self,
        now: Instant,
        addr: &PeerAddr,
        result: Option<(Duration, ProbeInfo)>,
    ) {
        // Repairing, the rooms it names may be followed at once (see below).
        let named_rooms: Vec<PeerAddr> = match (&result, self.seeking) {
            (Some((_, info)), Seeking::Repair(_)) => info
                .candidates
                .iter()
                .filter(|c| c.free > 0)
                .map(|c| c.addr.clone())
                .collect(),
            _ => Vec::new(),
        };
        match result {
            Some((rtt, info)) => {
                // A forwarder counts watch-only children as room: it may take their slot.
                // A watch-only node does not count the slots a parent keeps for
                // forwarders (`reserve`, ours being the network's default) while it
                // has room below to offer instead, as `handle_child_request` does;
                // attaching there would only be refused.
                let room_below = info
                    .candidates
                    .iter()
                    .any(|c| c.free > 0 && c.depth > info.depth);
                let free = if self.config.capacity > 0 {
                    info.free.saturating_add(info.movable)
                } else if info.capacity >= 2 && room_below {
                    info.free.saturating_sub(self.config.reserve)
                } else {
                    info.free
                };
                self.known
                    .probed(now, addr, rtt, info.rooted, info.depth, info.free, free);
                for c in &info.candidates {
                    self.known.hear_from(now, c, rtt);
                }
                self.note_standby_rooms(&addr.id, &info);
            }
            None => self.known.avoid(&addr.id, now + self.config.avoid_for),
        }
        self.repair_pending.retain(|id| *id != addr.id);
        if let Some((pending, _)) = &mut self.improving {
            pending.retain(|id| *id != addr.id);
            if pending.is_empty() {
                self.improving = None;
                self.consider_move(now);
            }
        }
        self.follow_rooms_at_once(now, &named_rooms);
        let mut round_done = false;
        if let Phase::Probing { outstanding, .. } = &mut self.phase {
            outstanding.retain(|id| *id != addr.id);
            round_done = outstanding.is_empty();
        }
        let decided = self.round_decided_at(now);
        if round_done || decided.is_some_and(|t| t <= now) {
            self.after_probe_round(now);
        } else if let Some(at) = decided {
            // A parent with room is in hand: wait only until the probes still out could
            // no longer win, and while repairing only a moment more in any case (the
            // dead ones would never answer; a refuser's rooms are being taken).
            let grace = if self.fresh_after.is_some() {
                now + self.config.repair_grace
            } else {
                at
            };
            if let Phase::Probing { deadline, .. } = &mut self.phase {
                *deadline = (*deadline).min(at).min(grace);
            }
        }
    }

    /// An attach finished: the parent's tree info on success, or its refusal (`None`:
    /// it could not be reached).
    pub fn handle_attach_result(
        &mut self,
        now: Instant,
        addr: &PeerAddr,
        result: Result<TreeInfo, Option<Refused>>,
    ) {
        let Phase::Attaching { to, queue, .. } = &self.phase else {
            // Not waiting for it any more (timed out, or superseded): let it go.
            if result.is_ok() {
                self.actions.push_back(Action::Detach(addr.id));
            }
            return;
        };
        if to != addr {
            if result.is_ok() {
                self.actions.push_back(Action::Detach(addr.id));
            }
            return;
        }
        let queue = queue.clone();
        match result {
            Ok(info)
                if !info.path.contains(&self.me)
                    && info.rooted
                    && !self.cut_off(now, &info)
                    && !self.move_goes_deeper(&info) =>
            {
                self.attached(now, addr.clone(), info);
            }
            Ok(_) => {
                // Not rooted (or below a parent we lost: see `cut_off`), would loop, or
                // (on a move by choice) moved down since we measured it: a move never
                // costs depth, which our whole subtree would pay. Drop it and try the
                // next (a move with none left stays put).
                self.actions.push_back(Action::Detach(addr.id));
                self.known.avoid(&addr.id, now + self.config.avoid_for);
                self.retry_after_failure(now, queue);
            }
            Err(refusal) => {
                self.known.avoid(&addr.id, now + self.config.avoid_for);
                let mut queue = queue;
                if let Some(r) = refusal {
                    if r.why == Refusal::Full {
                        self.note_refused_full(now, addr.id);
                    }
                    let rtt = self.known.get(&addr.id).and_then(|k| k.rtt);
                    for c in &r.redirect {
                        match rtt {
                            Some(rtt) => self.known.hear_from(now, c, rtt),
                            None => self.known.hear(now, c),
                        }
                    }
                    if matches!(self.seeking, Seeking::Join(_) | Seeking::Handover)
                        && self.measure_rooms(now, &r)
                    {
                        return;
                    }
                    if self.standby_refused(now, &r) || self.measure_rooms_after_bounce(now, &r) {
                        return;
                    }
                    let first = self.redirect_first(now, &r);
                    queue.retain(|a| !first.contains(a));
                    queue.splice(0..0, first);
                }
                self.retry_after_failure(now, queue);
            }
        }
    }

    /// The parent sent a new tree position.
    pub fn handle_tree(&mut self, now: Instant, from: &NodeId, info: TreeInfo) {
        let Some(p) = &mut self.parent else { return };
        if p.addr.id != *from {
            return;
        }
        if info.path.contains(&self.me) {
            self.events.push_back(OverlayEvent::LoopDetected);
            let old = p.addr.id;
            self.actions.push_back(Action::Detach(old));
            self.lose_parent(now, old, false);
            return;
        }
        for b in &info.backups {
            self.known.hear(now, b);
        }
        p.info = info;
        self.tell_children();
    }

    /// The parent's connection died without a goodbye.
    pub fn handle_parent_lost(&mut self, now: Instant, parent: &NodeId) {
        if let Phase::Attaching { to, queue, .. } = &self.phase
            && to.id == *parent
        {
            let queue = queue.clone();
            self.known.avoid(parent, now + self.config.avoid_for);
            self.try_next(now, queue);
            return;
        }
        if self.parent.as_ref().is_some_and(|p| p.addr.id == *parent) {
            self.events
                .push_back(OverlayEvent::Orphaned { parent: *parent });
            self.lose_parent(now, *parent, true);
        }
    }

    /// A peer broke the stream's integrity (e.g. sent a frame that fails the publisher's
    /// signature): it is never probed or attached to again for
    /// [`OverlayConfig::distrust_for`], whoever names it. Call it before reporting the
    /// lost parent or failed attach, so the repair already avoids it.
    pub fn handle_distrust(&mut self, now: Instant, peer: &NodeId) {
        self.known.ban(peer, now + self.config.distrust_for);
    }

    /// The driver measured the RTT to the current parent.
    ///
    /// Improvement compares candidates with this; a parent reached without a probe (by a
    /// handover, or given by hand) is known only through it.
    pub fn handle_parent_rtt(&mut self, now: Instant, parent: &NodeId, rtt: Duration) {
        let Some(p) = &self.parent else { return };
        if p.addr.id != *parent {
            return;
        }
        let depth = p.info.path.len().saturating_sub(1) as u32;
        let (addr, rooted) = (p.addr.clone(), p.info.rooted);
        // Its free slots do not matter: our parent is never a candidate to move to.
        self.known.probed(now, &addr, rtt, rooted, depth, 0, 0);
    }

    /// A timer from [`Overlay::poll_timeout`] fired.
    pub fn handle_timeout(&mut self, now: Instant) {
        match &self.phase {
            Phase::Backoff { deadline } if now >= *deadline => {
                if self.config.pinned {
                    let first: Vec<PeerAddr> = self.bootstrap.iter().take(1).cloned().collect();
                    self.try_next(now, first);
                } else {
                    self.seek_by_probing(now);
                }
            }
            Phase::Probing { deadline, .. } if now >= *deadline => self.after_probe_round(now),
            Phase::Attaching {
                deadline,
                queue,
                to,
                ..
            } if now >= *deadline => {
                let (queue, to) = (queue.clone(), to.clone());
                self.known.avoid(&to.id, now + self.config.avoid_for);
                self.retry_after_failure(now, queue);
            }
            _ => {}
        }
        if let Some((_, deadline)) = &self.improving
            && now >= *deadline
        {
            self.improving = None;
            self.consider_move(now);
        }
        if self.next_improve.is_some_and(|t| now >= t) {
            self.schedule_improve(now);
            self.start_improve(now);
        }
        if self.next_standby.is_some_and(|t| now >= t) {
            self.refresh_standby(now);
        }
        let held = self.held.len();
        self.held.retain(|h| h.1 > now);
        if self.held.len() != held {
            self.status_changed();
        }
    }
}
