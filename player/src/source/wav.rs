//! WAV source: PCM from a WAV file (read with `hound`), resampled to 48 kHz with a
//! [`LinearResampler`], encoded with libopus (the `opus` crate, `Application::Audio`) and
//! paced in real time against one start instant (packet `n` is released at
//! `start + n × frame duration`, so timer lateness never accumulates into drift).
//!
//! Timestamps: `pts = n × frame duration` (µs from the first packet); `capture_us` is the
//! wall clock when the packet is encoded. Looping reopens the file and keeps counting.

use std::fs::File;
use std::io::BufReader;
use std::path::{Path, PathBuf};
use std::time::Duration;

use bytes::Bytes;
use tokio::time::Instant;
use treecast_relay::proto::media::{AUDIO_TRACK, Catalog, EncodedUnit};

use super::resample::LinearResampler;
use super::{EncodeSettings, catalog_name, open_file};
use crate::MediaError;
use crate::timing::unix_now_us;

/// Input frames read from the file per refill.
const READ_CHUNK_FRAMES: usize = 4096;
/// Largest Opus packet we accept from the encoder (libopus' recommended maximum).
const MAX_PACKET: usize = 4000;

type Reader = hound::WavReader<BufReader<File>>;

#[derive(Clone, Copy, Debug)]
enum SampleKind {
    /// Integer PCM with this many bits (8, 16, 24 or 32).
    Int(u16),
    /// 32-bit IEEE float.
    Float,
}

pub(crate) struct WavSource {
    path: PathBuf,
    reader: Reader,
    kind: SampleKind,
    channels: usize,
    looping: bool,
    resampler: LinearResampler,
    encoder: opus::Encoder,
    /// Samples per channel per Opus frame (48 kHz).
    frame_samples: usize,
    frame_us: u64,
    /// Resampled interleaved samples not yet encoded.
    pending: Vec<f32>,
    scratch: Vec<f32>,
    out: Vec<u8>,
    /// Pacing origin, set when the first packet is requested.
    start: Option<Instant>,
    packets: u64,
    input_done: bool,
    ended: bool,
}

fn hound_error(path: &Path, e: hound::Error) -> MediaError {
    match e {
        hound::Error::Unsupported => MediaError::UnsupportedWav {
            path: path.to_path_buf(),
            found: "an encoding other than PCM or IEEE float".into(),
        },
        hound::Error::FormatError(reason) => MediaError::FileUnreadable {
            path: path.to_path_buf(),
            reason: format!("not a valid WAV file: {reason}"),
        },
        other => MediaError::FileUnreadable {
            path: path.to_path_buf(),
            reason: other.to_string(),
        },
    }
}

fn open_reader(path: &Path) -> Result<Reader, MediaError> {
    let file = open_file(path)?;
    hound::WavReader::new(BufReader::new(file)).map_err(|e| hound_error(path, e))
}

fn opus_error(e: opus::Error) -> MediaError {
    MediaError::Opus(e.to_string())
}

impl WavSource {
    pub(crate) fn open(
        path: &Path,
        looping: bool,
        settings: &EncodeSettings,
    ) -> Result<(WavSource, Catalog), MediaError> {
        let reader = open_reader(path)?;
        let spec = reader.spec();
        let unsupported = |found: String| MediaError::UnsupportedWav {
            path: path.to_path_buf(),
            found,
        };
        let kind = match (spec.sample_format, spec.bits_per_sample) {
            (hound::SampleFormat::Int, b @ (8 | 16 | 24 | 32)) => SampleKind::Int(b),
            (hound::SampleFormat::Float, 32) => SampleKind::Float,
            (f, b) => return Err(unsupported(format!("{b}-bit {f:?} samples"))),
        };
        let channels = match spec.channels {
            1 => opus::Channels::Mono,
            2 => opus::Channels::Stereo,
            n => return Err(unsupported(format!("{n} channels"))),
        };
        if !(1000..=384_000).contains(&spec.sample_rate) {
            return Err(unsupported(format!("sample rate {} Hz", spec.sample_rate)));
        }
        if reader.duration() == 0 {
            return Err(MediaError::FileUnreadable {
                path: path.to_path_buf(),
                reason: "the WAV file contains no samples".into(),
            });
        }
        let mut encoder =
            opus::Encoder::new(48_000, channels, opus::Application::Audio).map_err(opus_error)?;
        let bits = i32::try_from(settings.audio_kbps.saturating_mul(1000)).unwrap_or(i32::MAX);
        encoder
            .set_bitrate(opus::Bitrate::Bits(bits))
            .map_err(opus_error)?;
        let ch = usize::from(spec.channels);
        let catalog = Catalog {
            name: catalog_name(path),
            tracks: vec![settings.audio_track(spec.channels as u8)],
            ..Default::default()
        };
        let src = WavSource {
            path: path.to_path_buf(),
            reader,
            kind,
            channels: ch,
            looping,
            resampler: LinearResampler::new(spec.sample_rate, 48_000, ch),
            encoder,
            frame_samples: settings.opus_frame_samples(),
            frame_us: settings.opus_frame_us(),
            pending: Vec::new(),
            scratch: Vec::new(),
            out: vec![0; MAX_PACKET],
            start: None,
            packets: 0,
            input_done: false,
            ended: false,
        };
        Ok((src, catalog))
    }

    /// Reads up to [`READ_CHUNK_FRAMES`] frames and appends them, resampled, to `pending`.
    fn read_more(&mut self) -> Result<(), MediaError> {
        let want = READ_CHUNK_FRAMES * self.channels;
        self.scratch.clear();
        let path = &self.path;
        match self.kind {
            SampleKind::Int(bits) => {
                let scale = 1.0 / (1u64 << (bits - 1)) as f32;
                for s in self.reader.samples::<i32>().take(want) {
                    let s = s.map_err(|e| hound_error(path, e))?;
                    self.scratch.push(s as f32 * scale);
                }
            }
            SampleKind::Float => {
                for s in self.reader.samples::<f32>().take(want) {
                    let s = s.map_err(|e| hound_error(path, e))?;
                    // Clamp garbage (NaN/inf) so the encoder never sees it.
                    self.scratch.push(if s.is_finite() {
                        s.clamp(-1.0, 1.0)
                    } else {
                        0.0
                    });
                }
            }
        }
        self.resampler.process(&self.scratch, &mut self.pending);
        if self.scratch.len() < want {
            // End of the file.
            if self.looping {
                // Reopen rather than seek: hound's seek assumes packed samples.
                self.reader = open_reader(&self.path)?;
            } else {
                self.input_done = true;
            }
        }
        Ok(())
    }

    /// The next Opus packet, released in real time. Cancel-safe: dropping the future while
    /// it waits loses nothing.
    pub(crate) async fn next(&mut self) -> Option<Result<EncodedUnit, MediaError>> {
        if self.ended {
            return None;
        }
        let need = self.frame_samples * self.channels;
        while self.pending.len() < need && !self.input_done {
            if let Err(e) = self.read_more() {
                self.ended = true;
                return Some(Err(e));
            }
        }
        if self.pending.is_empty() {
            self.ended = true;
            return None;
        }
        if self.pending.len() < need {
            // The last, partial frame of a file: pad with silence.
            self.pending.resize(need, 0.0);
        }
        let pts = self.packets * self.frame_us;
        let start = *self.start.get_or_insert_with(Instant::now);
        tokio::time::sleep_until(start + Duration::from_micros(pts)).await;
        let len = match self
            .encoder
            .encode_float(&self.pending[..need], &mut self.out)
        {
            Ok(len) => len,
            Err(e) => {
                self.ended = true;
                return Some(Err(opus_error(e)));
            }
        };
        self.pending.drain(..need);
        self.packets += 1;
        Some(Ok(EncodedUnit {
            track: AUDIO_TRACK,
            pts,
            dts: pts,
            duration: u32::try_from(self.frame_us).unwrap_or(u32::MAX),
            keyframe: true,
            capture_us: unix_now_us(),
            payload: Bytes::copy_from_slice(&self.out[..len]),
        }))
    }
}
