//! The headless player fed from a live test source, and recording.

mod common;

use std::collections::VecDeque;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{heavy, next_unit, small_settings};
use gstreamer as gst;
use gstreamer::prelude::*;
use treecast_player::{MediaError, MediaSource, Player, PlayerConfig, PlayerReport, SourceSpec};
use treecast_relay::proto::media::{AUDIO_TRACK, Catalog, Frame, Packager, VIDEO_TRACK};

#[test]
fn player_and_source_are_send() {
    fn send<T: Send>() {}
    send::<Player>();
    send::<MediaSource>();
}

struct Fed {
    video: u64,
    audio: u64,
    /// The player's buffer just before it finished (ms).
    buffer_ms: f64,
    report: PlayerReport,
}

/// Runs the test source for `seconds` of media into a headless player. `link` is the
/// network between them: for each frame, `None` withholds it (loss), `Some(d)` delivers it
/// `d` µs of source time late (frames stay in order; a delay that grows holds later frames
/// back until the source has run that much further).
async fn feed(
    seconds: u64,
    record: Option<&Path>,
    link: impl Fn(&Frame) -> Option<u64>,
) -> Result<Fed, MediaError> {
    let mut src = MediaSource::start(&SourceSpec::Test, &small_settings())?;
    let joined_at = Instant::now();
    let config = PlayerConfig {
        headless: true,
        record: record.map(Path::to_path_buf),
        buffer: Duration::from_millis(300),
        joined_at,
        output: None,
    };
    let player = Player::new(src.catalog(), config)?;
    let mut packager = Packager::new(Some(VIDEO_TRACK), 2_000_000);
    let (mut video, mut audio) = (0u64, 0u64);
    let mut first_pts = None;
    let mut in_flight: VecDeque<(u64, Frame)> = VecDeque::new();
    loop {
        let unit = next_unit(&mut src).await.expect("live source never ends");
        let Some(frame) = packager.pack(unit) else {
            continue;
        };
        let first = *first_pts.get_or_insert(frame.pts);
        if frame.pts.saturating_sub(first) >= seconds * 1_000_000 {
            break;
        }
        let now_pts = frame.pts;
        if let Some(delay) = link(&frame) {
            in_flight.push_back((frame.pts + delay, frame));
        }
        while in_flight.front().is_some_and(|(at, _)| *at <= now_pts) {
            let (_, frame) = in_flight.pop_front().expect("front exists");
            player.push(&frame)?;
            match frame.track {
                VIDEO_TRACK => video += 1,
                _ => audio += 1,
            }
        }
    }
    let stats = player.stats();
    eprintln!("stats before finish: {stats:?}");
    assert!(stats.frames_rendered > 0);
    assert!(stats.bitrate_kbps > 100.0, "{stats:?}");
    let b = stats.buffer_ms.expect("buffer level known");
    assert!(
        (100.0..=600.0).contains(&b),
        "buffer {b} ms (re-buffering restores it)"
    );
    src.stop();
    let report = tokio::task::spawn_blocking(move || player.finish())
        .await
        .expect("finish does not panic")?;
    eprintln!("pushed video {video} audio {audio}; report {report:?}");
    Ok(Fed {
        video,
        audio,
        buffer_ms: b,
        report,
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn headless_roundtrip_renders_everything() {
    let _heavy = heavy().await;
    let fed = feed(3, None, |_| Some(0)).await.unwrap();
    let r = &fed.report;
    assert!(fed.video >= 85, "video pushed {}", fed.video);
    assert_eq!(r.frames_received, fed.video);
    assert_eq!(
        r.frames_rendered, fed.video,
        "every pushed video frame is rendered"
    );
    assert_eq!(r.audio_packets_received, fed.audio);
    // Every pushed audio packet is decoded, plus what concealed any hole that playing
    // slower left (none unless the machine delayed the source's frames unevenly).
    assert!(
        (fed.audio..=fed.audio + r.audio_gaps_concealed).contains(&r.audio_packets_decoded),
        "{r:?}"
    );
    assert_eq!(r.stalls, 0, "max gap {} ms", r.max_gap_ms);
    assert_eq!(r.out_of_order, 0);
    assert_eq!(r.frames_lost, 0);
    assert_eq!(r.first_video_seq, Some(0));
    assert_eq!(r.last_video_seq, Some(fed.video - 1));
    let first = r.first_frame_ms.expect("a frame was rendered");
    assert!(first < 1000.0, "first frame after {first} ms");
    // Latency ≈ encoder + playout buffer; bounded loosely (a behaviour, not a benchmark).
    let p50 = r.latency_ms.p50.expect("latency measured");
    assert!((250.0..1500.0).contains(&p50), "latency p50 {p50} ms");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gaps_are_counted_and_video_resumes_at_a_keyframe() {
    let _heavy = heavy().await;
    // Lose video frames 10..15 (mid-group) and audio packets 20..23.
    let fed = feed(3, None, |f| {
        let lost = (f.track == VIDEO_TRACK && (10..15).contains(&f.seq))
            || (f.track == AUDIO_TRACK && (20..23).contains(&f.seq));
        (!lost).then_some(0)
    })
    .await
    .unwrap();
    let r = &fed.report;
    assert_eq!(r.frames_lost, 5 + 3);
    // Video frames after the gap up to the next keyframe (seq 60) are skipped.
    assert_eq!(r.frames_received, fed.video - (60 - 15));
    assert_eq!(r.frames_rendered, r.frames_received);
    assert_eq!(r.audio_packets_decoded, fed.audio);
    assert_eq!(r.out_of_order, 0);
    // The picture froze from frame 10 to frame 60: one long stall.
    assert_eq!(r.stalls, 1);
    assert!(r.max_gap_ms > 1500.0, "{}", r.max_gap_ms);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_path_that_gets_slower_than_the_buffer_rebuffers_once_then_plays_on_time() {
    let _heavy = heavy().await;
    // From 1 s of media on, every frame arrives 700 ms later than before: 400 ms more
    // than the 300 ms buffer (a subtree re-placed on a longer path, a long repair).
    let fed = feed(4, None, |f| {
        Some(if f.pts >= 1_000_000 { 700_000 } else { 0 })
    })
    .await
    .unwrap();
    let r = &fed.report;
    assert_eq!(r.frames_lost, 0);
    assert_eq!(r.frames_rendered, fed.video);
    assert_eq!(
        r.rebuffers, 1,
        "one pause, then the new delay is absorbed: {r:?}"
    );
    // Lateness plus the 300 ms buffer. The lateness is nominally 400 ms, less however
    // late the first frame was handled (it fixes the playout clock): a loaded machine
    // took 80 ms off it once (620 ms in all). More than the buffer alone says the
    // pause covered lateness too; 1 s would be a second pause's worth.
    assert!((300.0..1000.0).contains(&r.rebuffered_ms), "{r:?}");
    // Without re-buffering all ~90 frames after the slowdown reach the sink 400 ms late
    // (a window drops them all); with it, at most a couple of the burst's first frames.
    assert!(r.frames_late <= 3, "{r:?}");
    assert_eq!(r.stalls, 1, "{r:?}");
    assert_eq!(r.out_of_order, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_path_that_gets_slower_within_the_buffer_plays_slower_until_the_buffer_is_back() {
    let _heavy = heavy().await;
    // From 1 s of media on, every frame arrives 150 ms later: within the 300 ms buffer, so
    // no pause, but only 150 ms of it is left for the next outage. (With 200 ms later,
    // the 100 ms left were once too little for a loaded CI machine's jitter: frames are
    // handed over only as the live source produces its next ones, up to 33 ms late, and
    // the encoder's own timing varies.) Recorded as well: the gaps reach the muxer.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("rec.mkv");
    let fed = feed(6, Some(&path), |f| {
        Some(if f.pts >= 1_000_000 { 150_000 } else { 0 })
    })
    .await
    .unwrap();
    let r = &fed.report;
    assert_eq!((r.frames_lost, r.rebuffers, r.stalls), (0, 0, 0), "{r:?}");
    assert_eq!(r.frames_rendered, fed.video);
    // The buffer is whole again at the end: once the slower arrivals are the base lag
    // (1-2 s), 20 ms per 400 ms (5% slower) wins the 150 ms back in 3 s; without that,
    // about 150 ms would be left. The newest frame's lead over the clock, read at one
    // moment, also carries that frame's own lag (up to some 40 ms here). A first frame
    // handed over late leaves more than the buffer from the start and less to win back;
    // `proto::playout`'s tests pin the steps down.
    let buffer = fed.buffer_ms;
    assert!(buffer >= 220.0, "buffer left {buffer} ms: {r:?}");
    // Never more than the 150 ms the buffer was short (plus what a loaded machine may
    // add to every frame's lag for seconds on end).
    assert!(r.slowed_ms <= 200.0, "{r:?}");
    // Each step left a hole of its length in the audio's timeline, which the decoder
    // concealed; every pushed packet was decoded too.
    assert!(
        (r.audio_concealed_ms - r.slowed_ms).abs() < 1.0,
        "the audio was stretched as much as the video: {r:?}"
    );
    assert_eq!(r.audio_gaps_concealed > 0, r.slowed_ms > 0.0, "{r:?}");
    assert!(r.audio_packets_decoded >= fed.audio, "{r:?}");
    assert!(r.frames_late <= 3, "{r:?}");
    assert_eq!(r.out_of_order, 0);
    let probe = tokio::task::spawn_blocking(move || probe_recording(&path))
        .await
        .unwrap();
    assert_eq!(probe.video_frames, fed.video, "{probe:?}");
    assert!(probe.audio_buffers.abs_diff(fed.audio) <= 2, "{probe:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recording_is_a_playable_matroska_file() {
    let _heavy = heavy().await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("rec.mkv");
    let fed = feed(2, Some(&path), |_| Some(0)).await.unwrap();
    assert_eq!(fed.report.frames_rendered, fed.video);
    let probe = tokio::task::spawn_blocking(move || probe_recording(&path))
        .await
        .unwrap();
    eprintln!("recording: {probe:?}");
    assert!(
        probe.caps.iter().any(|c| c == "video/x-h264"),
        "{:?}",
        probe.caps
    );
    assert!(
        probe.caps.iter().any(|c| c == "audio/x-opus"),
        "{:?}",
        probe.caps
    );
    assert_eq!(
        probe.video_frames, fed.video,
        "all video frames decodable from the file"
    );
    assert!(
        probe.audio_buffers.abs_diff(fed.audio) <= 2,
        "{} vs {}",
        probe.audio_buffers,
        fed.audio
    );
}

#[derive(Debug)]
struct Probe {
    caps: Vec<String>,
    video_frames: u64,
    audio_buffers: u64,
}

/// Demuxes and decodes the file to the end, as an ordinary player would.
fn probe_recording(path: &Path) -> Probe {
    let pipeline = gst::Pipeline::new();
    let src = gst::ElementFactory::make("filesrc")
        .property("location", path.to_str().unwrap())
        .build()
        .unwrap();
    let demux = gst::ElementFactory::make("matroskademux").build().unwrap();
    pipeline.add_many([&src, &demux]).unwrap();
    src.link(&demux).unwrap();
    let caps = Arc::new(Mutex::new(Vec::new()));
    let video = Arc::new(AtomicU64::new(0));
    let audio = Arc::new(AtomicU64::new(0));
    let (c, v, a) = (caps.clone(), video.clone(), audio.clone());
    let weak = pipeline.downgrade();
    demux.connect_pad_added(move |_, pad| {
        let pipeline = weak.upgrade().unwrap();
        let name = pad
            .current_caps()
            .unwrap()
            .structure(0)
            .unwrap()
            .name()
            .to_string();
        c.lock().unwrap().push(name.clone());
        let (desc, counter) = match name.as_str() {
            "video/x-h264" => (
                "queue ! h264parse ! avdec_h264 ! fakesink name=s sync=false",
                v.clone(),
            ),
            "audio/x-opus" => ("queue ! opusdec ! fakesink name=s sync=false", a.clone()),
            _ => ("fakesink name=s sync=false", Arc::new(AtomicU64::new(0))),
        };
        let bin = gst::parse::bin_from_description(desc, true).unwrap();
        let sink_pad = bin.by_name("s").unwrap().static_pad("sink").unwrap();
        sink_pad.add_probe(gst::PadProbeType::BUFFER, move |_, _| {
            counter.fetch_add(1, Ordering::Relaxed);
            gst::PadProbeReturn::Ok
        });
        pipeline.add(&bin).unwrap();
        pad.link(&bin.static_pad("sink").unwrap()).unwrap();
        bin.sync_state_with_parent().unwrap();
    });
    pipeline.set_state(gst::State::Playing).unwrap();
    let msg = pipeline
        .bus()
        .unwrap()
        .timed_pop_filtered(
            gst::ClockTime::from_seconds(30),
            &[gst::MessageType::Eos, gst::MessageType::Error],
        )
        .expect("recording plays to the end");
    pipeline.set_state(gst::State::Null).unwrap();
    if let gst::MessageView::Error(e) = msg.view() {
        panic!("recording does not play: {} {:?}", e.error(), e.debug());
    }
    let caps = caps.lock().unwrap().clone();
    Probe {
        caps,
        video_frames: video.load(Ordering::Relaxed),
        audio_buffers: audio.load(Ordering::Relaxed),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn frames_are_held_until_they_cover_the_buffer_and_played_if_the_stream_ends_first() {
    let _heavy = heavy().await;
    let mut src = MediaSource::start(&SourceSpec::Test, &small_settings()).unwrap();
    let config = PlayerConfig {
        headless: true,
        buffer: Duration::from_secs(1),
        ..PlayerConfig::default()
    };
    let player = Player::new(src.catalog(), config).unwrap();
    let mut packager = Packager::new(Some(VIDEO_TRACK), 2_000_000);
    let (mut video, mut first_pts) = (0u64, None);
    // 400 ms of media: less than the buffer.
    loop {
        let unit = next_unit(&mut src).await.expect("live source never ends");
        let Some(frame) = packager.pack(unit) else {
            continue;
        };
        if frame.pts - *first_pts.get_or_insert(frame.pts) >= 400_000 {
            break;
        }
        player.push(&frame).unwrap();
        video += u64::from(frame.track == VIDEO_TRACK);
    }
    src.stop();
    let stats = player.stats();
    assert!(stats.bitrate_kbps > 0.0, "received: {stats:?}");
    assert_eq!(stats.frames_rendered, 0, "held, not played: {stats:?}");
    assert_eq!(
        stats.buffer_ms, None,
        "nothing handed to the pipeline: {stats:?}"
    );
    let report = tokio::task::spawn_blocking(move || player.finish())
        .await
        .expect("finish does not panic")
        .unwrap();
    assert!(video >= 10, "{video}");
    assert_eq!(report.frames_rendered, video, "{report:?}");
    assert_eq!((report.frames_lost, report.rebuffers), (0, 0), "{report:?}");
}

#[test]
fn catalog_without_media_is_rejected() {
    let err = Player::new(
        &Catalog::default(),
        PlayerConfig {
            headless: true,
            ..Default::default()
        },
    )
    .unwrap_err();
    assert!(matches!(err, MediaError::InvalidSettings(_)), "{err:?}");
}

#[test]
fn finish_without_frames_returns_quickly() {
    let cat = MediaSource::start(&SourceSpec::Test, &small_settings())
        .map(|s| s.catalog().clone())
        .unwrap();
    let player = Player::new(
        &cat,
        PlayerConfig {
            headless: true,
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(player.stats().frames_rendered, 0);
    assert!(player.error().is_none());
    let report = player.finish().unwrap();
    assert_eq!(report.frames_rendered, 0);
    assert_eq!(report.first_frame_ms, None);
    assert_eq!(report.latency_ms.p50, None);
}

/// Windowed mode needs a display: runs only when `DISPLAY` is set (e.g. under `xvfb-run`).
/// Without a sound device the audio falls back to a fakesink with a warning.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn windowed_player_when_a_display_exists() {
    if std::env::var_os("DISPLAY").is_none() {
        eprintln!("DISPLAY not set; skipping the windowed player test");
        return;
    }
    let _heavy = heavy().await;
    let mut src = MediaSource::start(&SourceSpec::Test, &small_settings()).unwrap();
    let config = PlayerConfig {
        headless: false,
        ..Default::default()
    };
    let player = Player::new(src.catalog(), config).unwrap();
    let mut packager = Packager::new(Some(VIDEO_TRACK), 2_000_000);
    let mut video = 0u64;
    while video < 45 {
        let unit = next_unit(&mut src).await.unwrap();
        if let Some(frame) = packager.pack(unit) {
            player.push(&frame).unwrap();
            video += u64::from(frame.track == VIDEO_TRACK);
        }
    }
    src.stop();
    let report = tokio::task::spawn_blocking(move || player.finish())
        .await
        .unwrap()
        .unwrap();
    eprintln!("windowed: {report:?}");
    assert_eq!(report.frames_received, video);
    // A real video sink drops frames that are already late (QoS) instead of lagging;
    // on a loaded machine with a debug build that is some of them. Every-frame delivery
    // is asserted by the headless tests; here: the window path renders and reports.
    assert!(report.frames_rendered > 0, "{report:?}");
    assert!(report.first_frame_ms.is_some());
    assert_eq!(report.out_of_order, 0);
}
