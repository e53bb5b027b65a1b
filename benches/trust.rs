//! Cost of trust (a benchmark: it measures, it does not assert): signing at the origin,
//! verifying at every node, sealing/opening for encrypted streams, and the bytes the
//! signatures add, per frame and per second of stream at the default bitrates
//! (H.264 1500 kbit/s at 30 fps, Opus 64 kbit/s in 20 ms packets).
//!
//! Writes `TREECAST_BENCH_OUT` (default `target/bench-results/trust.json`).
//! Run: `cargo bench --bench trust`.

use std::hint::black_box;
use std::time::Instant;

use bytes::Bytes;
use serde_json::json;
use treecast_relay::node::publisher_key::PublisherKeyFile;
use treecast_relay::proto::group::encode_frame_header;
use treecast_relay::proto::media::Frame;
use treecast_relay::proto::trust::{ContentKey, Sealer, StreamName, StreamVerifier};

const VIDEO_KBPS: u64 = 1500;
const FPS: u64 = 30;
const AUDIO_KBPS: u64 = 64;
const AUDIO_FPS: u64 = 50;

fn frame(size: usize, seq: u64) -> Frame {
    Frame {
        track: 0,
        group: seq / 60,
        seq,
        pts: seq * 33_333,
        dts: seq * 33_333,
        duration: 33_333,
        keyframe: seq.is_multiple_of(60),
        capture_us: 1_700_000_000_000_000 + seq,
        payload: Bytes::from(vec![(seq % 251) as u8; size]),
        signature: None,
    }
}

/// Median of `runs` timings of `iters` calls of `f`, in microseconds per call.
fn time_us(iters: u64, mut f: impl FnMut(u64)) -> f64 {
    let mut runs: Vec<f64> = (0..5)
        .map(|_| {
            let t = Instant::now();
            for i in 0..iters {
                f(i);
            }
            t.elapsed().as_secs_f64() * 1e6 / iters as f64
        })
        .collect();
    runs.sort_by(f64::total_cmp);
    runs[2]
}

fn main() {
    let key = PublisherKeyFile::generate().expect("key");
    let stream = StreamName::new(key.key.public(), "bench").expect("name");
    let tag = stream.tag();
    let verifier = StreamVerifier::new(stream);
    let sealer = Sealer::new(&ContentKey::from_bytes([7; 32]), 1);
    let video = (VIDEO_KBPS * 1000 / 8 / FPS) as usize;
    let audio = (AUDIO_KBPS * 1000 / 8 / AUDIO_FPS) as usize;
    let mut per_track = Vec::new();
    let mut cpu_sign_per_s = 0.0;
    let mut cpu_verify_per_s = 0.0;
    let mut cpu_seal_per_s = 0.0;
    let mut cpu_open_per_s = 0.0;
    let (mut wire_plain, mut wire_signed) = (0u64, 0u64);
    for (name, size, rate) in [("video", video, FPS), ("audio", audio, AUDIO_FPS)] {
        let frames: Vec<Frame> = (0..64).map(|i| frame(size, i)).collect();
        let signed: Vec<Frame> = frames
            .iter()
            .map(|f| {
                let mut f = f.clone();
                key.key.sign_frame(&tag, &mut f);
                f
            })
            .collect();
        let sign = time_us(2000, |i| {
            let mut f = frames[(i % 64) as usize].clone();
            key.key.sign_frame(&tag, &mut f);
            black_box(f);
        });
        let verify = time_us(2000, |i| {
            black_box(verifier.verify_frame(&signed[(i % 64) as usize]).is_ok());
        });
        let seal = time_us(2000, |i| {
            let mut f = frames[(i % 64) as usize].clone();
            sealer.seal(&mut f);
            black_box(f);
        });
        let sealed: Vec<Frame> = frames
            .iter()
            .map(|f| {
                let mut f = f.clone();
                sealer.seal(&mut f);
                f
            })
            .collect();
        let open = time_us(2000, |i| {
            let mut f = sealed[(i % 64) as usize].clone();
            black_box(sealer.open(&mut f).is_ok());
        });
        let plain = (encode_frame_header(&frames[1]).len() + size) as u64;
        let with_sig = (encode_frame_header(&signed[1]).len() + size) as u64;
        wire_plain += plain * rate;
        wire_signed += with_sig * rate;
        cpu_sign_per_s += sign * rate as f64;
        cpu_verify_per_s += verify * rate as f64;
        cpu_seal_per_s += seal * rate as f64;
        cpu_open_per_s += open * rate as f64;
        println!(
            "{name}: {size} B frames at {rate}/s: sign {sign:.1} us, verify {verify:.1} us, seal {seal:.1} us, open {open:.1} us, +{} B on the wire per frame",
            with_sig - plain
        );
        per_track.push(json!({
            "track": name, "payload_bytes": size, "frames_per_s": rate,
            "sign_us": sign, "verify_us": verify, "seal_us": seal, "open_us": open,
            "wire_bytes_unsigned": plain, "wire_bytes_signed": with_sig,
        }));
    }
    let overhead = (wire_signed - wire_plain) as f64 / wire_plain as f64;
    println!(
        "per second of stream: sign {:.2} ms, verify {:.2} ms (per hop), seal {:.2} ms, open {:.2} ms; signatures add {:.2}% bytes",
        cpu_sign_per_s / 1e3,
        cpu_verify_per_s / 1e3,
        cpu_seal_per_s / 1e3,
        cpu_open_per_s / 1e3,
        overhead * 100.0
    );
    let out = std::env::var("TREECAST_BENCH_OUT")
        .unwrap_or_else(|_| "target/bench-results/trust.json".into());
    let doc = json!({
        "bench": "trust",
        "tracks": per_track,
        "per_second_of_stream": {
            "sign_cpu_ms": cpu_sign_per_s / 1e3,
            "verify_cpu_ms_per_hop": cpu_verify_per_s / 1e3,
            "seal_cpu_ms": cpu_seal_per_s / 1e3,
            "open_cpu_ms": cpu_open_per_s / 1e3,
            "wire_bytes_unsigned": wire_plain,
            "wire_bytes_signed": wire_signed,
            "signature_overhead_ratio": overhead,
        },
    });
    if let Some(dir) = std::path::Path::new(&out).parent() {
        let _ = std::fs::create_dir_all(dir);
    }
    match std::fs::write(&out, serde_json::to_string_pretty(&doc).unwrap_or_default()) {
        Ok(()) => println!("wrote {out}"),
        Err(e) => eprintln!("cannot write {out}: {e}"),
    }
}
