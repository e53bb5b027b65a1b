//! The WAV source (hound + libopus, paced by tokio timers).

mod common;

use std::path::Path;
use std::time::Duration;

use treecast_player::{EncodeSettings, MediaError, MediaSource, SourceSpec};
use treecast_relay::proto::media::{AUDIO_TRACK, Codec, EncodedUnit};

fn write_wav(path: &Path, spec: hound::WavSpec, seconds: f64) {
    let mut w = hound::WavWriter::create(path, spec).unwrap();
    let frames = (f64::from(spec.sample_rate) * seconds) as u32;
    for i in 0..frames {
        let t = f64::from(i) / f64::from(spec.sample_rate);
        let v = (t * 440.0 * std::f64::consts::TAU).sin() * 0.5;
        for _ in 0..spec.channels {
            match (spec.sample_format, spec.bits_per_sample) {
                (hound::SampleFormat::Float, _) => w.write_sample(v as f32).unwrap(),
                (_, 16) => w.write_sample((v * 32767.0) as i16).unwrap(),
                (_, bits) => w
                    .write_sample((v * ((1i64 << (bits - 1)) - 1) as f64) as i32)
                    .unwrap(),
            }
        }
    }
    w.finalize().unwrap();
}

async fn collect(src: &mut MediaSource, max: usize) -> Vec<EncodedUnit> {
    let mut out = Vec::new();
    while out.len() < max {
        match common::next_unit(src).await {
            Some(u) => out.push(u),
            None => break,
        }
    }
    out
}

fn decode_all(units: &[EncodedUnit], channels: opus::Channels, frame_samples: usize) {
    let mut dec = opus::Decoder::new(48_000, channels).unwrap();
    let mut pcm = vec![0f32; 5760 * 2];
    let mut energy = 0.0f64;
    for u in units {
        let n = dec
            .decode_float(&u.payload, &mut pcm, false)
            .expect("packet decodes");
        assert_eq!(n, frame_samples);
        energy += pcm[..n].iter().map(|s| f64::from(*s).powi(2)).sum::<f64>();
    }
    assert!(energy > 1.0, "decoded audio is not silence: {energy}");
}

#[tokio::test]
async fn stereo_44k_wav_is_encoded_in_real_time() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tone.wav");
    let spec = hound::WavSpec {
        channels: 2,
        sample_rate: 44_100,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    write_wav(&path, spec, 1.5);
    let settings = EncodeSettings::default();
    let mut src = MediaSource::start(
        &SourceSpec::Wav {
            path,
            looping: false,
        },
        &settings,
    )
    .unwrap();
    let cat = src.catalog().clone();
    assert_eq!(cat.name, "tone");
    assert_eq!(cat.tracks.len(), 1, "audio only");
    assert_eq!(
        cat.track(AUDIO_TRACK).unwrap().codec,
        Codec::Opus {
            sample_rate: 48_000,
            channels: 2
        }
    );
    let started = std::time::Instant::now();
    let units = collect(&mut src, 1000).await;
    let elapsed = started.elapsed();
    assert!(src.next().await.is_none(), "stays ended");
    eprintln!("wav: {} packets in {elapsed:?}", units.len());
    // 1.5 s / 20 ms = 75 packets (the last one padded).
    assert!((74..=76).contains(&units.len()), "{}", units.len());
    for (i, u) in units.iter().enumerate() {
        assert_eq!(u.pts, i as u64 * 20_000);
        assert_eq!(u.duration, 20_000);
        assert!(u.keyframe && u.track == AUDIO_TRACK);
    }
    // Paced in real time (a lower bound only; upper bounds are for benchmarks).
    assert!(elapsed >= Duration::from_millis(1400), "{elapsed:?}");
    let now = common::unix_now_us();
    assert!(units.last().unwrap().capture_us.abs_diff(now) < 1_000_000);
    decode_all(&units, opus::Channels::Stereo, 960);
}

#[tokio::test(start_paused = true)]
async fn mono_24_bit_and_float_wavs_with_other_frame_sizes() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        (1u16, 24u16, hound::SampleFormat::Int, 48_000u32, 10.0f32),
        (2, 32, hound::SampleFormat::Float, 22_050, 60.0),
        (1, 32, hound::SampleFormat::Int, 96_000, 2.5),
        (2, 8, hound::SampleFormat::Int, 8_000, 40.0),
    ];
    for (channels, bits, format, rate, frame_ms) in cases {
        let path = dir.path().join(format!("{channels}-{bits}-{rate}.wav"));
        let spec = hound::WavSpec {
            channels,
            sample_rate: rate,
            bits_per_sample: bits,
            sample_format: format,
        };
        write_wav(&path, spec, 0.6);
        let settings = EncodeSettings {
            opus_frame_ms: frame_ms,
            audio_kbps: 48,
            ..Default::default()
        };
        let mut src = MediaSource::start(
            &SourceSpec::Wav {
                path,
                looping: false,
            },
            &settings,
        )
        .unwrap();
        let units = collect(&mut src, 10_000).await;
        let expect = (600.0 / frame_ms).ceil() as usize;
        assert!(
            units.len().abs_diff(expect) <= 1,
            "{channels}ch {bits}bit {rate}Hz {frame_ms}ms: {} packets, expected {expect}",
            units.len()
        );
        let ch = if channels == 1 {
            opus::Channels::Mono
        } else {
            opus::Channels::Stereo
        };
        decode_all(&units, ch, (frame_ms * 48.0) as usize);
    }
}

#[tokio::test(start_paused = true)]
async fn looping_wav_keeps_counting() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("short.wav");
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate: 48_000,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    write_wav(&path, spec, 0.1); // 5 packets per pass
    let mut src = MediaSource::start(
        &SourceSpec::Wav {
            path,
            looping: true,
        },
        &EncodeSettings::default(),
    )
    .unwrap();
    let units = collect(&mut src, 40).await;
    assert_eq!(units.len(), 40, "a looping source does not end");
    for w in units.windows(2) {
        assert_eq!(w[1].pts, w[0].pts + 20_000);
    }
}

#[test]
fn unsupported_wavs_say_what_is_supported() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("surround.wav");
    let spec = hound::WavSpec {
        channels: 6,
        sample_rate: 48_000,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    write_wav(&path, spec, 0.1);
    let err = MediaSource::start(
        &SourceSpec::Wav {
            path,
            looping: false,
        },
        &EncodeSettings::default(),
    )
    .unwrap_err();
    assert!(matches!(err, MediaError::UnsupportedWav { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(
        msg.contains("6 channels") && msg.contains("supported:"),
        "{msg}"
    );

    let path = dir.path().join("garbage.wav");
    std::fs::write(&path, b"RIFF....WAVEjunkjunkjunk").unwrap();
    let err = MediaSource::start(
        &SourceSpec::Wav {
            path,
            looping: false,
        },
        &EncodeSettings::default(),
    )
    .unwrap_err();
    assert!(matches!(err, MediaError::FileUnreadable { .. }), "{err:?}");
}
