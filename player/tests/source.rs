//! GStreamer sources: the live test source and file sources.

mod common;

use std::time::Duration;

use common::{heavy, make_media_file, next_unit, small_settings, unix_now_us};
use treecast_player::{MediaError, MediaSource, SourceSpec};
use treecast_relay::proto::media::{AUDIO_TRACK, Codec, EncodedUnit, VIDEO_TRACK};

fn split(units: &[EncodedUnit]) -> (Vec<&EncodedUnit>, Vec<&EncodedUnit>) {
    let video = units.iter().filter(|u| u.track == VIDEO_TRACK).collect();
    let audio = units.iter().filter(|u| u.track == AUDIO_TRACK).collect();
    (video, audio)
}

fn assert_increasing(units: &[&EncodedUnit], what: &str) {
    for w in units.windows(2) {
        assert!(
            w[1].pts > w[0].pts,
            "{what}: pts {} then {}",
            w[0].pts,
            w[1].pts
        );
        assert!(w[1].dts >= w[0].dts, "{what}: dts went backwards");
    }
    assert!(
        units.iter().all(|u| u.dts <= u.pts),
        "{what}: dts after pts"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_source_produces_three_seconds_of_media() {
    let _heavy = heavy().await;
    let settings = small_settings();
    let mut src = MediaSource::start(&SourceSpec::Test, &settings).unwrap();
    let cat = src.catalog().clone();
    assert_eq!(cat.tracks.len(), 2);
    assert_eq!(
        cat.track(VIDEO_TRACK).unwrap().codec,
        Codec::H264 {
            width: 320,
            height: 180,
            fps_num: 30,
            fps_den: 1
        }
    );
    assert_eq!(
        cat.track(AUDIO_TRACK).unwrap().codec,
        Codec::Opus {
            sample_rate: 48_000,
            channels: 2
        }
    );
    assert_eq!(cat.track(VIDEO_TRACK).unwrap().bitrate, 500_000);

    // Collect until both tracks span 3 s of media.
    let mut units = Vec::new();
    let mut max_capture_skew = 0u64;
    loop {
        let u = next_unit(&mut src).await.expect("live source never ends");
        max_capture_skew = max_capture_skew.max(unix_now_us().abs_diff(u.capture_us));
        units.push(u);
        let (v, a) = split(&units);
        let span = |x: &[&EncodedUnit]| x.last().map_or(0, |l| l.pts - x[0].pts);
        if span(&v) >= 3_000_000 && span(&a) >= 3_000_000 {
            break;
        }
    }
    src.stop();
    let (video, audio) = split(&units);
    eprintln!(
        "video units {}, audio units {}, max |capture - now| {} us",
        video.len(),
        audio.len(),
        max_capture_skew
    );
    assert!(
        (88..=95).contains(&video.len()),
        "video units {}",
        video.len()
    );
    assert!(
        (148..=156).contains(&audio.len()),
        "audio units {}",
        audio.len()
    );
    assert!(video[0].keyframe, "first video unit must be a keyframe");
    assert!(video[0].payload.len() > 100);
    let keys: Vec<u64> = video.iter().filter(|u| u.keyframe).map(|u| u.pts).collect();
    assert_eq!(keys.len(), 2, "keyframes at 0 s and 2 s: {keys:?}");
    let interval = keys[1] - keys[0];
    assert!(
        interval.abs_diff(2_000_000) <= 40_000,
        "keyframe interval {interval} us"
    );
    assert_increasing(&video, "video");
    assert_increasing(&audio, "audio");
    let durations: std::collections::BTreeSet<u32> = audio.iter().map(|u| u.duration).collect();
    // opusenc shortens the first packet by the encoder's pre-skip; the rest are 20 ms.
    assert!(
        audio.iter().all(|u| u.keyframe),
        "audio units are all independent"
    );
    assert!(
        audio[1..].iter().all(|u| u.duration == 20_000),
        "{durations:?}"
    );
    assert!(video.iter().all(|u| u.duration.abs_diff(33_333) <= 1));
    // A/V share one time base: both start near the same running time.
    assert!(video[0].pts.abs_diff(audio[0].pts) < 500_000);
    // Capture time is the wall clock at capture, which precedes delivery by the encoder
    // and channel latency only.
    assert!(
        max_capture_skew < 2_000_000,
        "capture skew {max_capture_skew} us"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn file_source_plays_to_the_end() {
    let _heavy = heavy().await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("clip.mkv");
    make_media_file(&path, true, true, 30); // 1 s
    let spec = SourceSpec::File {
        path: path.clone(),
        looping: false,
    };
    let mut src = MediaSource::start(&spec, &small_settings()).unwrap();
    assert_eq!(src.catalog().name, "clip");
    assert!(src.catalog().track(VIDEO_TRACK).is_some());
    assert!(src.catalog().track(AUDIO_TRACK).is_some());
    let mut units = Vec::new();
    while let Some(u) = next_unit(&mut src).await {
        units.push(u);
    }
    // Ended: stays ended.
    assert!(src.next().await.is_none());
    let (video, audio) = split(&units);
    eprintln!(
        "file: video units {}, audio units {}",
        video.len(),
        audio.len()
    );
    assert!(
        (28..=32).contains(&video.len()),
        "video units {}",
        video.len()
    );
    assert!(
        (45..=55).contains(&audio.len()),
        "audio units {}",
        audio.len()
    );
    assert!(video[0].keyframe);
    assert_increasing(&video, "video");
    assert_increasing(&audio, "audio");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn file_source_loops_with_increasing_timestamps() {
    let _heavy = heavy().await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("loop.mkv");
    make_media_file(&path, true, true, 30); // 1 s
    let spec = SourceSpec::File {
        path,
        looping: true,
    };
    let mut src = MediaSource::start(&spec, &small_settings()).unwrap();
    let mut units = Vec::new();
    // Past two loop points.
    while units
        .iter()
        .filter(|u: &&EncodedUnit| u.track == VIDEO_TRACK)
        .count()
        < 75
    {
        units.push(
            next_unit(&mut src)
                .await
                .expect("looping source never ends"),
        );
    }
    src.stop();
    let (video, audio) = split(&units);
    assert_increasing(&video, "video");
    assert_increasing(&audio, "audio");
    let keys = video.iter().filter(|u| u.keyframe).count();
    assert!(keys >= 3, "each loop starts with a keyframe: {keys}");
    let last = video.last().unwrap().pts - video[0].pts;
    eprintln!(
        "looped: {} video units spanning {last} us, {keys} keyframes",
        video.len()
    );
    assert!(
        last >= 2_400_000,
        "timestamps continue across loops: {last}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn single_track_files_have_single_track_catalogs() {
    let _heavy = heavy().await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("silent.mkv");
    make_media_file(&path, true, false, 10);
    let spec = SourceSpec::File {
        path,
        looping: false,
    };
    let mut src = MediaSource::start(&spec, &small_settings()).unwrap();
    assert_eq!(src.catalog().tracks.len(), 1);
    assert!(src.catalog().track(VIDEO_TRACK).is_some());
    let mut n = 0;
    while let Some(u) = next_unit(&mut src).await {
        assert_eq!(u.track, VIDEO_TRACK);
        n += 1;
    }
    assert!((9..=11).contains(&n), "{n}");

    let path = dir.path().join("radio.mkv");
    make_media_file(&path, false, true, 15); // 0.5 s of audio only
    let spec = SourceSpec::File {
        path,
        looping: false,
    };
    let mut src = MediaSource::start(&spec, &small_settings()).unwrap();
    assert_eq!(src.catalog().tracks.len(), 1);
    assert!(src.catalog().track(AUDIO_TRACK).is_some());
    let mut n = 0;
    while let Some(u) = next_unit(&mut src).await {
        assert_eq!(u.track, AUDIO_TRACK);
        n += 1;
    }
    assert!((24..=28).contains(&n), "{n}");
}

#[test]
fn missing_file_is_a_clear_error() {
    let spec = SourceSpec::File {
        path: "/nonexistent/treecast/clip.mkv".into(),
        looping: false,
    };
    let err = MediaSource::start(&spec, &small_settings()).unwrap_err();
    assert!(matches!(err, MediaError::FileNotFound { .. }), "{err:?}");
    assert_eq!(
        err.to_string(),
        "file not found: '/nonexistent/treecast/clip.mkv'"
    );
    let spec = SourceSpec::Wav {
        path: "/nonexistent/a.wav".into(),
        looping: false,
    };
    assert!(matches!(
        MediaSource::start(&spec, &small_settings()),
        Err(MediaError::FileNotFound { .. })
    ));
}

#[test]
fn undecodable_file_is_an_error_not_a_hang() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("notes.txt");
    std::fs::write(&path, "this is not a media file\n".repeat(100)).unwrap();
    let spec = SourceSpec::File {
        path,
        looping: false,
    };
    let start = std::time::Instant::now();
    let err = MediaSource::start(&spec, &small_settings()).unwrap_err();
    eprintln!("undecodable: {err}");
    assert!(
        matches!(
            err,
            MediaError::Pipeline { .. } | MediaError::FileUnreadable { .. }
        ),
        "{err:?}"
    );
    assert!(start.elapsed() < Duration::from_secs(15));
    // A directory is not a file.
    let spec = SourceSpec::File {
        path: dir.path().to_path_buf(),
        looping: false,
    };
    assert!(matches!(
        MediaSource::start(&spec, &small_settings()),
        Err(MediaError::FileUnreadable { .. })
    ));
}
