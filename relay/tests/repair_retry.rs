//! Deterministic tests of what a repair does when an attempt fails: the rooms a backup
//! or a refuser names, followed at once or measured first, and the nodes the repair
//! already knows cannot take the orphan (silent, cut off from the origin, or refusing).

mod overlay_net;

use std::time::{Duration, Instant};

use overlay_net::{
    MS, addr, attach, cand, drain, probe_info, probes, settled_under, timers_until_attach,
};
use treecast_relay::proto::overlay::*;

/// Repairing with nobody measured with room, the orphan probes the rooms a backup names
/// as soon as that answer comes, instead of waiting until the backups that died with the
/// parent have failed to answer.
#[test]
fn an_orphan_follows_the_rooms_a_backup_names_at_once() {
    follow_the_grandparents_room();
}

/// An orphan whose grandparent (full) names the room 7: it probes 7 as soon as that
/// answer comes and attaches to it. Returns the orphan and the instant of the attach.
fn follow_the_grandparents_room() -> (Overlay, Instant) {
    let (mut x, t0) = settled_under(10 * MS, vec![cand(1, 0, 0), cand(3, 1, 0), cand(4, 1, 0)]);
    let t1 = t0 + Duration::from_secs(1);
    x.handle_parent_lost(t1, &addr(2).id);
    let acts = drain(&mut x);
    assert_eq!(attach(&acts), None, "no standby with room: {acts:?}");
    let mut first = probes(&acts);
    first.sort_by_key(|a| a.id);
    assert_eq!(first, vec![addr(1), addr(3), addr(4)]);
    // The grandparent answers, full, naming a room below it (7); 3 and 4 died with 2.
    let t2 = t1 + 30 * MS;
    let named = vec![cand(7, 2, 1)];
    x.handle_probe_result(t2, &addr(1), Some((20 * MS, probe_info(0, 0, 2, named))));
    assert_eq!(probes(&drain(&mut x)), vec![addr(7)]);
    let t3 = t2 + 40 * MS;
    x.handle_probe_result(t3, &addr(7), Some((18 * MS, probe_info(2, 1, 2, vec![]))));
    let round = |d: Instant| d < t1 + 350 * MS;
    let acts = drain(&mut x);
    let acts = timers_until_attach(&mut x, acts, t3, round, "waited for the dead backups");
    assert_eq!(attach(&acts), Some((addr(7), None)), "{acts:?}");
    (x, t3)
}

/// Two full nodes whose news of each other is stale each refuse the orphan and name the
/// other as a room: the orphan measures the rooms instead of going back to the one that
/// just refused it. (In the simulator's churn-100k run one orphan bounced between two such
/// nodes for 8.7 s.)
#[test]
fn an_orphan_does_not_bounce_between_two_full_nodes_naming_each_other() {
    let (mut x, t3) = follow_the_grandparents_room();
    // 7 filled up meanwhile and names 8 (stale: 8 is full too): followed at once.
    let full = |rooms: &[u8]| Refused {
        why: Refusal::Full,
        redirect: rooms.iter().map(|r| cand(*r, 2, 2)).collect(),
    };
    let t4 = t3 + 20 * MS;
    x.handle_attach_result(t4, &addr(7), Err(Some(full(&[8]))));
    let acts = drain(&mut x);
    assert_eq!(attach(&acts), Some((addr(8), None)), "{acts:?}");
    // 8 refuses, naming 7 and 11: both are measured, 7 is not attached to again.
    let t5 = t4 + 20 * MS;
    x.handle_attach_result(t5, &addr(8), Err(Some(full(&[7, 11]))));
    let acts = drain(&mut x);
    assert_eq!(attach(&acts), None, "followed a stale room: {acts:?}");
    let mut measured = probes(&acts);
    measured.sort_by_key(|a| a.id);
    assert_eq!(measured, vec![addr(7), addr(11)]);
    // 7 answers full, 11 with room: 11 it is.
    let t6 = t5 + 30 * MS;
    x.handle_probe_result(t6, &addr(7), Some((18 * MS, probe_info(2, 0, 2, vec![]))));
    x.handle_probe_result(t6, &addr(11), Some((25 * MS, probe_info(3, 1, 2, vec![]))));
    let acts = drain(&mut x);
    let moment = |d: Instant| d <= t5 + OverlayConfig::default().repair_probe_timeout;
    let acts = timers_until_attach(&mut x, acts, t6, moment, "waited past the round");
    assert_eq!(attach(&acts), Some((addr(11), None)), "{acts:?}");
}

/// Repairing, an attach to a room a refuser named (tried unmeasured) gets no answer by
/// its deadline, and meanwhile a backup has answered with room: the orphan takes that
/// backup, not the next unmeasured room. (In the simulator's 100k mass failure, one
/// orphan went on through four named rooms, all crashed, one 1.5 s deadline each, while
/// five nodes it had probed had answered with room.)
#[test]
fn after_a_silent_attach_an_orphan_takes_a_backup_that_answered_before_the_next_blind_room() {
    let (mut x, t3) = follow_the_grandparents_room();
    // 7 filled up meanwhile, naming 8 and 9: tried at once, unmeasured.
    let full = Refused {
        why: Refusal::Full,
        redirect: vec![cand(8, 2, 1), cand(9, 2, 1)],
    };
    let t4 = t3 + 20 * MS;
    x.handle_attach_result(t4, &addr(7), Err(Some(full)));
    let acts = drain(&mut x);
    assert_eq!(attach(&acts), Some((addr(8), None)), "{acts:?}");
    // The backup 3, probed when the parent was lost, answers late, with room.
    let t5 = t4 + 30 * MS;
    x.handle_probe_result(t5, &addr(3), Some((60 * MS, probe_info(1, 1, 2, vec![]))));
    assert_eq!(attach(&drain(&mut x)), None, "still waiting for 8");
    // 8 never answers: at the attach deadline, 3 it is, not 9.
    let deadline = t4 + OverlayConfig::default().attach_timeout;
    let by_deadline = |d: Instant| d <= deadline;
    let acts = timers_until_attach(&mut x, Vec::new(), t5, by_deadline, "waited past it");
    assert_eq!(attach(&acts), Some((addr(3), None)), "{acts:?}");
}

/// Repairing, a refuser names a room that answered this repair's probe as cut off from
/// the origin (its ancestors crashed too): the orphan does not attach to it blind but
/// to the next room. (In the simulator's 10k mass failure at seed 5, orphans made 12
/// such attaches, each refused as not rooted.)
#[test]
fn a_repair_skips_a_named_room_that_answered_it_is_cut_off() {
    let (mut x, t3) = follow_the_grandparents_room();
    // The backup 4 answers late: it has room, but it is cut off like us.
    let cut_off = ProbeInfo {
        rooted: false,
        ..probe_info(2, 2, 2, vec![])
    };
    x.handle_probe_result(t3 + 10 * MS, &addr(4), Some((15 * MS, cut_off)));
    // 7 filled up meanwhile, naming 4 and 8.
    let full = Refused {
        why: Refusal::Full,
        redirect: vec![cand(4, 2, 2), cand(8, 2, 1)],
    };
    x.handle_attach_result(t3 + 20 * MS, &addr(7), Err(Some(full)));
    let acts = drain(&mut x);
    assert_eq!(attach(&acts), Some((addr(8), None)), "{acts:?}");
}

/// Repairing, a refuser names a room that refused the orphan a moment ago: the orphan
/// does not go back to it but tries the next room.
#[test]
fn a_repair_does_not_go_back_to_a_room_that_just_refused_it() {
    let (mut x, t3) = follow_the_grandparents_room();
    let refused = |why, rooms: &[u8]| Refused {
        why,
        redirect: rooms.iter().map(|r| cand(*r, 2, 1)).collect(),
    };
    // 7 filled up meanwhile, naming 8 and 11: 8 first, unmeasured.
    let t4 = t3 + 20 * MS;
    x.handle_attach_result(t4, &addr(7), Err(Some(refused(Refusal::Full, &[8, 11]))));
    assert_eq!(attach(&drain(&mut x)), Some((addr(8), None)));
    // 8 is cut off too: on to 11.
    let t5 = t4 + 20 * MS;
    x.handle_attach_result(t5, &addr(8), Err(Some(refused(Refusal::NotRooted, &[]))));
    let acts = drain(&mut x);
    assert_eq!(attach(&acts), Some((addr(11), None)), "{acts:?}");
    // 11 is full and names 8 (stale news) and 12: 12 it is.
    let t6 = t5 + 20 * MS;
    x.handle_attach_result(t6, &addr(11), Err(Some(refused(Refusal::Full, &[8, 12]))));
    let acts = drain(&mut x);
    assert_eq!(attach(&acts), Some((addr(12), None)), "{acts:?}");
}
