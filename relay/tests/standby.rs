//! Deterministic tests of fast repair: the standby parent a settled node keeps measured,
//! the heir that takes a crashed parent's slot at the grandparent, and the slot the
//! grandparent holds for it.

mod overlay_net;

use std::time::{Duration, Instant};

use overlay_net::{
    MS, Net, addr, attach, cand, drain, probe_info, probes, settled_under, timers_until_attach,
};
use treecast_relay::proto::addr::PeerAddr;
use treecast_relay::proto::id::NodeId;
use treecast_relay::proto::overlay::*;
use treecast_relay::proto::tree_msg::TreeInfo;

/// Origin `o` (one slot) <- relay `a` <- relay `k`.
fn chain() -> (Net, [NodeId; 3]) {
    let mut net = Net::new();
    let o = net.add(1, (0.0, 0.0));
    let a = net.add(2, (1.0, 0.0));
    net.join(a, o);
    let k = net.add(2, (2.0, 0.0));
    net.join(k, a);
    assert_eq!(parent_of(&net, k), Some(a));
    (net, [o, a, k])
}

/// A relay (capacity 2) attached to `parent` by hand (pinned: no probing).
fn relay_under(net: &mut Net, parent: NodeId, at: (f64, f64)) -> NodeId {
    let id = net.add_with(2, at, |c| c.pinned = true);
    net.join(id, parent);
    assert_eq!(parent_of(net, id), Some(parent));
    id
}

fn parent_of(net: &Net, id: NodeId) -> Option<NodeId> {
    net.nodes[&id].parent().map(|p| p.id)
}

/// The `Repaired` event of `id`, if any: (new parent, through the standby).
fn repaired(net: &Net, id: NodeId) -> Option<(NodeId, bool)> {
    net.events.iter().find_map(|(n, e)| match e {
        OverlayEvent::Repaired {
            parent, standby, ..
        } if *n == id => Some((*parent, *standby)),
        _ => None,
    })
}

/// Origin `o` (capacity 2) with relays `b` and `a` (near the joiners); under `a` the
/// forwarder `k1` (capacity 3, so `a`'s heir) and `k2`. Settled long enough for a
/// standby refresh.
fn two_level_tree() -> (Net, [NodeId; 5]) {
    let mut net = Net::new();
    let o = net.add(2, (0.0, 0.0));
    // b first: a's backups (the uncles with room) are as of when a attached.
    let b = relay_under(&mut net, o, (30.0, 20.0));
    let a = relay_under(&mut net, o, (30.0, 0.0));
    let k2 = net.add(1, (35.0, 5.0));
    net.join(k2, a);
    let k1 = net.add(3, (33.0, -2.0));
    net.join(k1, a);
    assert_eq!(parent_of(&net, k1), Some(a));
    assert_eq!(parent_of(&net, k2), Some(a));
    net.advance(Duration::from_secs(8));
    net.check();
    (net, [o, a, b, k1, k2])
}

#[test]
fn the_heir_takes_the_crashed_parents_slot_and_its_sibling_the_standby() {
    let (mut net, [o, a, b, k1, k2]) = two_level_tree();
    // The origin is full (a and b): only a's heir may have a's slot.
    assert_eq!(net.nodes[&o].free_slots(), 0);
    net.crash(a);
    net.check();
    assert_eq!(
        repaired(&net, k1),
        Some((o, true)),
        "the heir claims a's slot"
    );
    assert_eq!(
        repaired(&net, k2),
        Some((b, true)),
        "the sibling attaches straight to its standby (the uncle with room)"
    );
    assert!(net.nodes[&o].child_count() <= 2);
}

#[test]
fn the_grandparent_holds_a_vanished_childs_slot_for_its_heir_only() {
    let (mut net, [o, a, k]) = chain();
    net.check();
    let now = net.now;
    let addr = |id: NodeId| PeerAddr {
        id,
        host: "10.9.9.9:4433".into(),
    };
    let origin = net.node(o);
    origin.handle_child_lost(now, &a);
    assert_eq!(origin.free_slots(), 0, "held for a's heir");
    let stranger = NodeId::from_bytes([99; 32]);
    let refused = origin.handle_child_request(now, &addr(stranger), 2, None);
    assert!(matches!(
        refused,
        Err(Refused {
            why: Refusal::Full,
            ..
        })
    ));
    // Claiming some other child's slot does not work either.
    let refused = origin.handle_child_request(now, &addr(stranger), 2, Some(stranger));
    assert!(refused.is_err());
    let info: TreeInfo = origin
        .handle_child_request(now, &addr(k), 2, Some(a))
        .expect("the heir gets the held slot");
    assert_eq!(info.path, vec![o]);
    assert_eq!(origin.child_count(), 1);
}

#[test]
fn an_unclaimed_held_slot_frees_up_and_an_orderly_detach_holds_nothing() {
    let (mut net, [o, a, _]) = chain();
    let origin = net.node(o);
    assert_eq!(origin.free_slots(), 0);
    origin.handle_child_gone(&a);
    assert_eq!(
        origin.free_slots(),
        1,
        "a child that left in order frees its slot"
    );
    let hold = OverlayConfig::default().slot_hold;
    let (mut net, [o, a, _]) = chain();
    let now = net.now;
    net.node(o).handle_child_lost(now, &a);
    assert_eq!(net.nodes[&o].free_slots(), 0);
    let due = net.nodes[&o].poll_timeout().expect("a timer for the hold");
    assert!(due <= now + hold);
    net.node(o).handle_timeout(now + hold);
    assert_eq!(
        net.nodes[&o].free_slots(),
        1,
        "nobody claimed it: free again"
    );
}

#[test]
fn a_watch_only_childs_loss_holds_no_slot() {
    let mut net = Net::new();
    let o = net.add(2, (0.0, 0.0));
    let a = net.add(0, (1.0, 0.0));
    net.join(a, o);
    let now = net.now;
    net.node(o).handle_child_lost(now, &a);
    assert_eq!(
        net.nodes[&o].free_slots(),
        2,
        "no subtree, no heir to wait for"
    );
}

#[test]
fn when_the_standby_crashed_too_the_orphan_takes_a_backup_that_answered() {
    let mut net = Net::new();
    let o = net.add(3, (0.0, 0.0));
    let b = relay_under(&mut net, o, (31.0, 6.0));
    let c = relay_under(&mut net, o, (30.0, 30.0));
    let a = relay_under(&mut net, o, (30.0, 0.0));
    let k2 = net.add(1, (33.0, 3.0));
    net.join(k2, a);
    let k1 = net.add(3, (32.0, -2.0));
    net.join(k1, a);
    net.advance(Duration::from_secs(8));
    net.check();
    assert_eq!(parent_of(&net, k1), Some(a));
    assert_eq!(parent_of(&net, k2), Some(a));
    // k2's standby is b, the nearer uncle with room: it crashes with a.
    assert!(net.nodes[&k2].backups().iter().any(|c| c.addr.id == b));
    net.crash_all(&[a, b]);
    net.check();
    assert_eq!(repaired(&net, k1), Some((o, true)));
    let (p, standby) = repaired(&net, k2).expect("k2 repaired");
    assert!(!standby, "the standby was dead");
    assert!(p == c || p == k1 || p == o, "a live parent: {p:?}");
}

#[test]
fn a_parent_names_one_heir_and_tells_the_new_one_when_it_changes() {
    let mut net = Net::new();
    let o = net.add(1, (0.0, 0.0));
    let a = net.add(3, (1.0, 0.0));
    net.join(a, o);
    let w = net.add(0, (2.0, 0.0));
    net.join(w, a);
    // A watch-only only child is the heir for want of another.
    let heirs = |net: &Net| {
        net.nodes[&a]
            .children()
            .filter(|(c, _)| heir_marked(&net.nodes[*c]))
            .count()
    };
    assert!(heir_marked(&net.nodes[&w]));
    assert_eq!(heirs(&net), 1);
    // A forwarder joins: it becomes the heir, and w is told it no longer is.
    let f = net.add(2, (2.0, 1.0));
    net.join(f, a);
    assert_eq!(parent_of(&net, f), Some(a));
    assert!(heir_marked(&net.nodes[&f]));
    assert!(!heir_marked(&net.nodes[&w]));
    assert_eq!(heirs(&net), 1);
}

/// Whether this node's parent named it heir (its grandparent is offered with a slot).
fn heir_marked(n: &Overlay) -> bool {
    n.backups().first().is_some_and(|g| g.free > 0)
}

/// A node whose standby (an uncle, measured with room) has filled up by the time the
/// parent crashes measures the rooms the standby names below itself and takes one,
/// instead of attaching to one unmeasured (it may have crashed with the parent).
#[test]
fn an_orphan_refused_by_its_full_standby_measures_the_rooms_it_names() {
    // Not p's heir (the grandparent 1 is full for us); the uncle 3 has room.
    let (mut x, _) = settled_under(10 * MS, vec![cand(1, 0, 0), cand(3, 1, 1)]);
    let due = x.poll_timeout().expect("a standby refresh");
    x.handle_timeout(due);
    let probed = drain(&mut x);
    assert!(probed.contains(&Action::Probe(addr(3))), "{probed:?}");
    x.handle_probe_result(due, &addr(3), Some((8 * MS, probe_info(1, 1, 2, vec![]))));
    x.handle_probe_result(due, &addr(1), Some((12 * MS, probe_info(0, 0, 2, vec![]))));
    // p crashes: straight to the standby 3.
    let t1 = due + Duration::from_secs(1);
    x.handle_parent_lost(t1, &addr(2).id);
    let acts = drain(&mut x);
    assert_eq!(attach(&acts), Some((addr(3), None)), "{acts:?}");
    // 3 filled up meanwhile and names its child with room: that one is measured.
    let refused = Refused {
        why: Refusal::Full,
        redirect: vec![cand(4, 2, 2), cand(1, 0, 0)],
    };
    let t2 = t1 + 10 * MS;
    x.handle_attach_result(t2, &addr(3), Err(Some(refused)));
    let acts = drain(&mut x);
    assert_eq!(attach(&acts), None, "not unmeasured: {acts:?}");
    assert!(probes(&acts).contains(&addr(4)), "{acts:?}");
    let t3 = t2 + 25 * MS;
    x.handle_probe_result(t3, &addr(4), Some((12 * MS, probe_info(2, 2, 2, vec![]))));
    let round = |d: Instant| d <= t1 + 350 * MS;
    let acts = drain(&mut x);
    let acts = timers_until_attach(&mut x, acts, t3, round, "waited past the repair round");
    assert_eq!(attach(&acts), Some((addr(4), None)), "{acts:?}");
}

/// The standby refuses for lack of room, naming a room below itself, after another
/// backup probed meanwhile has answered with room: the orphan takes that backup within
/// a moment, not the named room unmeasured (in the simulator such rooms had often
/// crashed with the parent, and an attach to one waited out the attach timeout).
#[test]
fn an_orphan_refused_by_its_standby_takes_a_backup_that_answered_with_room() {
    let (mut x, due) = with_two_measured_uncles();
    let t1 = due + Duration::from_secs(1);
    x.handle_parent_lost(t1, &addr(2).id);
    let acts = drain(&mut x);
    assert_eq!(attach(&acts), Some((addr(3), None)), "{acts:?}");
    assert!(probes(&acts).contains(&addr(4)), "{acts:?}");
    let t2 = t1 + 30 * MS;
    x.handle_probe_result(t2, &addr(4), Some((25 * MS, probe_info(1, 1, 2, vec![]))));
    let refused = Refused {
        why: Refusal::Full,
        redirect: vec![cand(5, 2, 1)],
    };
    let t3 = t2 + 5 * MS;
    x.handle_attach_result(t3, &addr(3), Err(Some(refused)));
    let acts = drain(&mut x);
    assert!(probes(&acts).contains(&addr(5)), "{acts:?}");
    let moment = |d: Instant| d <= t3 + OverlayConfig::default().repair_grace;
    let acts = timers_until_attach(&mut x, acts, t3, moment, "waited more than a moment");
    assert_eq!(attach(&acts), Some((addr(4), None)), "{acts:?}");
}

/// Repairing, the standby and then the best backup refuse as full, both naming a room
/// the orphan probed in this repair without an answer (it crashed with the parent): the
/// orphan takes the other backup that answered with room, not the silent room blind.
/// (In the simulator's churn-10k, seed 75, one orphan attached blind to two such rooms
/// in turn and waited out both attach deadlines: 3.8 s without a parent.)
#[test]
fn a_refused_orphan_takes_a_backup_that_answered_over_a_named_room_that_did_not() {
    let (mut x, t0) = settled_under(
        10 * MS,
        vec![cand(1, 0, 0), cand(3, 1, 1), cand(4, 1, 1), cand(6, 1, 1)],
    );
    let due = x.poll_timeout().expect("a standby refresh");
    x.handle_timeout(due.max(t0));
    drain(&mut x);
    for (b, ms) in [(3, 15), (4, 25), (6, 35)] {
        x.handle_probe_result(due, &addr(b), Some((ms * MS, probe_info(1, 1, 2, vec![]))));
    }
    let t1 = due + Duration::from_secs(1);
    x.handle_parent_lost(t1, &addr(2).id);
    let acts = drain(&mut x);
    assert_eq!(attach(&acts), Some((addr(3), None)), "{acts:?}");
    // Both other backups answer with room; the standby refuses, naming the room 5.
    let t2 = t1 + 40 * MS;
    x.handle_probe_result(t2, &addr(4), Some((25 * MS, probe_info(1, 1, 2, vec![]))));
    x.handle_probe_result(t2, &addr(6), Some((35 * MS, probe_info(1, 1, 2, vec![]))));
    let full = |room: u8| Refused {
        why: Refusal::Full,
        redirect: vec![cand(room, 2, 1)],
    };
    let t3 = t2 + 5 * MS;
    x.handle_attach_result(t3, &addr(3), Err(Some(full(5))));
    let acts = drain(&mut x);
    assert!(probes(&acts).contains(&addr(5)), "{acts:?}");
    let moment = |d: Instant| d <= t3 + OverlayConfig::default().repair_grace;
    let acts = timers_until_attach(&mut x, acts, t3, moment, "waited more than a moment");
    assert_eq!(attach(&acts), Some((addr(4), None)), "{acts:?}");
    // 5 never answers. 4 filled up meanwhile and names 5 as well: 6 it is, at once.
    let t4 = t3 + 30 * MS;
    x.handle_attach_result(t4, &addr(4), Err(Some(full(5))));
    let acts = drain(&mut x);
    assert_eq!(attach(&acts), Some((addr(6), None)), "{acts:?}");
}

/// The heir measures its grandparent at every standby refresh, however far it is and
/// however many nearer backups have room: its claim on the dead parent's slot then goes
/// over a warm connection. (Measured only when among the nearest, a far grandparent's
/// claim cost a handshake and missed its deadline, and the heir's whole subtree went
/// to a parent five levels deeper.)
#[test]
fn the_heir_measures_its_far_grandparent_at_every_refresh() {
    // The grandparent 1 offers the heir a slot; the uncles 3 and 4 have room too.
    let (mut x, _) = settled_under(10 * MS, vec![cand(1, 0, 1), cand(3, 1, 1), cand(4, 1, 1)]);
    for round in 0..3 {
        let due = x.poll_timeout().expect("a standby refresh");
        x.handle_timeout(due);
        let probed = probes(&drain(&mut x));
        assert!(probed.contains(&addr(1)), "round {round}: {probed:?}");
        // The uncles are near, the grandparent far.
        for (b, depth, ms) in [(3, 1, 8), (4, 1, 9), (1, 0, 200)] {
            x.handle_probe_result(
                due,
                &addr(b),
                Some((ms * MS, probe_info(depth, 1, 2, vec![]))),
            );
        }
        drain(&mut x);
    }
}

/// The heir's claim on a far grandparent gets that grandparent's round trip on top of
/// the usual wait: the slot keeps the heir's whole subtree at its depth.
#[test]
fn the_heirs_claim_on_a_far_grandparent_waits_its_round_trip() {
    let (mut x, _) = settled_under(10 * MS, vec![cand(1, 0, 1), cand(3, 1, 1)]);
    let due = x.poll_timeout().expect("a standby refresh");
    x.handle_timeout(due);
    drain(&mut x);
    x.handle_probe_result(due, &addr(1), Some((200 * MS, probe_info(0, 1, 2, vec![]))));
    x.handle_probe_result(due, &addr(3), Some((8 * MS, probe_info(1, 1, 2, vec![]))));
    drain(&mut x);
    let t1 = due + Duration::from_secs(1);
    x.handle_parent_lost(t1, &addr(2).id);
    let acts = drain(&mut x);
    assert_eq!(attach(&acts), Some((addr(1), Some(addr(2).id))), "{acts:?}");
    // The uncle answers the repair probe with room; the claim is still pending past the
    // usual 350 ms.
    x.handle_probe_result(
        t1 + 20 * MS,
        &addr(3),
        Some((8 * MS, probe_info(1, 1, 2, vec![]))),
    );
    let late = t1 + OverlayConfig::default().repair_probe_timeout + 100 * MS;
    let mut now = t1 + 20 * MS;
    while let Some(due) = x.poll_timeout().filter(|d| *d <= late) {
        now = due.max(now);
        x.handle_timeout(now);
        let acts = drain(&mut x);
        assert_eq!(attach(&acts), None, "gave up the claim at {:?}", now - t1);
    }
    let info = TreeInfo {
        rooted: true,
        path: vec![addr(1).id],
        ..TreeInfo::default()
    };
    x.handle_attach_result(late, &addr(1), Ok(info));
    assert_eq!(x.parent().map(|p| p.id), Some(addr(1).id));
}

/// In a full tree the uncles have no room, but below them there is: a room an uncle
/// named becomes the standby, measured and attached to at once when the parent crashes.
#[test]
fn a_room_below_a_full_uncle_is_a_standby_too() {
    // The grandparent 1 (full for us) and the uncle 3 (full).
    let (mut x, t0) = settled_under(10 * MS, vec![cand(1, 0, 0), cand(3, 1, 0)]);
    // A new position is measured within a second or so, not a whole interval.
    let due = x.poll_timeout().expect("a standby refresh");
    assert!(due <= t0 + Duration::from_millis(1250), "{:?}", due - t0);
    x.handle_timeout(due);
    let probed = drain(&mut x);
    assert!(probed.contains(&Action::Probe(addr(3))), "{probed:?}");
    // The uncle names its child 5 with room (and, as probe replies do, some node it
    // knows of at our grandparent's depth, which is no room below it).
    let named = vec![cand(5, 2, 2), cand(6, 0, 3)];
    x.handle_probe_result(due, &addr(3), Some((9 * MS, probe_info(1, 0, 2, named))));
    x.handle_probe_result(due, &addr(1), Some((12 * MS, probe_info(0, 0, 2, vec![]))));
    // The next refresh measures the room.
    let due = x.poll_timeout().expect("the next refresh");
    x.handle_timeout(due);
    let probed = drain(&mut x);
    assert!(probed.contains(&Action::Probe(addr(5))), "{probed:?}");
    assert!(!probed.contains(&Action::Probe(addr(6))), "{probed:?}");
    x.handle_probe_result(due, &addr(5), Some((15 * MS, probe_info(2, 2, 2, vec![]))));
    // The parent crashes: straight to 5.
    let t1 = due + Duration::from_secs(1);
    x.handle_parent_lost(t1, &addr(2).id);
    let acts = drain(&mut x);
    assert_eq!(attach(&acts), Some((addr(5), None)), "{acts:?}");
}

/// A child's backups name its uncles even when they are full (below the grandparent,
/// before its own siblings): the full ones name the rooms below them, which are most of
/// the standbys in a full tree.
#[test]
fn a_child_is_told_its_full_uncles() {
    let mut net = Net::new();
    let o = net.add(2, (0.0, 0.0));
    // k1's uncle b is full (two children) when its parent a attaches.
    let b = relay_under(&mut net, o, (30.0, 20.0));
    relay_under(&mut net, b, (31.0, 21.0));
    relay_under(&mut net, b, (32.0, 22.0));
    let a = relay_under(&mut net, o, (30.0, 0.0));
    let k2 = relay_under(&mut net, a, (35.0, 5.0));
    let k1 = relay_under(&mut net, a, (33.0, -2.0));
    let told: Vec<(NodeId, u32)> = net.nodes[&k1]
        .backups()
        .iter()
        .map(|c| (c.addr.id, c.free))
        .collect();
    let at = |id: NodeId| told.iter().position(|(x, _)| *x == id);
    assert_eq!(at(o), Some(0), "{told:?}");
    assert_eq!(at(b), Some(1), "the full uncle: {told:?}");
    assert_eq!(told[1].1, 0, "{told:?}");
    assert!(at(k2).is_some_and(|i| i > 1), "the sibling after: {told:?}");
}

/// A standby refresh measures the full uncles before full ancestors: an uncle's answer
/// names rooms outside the parent's subtree; a full ancestor's may not.
#[test]
fn a_standby_refresh_asks_the_uncles_before_full_ancestors() {
    // Grandparent 1 (full for us), uncles 3 and 4 (full), all measured, the grandparent
    // the nearest.
    let (mut x, t0) = settled_under(10 * MS, vec![cand(1, 0, 0), cand(3, 1, 0), cand(4, 1, 0)]);
    for (b, depth, ms) in [(1, 0, 5), (3, 1, 20), (4, 1, 30)] {
        x.handle_probe_result(
            t0,
            &addr(b),
            Some((ms * MS, probe_info(depth, 0, 2, vec![]))),
        );
    }
    let due = x.poll_timeout().expect("a standby refresh");
    x.handle_timeout(due);
    let probed = overlay_net::probes(&drain(&mut x));
    assert_eq!(probed, vec![addr(3), addr(4)]);
}

/// Settled under 2 with the grandparent 1 (full), the uncles 3 and 4 with room, both
/// measured by a standby refresh (3 the nearer); returns the node and the instant.
fn with_two_measured_uncles() -> (Overlay, Instant) {
    let (mut x, _) = settled_under(10 * MS, vec![cand(1, 0, 0), cand(3, 1, 1), cand(4, 1, 1)]);
    let due = x.poll_timeout().expect("a standby refresh");
    x.handle_timeout(due);
    drain(&mut x);
    for (b, ms) in [(3, 15), (4, 25)] {
        x.handle_probe_result(due, &addr(b), Some((ms * MS, probe_info(1, 1, 2, vec![]))));
    }
    (x, due)
}

/// The standby's kept-open connection went silent the moment the parent's did (both
/// crashed): the orphan gives up the standby at once and takes the other backup that
/// answered, instead of waiting out the standby attach's deadline.
#[test]
fn an_orphan_whose_standby_went_silent_too_moves_on_at_once() {
    let (mut x, due) = with_two_measured_uncles();
    let t1 = due + Duration::from_secs(1);
    x.handle_parent_lost(t1, &addr(2).id);
    let acts = drain(&mut x);
    assert_eq!(attach(&acts), Some((addr(3), None)), "{acts:?}");
    let deadline = x.poll_timeout().expect("the standby attach's deadline");
    // The other backup, probed meanwhile, answers with room.
    let t2 = t1 + Duration::from_millis(30);
    x.handle_probe_result(t2, &addr(4), Some((25 * MS, probe_info(1, 1, 2, vec![]))));
    assert_eq!(
        attach(&drain(&mut x)),
        None,
        "still waiting for the standby"
    );
    x.handle_peer_lost(t2, &addr(3).id);
    let acts = drain(&mut x);
    let before = |d: Instant| d < deadline;
    let why = "waited for the dead standby's deadline";
    let acts = timers_until_attach(&mut x, acts, t2, before, why);
    assert_eq!(attach(&acts), Some((addr(4), None)), "{acts:?}");
}

/// A peer whose connection went silent is not chosen as the standby.
#[test]
fn a_silent_peer_is_not_the_standby() {
    let (mut x, due) = with_two_measured_uncles();
    let t1 = due + Duration::from_secs(1);
    x.handle_peer_lost(t1, &addr(3).id);
    x.handle_parent_lost(t1, &addr(2).id);
    let acts = drain(&mut x);
    assert_eq!(attach(&acts), Some((addr(4), None)), "{acts:?}");
}

/// The heir is the child with the largest subtree (it would pay most for a deeper
/// parent), and it keeps the title while its subtree stays near the largest.
#[test]
fn the_heir_is_the_child_with_the_largest_subtree() {
    let mut net = Net::new();
    let o = net.add(1, (0.0, 0.0));
    let a = relay_under(&mut net, o, (1.0, 0.0));
    let k1 = relay_under(&mut net, a, (2.0, 0.0));
    let k2 = relay_under(&mut net, a, (2.0, 1.0));
    let heir = |net: &Net| {
        net.nodes[&a]
            .children()
            .map(|(c, _)| *c)
            .filter(|c| heir_marked(&net.nodes[c]))
            .collect::<Vec<_>>()
    };
    let first = heir(&net);
    assert_eq!(first.len(), 1);
    let other = if first[0] == k1 { k2 } else { k1 };
    // The other child's subtree grows to 8 (reported in its status): it becomes the heir.
    let status = |net: &mut Net, child: NodeId, subtree: u32| {
        net.node(a).handle_child_status(&child, 2, subtree, vec![]);
        net.run();
    };
    status(&mut net, other, 8);
    assert_eq!(heir(&net), vec![other]);
    // The first one's grows to 7: within three quarters, the heir stays.
    status(&mut net, first[0], 7);
    assert_eq!(heir(&net), vec![other]);
    // To 11: it takes over.
    status(&mut net, first[0], 11);
    assert_eq!(heir(&net), vec![first[0]]);
}

/// Any node measured lately above us with room is a standby too, backup or not: being
/// shallower than us, it cannot hang below the parent that crashed.
#[test]
fn a_node_measured_lately_above_us_is_a_standby() {
    let (mut x, t0) = settled_under(10 * MS, vec![cand(1, 0, 0)]);
    // 7, at depth 1 with room, answered a probe (an improvement round, say).
    x.handle_probe_result(t0, &addr(7), Some((20 * MS, probe_info(1, 1, 2, vec![]))));
    // 8, as deep as we are, could be below the parent: not a standby.
    x.handle_probe_result(t0, &addr(8), Some((5 * MS, probe_info(2, 1, 2, vec![]))));
    drain(&mut x);
    x.handle_parent_lost(t0 + Duration::from_secs(2), &addr(2).id);
    let acts = drain(&mut x);
    assert_eq!(attach(&acts), Some((addr(7), None)), "{acts:?}");
}
