//! End to end in one process: a real encoded test source at the origin, three relays in a
//! chain over QUIC, and a headless GStreamer player at the end.
#![cfg(feature = "media")]

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use treecast_player::{EncodeSettings, MediaSource, Player, PlayerConfig, SourceSpec};
use treecast_relay::node::{Identity, Node, NodeConfig, PeerAddr};
use treecast_relay::proto::media::{AUDIO_TRACK, Packager, VIDEO_TRACK};

const MEDIA: Duration = Duration::from_secs(10);
const WAIT: Duration = Duration::from_secs(60);

/// The media tests encode and decode video in real time: on a 2-core machine, running
/// them side by side starves the renderer and shows up as stalls. One at a time.
static HEAVY: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

async fn node(parent: Option<PeerAddr>) -> Node {
    let mut cfg = NodeConfig::new(
        Identity::generate().unwrap(),
        SocketAddr::from(([127, 0, 0, 1], 0)),
    );
    cfg.parent = parent;
    Node::start(cfg).await.expect("node starts")
}

#[derive(Debug, Default)]
struct Sent {
    video: Vec<u64>,
    audio: Vec<u64>,
}

/// Starts an origin with the test source; returns it once its catalog is published, and
/// a task that pumps `MEDIA` worth of frames and returns what it sent.
async fn origin() -> (
    Node,
    tokio::task::JoinHandle<Sent>,
    tokio::sync::oneshot::Sender<()>,
) {
    treecast_player::init().unwrap();
    let origin = node(None).await;
    let settings = EncodeSettings::default();
    let mut src = MediaSource::start(&SourceSpec::Test, &settings).expect("test source");
    let publisher = origin.publish(src.catalog().clone());
    let (go_tx, go_rx) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        let _ = go_rx.await;
        let mut packager = Packager::new(Some(VIDEO_TRACK), 2_000_000);
        let mut sent = Sent::default();
        let mut first_pts = None;
        while let Some(u) = src.next().await {
            let u = u.expect("source unit");
            let Some(f) = packager.pack(u) else { continue };
            let start = *first_pts.get_or_insert(f.pts);
            if f.pts.saturating_sub(start) > MEDIA.as_micros() as u64 {
                break;
            }
            match f.track {
                VIDEO_TRACK => sent.video.push(f.seq),
                AUDIO_TRACK => sent.audio.push(f.seq),
                _ => {}
            }
            publisher.send(f);
        }
        src.stop();
        sent
    });
    (origin, task, go_tx)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_source_through_three_relays_plays_every_frame() {
    let _heavy = HEAVY.lock().await;
    let (origin, pump, go) = origin().await;
    let r1 = node(Some(origin.addr())).await;
    let r2 = node(Some(r1.addr())).await;
    let r3 = node(Some(r2.addr())).await;
    let joined_at = Instant::now();
    let viewer = node(Some(r3.addr())).await;
    let catalog = viewer
        .catalog()
        .borrow()
        .clone()
        .expect("catalog arrived with the subscription");
    let player = Player::new(
        &catalog,
        PlayerConfig {
            headless: true,
            record: None,
            buffer: Duration::from_millis(300),
            joined_at,
            output: None,
        },
    )
    .expect("player");
    let sub = viewer.subscribe_local();
    let _ = go.send(());

    // Play until the origin has finished and the viewer has every frame it sent.
    let mut got_video = Vec::new();
    let mut got_audio = Vec::new();
    let mut pump = Some(pump);
    let mut sent: Option<Sent> = None;
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        if let Some(s) = &sent
            && got_video.last() == s.video.last()
            && got_audio.last() == s.audio.last()
        {
            break;
        }
        tokio::select! {
            f = sub.next() => {
                let f = f.expect("viewer stream open");
                match f.track { VIDEO_TRACK => got_video.push(f.seq), _ => got_audio.push(f.seq) }
                player.push(&f).expect("push");
            }
            s = async { pump.as_mut().unwrap().await }, if pump.is_some() => {
                sent = Some(s.expect("pump task"));
                pump = None;
            }
            _ = tokio::time::sleep_until(deadline) => panic!("timed out: video {} audio {}", got_video.len(), got_audio.len()),
        }
    }
    let report = player.finish().expect("player finishes");
    let sent = sent.unwrap();
    eprintln!("{report:#?}");
    // Every frame sent arrived, in order, and was decoded and rendered.
    assert_eq!(got_video, sent.video);
    assert_eq!(got_audio, sent.audio);
    assert!(
        sent.video.len() >= 280,
        "about 10 s at 30 fps, got {}",
        sent.video.len()
    );
    assert_eq!(report.frames_rendered, sent.video.len() as u64);
    assert_eq!(report.audio_packets_decoded, sent.audio.len() as u64);
    assert_eq!(report.out_of_order, 0);
    assert_eq!(report.frames_lost, 0);
    assert_eq!(report.stalls, 0, "max gap {} ms", report.max_gap_ms);
    let first = report.first_frame_ms.expect("a first frame");
    assert!(first < 1000.0, "first frame after {first} ms");
    for n in [viewer, r3, r2, r1, origin] {
        n.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn viewer_joining_a_running_stream_starts_at_a_keyframe_at_once() {
    let _heavy = HEAVY.lock().await;
    let (origin, pump, go) = origin().await;
    let _ = go.send(());
    let relay = node(Some(origin.addr())).await;
    // Let the stream run into its second group (keyframes every 2 s).
    let watcher = relay.subscribe_local();
    let latest_video_seq = loop {
        let f = tokio::time::timeout(WAIT, watcher.next())
            .await
            .unwrap()
            .unwrap();
        if f.track == VIDEO_TRACK && f.group == 1 && !f.keyframe && f.seq % 60 == 20 {
            break f.seq;
        }
    };
    // Join now, in the middle of group 1: the first video frame is group 1's keyframe,
    // older than the join, so playback starts without waiting for group 2.
    let viewer = node(Some(relay.addr())).await;
    let sub = viewer.subscribe_local();
    let first_video = loop {
        let f = tokio::time::timeout(WAIT, sub.next())
            .await
            .unwrap()
            .unwrap();
        if f.track == VIDEO_TRACK {
            break f;
        }
    };
    assert!(first_video.keyframe);
    assert_eq!(first_video.group, 1);
    assert!(first_video.seq < latest_video_seq);
    drop(sub);
    drop(watcher);
    pump.abort();
    for n in [viewer, relay, origin] {
        n.shutdown().await;
    }
}
