//! The `treecast` binary as users run it: separate processes for origin, relay and viewer.
#![cfg(feature = "media")]

mod common;

use std::path::Path;
use std::process::{Command, Stdio};

use common::{BIN, start};

fn discover(path: &Path) -> String {
    let out = Command::new("gst-discoverer-1.0")
        .arg(path)
        .output()
        .expect("gst-discoverer-1.0 (Debian package gstreamer1.0-plugins-base-apps)");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn publish_relay_watch_as_processes_with_report_and_recording() {
    let dir = tempfile::tempdir().unwrap();
    let (_origin, origin_addr, _) = start(&[
        "publish",
        "--ephemeral",
        "--listen",
        "127.0.0.1:0",
        "--duration",
        "60s",
    ]);
    assert!(origin_addr.contains('@'), "{origin_addr}");
    let (_relay, relay_addr, _) = start(&[
        "relay",
        "--ephemeral",
        "--listen",
        "127.0.0.1:0",
        "--parent",
        &origin_addr,
        "--duration",
        "60s",
    ]);
    let report = dir.path().join("report.json");
    let record = dir.path().join("out.mkv");
    let status = Command::new(BIN)
        .args([
            "watch",
            &relay_addr,
            "--headless",
            "--quiet",
            "--ephemeral",
            "--listen",
            "127.0.0.1:0",
        ])
        .args(["--duration", "5s", "--report"])
        .arg(&report)
        .arg("--record")
        .arg(&record)
        .stderr(Stdio::inherit())
        .status()
        .expect("run watch");
    assert!(status.success());
    let r: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap();
    eprintln!("{r:#}");
    for key in [
        "frames_rendered",
        "audio_packets_decoded",
        "first_frame_ms",
        "stalls",
        "rebuffers",
        "slowed_ms",
        "frames_late",
        "max_gap_ms",
        "frames_lost",
        "latency_ms",
    ] {
        assert!(r.get(key).is_some(), "report lacks {key}");
    }
    let rendered = r["frames_rendered"].as_u64().unwrap();
    assert!(
        rendered >= 90,
        "5 s at 30 fps minus the buffer, got {rendered}"
    );
    assert_eq!(r["stalls"], 0);
    assert_eq!(r["rebuffers"], 0);
    assert_eq!(r["frames_lost"], 0);
    assert!(r["audio_packets_decoded"].as_u64().unwrap() > 100);
    // Measured (how fast is for the tree_join benchmark, not for a test: a debug build on
    // a busy CI machine once took 1.1 s here).
    assert!(r["first_frame_ms"].as_f64().is_some_and(|ms| ms > 0.0));
    assert!(r["latency_ms"]["p50"].as_f64().unwrap() > 0.0);

    // The recording opens in an ordinary tool, with both tracks, not re-encoded.
    let info = discover(&record);
    assert!(info.contains("H.264"), "{info}");
    assert!(info.contains("Opus"), "{info}");
}

#[test]
fn clear_errors_for_bad_input() {
    let run = |args: &[&str]| {
        let out = Command::new(BIN).args(args).output().unwrap();
        assert!(!out.status.success(), "{args:?} should fail");
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let e = run(&["watch", "127.0.0.1:4433", "--headless"]);
    assert!(e.contains("no node id"), "{e}");
    let e = run(&[
        "publish",
        "--source",
        "rtmp://x",
        "--ephemeral",
        "--listen",
        "127.0.0.1:0",
    ]);
    assert!(e.contains("unknown source"), "{e}");
    let e = run(&[
        "publish",
        "--source",
        "file:/nonexistent/x.mp4",
        "--ephemeral",
        "--listen",
        "127.0.0.1:0",
    ]);
    assert!(e.contains("/nonexistent/x.mp4"), "{e}");
    let e = run(&[
        "watch",
        "--headless",
        "--duration",
        "forever",
        "aaaa@127.0.0.1:1",
    ]);
    assert!(e.contains("invalid duration"), "{e}");
    // Nobody listens there: one readable line, no hang.
    let id = String::from_utf8(
        Command::new(BIN)
            .args(["id", "--ephemeral"])
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap();
    let e = run(&[
        "relay",
        "--ephemeral",
        "--listen",
        "127.0.0.1:0",
        "--parent",
        &format!("{}@127.0.0.1:9", id.trim()),
    ]);
    assert!(e.contains("no answer from"), "{e}");
}
