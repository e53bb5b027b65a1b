//! The in-memory network that wires many overlay state machines together for the
//! deterministic tests: instant delivery, RTT from 2-D positions, driven only through the
//! overlay's public API, as the node and the simulator drive it.
#![allow(dead_code)]

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::time::{Duration, Instant};

use treecast_relay::proto::addr::PeerAddr;
use treecast_relay::proto::id::NodeId;
use treecast_relay::proto::overlay::*;
use treecast_relay::proto::tree_msg::{Candidate, TreeInfo};

pub struct Net {
    pub nodes: BTreeMap<NodeId, Overlay>,
    pub addr: HashMap<NodeId, PeerAddr>,
    pub pos: HashMap<NodeId, (f64, f64)>,
    pub cap: HashMap<NodeId, u32>,
    pub alive: HashSet<NodeId>,
    pub origin: Option<NodeId>,
    pub now: Instant,
    pub next: u8,
    pub events: Vec<(NodeId, OverlayEvent)>,
}

impl Net {
    pub fn new() -> Net {
        Net {
            nodes: BTreeMap::new(),
            addr: HashMap::new(),
            pos: HashMap::new(),
            cap: HashMap::new(),
            alive: HashSet::new(),
            origin: None,
            now: Instant::now(),
            next: 0,
            events: Vec::new(),
        }
    }

    pub fn add_with(
        &mut self,
        capacity: u32,
        at: (f64, f64),
        f: impl FnOnce(&mut OverlayConfig),
    ) -> NodeId {
        self.next += 1;
        let mut raw = [0u8; 32];
        raw[0] = self.next;
        let id = NodeId::from_bytes(raw);
        let mut cfg = OverlayConfig {
            capacity,
            origin: self.origin.is_none(),
            ..OverlayConfig::default()
        };
        f(&mut cfg);
        if cfg.origin {
            self.origin = Some(id);
        }
        self.nodes
            .insert(id, Overlay::new(id, cfg, u64::from(self.next)));
        self.addr.insert(
            id,
            PeerAddr {
                id,
                host: format!("10.0.0.{}:4433", self.next).into(),
            },
        );
        self.pos.insert(id, at);
        self.cap.insert(id, capacity);
        self.alive.insert(id);
        id
    }

    pub fn add(&mut self, capacity: u32, at: (f64, f64)) -> NodeId {
        self.add_with(capacity, at, |_| {})
    }

    pub fn join(&mut self, id: NodeId, via: NodeId) {
        let b = vec![self.addr[&via].clone()];
        let now = self.now;
        self.node(id).handle_join(now, b);
        self.run();
    }

    /// `n` nodes of `capacity` that join through `parent`, placed one after another just
    /// beside it (1, 2, ... units away), so that each takes a slot there while it has one.
    pub fn join_beside(&mut self, parent: NodeId, n: u32, capacity: u32) -> Vec<NodeId> {
        let (x, y) = self.pos[&parent];
        (0..n)
            .map(|i| {
                let k = self.add(capacity, (x, y + 1.0 + f64::from(i)));
                self.join(k, parent);
                k
            })
            .collect()
    }

    pub fn node(&mut self, id: NodeId) -> &mut Overlay {
        self.nodes.get_mut(&id).expect("node")
    }

    pub fn rtt(&self, a: NodeId, b: NodeId) -> Duration {
        let (pa, pb) = (self.pos[&a], self.pos[&b]);
        let d = ((pa.0 - pb.0).powi(2) + (pa.1 - pb.1).powi(2)).sqrt();
        Duration::from_micros((d * 1000.0) as u64 + 200)
    }

    /// Delivers every pending action until the network is quiet.
    pub fn run(&mut self) {
        for _ in 0..100_000 {
            let mut work: VecDeque<(NodeId, Action)> = VecDeque::new();
            for (id, n) in self.nodes.iter_mut() {
                if !self.alive.contains(id) {
                    while n.poll_action().is_some() {}
                    continue;
                }
                while let Some(a) = n.poll_action() {
                    work.push_back((*id, a));
                }
                while let Some(e) = n.poll_event() {
                    self.events.push((*id, e));
                }
            }
            if work.is_empty() {
                return;
            }
            for (from, action) in work {
                self.deliver(from, action);
            }
        }
        panic!("the network never went quiet");
    }

    pub fn deliver(&mut self, from: NodeId, action: Action) {
        let now = self.now;
        match action {
            Action::Probe(to) => {
                let result = if self.alive.contains(&to.id) {
                    let info = self.nodes[&to.id].probe_answer(now, from.as_bytes());
                    Some((self.rtt(from, to.id), info))
                } else {
                    None
                };
                self.node(from).handle_probe_result(now, &to, result);
            }
            Action::Attach { to, replaces } => {
                let me = self.addr[&from].clone();
                let cap = self.cap[&from];
                let result = if self.alive.contains(&to.id) {
                    self.node(to.id)
                        .handle_child_request(now, &me, cap, replaces)
                        .map_err(Some)
                } else {
                    Err(None)
                };
                self.node(from).handle_attach_result(now, &to, result);
            }
            Action::Detach(parent) => {
                if self.alive.contains(&parent) {
                    self.node(parent).handle_child_gone(&from);
                }
            }
            Action::SendTree { child, info } => {
                if self.alive.contains(&child) {
                    self.node(child).handle_tree(now, &from, info);
                }
            }
            Action::SendStatus {
                free,
                subtree,
                rooms,
            } => {
                let parent = self.nodes[&from].parent().map(|p| p.id);
                if let Some(p) = parent
                    && self.alive.contains(&p)
                {
                    self.node(p)
                        .handle_child_status(&from, free, subtree, rooms);
                }
            }
            Action::AnnounceLeave => {}
            Action::MoveChild { child, to } => {
                if self.alive.contains(&child) {
                    self.node(child).handle_goodbye(now, &from, to);
                }
            }
            Action::Handover(cands) => {
                let kids: Vec<NodeId> = self.nodes[&from].children().map(|(id, _)| *id).collect();
                for k in kids {
                    if self.alive.contains(&k) {
                        self.node(k).handle_goodbye(now, &from, cands.clone());
                    }
                }
            }
        }
    }

    pub fn crash(&mut self, id: NodeId) {
        self.crash_all(&[id]);
    }

    /// Crashes these nodes at once: every survivor notices before anyone acts.
    pub fn crash_all(&mut self, dead: &[NodeId]) {
        for id in dead {
            self.alive.remove(id);
        }
        let now = self.now;
        let mut ids: Vec<NodeId> = self.alive.iter().copied().collect();
        ids.sort();
        for n in ids {
            for id in dead {
                let node = self.node(n);
                if node.parent().is_some_and(|p| p.id == *id) {
                    node.handle_parent_lost(now, id);
                }
                node.handle_child_lost(now, id);
            }
        }
        self.run();
    }

    pub fn advance(&mut self, d: Duration) {
        let end = self.now + d;
        loop {
            let next = self
                .nodes
                .iter()
                .filter(|(id, _)| self.alive.contains(id))
                .filter_map(|(_, n)| n.poll_timeout())
                .filter(|t| *t <= end)
                .min();
            let Some(t) = next else { break };
            self.now = t.max(self.now);
            let now = self.now;
            let ids: Vec<NodeId> = self.alive.iter().copied().collect();
            for id in ids {
                if self.nodes[&id].poll_timeout().is_some_and(|x| x <= now) {
                    // As the node's driver does: the live RTT to the parent first.
                    if let Some(p) = self.nodes[&id].parent().map(|p| p.id) {
                        let rtt = self.rtt(id, p);
                        self.node(id).handle_parent_rtt(now, &p, rtt);
                    }
                    self.node(id).handle_timeout(now);
                }
            }
            self.run();
        }
        self.now = end;
    }

    /// Every alive node is attached under an alive parent, there is no cycle, parent and
    /// child agree, and no node has more children than it allows.
    pub fn check(&self) {
        let origin = self.origin.expect("origin");
        for &id in &self.alive {
            let n = &self.nodes[&id];
            assert!(
                n.child_count() as u32 <= self.cap[&id],
                "capacity exceeded at {id:?}"
            );
            for (c, _) in n.children() {
                assert!(self.alive.contains(c), "{id:?} keeps dead child {c:?}");
                assert_eq!(
                    self.nodes[c].parent().map(|p| p.id),
                    Some(id),
                    "child {c:?} disagrees"
                );
            }
            if id == origin {
                continue;
            }
            let mut cur = id;
            let mut hops = 0;
            while cur != origin {
                let p = self.nodes[&cur]
                    .parent()
                    .unwrap_or_else(|| panic!("{cur:?} is detached"));
                assert!(self.alive.contains(&p.id), "{cur:?} has a dead parent");
                assert!(
                    self.nodes[&p.id].children().any(|(c, _)| *c == cur),
                    "{:?} does not list {cur:?}",
                    p.id
                );
                cur = p.id;
                hops += 1;
                assert!(hops <= self.nodes.len(), "cycle through {id:?}");
            }
            assert_eq!(
                self.nodes[&id].depth(),
                Some(hops as u32),
                "depth of {id:?}"
            );
        }
    }

    pub fn count(&self, f: impl Fn(&OverlayEvent) -> bool) -> usize {
        self.events.iter().filter(|(_, e)| f(e)).count()
    }
}

// ----- for tests that drive one overlay by hand -----

/// The address of test node `b` (id `[b; 32]`).
pub fn addr(b: u8) -> PeerAddr {
    PeerAddr {
        id: NodeId::from_bytes([b; 32]),
        host: format!("10.0.0.{b}:4433").into(),
    }
}

/// Node `b` as a candidate at `depth` with `free` slots.
pub fn cand(b: u8, depth: u32, free: u32) -> Candidate {
    Candidate {
        addr: addr(b),
        depth,
        free,
    }
}

/// A rooted node's probe reply (no watch-only children).
pub fn probe_info(depth: u32, free: u32, capacity: u32, candidates: Vec<Candidate>) -> ProbeInfo {
    ProbeInfo {
        rooted: true,
        depth,
        free,
        capacity,
        movable: 0,
        candidates,
    }
}

/// Everything the overlay asks for now.
pub fn drain(o: &mut Overlay) -> Vec<Action> {
    std::iter::from_fn(|| o.poll_action()).collect()
}

/// The nodes probed among `actions`.
pub fn probes(actions: &[Action]) -> Vec<PeerAddr> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Probe(to) => Some(to.clone()),
            _ => None,
        })
        .collect()
}

/// The first attach among `actions`: to whom, and whose slot it asks for.
pub fn attach(actions: &[Action]) -> Option<(PeerAddr, Option<NodeId>)> {
    actions.iter().find_map(|a| match a {
        Action::Attach { to, replaces } => Some((to.clone(), *replaces)),
        _ => None,
    })
}

/// Fires `x`'s timers (none before `now`) until it attaches, starting from the actions
/// `acts` in hand; each timer must satisfy `due_ok`, else the test fails with `why`.
/// Returns the actions that hold the attach.
pub fn timers_until_attach(
    x: &mut Overlay,
    mut acts: Vec<Action>,
    now: Instant,
    due_ok: impl Fn(Instant) -> bool,
    why: &str,
) -> Vec<Action> {
    while attach(&acts).is_none() {
        let due = x.poll_timeout().expect("a timer");
        assert!(due_ok(due), "{why}");
        x.handle_timeout(due.max(now));
        acts = drain(x);
    }
    acts
}

/// Whom the first attach among `actions` goes to.
pub fn attach_to(actions: &[Action]) -> Option<PeerAddr> {
    attach(actions).map(|(to, _)| to)
}

/// A millisecond.
pub const MS: Duration = Duration::from_millis(1);

/// A node (capacity 2) settled under 2, which it measured `parent_rtt` away, at depth 2
/// below the origin 1, given `backups`; returns it and the instant it attached.
pub fn settled_under(parent_rtt: Duration, backups: Vec<Candidate>) -> (Overlay, Instant) {
    let cfg = OverlayConfig {
        capacity: 2,
        ..OverlayConfig::default()
    };
    let mut x = Overlay::new(NodeId::from_bytes([9; 32]), cfg, 7);
    let t0 = Instant::now();
    x.handle_join(t0, vec![addr(2)]);
    drain(&mut x);
    x.handle_probe_result(
        t0,
        &addr(2),
        Some((parent_rtt, probe_info(1, 1, 2, vec![]))),
    );
    drain(&mut x);
    let tree = TreeInfo {
        rooted: true,
        path: vec![addr(1).id, addr(2).id],
        backups,
    };
    x.handle_attach_result(t0, &addr(2), Ok(tree));
    drain(&mut x);
    (x, t0)
}
