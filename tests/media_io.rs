//! Real broadcasters in, real players out, messages to the audience: the `treecast`
//! binary with ffmpeg pushing SRT into an origin, ffprobe reading what a viewer records
//! and re-serves, and text messages through a small tree.
#![cfg(feature = "media")]

mod common;

use std::io::Write;
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use common::{BIN, Proc, start};

/// Tests that encode or decode video in real time run one at a time (2-core machines).
static HEAVY: Mutex<()> = Mutex::new(());

const WAIT: Duration = Duration::from_secs(60);

fn heavy() -> std::sync::MutexGuard<'static, ()> {
    HEAVY
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// A UDP port free right now.
fn free_udp_port() -> u16 {
    std::net::UdpSocket::bind("127.0.0.1:0")
        .and_then(|s| s.local_addr())
        .expect("bind a UDP port")
        .port()
}

/// Waits for a line containing `needle`; returns it.
fn wait_line(rx: &Receiver<String>, needle: &str) -> String {
    let deadline = Instant::now() + WAIT;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) if line.contains(needle) => return line,
            Ok(_) => {}
            Err(e) => panic!("no line with {needle:?}: {e}"),
        }
    }
}

/// ffmpeg pushing a generated 320x240 30 fps H.264 (no B-frames, keyframe every second)
/// + AAC stream to `srt://127.0.0.1:port` for `seconds`.
fn ffmpeg_push(port: u16, seconds: u32) -> Child {
    Command::new("ffmpeg")
        .args(["-hide_banner", "-loglevel", "error", "-nostdin", "-re"])
        .args(["-f", "lavfi", "-i", "testsrc2=size=320x240:rate=30"])
        .args(["-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000"])
        .args(["-t", &seconds.to_string()])
        .args([
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
            "-bf",
            "0",
            "-g",
            "30",
        ])
        .args(["-c:a", "aac", "-f", "mpegts"])
        .arg(format!("srt://127.0.0.1:{port}?mode=caller"))
        .stdin(Stdio::null())
        .spawn()
        .expect("ffmpeg runs (Debian package ffmpeg)")
}

/// Pushes into the origin until it says the stream is live. ffmpeg may call before the
/// origin's listener is bound; it then exits at once and is started again.
fn push_until_live(port: u16, seconds: u32, origin: &Receiver<String>) -> Proc {
    let mut ff = Proc(ffmpeg_push(port, seconds));
    let deadline = Instant::now() + WAIT;
    let mut attempts = 1;
    loop {
        assert!(Instant::now() < deadline, "the origin never went live");
        match origin.recv_timeout(Duration::from_millis(200)) {
            Ok(line) if line.contains("live:") => {
                assert!(
                    line.contains("H.264 320x240 30 fps") && line.contains("Opus 2 ch"),
                    "{line}"
                );
                return ff;
            }
            Ok(_) | Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => panic!("the origin exited"),
        }
        if let Ok(Some(status)) = ff.0.try_wait() {
            attempts += 1;
            assert!(attempts <= 20, "ffmpeg cannot connect: {status}");
            ff = Proc(ffmpeg_push(port, seconds));
        }
    }
}

fn ffprobe(args: &[&str]) -> String {
    let out = Command::new("ffprobe")
        .args(["-v", "error"])
        .args(args)
        .output()
        .expect("ffprobe runs");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `codec_name=...|nb_read_frames=...` per stream, in order.
fn probe_streams(path: &std::path::Path) -> Vec<(String, u64, String)> {
    let text = ffprobe(&[
        "-count_frames",
        "-show_entries",
        "stream=codec_name,nb_read_frames,width,height",
        "-of",
        "compact=p=0:nk=0",
        path.to_str().unwrap(),
    ]);
    text.lines()
        .map(|l| {
            let field = |k: &str| {
                l.split('|')
                    .find_map(|kv| kv.strip_prefix(&format!("{k}=")))
                    .unwrap_or("")
                    .to_string()
            };
            (
                field("codec_name"),
                field("nb_read_frames").parse().unwrap_or(0),
                format!("{}x{}", field("width"), field("height")),
            )
        })
        .collect()
}

#[test]
fn srt_push_plays_two_hops_down_records_and_reserves_as_mpegts() {
    let _heavy = heavy();
    let dir = tempfile::tempdir().unwrap();
    let srt_port = free_udp_port();
    let (_origin, origin_addr, origin_out) = start(&[
        "publish",
        "--ephemeral",
        "--listen",
        "127.0.0.1:0",
        "--source",
        &format!("srt://:{srt_port}"),
    ]);
    let _ff = push_until_live(srt_port, 30, &origin_out);
    let (_relay, relay_addr, _) = start(&[
        "relay",
        "--ephemeral",
        "--listen",
        "127.0.0.1:0",
        "--parent",
        &origin_addr,
    ]);
    // A player reading the viewer's re-served stream (listening before the viewer starts).
    let out_port = free_udp_port();
    let probe = Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-show_entries",
            "stream=codec_name",
            "-of",
            "csv=p=0",
        ])
        .arg(format!("udp://127.0.0.1:{out_port}?timeout=30000000"))
        .stdout(Stdio::piped())
        .spawn()
        .expect("ffprobe runs");
    let probe = Proc(probe);
    let rec = dir.path().join("rec.mkv");
    let report = dir.path().join("report.json");
    let viewer = Command::new(BIN)
        .args(["watch", "--ephemeral", "--listen", "127.0.0.1:0"])
        .args(["--max-children", "0", "--parent", &relay_addr])
        .args(["--headless", "--quiet", "--duration", "5s"])
        .arg("--record")
        .arg(&rec)
        .arg("--report")
        .arg(&report)
        .args(["--output", &format!("udp://127.0.0.1:{out_port}")])
        .env("RUST_LOG", "warn")
        .output()
        .expect("viewer runs");
    assert!(
        viewer.status.success(),
        "viewer failed: {}",
        String::from_utf8_lossy(&viewer.stderr)
    );
    let r: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap();
    let n = |k: &str| r[k].as_u64().unwrap_or_else(|| panic!("{k} in {r}"));
    // Every frame received two hops down was decoded, none lost, in one unbroken run.
    let rendered = n("frames_rendered");
    assert!(rendered >= 90, "about 5 s at 30 fps: {r}");
    assert_eq!(rendered, n("frames_received"), "{r}");
    assert_eq!(
        n("last_video_seq") - n("first_video_seq") + 1,
        rendered,
        "{r}"
    );
    assert_eq!(n("frames_lost"), 0, "{r}");
    assert_eq!(n("out_of_order"), 0, "{r}");
    assert!(n("audio_packets_decoded") >= 150, "AAC became Opus: {r}");
    // The recording holds exactly those frames, H.264 passed through at the pushed size.
    let streams = probe_streams(&rec);
    let video = streams.iter().find(|s| s.0 == "h264").expect("h264 stream");
    let audio = streams.iter().find(|s| s.0 == "opus").expect("opus stream");
    assert_eq!(video.1, rendered, "{streams:?}");
    assert_eq!(video.2, "320x240");
    assert_eq!(audio.1, n("audio_packets_received"), "{streams:?}");
    // The re-served MPEG-TS carried both tracks.
    let mut probe = probe;
    let mut out = String::new();
    std::io::Read::read_to_string(&mut probe.0.stdout.take().unwrap(), &mut out).unwrap();
    assert!(
        out.contains("h264") && out.contains("opus"),
        "ffprobe saw: {out:?}"
    );
}

#[test]
fn b_frames_are_refused_with_the_setting_to_change() {
    let _heavy = heavy();
    let port = free_udp_port();
    let mut origin = Command::new(BIN)
        .args(["publish", "--ephemeral", "--listen", "127.0.0.1:0"])
        .args(["--source", &format!("srt://:{port}")])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = origin.stderr.take().unwrap();
    let _origin = Proc(origin);
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufRead::lines(std::io::BufReader::new(stderr)).map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let push = || {
        Command::new("ffmpeg")
            .args(["-hide_banner", "-loglevel", "quiet", "-nostdin", "-re"])
            .args([
                "-f",
                "lavfi",
                "-i",
                "testsrc2=size=160x120:rate=30",
                "-t",
                "20",
            ])
            .args([
                "-c:v", "libx264", "-preset", "veryfast", "-bf", "2", "-g", "30",
            ])
            .args([
                "-f",
                "mpegts",
                &format!("srt://127.0.0.1:{port}?mode=caller"),
            ])
            .stdin(Stdio::null())
            .spawn()
            .unwrap()
    };
    let mut ff = Proc(push());
    let deadline = Instant::now() + WAIT;
    let err = loop {
        assert!(
            Instant::now() < deadline,
            "the origin did not refuse the stream"
        );
        match rx.recv_timeout(Duration::from_millis(200)) {
            Ok(line) if line.starts_with("error:") => break line,
            Ok(_) | Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => panic!("the origin exited without an error"),
        }
        // ffmpeg called before the listener was bound: call again.
        if ff.0.try_wait().unwrap().is_some() {
            ff = Proc(push());
        }
    };
    assert!(err.contains("B-frames") && err.contains("-bf 0"), "{err}");
}

#[test]
fn messages_reach_every_viewer_of_a_tree_in_order_once() {
    let mut origin = Command::new(BIN)
        .args(["publish", "--ephemeral", "--listen", "127.0.0.1:0"])
        .args(["--max-children", "2", "--messages", "-"])
        .args(["--source", "synthetic:fps=10,size=200,group=10"])
        .env("RUST_LOG", "warn")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut input = origin.stdin.take().unwrap();
    let stdout = origin.stdout.take().unwrap();
    let _origin = Proc(origin);
    // Keep reading the origin's output (a closed pipe would stop it).
    let (tx, origin_out) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufRead::lines(std::io::BufReader::new(stdout)).map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let first = wait_line(&origin_out, "treecast origin");
    let origin_addr = first.split_whitespace().last().unwrap().to_string();
    // Three viewers: two under the origin, one a level further down.
    let viewers: Vec<_> = (0..3)
        .map(|_| {
            let (p, _, rx) = start(&[
                "watch",
                "--ephemeral",
                "--listen",
                "127.0.0.1:0",
                "--headless",
                "--quiet",
                "--join",
                &origin_addr,
            ]);
            wait_line(&rx, "parent:");
            (p, rx)
        })
        .collect();
    let sent: Vec<String> = (1..=5)
        .map(|i| format!("announcement {i}: ünïcode ok"))
        .collect();
    for line in &sent {
        writeln!(input, "{line}").unwrap();
    }
    writeln!(input, "end").unwrap();
    input.flush().unwrap();
    for (_, rx) in &viewers {
        let mut got = Vec::new();
        loop {
            let line = wait_line(rx, "message: ");
            let text = line.trim_start_matches("message: ").to_string();
            if text == "end" {
                break;
            }
            got.push(text);
        }
        assert_eq!(got, sent, "in order, each once");
    }
    // A viewer joining now sees the last few messages at once.
    let (_late, _, rx) = start(&[
        "watch",
        "--ephemeral",
        "--listen",
        "127.0.0.1:0",
        "--headless",
        "--quiet",
        "--max-children",
        "0",
        "--join",
        &origin_addr,
    ]);
    let mut late = Vec::new();
    loop {
        let line = wait_line(&rx, "message: ");
        let text = line.trim_start_matches("message: ").to_string();
        late.push(text.clone());
        if text == "end" {
            break;
        }
    }
    let mut expected: Vec<String> = sent.clone();
    expected.push("end".into());
    assert_eq!(late, expected);
}

#[test]
fn a_missing_camera_is_one_clear_error() {
    let out = Command::new(BIN)
        .args(["publish", "--ephemeral", "--listen", "127.0.0.1:0"])
        .args([
            "--source",
            "device",
            "--video-device",
            "/dev/treecast-no-camera",
        ])
        .env("RUST_LOG", "off")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<&str> = err.lines().filter(|l| l.starts_with("error:")).collect();
    assert_eq!(lines.len(), 1, "{err}");
    assert!(
        lines[0].contains("camera '/dev/treecast-no-camera'")
            && lines[0].contains("--video-device"),
        "{err}"
    );
}

#[test]
fn a_bad_output_address_is_refused_at_once() {
    let out = Command::new(BIN)
        .args([
            "watch",
            "--headless",
            "--ephemeral",
            "--listen",
            "127.0.0.1:0",
        ])
        .args(["--output", "rtmp://host:1935"])
        .arg("aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa@127.0.0.1:9")
        .env("RUST_LOG", "off")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("udp://HOST:PORT"), "{err}");
}

#[test]
fn the_broadcast_goes_on_when_the_broadcaster_reconnects() {
    let _heavy = heavy();
    let dir = tempfile::tempdir().unwrap();
    let port = free_udp_port();
    let (mut origin, origin_addr, origin_out) = start(&[
        "publish",
        "--ephemeral",
        "--listen",
        "127.0.0.1:0",
        "--source",
        &format!("srt://:{port}"),
    ]);
    let mut first = push_until_live(port, 3, &origin_out);
    let report = dir.path().join("report.json");
    let mut viewer = Command::new(BIN)
        .args(["watch", "--ephemeral", "--listen", "127.0.0.1:0"])
        .args(["--max-children", "0", "--parent", &origin_addr])
        .args(["--headless", "--quiet", "--duration", "9s", "--report"])
        .arg(&report)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    // The broadcaster goes away, then pushes again (retrying until the origin listens).
    assert!(first.0.wait().unwrap().success());
    let mut attempts = 0;
    loop {
        attempts += 1;
        assert!(attempts <= 20, "the origin does not listen again");
        if ffmpeg_push(port, 3).wait().unwrap().success() {
            break;
        }
    }
    assert!(viewer.wait().unwrap().success());
    assert!(
        origin.0.try_wait().unwrap().is_none(),
        "the origin kept running"
    );
    let r: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap();
    // More than the first push alone could give (3 s at 30 fps), nothing lost between.
    assert!(r["frames_rendered"].as_u64().unwrap() > 100, "{r}");
    assert_eq!(r["frames_lost"], 0, "{r}");
    assert_eq!(r["out_of_order"], 0, "{r}");
}
