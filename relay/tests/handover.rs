//! Deterministic tests of a handover: a child whose parent leaves in order, refused by a
//! full grandparent, measures the rooms it names before choosing, and looks afresh if
//! none has room. The leaver feeds the child meanwhile, so the round trips this costs
//! pause nothing; a room tried blind may be far, or behind in the stream, and the
//! child's whole subtree would pay for it.

mod overlay_net;

use std::time::{Duration, Instant};

use overlay_net::{
    MS, addr, attach, cand, drain, probe_info, probes, settled_under, timers_until_attach,
};
use treecast_relay::proto::addr::PeerAddr;
use treecast_relay::proto::overlay::*;
use treecast_relay::proto::tree_msg::Candidate;

#[test]
fn a_handed_over_child_takes_the_nearest_room_a_full_grandparent_names() {
    let (mut x, t0) = settled_under(10 * MS, vec![cand(1, 0, 0)]);
    let t1 = t0 + Duration::from_secs(10);
    // The grandparent is full; it names 7 first, then 8.
    let handover = vec![cand(1, 0, 1)];
    let measured =
        refused_by_the_grandparent(&mut x, t1, handover, vec![cand(7, 2, 1), cand(8, 2, 1)]);
    assert_eq!(measured, vec![addr(7), addr(8)]);
    // 8 is four times nearer than 7.
    let t2 = t1 + 30 * MS;
    x.handle_probe_result(t2, &addr(8), Some((10 * MS, probe_info(2, 1, 2, vec![]))));
    x.handle_probe_result(t2, &addr(7), Some((40 * MS, probe_info(2, 1, 2, vec![]))));
    let in_time = |d: Instant| d < t1 + Duration::from_secs(2);
    let acts = drain(&mut x);
    let acts = timers_until_attach(&mut x, acts, t2, in_time, "no choice in time");
    assert_eq!(attach(&acts), Some((addr(8), None)), "{acts:?}");
    let info = treecast_relay::proto::tree_msg::TreeInfo {
        rooted: true,
        path: vec![addr(1).id, addr(3).id, addr(8).id],
        backups: vec![],
    };
    x.handle_attach_result(t2, &addr(8), Ok(info));
    assert_eq!(x.parent().map(|p| p.id), Some(addr(8).id));
}

/// A leaver's children that are not its heir do not ask for its slot; refused by a
/// full grandparent, they measure the rooms it names rather than try old, full
/// candidates, and if none answers they look afresh.
#[test]
fn a_handed_over_child_that_is_not_the_heir_measures_the_rooms_the_grandparent_names() {
    let (mut x, t0) = settled_under(10 * MS, vec![cand(1, 0, 0)]);
    // Many parents measured long ago, with room then.
    for b in 20..30 {
        x.handle_probe_result(t0, &addr(b), Some((30 * MS, probe_info(3, 2, 2, vec![]))));
    }
    drain(&mut x);
    let t1 = t0 + Duration::from_secs(20);
    let handover = vec![cand(1, 0, 1), cand(3, 1, 1)];
    let measured =
        refused_by_the_grandparent(&mut x, t1, handover, vec![cand(7, 2, 2), cand(3, 1, 1)]);
    assert_eq!(measured, vec![addr(3), addr(7)]);
    // 7 and 3 do not answer: it probes afresh, trying at most two old ones first.
    x.handle_probe_result(t1, &addr(7), None);
    x.handle_probe_result(t1, &addr(3), None);
    let mut tried = 0;
    loop {
        let acts = drain(&mut x);
        match acts.iter().find_map(|a| match a {
            Action::Attach { to, .. } => Some(to.clone()),
            _ => None,
        }) {
            Some(to) => {
                tried += 1;
                x.handle_attach_result(t1, &to, Err(None));
            }
            None => {
                assert!(
                    acts.iter().any(|a| matches!(a, Action::Probe(_))),
                    "{acts:?}"
                );
                break;
            }
        }
    }
    assert!(tried <= 2, "tried {tried} old candidates one by one");
}

/// `x` is handed over by its parent 2 with `handover` (the grandparent 1 first). Not the
/// heir, it asks 1 for a free slot, not for 2's; 1 is full and names `redirect`. Returns
/// whom `x` then probed, in id order: it attaches to none of them unmeasured.
fn refused_by_the_grandparent(
    x: &mut Overlay,
    now: Instant,
    handover: Vec<Candidate>,
    redirect: Vec<Candidate>,
) -> Vec<PeerAddr> {
    x.handle_goodbye(now, &addr(2).id, handover);
    let acts = drain(x);
    assert_eq!(
        attach(&acts),
        Some((addr(1), None)),
        "not the heir: no claim on the leaver's slot: {acts:?}"
    );
    let refused = Refused {
        why: Refusal::Full,
        redirect,
    };
    x.handle_attach_result(now, &addr(1), Err(Some(refused)));
    let acts = drain(x);
    assert_eq!(attach(&acts), None, "a room tried blind: {acts:?}");
    let mut measured = probes(&acts);
    measured.sort_by_key(|a| a.id);
    measured
}

/// A leaver refuses children, so it offers no room either: not in its probe replies, not
/// in what it tells its parent as its children move away (the parent would name it to
/// joiners and orphans, who would then spend an attach on it or, once it has closed,
/// wait out the attach deadline).
#[test]
fn a_leaving_node_offers_no_room() {
    let mut net = overlay_net::Net::new();
    let o = net.add(4, (0.0, 0.0));
    let a = net.add(3, (30.0, 0.0));
    net.join(a, o);
    let kids = net.join_beside(a, 2, 0);
    let asker = net.add(2, (50.0, 0.0));
    let now = net.now;
    assert_eq!(net.node(a).probe_answer(now, asker.as_bytes()).free, 1);
    assert_eq!(net.nodes[&a].movable(), 2);
    let leaver = net.node(a);
    leaver.handle_leave(now);
    drain(leaver);
    // Its children move away one by one.
    for k in &kids {
        leaver.handle_child_gone(k);
    }
    let told: Vec<u32> = drain(leaver)
        .iter()
        .filter_map(|act| match act {
            Action::SendStatus { free, .. } => Some(*free),
            _ => None,
        })
        .collect();
    assert!(!told.is_empty(), "it still reports its subtree shrinking");
    assert!(told.iter().all(|f| *f == 0), "told its parent {told:?}");
    assert_eq!(
        leaver.probe_answer(now, asker.as_bytes()).free,
        0,
        "three empty slots"
    );
    assert_eq!(leaver.movable(), 0);
}
