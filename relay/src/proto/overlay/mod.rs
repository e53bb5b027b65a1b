//! The overlay: who is my parent, whom do I accept as a child, when do I repair or move.
//!
//! A deterministic state machine in the quinn-proto style. It owns no sockets, tasks,
//! clocks or randomness: the driver (the QUIC node, or a simulator) calls `handle_*`
//! with the current time when something happens, carries out the [`Action`]s it drains
//! with [`Overlay::poll_action`], reports their outcome back, and calls
//! [`Overlay::handle_timeout`] when [`Overlay::poll_timeout`] is reached.
//!
//! How the tree forms and heals:
//! - **Join**: probe the bootstrap nodes; each answers with its depth, free slots and the
//!   candidate parents it knows (its children with room first). Probe the most promising
//!   of those (a few rounds at most), then attach to the nearest with room, preferring a
//!   shallower one among near-ties. A full or unsuitable parent refuses with a redirect.
//! - **Loop freedom**: a node accepts children only while it is *rooted* (its ancestors
//!   reach the origin) and never accepts one of its own ancestors. Every parent tells its
//!   children their path from the origin; a node that finds itself in its own path has
//!   joined a loop and leaves at once.
//! - **Capacity**: never more children than `capacity`; a watch-only joiner (capacity 0)
//!   is refused the last `reserve` free slots, so forwarding nodes settle nearer the
//!   origin and watch-only nodes at the edge.
//! - **Repair**: when the parent is lost, attach straight to a backup (grandparent first)
//!   and resume from the last frame held; probe again only when all backups fail.
//! - **Graceful leave**: a leaving node hands its children a list of parents to move to;
//!   they attach there before the leaver closes (make before break).
//! - **Improvement**: every `improve_interval`, probe a few known nodes and move to one
//!   that is shallower or much nearer, with hysteresis so a node never oscillates.

mod known;

use std::collections::{BTreeMap, HashSet, VecDeque};
use std::time::{Duration, Instant};

use known::KnownSet;

use super::addr::PeerAddr;
use super::id::NodeId;
use super::tree_msg::{Candidate, TreeInfo};

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
    /// How long to wait for an attach to succeed.
    pub attach_timeout: Duration,
    /// Near-tie: candidates within this fraction (plus `near_tie_abs`) of the nearest
    /// one's RTT count as equally near, and the shallowest of them wins.
    pub near_tie: f64,
    /// Absolute part of the near-tie margin.
    pub near_tie_abs: Duration,
    /// How often to look for a better parent (zero: never).
    pub improve_interval: Duration,
    /// Free slots kept for joiners that forward (capacity > 0).
    pub reserve: u32,
    /// Possible parents remembered.
    pub max_known: usize,
    /// How long a refusing or failing node is avoided.
    pub avoid_for: Duration,
}

impl Default for OverlayConfig {
    fn default() -> Self {
        OverlayConfig {
            capacity: 4,
            origin: false,
            pinned: false,
            probe_fanout: 6,
            probe_rounds: 3,
            probe_timeout: Duration::from_millis(1500),
            attach_timeout: Duration::from_secs(3),
            near_tie: 0.2,
            near_tie_abs: Duration::from_millis(2),
            improve_interval: Duration::from_secs(15),
            reserve: 1,
            max_known: 64,
            avoid_for: Duration::from_secs(5),
        }
    }
}

/// What the driver must do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Connect to `0`, ask it for a probe reply and measure the RTT; report with
    /// [`Overlay::handle_probe_result`].
    Probe(PeerAddr),
    /// Subscribe to `to` (resuming from the last frame held) and report with
    /// [`Overlay::handle_attach_result`]. Keep the current parent until the new one is
    /// attached (the overlay then asks for a [`Action::Detach`]).
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
        /// The shallowest descendant with free slots, if we have none ourselves.
        room: Option<Candidate>,
    },
    /// We are leaving: send every child a goodbye with these parents to move to.
    Handover(Vec<Candidate>),
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
    room: Option<Candidate>,
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
    Move,
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
    probed_this_join: HashSet<NodeId>,
    improving: Option<(Vec<NodeId>, Instant)>,
    next_improve: Option<Instant>,
    last_status: Option<(u32, u32, Option<Candidate>)>,
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
            probed_this_join: HashSet::new(),
            improving: None,
            next_improve: None,
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

    /// The children.
    pub fn children(&self) -> impl Iterator<Item = (&NodeId, &PeerAddr)> {
        self.children.iter().map(|(id, c)| (id, &c.addr))
    }

    /// Number of children.
    pub fn child_count(&self) -> usize {
        self.children.len()
    }

    /// Free child slots.
    pub fn free_slots(&self) -> u32 {
        self.config
            .capacity
            .saturating_sub(self.children.len() as u32)
    }

    /// Nodes in our subtree, us included (as our children last reported).
    pub fn subtree_size(&self) -> u32 {
        1 + self.children.values().map(|c| c.subtree).sum::<u32>()
    }

    /// True while looking for a parent (joining or repairing).
    pub fn is_seeking(&self) -> bool {
        matches!(self.seeking, Seeking::Join(_) | Seeking::Repair(_))
    }

    /// The answer to someone's probe.
    pub fn probe_reply(&self) -> (bool, u32, u32, u32, Vec<Candidate>) {
        let mut cands: Vec<Candidate> = Vec::new();
        let mut kids: Vec<(&NodeId, &Child)> = self.children.iter().collect();
        kids.sort_by_key(|(id, c)| (std::cmp::Reverse(c.free), **id));
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
            .filter_map(|(_, c)| c.room.as_ref())
            .collect();
        rooms.sort_by_key(|r| (r.depth, std::cmp::Reverse(r.free), r.addr.id));
        cands.extend(rooms.into_iter().cloned());
        for (_, c) in &kids {
            if c.free == 0 && c.room.is_none() {
                cands.push(Candidate {
                    addr: c.addr.clone(),
                    depth: child_depth,
                    free: 0,
                });
            }
        }
        let mut exclude: Vec<NodeId> = cands.iter().map(|c| c.addr.id).collect();
        exclude.push(self.me);
        if let Some(p) = &self.parent {
            for b in &p.info.backups {
                if !exclude.contains(&b.addr.id) {
                    exclude.push(b.addr.id);
                    cands.push(b.clone());
                }
            }
        }
        cands.extend(self.known.share(8, &exclude));
        cands.truncate(crate::proto::tree_msg::MAX_CANDIDATES);
        (
            self.is_rooted(),
            self.depth().unwrap_or(u32::MAX),
            self.free_slots(),
            self.config.capacity,
            cands,
        )
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
        match result {
            Some((rtt, info)) => {
                self.known
                    .probed(now, addr, rtt, info.rooted, info.depth, info.free);
                for c in &info.candidates {
                    self.known.hear(now, c);
                }
            }
            None => self.known.avoid(&addr.id, now + self.config.avoid_for),
        }
        if let Some((pending, _)) = &mut self.improving {
            pending.retain(|id| *id != addr.id);
            if pending.is_empty() {
                self.improving = None;
                self.consider_move(now);
            }
        }
        if let Phase::Probing { outstanding, .. } = &mut self.phase {
            outstanding.retain(|id| *id != addr.id);
            if outstanding.is_empty() {
                self.after_probe_round(now);
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
            Ok(info) if !info.path.contains(&self.me) && info.rooted => {
                self.attached(now, addr.clone(), info);
            }
            Ok(_) => {
                // Not rooted or would loop: drop it and try the next.
                self.actions.push_back(Action::Detach(addr.id));
                self.known.avoid(&addr.id, now + self.config.avoid_for);
                self.try_next(now, queue);
            }
            Err(refusal) => {
                self.known.avoid(&addr.id, now + self.config.avoid_for);
                if let Some(r) = refusal {
                    for c in &r.redirect {
                        self.known.hear(now, c);
                    }
                }
                self.try_next(now, queue);
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

    /// The parent is leaving and hands us to these parents.
    pub fn handle_goodbye(&mut self, now: Instant, from: &NodeId, handover: Vec<Candidate>) {
        if self.parent.as_ref().is_none_or(|p| p.addr.id != *from) {
            return;
        }
        self.known.forget(from);
        for c in &handover {
            self.known.hear(now, c);
        }
        let mut queue = self.known.fallbacks(now, &handover, &[self.me, *from]);
        if queue.is_empty() {
            queue = self.bootstrap.clone();
        }
        queue.retain(|a| a.id != *from);
        self.seeking = Seeking::Move;
        // The first entry is the leaver's parent: ask it for the leaver's slot.
        let replaces = handover.first().map(|_| *from);
        self.try_next_replacing(now, queue, replaces);
    }

    /// The driver measured the RTT to the current parent.
    pub fn handle_parent_rtt(&mut self, parent: &NodeId, rtt: Duration) {
        self.known.set_rtt(parent, rtt);
    }

    /// A node asks to become our child.
    ///
    /// `replaces`: the requester was handed over by this child of ours, which is leaving;
    /// it may take that child's slot.
    pub fn handle_child_request(
        &mut self,
        now: Instant,
        addr: &PeerAddr,
        capacity: u32,
        replaces: Option<NodeId>,
    ) -> Result<TreeInfo, Refused> {
        let _ = now;
        let redirect = self.redirect_list(&addr.id);
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
        if self.children.contains_key(&addr.id) {
            // A re-subscription of a known child (e.g. after a reconnect): keep its slot.
        } else if let Some(r) = replaces.filter(|r| *r != addr.id && self.children.contains_key(r))
        {
            // Take over the slot of a leaving child (it is fed until it closes, but no
            // longer counts as a child).
            self.children.remove(&r);
        } else {
            let free = self.free_slots();
            let reserve = if self.config.capacity >= 2 {
                self.config.reserve
            } else {
                0
            };
            let needed = if capacity == 0 { reserve + 1 } else { 1 };
            if free < needed {
                return Err(Refused {
                    why: Refusal::Full,
                    redirect,
                });
            }
        }
        self.children.insert(
            addr.id,
            Child {
                addr: addr.clone(),
                capacity,
                free: capacity,
                subtree: 1,
                room: None,
            },
        );
        self.status_changed();
        Ok(self.info_for(&addr.id))
    }

    /// A child reported its free slots, subtree size and where its subtree has room.
    pub fn handle_child_status(
        &mut self,
        child: &NodeId,
        free: u32,
        subtree: u32,
        room: Option<Candidate>,
    ) {
        if let Some(c) = self.children.get_mut(child) {
            c.free = free.min(c.capacity);
            c.subtree = subtree.max(1);
            c.room = room.filter(|r| r.addr.id != self.me && r.free > 0);
            self.status_changed();
        }
    }

    /// A child's session ended.
    pub fn handle_child_gone(&mut self, child: &NodeId) {
        if self.children.remove(child).is_some() {
            self.status_changed();
            if self.phase == Phase::Leaving && self.children.is_empty() {
                self.events.push_back(OverlayEvent::ChildrenHandedOver);
            }
        }
    }

    /// Leave in order: hand the children over (then the driver closes when they are gone
    /// or after its own deadline).
    pub fn handle_leave(&mut self, _now: Instant) {
        self.phase = Phase::Leaving;
        self.seeking = Seeking::None;
        self.next_improve = None;
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
                self.try_next(now, queue);
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
    }

    // ----- internals -----

    fn seek(&mut self, now: Instant) {
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

    fn probe(&mut self, now: Instant, round: usize, targets: Vec<PeerAddr>) {
        let mut outstanding = Vec::new();
        for t in targets {
            if t.id == self.me || !self.probed_this_join.insert(t.id) {
                continue;
            }
            outstanding.push(t.id);
            self.actions.push_back(Action::Probe(t));
        }
        if outstanding.is_empty() {
            self.phase = Phase::Probing {
                round,
                outstanding,
                deadline: now,
            };
            self.after_probe_round(now);
            return;
        }
        self.phase = Phase::Probing {
            round,
            outstanding,
            deadline: now + self.config.probe_timeout,
        };
    }

    fn after_probe_round(&mut self, now: Instant) {
        let Phase::Probing { round, .. } = self.phase else {
            return;
        };
        let exclude = self.exclude_list();
        let best = self
            .known
            .best(
                now,
                self.config.near_tie,
                self.config.near_tie_abs,
                &exclude,
            )
            .map(|k| (k.cand.addr.clone(), k.cand.depth));
        let probed: Vec<NodeId> = self.probed_this_join.iter().copied().collect();
        let mut ex = exclude.clone();
        ex.extend(probed);
        let next = self.known.to_probe(now, self.config.probe_fanout, &ex);
        // Follow the candidates one more round while unmeasured ones with room remain:
        // a deeper node may well be nearer.
        let promising = next
            .iter()
            .any(|a| self.known.get(&a.id).is_some_and(|k| k.cand.free > 0));
        if round + 1 < self.config.probe_rounds && promising {
            self.probe(now, round + 1, next);
            return;
        }
        match best {
            Some((addr, _)) => {
                let queue = self.known.fallbacks(now, &[], &exclude);
                let mut q = vec![addr.clone()];
                q.extend(queue.into_iter().filter(|a| *a != addr));
                self.try_next(now, q);
            }
            None => {
                // Nobody with room: try again after a pause.
                self.phase = Phase::Backoff {
                    deadline: now + self.config.probe_timeout,
                };
            }
        }
    }

    fn exclude_list(&self) -> Vec<NodeId> {
        let mut v = vec![self.me];
        v.extend(self.children.keys().copied());
        if let Some(p) = &self.parent {
            v.push(p.addr.id);
        }
        v
    }

    /// Attach to the first of `queue`, keeping the rest for failures.
    fn try_next(&mut self, now: Instant, queue: Vec<PeerAddr>) {
        self.try_next_replacing(now, queue, None);
    }

    fn try_next_replacing(
        &mut self,
        now: Instant,
        mut queue: Vec<PeerAddr>,
        replaces: Option<NodeId>,
    ) {
        let exclude = self.exclude_list();
        queue.retain(|a| !exclude.contains(&a.id));
        if queue.is_empty() {
            if self.seeking == Seeking::Move || self.seeking == Seeking::None {
                // A move that found nowhere to go: stay where we are (if we still can).
                if self.parent.is_some() {
                    self.seeking = Seeking::None;
                    self.phase = Phase::Settled;
                    return;
                }
                self.seeking = Seeking::Repair(now);
            }
            self.seek_by_probing(now);
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

    fn seek_by_probing(&mut self, now: Instant) {
        if self.config.pinned {
            // A given parent: keep trying it (and nothing else) after a pause.
            // A given parent: keep trying it (and nothing else), pausing between tries.
            self.phase = Phase::Backoff {
                deadline: now + self.config.probe_timeout,
            };
            return;
        }
        self.probed_this_join.clear();
        let mut targets = self.bootstrap.clone();
        let exclude = self.exclude_list();
        for a in self.known.to_probe(now, self.config.probe_fanout, &exclude) {
            if !targets.contains(&a) {
                targets.push(a);
            }
        }
        self.probe(now, 0, targets);
    }

    fn attached(&mut self, now: Instant, addr: PeerAddr, info: TreeInfo) {
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
            }),
            Seeking::Move | Seeking::None => {
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
        self.last_status = None;
        self.status_changed();
        self.tell_children();
        if self.next_improve.is_none() {
            self.schedule_improve(now);
        }
    }

    fn lose_parent(&mut self, now: Instant, old: NodeId, failed: bool) {
        let backups = self
            .parent
            .take()
            .map(|p| p.info.backups)
            .unwrap_or_default();
        if failed {
            self.known.forget(&old);
        }
        self.seeking = Seeking::Repair(now);
        // Our subtree is cut off from the origin until we re-attach.
        self.tell_children();
        let queue = self.known.fallbacks(now, &backups, &[self.me, old]);
        self.try_next(now, queue);
    }

    fn tell_children(&mut self) {
        let ids: Vec<NodeId> = self.children.keys().copied().collect();
        for child in ids {
            let info = self.info_for(&child);
            self.actions.push_back(Action::SendTree { child, info });
        }
    }

    /// The tree position we give `child`: our path plus us, our parent as its first
    /// backup, then its siblings with room.
    fn info_for(&self, child: &NodeId) -> TreeInfo {
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

    fn redirect_list(&self, asker: &NodeId) -> Vec<Candidate> {
        let (_, _, _, _, mut cands) = self.probe_reply();
        cands.retain(|c| c.addr.id != *asker);
        cands
    }

    /// Where our subtree has room (for our parent's probe replies): a child with free
    /// slots, else the shallowest room our children reported.
    fn subtree_room(&self) -> Option<Candidate> {
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

    fn status_changed(&mut self) {
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

    fn next_random(&mut self) -> u64 {
        // xorshift64*: deterministic from the seed.
        let mut x = self.rng;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.rng = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn schedule_improve(&mut self, now: Instant) {
        if self.config.improve_interval.is_zero() || self.config.pinned || self.config.origin {
            self.next_improve = None;
            return;
        }
        // Jitter of ±25% so nodes do not move in lockstep.
        let base = self.config.improve_interval;
        let jitter = (self.next_random() % 500) as f64 / 1000.0 - 0.25;
        self.next_improve = Some(now + base.mul_f64(1.0 + jitter));
    }

    fn start_improve(&mut self, now: Instant) {
        if self.phase != Phase::Settled || self.improving.is_some() {
            return;
        }
        let Some(p) = &self.parent else { return };
        let mut targets: Vec<PeerAddr> = p
            .info
            .backups
            .iter()
            .filter(|c| c.addr.id != self.me)
            .map(|c| c.addr.clone())
            .take(3)
            .collect();
        let exclude = self.exclude_list();
        for a in self.known.to_probe(now, 3, &exclude) {
            if !targets.contains(&a) {
                targets.push(a);
            }
        }
        targets.retain(|a| !exclude.contains(&a.id));
        if targets.is_empty() {
            return;
        }
        let ids = targets.iter().map(|a| a.id).collect();
        for t in targets {
            self.actions.push_back(Action::Probe(t));
        }
        self.improving = Some((ids, now + self.config.probe_timeout));
    }

    /// Moves to a clearly better parent: shallower and not much farther, or as deep and
    /// much nearer. The margins are the hysteresis that keeps nodes from oscillating.
    fn consider_move(&mut self, now: Instant) {
        if self.phase != Phase::Settled {
            return;
        }
        let Some(p) = &self.parent else { return };
        let (my_parent, parent_depth) = (p.addr.id, p.info.path.len().saturating_sub(1) as u32);
        let parent_rtt = self.known.get(&my_parent).and_then(|k| k.rtt);
        let exclude = self.exclude_list();
        let Some(best) = self.known.best(
            now,
            self.config.near_tie,
            self.config.near_tie_abs,
            &exclude,
        ) else {
            return;
        };
        let (Some(rtt), Some(prtt)) = (best.rtt, parent_rtt) else {
            return;
        };
        let shallower =
            best.cand.depth < parent_depth && rtt <= prtt.mul_f64(1.2) + Duration::from_millis(5);
        let nearer =
            best.cand.depth <= parent_depth && rtt + Duration::from_millis(10) < prtt.mul_f64(0.7);
        if shallower || nearer {
            let to = best.cand.addr.clone();
            self.seeking = Seeking::Move;
            self.try_next(now, vec![to]);
        }
    }
}

/// What a probed node said about itself.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProbeInfo {
    /// Connected to the origin.
    pub rooted: bool,
    /// Its depth.
    pub depth: u32,
    /// Its free slots.
    pub free: u32,
    /// Candidates it knows.
    pub candidates: Vec<Candidate>,
}

#[cfg(test)]
mod tests;
