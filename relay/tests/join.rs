//! Deterministic tests of joining while a crowd joins: a probe round that does not wait
//! for probes that can no longer win, each round looking where the nearest nodes point,
//! a refusal's rooms measured before one is chosen,
//! slots a watch-only joiner would be refused, what a node passes on about others, and
//! a watch-only child displaced by a forwarder.
//!
//! The joiner is driven by hand (actions drained, answers given at chosen instants), as
//! the node and the simulator drive it.

mod overlay_net;

use std::time::Instant;

use overlay_net::{
    MS, Net, addr, attach_to, cand, drain, probe_info as info, probes, settled_under,
};
use treecast_relay::proto::addr::PeerAddr;
use treecast_relay::proto::id::NodeId;
use treecast_relay::proto::overlay::*;
use treecast_relay::proto::tree_msg::{Candidate, TreeInfo};

fn joiner(capacity: u32) -> Overlay {
    joiner_with(OverlayConfig {
        capacity,
        ..OverlayConfig::default()
    })
}

fn joiner_with(cfg: OverlayConfig) -> Overlay {
    Overlay::new(NodeId::from_bytes([200; 32]), cfg, 7)
}

/// Joins via the origin (1), which is full and names `named`; returns the joiner after
/// the origin's answer, with the probes of the next round.
fn after_origin(capacity: u32, t0: Instant, named: Vec<Candidate>) -> (Overlay, Vec<PeerAddr>) {
    after_origin_with(joiner(capacity), t0, named)
}

fn after_origin_with(
    mut j: Overlay,
    t0: Instant,
    named: Vec<Candidate>,
) -> (Overlay, Vec<PeerAddr>) {
    j.handle_join(t0, vec![addr(1)]);
    assert_eq!(probes(&drain(&mut j)), vec![addr(1)]);
    let t1 = t0 + 100 * MS;
    j.handle_probe_result(t1, &addr(1), Some((50 * MS, info(0, 0, 4, named))));
    let next = probes(&drain(&mut j));
    (j, next)
}

#[test]
fn a_probe_round_ends_once_the_probes_still_out_cannot_win() {
    // A probe costs one round trip when the answer comes with the handshake, two when
    // the prober must present a join token first.
    for round_trips in [1, 2] {
        let t0 = Instant::now();
        let j = joiner_with(OverlayConfig {
            capacity: 2,
            probe_round_trips: round_trips,
            ..OverlayConfig::default()
        });
        let (mut j, round) = after_origin_with(j, t0, vec![cand(2, 1, 2), cand(3, 1, 2)]);
        assert_eq!(round.len(), 2);
        let started = t0 + 100 * MS;
        // The near one answers (10 ms away); the far one (3) does not.
        j.handle_probe_result(
            started + round_trips * 10 * MS,
            &addr(2),
            Some((10 * MS, info(1, 2, 2, vec![]))),
        );
        assert!(drain(&mut j).is_empty(), "3 could still be as near");
        // A node unanswered after that many times the near-tie margin of 10 ms (14 ms) is
        // farther than that: the round is decided long before its 1.5 s timeout.
        let due = j.poll_timeout().expect("a timer");
        assert_eq!(
            due,
            started + round_trips * 14 * MS,
            "{round_trips} round trips per probe: due {:?} after the round began",
            due - started
        );
        j.handle_timeout(due);
        assert_eq!(attach_to(&drain(&mut j)), Some(addr(2)));
    }
}

#[test]
fn a_round_waits_for_probes_that_may_still_be_nearer() {
    let t0 = Instant::now();
    let (mut j, _) = after_origin(2, t0, vec![cand(2, 1, 2), cand(3, 1, 2)]);
    let started = t0 + 100 * MS;
    // The only answer so far is 200 ms away: 3 may well be nearer, so keep waiting.
    j.handle_probe_result(
        started + 200 * MS,
        &addr(2),
        Some((200 * MS, info(1, 2, 2, vec![]))),
    );
    assert!(drain(&mut j).is_empty());
    // 3 is near, but was slow to answer (busy): still within the near-tie margin.
    j.handle_probe_result(
        started + 230 * MS,
        &addr(3),
        Some((30 * MS, info(1, 2, 2, vec![]))),
    );
    assert_eq!(attach_to(&drain(&mut j)), Some(addr(3)));
}

/// A joiner that measured 2 (10 ms) and 3 (12 ms), both with room, attached to 2 and
/// was refused for lack of room with `redirect`; returns it and the refusal's instant.
fn refused_by_2(redirect: Vec<Candidate>) -> (Overlay, Instant) {
    let t0 = Instant::now();
    let (mut j, _) = after_origin(2, t0, vec![cand(2, 1, 1), cand(3, 1, 1)]);
    // Both answer before the round is decided (10 ms: 14 ms after it began).
    let t1 = t0 + 112 * MS;
    j.handle_probe_result(t1, &addr(2), Some((10 * MS, info(1, 1, 2, vec![]))));
    j.handle_probe_result(t1, &addr(3), Some((12 * MS, info(1, 1, 2, vec![]))));
    assert_eq!(attach_to(&drain(&mut j)), Some(addr(2)));
    let refused = Refused {
        why: Refusal::Full,
        redirect,
    };
    let t2 = t1 + 20 * MS;
    j.handle_attach_result(t2, &addr(2), Err(Some(refused)));
    (j, t2)
}

#[test]
fn a_joiner_refused_by_a_full_parent_measures_the_rooms_it_names() {
    // 2 filled up meanwhile; it names its child 5, a node 6 elsewhere (both with room)
    // and a full one, 7.
    let (mut j, t2) = refused_by_2(vec![cand(5, 2, 2), cand(6, 1, 3), cand(7, 2, 0)]);
    // No attach on the strength of second-hand news: the two rooms are measured first
    // (3, measured before the refusal, is no longer trusted to have room).
    let actions = drain(&mut j);
    assert_eq!(attach_to(&actions), None, "{actions:?}");
    let mut measured = probes(&actions);
    measured.sort_by_key(|a| a.id);
    assert_eq!(measured, vec![addr(5), addr(6)]);
    j.handle_probe_result(
        t2 + 30 * MS,
        &addr(5),
        Some((25 * MS, info(2, 2, 2, vec![]))),
    );
    j.handle_probe_result(
        t2 + 40 * MS,
        &addr(6),
        Some((14 * MS, info(1, 3, 4, vec![]))),
    );
    // The nearer of the two, then the other; not 3.
    assert_eq!(attach_to(&drain(&mut j)), Some(addr(6)));
    j.handle_attach_result(t2 + 60 * MS, &addr(6), Err(None));
    assert_eq!(attach_to(&drain(&mut j)), Some(addr(5)));
}

#[test]
fn a_joiner_whose_measured_rooms_are_all_gone_falls_back_to_what_it_measured_before() {
    let (mut j, t2) = refused_by_2(vec![cand(5, 2, 1)]);
    assert_eq!(probes(&drain(&mut j)), vec![addr(5)]);
    // 5 filled up too: rather than pause, try 3.
    j.handle_probe_result(
        t2 + 30 * MS,
        &addr(5),
        Some((25 * MS, info(2, 0, 2, vec![]))),
    );
    assert_eq!(attach_to(&drain(&mut j)), Some(addr(3)));
}

#[test]
fn each_round_looks_first_where_the_nearest_nodes_point() {
    let t0 = Instant::now();
    let mut j = Overlay::new(
        NodeId::from_bytes([200; 32]),
        OverlayConfig {
            capacity: 2,
            probe_fanout: 2,
            ..OverlayConfig::default()
        },
        7,
    );
    j.handle_join(t0, vec![addr(1)]);
    assert_eq!(probes(&drain(&mut j)), vec![addr(1)]);
    // The origin is full and names two nodes with room...
    let t1 = t0 + 100 * MS;
    let named = vec![cand(2, 1, 1), cand(3, 1, 1)];
    j.handle_probe_result(t1, &addr(1), Some((50 * MS, info(0, 0, 4, named))));
    assert_eq!(probes(&drain(&mut j)).len(), 2);
    // ...which filled up meanwhile. 2 is far and names 4 and 6; 3 is near and names 5
    // and 7: all at depth 2, with room.
    let t2 = t1 + 200 * MS;
    let far = vec![cand(4, 2, 1), cand(6, 2, 1)];
    let near = vec![cand(5, 2, 1), cand(7, 2, 1)];
    j.handle_probe_result(t2, &addr(2), Some((90 * MS, info(1, 0, 2, far))));
    j.handle_probe_result(t2, &addr(3), Some((8 * MS, info(1, 0, 2, near))));
    // With room for two probes, the rooms the near node named.
    let mut next = probes(&drain(&mut j));
    next.sort_by_key(|a| a.id);
    assert_eq!(next, vec![addr(5), addr(7)]);
}

#[test]
fn a_watch_only_joiner_skips_a_last_slot_kept_for_forwarders() {
    let t0 = Instant::now();
    let (mut j, round) = after_origin(0, t0, vec![cand(2, 1, 1)]);
    assert_eq!(round, vec![addr(2)]);
    // 2 has one slot left and room below it (its child 5): it would refuse a watch-only
    // node, so the joiner looks at 5 instead.
    let t1 = t0 + 200 * MS;
    j.handle_probe_result(
        t1,
        &addr(2),
        Some((10 * MS, info(1, 1, 3, vec![cand(5, 2, 2)]))),
    );
    let actions = drain(&mut j);
    assert_eq!(attach_to(&actions), None, "{actions:?}");
    assert_eq!(probes(&actions), vec![addr(5)]);
    j.handle_probe_result(
        t1 + 30 * MS,
        &addr(5),
        Some((20 * MS, info(2, 2, 2, vec![]))),
    );
    assert_eq!(attach_to(&drain(&mut j)), Some(addr(5)));
}

#[test]
fn a_node_passes_on_only_fresh_news_of_others_and_their_own_count_of_free_slots() {
    let t0 = Instant::now();
    // A forwarder counts a watch-only child of 2's as room for itself...
    let (mut j, round) = after_origin(2, t0, vec![cand(2, 1, 1)]);
    assert_eq!(round, vec![addr(2)]);
    let t1 = t0 + 200 * MS;
    let mut full = info(1, 0, 2, vec![]);
    full.movable = 1;
    j.handle_probe_result(t1, &addr(2), Some((10 * MS, full)));
    assert_eq!(attach_to(&drain(&mut j)), Some(addr(2)));
    j.handle_attach_result(
        t1,
        &addr(2),
        Ok(TreeInfo {
            rooted: true,
            path: vec![addr(1).id, addr(2).id],
            backups: vec![],
        }),
    );
    drain(&mut j);
    let asker = addr(99).id;
    let listed = |j: &Overlay, at: Instant, b: u8| {
        let cands = j.probe_answer(at, asker.as_bytes()).candidates;
        cands.into_iter().find(|c| c.addr == addr(b))
    };
    // ...but tells others 2 is full, as 2 said.
    assert_eq!(listed(&j, t1 + 500 * MS, 2).map(|c| c.free), Some(0));
    assert_eq!(listed(&j, t1 + 500 * MS, 1).map(|c| c.free), Some(0));
    // News more than two seconds old is not passed on: slots go fast in a crowd.
    assert!(listed(&j, t1 + 3000 * MS, 1).is_none());
}

/// The origin (2 slots) with a watch-only child and a forwarder whose subtree has room.
#[test]
fn a_displaced_watch_only_child_is_offered_more_than_the_forwarder_that_took_its_slot() {
    let mut net = Net::new();
    let o = net.add(2, (0.0, 0.0));
    let viewer = net.add(0, (1.0, 0.0));
    net.join(viewer, o);
    let relay = net.add(3, (2.0, 0.0));
    net.join(relay, o);
    assert_eq!(net.nodes[&relay].parent().map(|p| p.id), Some(o));
    let now = net.now;
    let newcomer = addr(77);
    let origin = net.node(o);
    let tree = origin.handle_child_request(now, &newcomer, 2, None);
    assert!(
        tree.is_ok(),
        "a forwarder takes the viewer's slot: {tree:?}"
    );
    let moved = drain(origin)
        .into_iter()
        .find_map(|a| match a {
            Action::MoveChild { child, to } => Some((child, to)),
            _ => None,
        })
        .expect("the viewer is moved");
    assert_eq!(moved.0, viewer);
    let to: Vec<PeerAddr> = moved.1.iter().map(|c| c.addr.clone()).collect();
    assert_eq!(to[0], newcomer, "the forwarder first");
    assert!(
        to.contains(&net.addr[&relay]),
        "then the room below: {to:?}"
    );
    // One of the newcomer's two slots is the viewer's: others are told of one only.
    let cands = net.nodes[&o]
        .probe_answer(now, addr(98).id.as_bytes())
        .candidates;
    let listed = cands.iter().find(|c| c.addr == newcomer).map(|c| c.free);
    assert_eq!(listed, Some(1));
}

/// A move by choice never puts a node deeper: if the parent it measured moved down
/// before the attach, the node detaches from it and stays where it was.
#[test]
fn a_move_to_a_parent_that_went_deeper_meanwhile_is_undone() {
    let (mut x, t0) = settled_under(50 * MS, vec![cand(1, 0, 0), cand(3, 1, 1)]);
    // 3, as deep as the parent and much nearer, is where an improvement round goes.
    let mut now = t0;
    let mut moving = false;
    for _ in 0..200 {
        // Answer everything asked, until the node has nothing more to say; then let
        // time pass to its next timer.
        while let Some(a) = x.poll_action() {
            match a {
                Action::Probe(to) => {
                    let answer = match to.id {
                        id if id == addr(3).id => Some((5 * MS, info(1, 1, 2, vec![]))),
                        id if id == addr(1).id => Some((20 * MS, info(0, 0, 2, vec![]))),
                        _ => None,
                    };
                    x.handle_probe_result(now, &to, answer);
                }
                Action::Attach { to, .. } if to == addr(3) => moving = true,
                _ => {}
            }
        }
        if moving {
            break;
        }
        now = x.poll_timeout().expect("a timer");
        x.handle_timeout(now);
    }
    assert!(moving, "no move to 3");
    // 3 went down meanwhile: attaching there would put us at depth 4, not 2.
    let deeper = TreeInfo {
        rooted: true,
        path: vec![addr(1).id, addr(7).id, addr(8).id, addr(3).id],
        backups: vec![],
    };
    x.handle_attach_result(now, &addr(3), Ok(deeper));
    let acts = drain(&mut x);
    assert!(acts.contains(&Action::Detach(addr(3).id)), "{acts:?}");
    assert!(!acts.contains(&Action::Detach(addr(2).id)), "{acts:?}");
    assert_eq!(x.parent(), Some(&addr(2)));
    assert_eq!(x.depth(), Some(2));
}
