//! Media flows origin → relays → local subscribers over real QUIC on loopback.

mod common;

use std::time::Duration;

use common::*;
use treecast_relay::node::{Node, NodeEvent};
use treecast_relay::proto::synthetic::SyntheticSpec;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chain_of_three_relays_delivers_every_frame_in_order() {
    init_tracing();
    let (origin, publisher) = origin().await;
    let r1 = relay(&origin).await;
    let r2 = relay(&r1).await;
    let r3 = relay(&r2).await;
    let sub = r3.subscribe_local();
    let spec = SyntheticSpec {
        fps: 30,
        frame_size: 4000,
        group_len: 30,
    };
    let mut src = Source::new(spec);
    let n = 300;
    let mut sent = Vec::new();
    let mut tick = tokio::time::interval(Duration::from_millis(2));
    for _ in 0..n {
        tick.tick().await;
        let f = src.next_frame();
        sent.push(f.clone());
        publisher.send(f);
    }
    let got = take(&sub, n).await;
    assert_eq!(got.len(), n);
    for (g, s) in got.iter().zip(&sent) {
        assert_eq!(g, s, "frame {} differs", s.seq);
    }
    let s3 = r3.stats();
    assert_eq!(s3.frames_lost, 0);
    assert_eq!(s3.frames_received, n as u64);
    assert!(s3.parent.is_some());
    assert_eq!(r2.stats().frames_forwarded, n as u64);
    assert_eq!(origin.stats().children, 1);
    for node in [r3, r2, r1, origin] {
        node.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn late_joiner_starts_at_the_latest_keyframe_at_once() {
    init_tracing();
    let (origin, publisher) = origin().await;
    let r1 = relay(&origin).await;
    let first = r1.subscribe_local();
    let mut src = Source::new(SyntheticSpec {
        fps: 30,
        frame_size: 1000,
        group_len: 30,
    });
    // Two and a half groups.
    for _ in 0..75 {
        publisher.send(src.next_frame());
    }
    take(&first, 75).await;
    // A viewer joining now gets group 2 from its keyframe, without any new frame sent.
    let late = relay(&r1).await;
    let sub = late.subscribe_local();
    let got = take(&sub, 15).await;
    assert!(got[0].keyframe);
    assert_eq!(got[0].group, 2);
    assert_eq!(got[0].seq, 60);
    assert_eq!(got.last().map(|f| f.seq), Some(74));
    // And it continues live.
    publisher.send(src.next_frame());
    assert_eq!(take(&sub, 1).await[0].seq, 75);
    for node in [late, r1, origin] {
        node.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn throttled_child_loses_groups_while_its_sibling_loses_nothing() {
    init_tracing();
    let (origin, publisher) = origin().await;
    let mut origin_events = origin.events();
    // 30 fps x 20 kB = 4.8 Mbit/s; the slow child reads at a quarter of that.
    let spec = SyntheticSpec {
        fps: 30,
        frame_size: 20_000,
        group_len: 30,
    };
    let mut slow_cfg = config(Some(origin.addr()));
    slow_cfg.ingest_rate_limit = Some(spec.bitrate() / 8 / 4);
    let slow = Node::start(slow_cfg).await.expect("slow child");
    let fast = relay(&origin).await;
    let fast_sub = fast.subscribe_local();
    let slow_sub = slow.subscribe_local();
    let mut src = Source::new(spec);
    let n = 8 * 30;
    let mut tick = tokio::time::interval(Duration::from_micros(spec.interval_us()));
    for _ in 0..n {
        tick.tick().await;
        publisher.send(src.next_frame());
    }
    // The fast sibling gets everything, in order.
    let got = take(&fast_sub, n).await;
    assert!(got.iter().enumerate().all(|(i, f)| f.seq == i as u64));
    assert_eq!(fast.stats().frames_lost, 0);
    // The origin dropped whole groups for the slow child only.
    let slow_id = slow.id();
    wait_event(
        &mut origin_events,
        "a group dropped for the slow child",
        |e| matches!(e, NodeEvent::GroupDropped { child: Some(c) } if *c == slow_id),
    )
    .await;
    let st = origin.stats();
    eprintln!(
        "origin: dropped {} groups / {} frames for the slow child",
        st.child_dropped_groups, st.child_dropped_frames
    );
    // What the slow child does get are group prefixes: every group it sees starts at its
    // keyframe, and it is missing frames.
    let mut slow_frames = Vec::new();
    while let Ok(Some(f)) = tokio::time::timeout(Duration::from_secs(3), slow_sub.next()).await {
        slow_frames.push(f);
    }
    assert!(
        slow_frames.len() < n,
        "slow child got {} of {n}",
        slow_frames.len()
    );
    let mut seen_groups = std::collections::HashSet::new();
    for f in &slow_frames {
        if seen_groups.insert(f.group) {
            assert!(
                f.keyframe,
                "group {} entered mid-group at seq {}",
                f.group, f.seq
            );
        }
    }
    for node in [slow, fast, origin] {
        node.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_parent_refuses_with_a_clear_reason_and_keeps_its_child() {
    init_tracing();
    let mut cfg = config(None);
    cfg.max_children = 1;
    let origin = Node::start(cfg).await.expect("origin");
    let publisher = origin.publish(SyntheticSpec::default().catalog("test"));
    let first = relay(&origin).await;
    let sub = first.subscribe_local();
    let e = Node::start(config(Some(origin.addr())))
        .await
        .expect_err("no free slot");
    let msg = e.to_string();
    assert!(
        msg.contains("parent_full") && msg.contains("all 1 child slots"),
        "{msg}"
    );
    let mut src = Source::new(SyntheticSpec {
        fps: 30,
        frame_size: 100,
        group_len: 10,
    });
    publisher.send(src.next_frame());
    assert_eq!(take(&sub, 1).await[0].seq, 0);
    first.shutdown().await;
    origin.shutdown().await;
}

/// The opt-in silence watchdog notices a crashed parent long before the idle timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_silence_watchdog_notices_a_crashed_parent_before_the_idle_timeout() {
    init_tracing();
    let (origin, publisher) = origin().await;
    // QUIC takes the shorter idle timeout of the two ends: make both long.
    let mut rcfg = config(Some(origin.addr()));
    rcfg.idle_timeout = Duration::from_secs(20);
    let relay = Node::start(rcfg).await.expect("relay starts");
    let mut cfg = config(Some(relay.addr()));
    cfg.idle_timeout = Duration::from_secs(20);
    cfg.parent_silence = Some(Duration::from_millis(300));
    let viewer = Node::start(cfg).await.expect("viewer starts");
    let sub = viewer.subscribe_local();
    let mut src = Source::new(SyntheticSpec::default());
    let pump = tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_millis(10));
        loop {
            tick.tick().await;
            publisher.send(src.next_frame());
        }
    });
    take(&sub, 5).await;
    let mut events = viewer.events();
    relay.crash();
    // Only the watchdog can end the session within WAIT: the idle timeout is 20 s.
    let e = wait_event(&mut events, "the parent lost to silence", |e| {
        matches!(e, NodeEvent::ParentLost { .. })
    })
    .await;
    let NodeEvent::ParentLost { reason, .. } = e else {
        unreachable!()
    };
    assert!(reason.contains("silent for 300 ms"), "{reason}");
    pump.abort();
    for n in [viewer, origin] {
        n.stop_now().await;
    }
    relay.stop_now().await;
}
