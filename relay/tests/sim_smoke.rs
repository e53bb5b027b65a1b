//! Small simulator runs: every scenario keeps the tree sound, and a seed fixes the
//! report byte for byte.

use std::time::Duration;

use treecast_relay::sim::driver::StallCause;
use treecast_relay::sim::{self, ConfigError, Outcome, Scenario, SimConfig, report};

fn cfg(scenario: Scenario, seed: u64) -> SimConfig {
    SimConfig {
        seed,
        peers: 200,
        scenario,
        duration: Duration::from_secs(40),
        ..SimConfig::default()
    }
}

fn rendered(o: &Outcome) -> Vec<(String, String)> {
    let mut v = vec![("results.md".to_string(), report::markdown(o))];
    v.extend(
        report::plots(o)
            .into_iter()
            .map(|(n, s)| (n.to_string(), s)),
    );
    v
}

fn assert_sound(o: &Outcome) {
    let name = o.config.scenario;
    assert!(o.sound(), "{name}: invariants broken: {:?}", o.invariants);
    assert_eq!(o.invariants.cycles, 0, "{name}");
    assert_eq!(o.invariants.capacity_violations, 0, "{name}");
    assert_eq!(o.invariants.detached, 0, "{name}");
    assert!(o.alive_end > 0, "{name}: nobody left");
    assert!(o.continuity_total.1 > 0, "{name}: continuity not computed");
    assert!(
        o.continuity_index() > 0.9,
        "{name}: continuity {}",
        o.continuity_index()
    );
    assert!(
        !o.depth.is_empty() && !o.stretch.is_empty(),
        "{name}: no tree measured"
    );
    assert!(
        o.first_frame_ms.len() as u64 >= o.alive_end - o.recovering,
        "{name}: some never played"
    );
}

#[test]
fn same_seed_same_bytes_other_seed_other_bytes() {
    let a = rendered(&sim::run(cfg(Scenario::Churn, 7)));
    let b = rendered(&sim::run(cfg(Scenario::Churn, 7)));
    assert_eq!(a, b, "same seed, different output");
    let c = rendered(&sim::run(cfg(Scenario::Churn, 8)));
    assert_ne!(a[0].1, c[0].1, "a different seed changed nothing");
}

#[test]
fn steady_and_flash_crowds_build_a_sound_tree() {
    for s in [Scenario::Steady, Scenario::Flash] {
        let o = sim::run(cfg(s, 1));
        assert_sound(&o);
        assert_eq!(o.alive_end, 200, "{s}: everybody stays");
        assert_eq!(o.orphaned, 0, "{s}: nobody crashed");
    }
}

#[test]
fn failures_are_repaired() {
    for s in [
        Scenario::MassFailure,
        Scenario::OriginChildren,
        Scenario::Churn,
    ] {
        let o = sim::run(cfg(s, 3));
        assert_sound(&o);
        assert!(o.orphaned > 0, "{s}: no parent was lost");
        assert!(!o.repair_ms.is_empty(), "{s}: no repair measured");
    }
}

fn stalls_after_crashes(o: &Outcome) -> u64 {
    [
        StallCause::ParentCrashed,
        StallCause::GrandparentCrashed,
        StallCause::AncestorCrashed,
    ]
    .iter()
    .map(|c| o.stalls[c.index()])
    .sum()
}

#[test]
fn stalls_are_put_down_to_the_crashes_before_them() {
    // The origin's children crash together: with a 0.3 s buffer, many viewers below
    // them pause (once each) while their subtrees are re-placed.
    let o = sim::run(SimConfig {
        buffer: Duration::from_millis(300),
        ..cfg(Scenario::OriginChildren, 3)
    });
    let total: u64 = o.stalls.iter().sum();
    assert!(total > 0, "nobody paused");
    assert!(
        stalls_after_crashes(&o) * 10 >= total * 9,
        "stalls by cause: {:?}",
        o.stalls
    );
    let (stalled, viewers) = o.viewers_stalled;
    assert!(stalled > 0 && stalled <= total && stalled <= viewers);
    assert!(o.stall_s > 0.0 && o.stall_s < o.playing_s);
    assert!(report::markdown(&o).contains(&format!("at {stalled} of {viewers} viewers")));
    // Nobody crashes in a steady audience: no stall is put down to a crash.
    let s = sim::run(cfg(Scenario::Steady, 1));
    assert_eq!(stalls_after_crashes(&s), 0, "{:?}", s.stalls);
}

#[test]
fn origin_upload_is_bounded_by_its_slots() {
    let o = sim::run(cfg(Scenario::Steady, 2));
    let mut up = o.origin_mbps.clone();
    let cap = f64::from(o.config.origin_capacity) * o.config.stream_bps() / 1e6;
    assert!(
        up.summary().max <= cap * 1.01,
        "origin sends more than its slots"
    );
}

#[test]
fn bad_configurations_are_refused() {
    let mut c = SimConfig {
        peers: 0,
        ..SimConfig::default()
    };
    assert_eq!(c.validate(), Err(ConfigError::NoPeers));
    c.peers = 10;
    c.duration = Duration::from_secs(1);
    assert!(matches!(c.validate(), Err(ConfigError::TooShort(_))));
    c.duration = Duration::from_secs(60);
    c.segment = Duration::from_millis(300);
    assert_eq!(c.validate(), Err(ConfigError::BadSegment));
    c.segment = Duration::from_millis(200);
    c.origin_capacity = 0;
    assert_eq!(c.validate(), Err(ConfigError::NoOriginCapacity));
    c.origin_capacity = 4;
    assert_eq!(c.validate(), Ok(()));
    assert!("mass-failure".parse::<Scenario>().is_ok());
    let e = "meteor".parse::<Scenario>().unwrap_err();
    assert!(e.to_string().contains("steady, flash"), "{e}");
}
