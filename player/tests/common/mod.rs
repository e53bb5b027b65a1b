//! Helpers shared by the integration tests.
#![allow(dead_code)]

use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use gstreamer as gst;
use gstreamer::prelude::*;
use treecast_player::{EncodeSettings, MediaSource};
use treecast_relay::proto::media::EncodedUnit;

/// Tests that run encoders/decoders in real time take this lock so they do not compete
/// for the two shared cores (which would make real-time playback stall). An async mutex:
/// each test has its own runtime, and a failed test does not poison it.
static HEAVY: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

pub async fn heavy() -> tokio::sync::MutexGuard<'static, ()> {
    HEAVY.lock().await
}

/// Generous bound for any single event a test waits on.
pub const EVENT_TIMEOUT: Duration = Duration::from_secs(20);

/// Smaller pictures than the default, to keep the shared machine's CPU load low.
pub fn small_settings() -> EncodeSettings {
    EncodeSettings {
        width: 320,
        height: 180,
        video_kbps: 500,
        ..EncodeSettings::default()
    }
}

/// The next unit, failing the test on an error or if nothing arrives in time.
pub async fn next_unit(src: &mut MediaSource) -> Option<EncodedUnit> {
    tokio::time::timeout(EVENT_TIMEOUT, src.next())
        .await
        .expect("source produced nothing in time")
        .map(|r| r.expect("source error"))
}

pub fn unix_now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_micros() as u64
}

/// Runs a gst-launch style description to EOS (bounded).
pub fn run_to_eos(desc: &str) {
    treecast_player::init().unwrap();
    let pipeline = gst::parse::launch(desc).expect("valid pipeline");
    pipeline
        .set_state(gst::State::Playing)
        .expect("pipeline starts");
    let bus = pipeline.bus().unwrap();
    let msg = bus
        .timed_pop_filtered(
            gst::ClockTime::from_seconds(60),
            &[gst::MessageType::Eos, gst::MessageType::Error],
        )
        .expect("pipeline finished in time");
    pipeline.set_state(gst::State::Null).unwrap();
    if let gst::MessageView::Error(e) = msg.view() {
        panic!("pipeline error: {} ({:?})", e.error(), e.debug());
    }
}

/// Writes a Matroska file with `frames` frames of 30 fps H.264 video and/or the same
/// duration of Opus audio.
pub fn make_media_file(path: &Path, video: bool, audio: bool, frames: u32) {
    let mut desc = format!(
        "matroskamux name=mux ! filesink location={}",
        path.display()
    );
    if video {
        desc += &format!(
            " videotestsrc num-buffers={frames} pattern=ball \
              ! video/x-raw,width=320,height=240,framerate=30/1 \
              ! x264enc speed-preset=ultrafast ! h264parse ! queue ! mux."
        );
    }
    if audio {
        // 960-sample (20 ms) buffers: 5 buffers per 3 video frames.
        let buffers = frames * 5 / 3;
        desc += &format!(
            " audiotestsrc num-buffers={buffers} samplesperbuffer=960 \
              ! audio/x-raw,rate=48000,channels=2 ! opusenc ! queue ! mux."
        );
    }
    run_to_eos(&desc);
}
