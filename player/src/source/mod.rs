//! Media sources at the origin: capture or read media, encode it to H.264 + Opus and hand
//! out [`EncodedUnit`]s with timestamps in one running-time base.
//!
//! ```no_run
//! # async fn run() -> Result<(), treecast_player::MediaError> {
//! use treecast_player::source::{EncodeSettings, MediaSource, SourceSpec};
//! let mut src = MediaSource::start(&SourceSpec::Test, &EncodeSettings::default())?;
//! println!("{:?}", src.catalog());
//! while let Some(unit) = src.next().await {
//!     let unit = unit?; // hand to the relay's Packager
//!     # let _ = unit;
//! }
//! src.stop();
//! # Ok(()) }
//! ```
//!
//! - [`SourceSpec::Test`]: a live test pattern (moving ball, wall clock, running time and a
//!   frame counter drawn on it) and a tone, from one GStreamer pipeline (one clock).
//! - [`SourceSpec::File`]: any file GStreamer can decode, re-encoded and paced in real time;
//!   optionally looped with timestamps that keep increasing.
//! - [`SourceSpec::Wav`]: a WAV file encoded with libopus directly (no GStreamer), paced by
//!   tokio timers; audio only.
//! - [`SourceSpec::Srt`]: MPEG-TS pushed over SRT by OBS/ffmpeg (listener or caller);
//!   H.264 passed through, audio transcoded to Opus. `start` blocks until the stream's
//!   tracks are known (call it off the async threads).
//! - [`SourceSpec::Device`]: a V4L2 camera and a PulseAudio microphone.

mod device;
mod gst_pipelines;
mod gst_source;
mod h264;
mod resample;
mod srt;
mod wav;

pub use device::{DEFAULT_CAMERA, Devices};
pub use srt::srt_uri;

use std::path::PathBuf;
use std::time::Duration;

use treecast_relay::proto::media::{
    AUDIO_TRACK, Catalog, Codec, EncodedUnit, TrackInfo, VIDEO_TRACK,
};

use crate::MediaError;

/// Encoder settings shared by all sources.
#[derive(Clone, Debug, PartialEq)]
pub struct EncodeSettings {
    /// Output picture width (even, 16..=7680).
    pub width: u32,
    /// Output picture height (even, 16..=4320).
    pub height: u32,
    /// Output frame rate (1..=240).
    pub fps: u32,
    /// H.264 bitrate in kbit/s.
    pub video_kbps: u32,
    /// Opus bitrate in kbit/s (6..=510).
    pub audio_kbps: u32,
    /// Distance between keyframes (= group length).
    pub keyframe_interval: Duration,
    /// Opus frame duration in ms: 2.5, 5, 10, 20, 40 or 60.
    pub opus_frame_ms: f32,
}

impl Default for EncodeSettings {
    fn default() -> Self {
        EncodeSettings {
            width: 640,
            height: 360,
            fps: 30,
            video_kbps: 1500,
            audio_kbps: 64,
            keyframe_interval: Duration::from_secs(2),
            opus_frame_ms: 20.0,
        }
    }
}

/// The Opus frame durations libopus accepts, in ms, and the matching `opusenc frame-size`
/// nick.
const OPUS_FRAMES: &[(f32, &str)] = &[
    (2.5, "2.5"),
    (5.0, "5"),
    (10.0, "10"),
    (20.0, "20"),
    (40.0, "40"),
    (60.0, "60"),
];

impl EncodeSettings {
    /// Checks every field; the error says which one is wrong and what is allowed.
    pub fn validate(&self) -> Result<(), MediaError> {
        let bad = |m: String| Err(MediaError::InvalidSettings(m));
        if !(16..=7680).contains(&self.width) || !self.width.is_multiple_of(2) {
            return bad(format!("width {} (must be even, 16..=7680)", self.width));
        }
        if !(16..=4320).contains(&self.height) || !self.height.is_multiple_of(2) {
            return bad(format!("height {} (must be even, 16..=4320)", self.height));
        }
        if !(1..=240).contains(&self.fps) {
            return bad(format!("fps {} (must be 1..=240)", self.fps));
        }
        if !(1..=2_048_000).contains(&self.video_kbps) {
            return bad(format!(
                "video bitrate {} kbit/s (must be 1..=2048000)",
                self.video_kbps
            ));
        }
        if !(6..=510).contains(&self.audio_kbps) {
            return bad(format!(
                "audio bitrate {} kbit/s (must be 6..=510)",
                self.audio_kbps
            ));
        }
        let ki = self.keyframe_interval.as_secs_f64();
        if !(ki * f64::from(self.fps) >= 1.0 && ki <= 600.0) {
            return bad(format!(
                "keyframe interval {:?} (must be at least one frame and at most 600 s)",
                self.keyframe_interval
            ));
        }
        if self.opus_nick().is_none() {
            return bad(format!(
                "Opus frame size {} ms (must be one of 2.5, 5, 10, 20, 40, 60)",
                self.opus_frame_ms
            ));
        }
        Ok(())
    }

    /// `x264enc key-int-max`: frames between keyframes.
    pub(crate) fn key_int_max(&self) -> u32 {
        let frames = (self.keyframe_interval.as_secs_f64() * f64::from(self.fps)).round();
        frames.clamp(1.0, f64::from(u32::MAX)) as u32
    }

    /// The `opusenc frame-size` nick for `opus_frame_ms`, if it is a valid Opus duration.
    pub(crate) fn opus_nick(&self) -> Option<&'static str> {
        OPUS_FRAMES
            .iter()
            .find(|(ms, _)| (ms - self.opus_frame_ms).abs() < 0.01)
            .map(|(_, nick)| *nick)
    }

    /// Samples per channel in one Opus frame at 48 kHz (120 for 2.5 ms ... 2880 for 60 ms).
    pub(crate) fn opus_frame_samples(&self) -> usize {
        (f64::from(self.opus_frame_ms) * 48.0).round() as usize
    }

    /// Duration of one Opus frame in microseconds (exact for every valid frame size).
    pub(crate) fn opus_frame_us(&self) -> u64 {
        self.opus_frame_samples() as u64 * 1_000_000 / 48_000
    }

    /// Duration of one video frame in microseconds.
    pub(crate) fn video_frame_us(&self) -> u64 {
        1_000_000 / u64::from(self.fps.max(1))
    }

    pub(crate) fn video_track(&self) -> TrackInfo {
        TrackInfo {
            id: VIDEO_TRACK,
            name: "video".into(),
            codec: Codec::H264 {
                width: self.width,
                height: self.height,
                fps_num: self.fps,
                fps_den: 1,
            },
            bitrate: u64::from(self.video_kbps) * 1000,
        }
    }

    pub(crate) fn audio_track(&self, channels: u8) -> TrackInfo {
        TrackInfo {
            id: AUDIO_TRACK,
            name: "audio".into(),
            codec: Codec::Opus {
                sample_rate: 48_000,
                channels,
            },
            bitrate: u64::from(self.audio_kbps) * 1000,
        }
    }
}

/// Where media comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SourceSpec {
    /// Live test pattern and tone.
    Test,
    /// A media file GStreamer can decode (re-encoded with the settings).
    File {
        /// The file.
        path: PathBuf,
        /// Restart from the beginning at the end (timestamps keep increasing).
        looping: bool,
    },
    /// A PCM WAV file (audio only), encoded with libopus.
    Wav {
        /// The file.
        path: PathBuf,
        /// Restart from the beginning at the end.
        looping: bool,
    },
    /// MPEG-TS over SRT: `srt://:PORT` listens, `srt://HOST:PORT` calls (see
    /// [`srt_uri`]). Ends when the broadcaster disconnects.
    Srt {
        /// The SRT URI as given by the user.
        uri: String,
    },
    /// A camera and/or microphone.
    Device(Devices),
}

/// What a running source hands to [`MediaSource::next`].
#[derive(Debug)]
pub(crate) enum SourceEvent {
    Unit(EncodedUnit),
    Error(MediaError),
    End,
}

/// A running source. Drive it with [`MediaSource::next`]; dropping it (or
/// [`MediaSource::stop`]) stops the pipeline.
pub struct MediaSource {
    catalog: Catalog,
    inner: Inner,
}

enum Inner {
    Gst(gst_source::GstSource),
    Wav(Box<wav::WavSource>),
}

impl std::fmt::Debug for MediaSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MediaSource")
            .field("catalog", &self.catalog)
            .finish_non_exhaustive()
    }
}

impl MediaSource {
    /// Starts capturing/reading. For files this opens and probes the file first, so the
    /// catalog lists exactly the tracks the file has; errors (missing element, missing
    /// file, undecodable file) are returned here.
    pub fn start(spec: &SourceSpec, settings: &EncodeSettings) -> Result<MediaSource, MediaError> {
        settings.validate()?;
        let (catalog, inner) = match spec {
            SourceSpec::Test => {
                let (src, catalog) = gst_source::GstSource::start_test(settings)?;
                (catalog, Inner::Gst(src))
            }
            SourceSpec::File { path, looping } => {
                let (src, catalog) = gst_source::GstSource::start_file(path, *looping, settings)?;
                (catalog, Inner::Gst(src))
            }
            SourceSpec::Srt { uri } => {
                let (src, catalog) = srt::start(uri, settings)?;
                (catalog, Inner::Gst(src))
            }
            SourceSpec::Device(devices) => {
                let (src, catalog) = device::start(devices, settings)?;
                (catalog, Inner::Gst(src))
            }
            SourceSpec::Wav { path, looping } => {
                let (src, catalog) = wav::WavSource::open(path, *looping, settings)?;
                (catalog, Inner::Wav(Box::new(src)))
            }
        };
        Ok(MediaSource { catalog, inner })
    }

    /// The tracks this source produces (video [`VIDEO_TRACK`] H.264, audio [`AUDIO_TRACK`]
    /// Opus; only those present). `name` is "test" or the file stem; callers may override it.
    pub fn catalog(&self) -> &Catalog {
        &self.catalog
    }

    /// The next encoded unit. `None` once the source has ended (a file without looping, or
    /// after an error was returned). Units of one track have increasing timestamps.
    pub async fn next(&mut self) -> Option<Result<EncodedUnit, MediaError>> {
        match &mut self.inner {
            Inner::Gst(g) => g.next().await,
            Inner::Wav(w) => w.next().await,
        }
    }

    /// Stops the source and releases the pipeline (same as dropping it).
    pub fn stop(self) {
        drop(self);
    }
}

pub(crate) fn catalog_name(path: &std::path::Path) -> String {
    path.file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// Opens `path` for reading, distinguishing "not found" from "unreadable".
pub(crate) fn open_file(path: &std::path::Path) -> Result<std::fs::File, MediaError> {
    let file = std::fs::File::open(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => MediaError::FileNotFound {
            path: path.to_path_buf(),
        },
        _ => MediaError::FileUnreadable {
            path: path.to_path_buf(),
            reason: e.to_string(),
        },
    })?;
    match file.metadata() {
        Ok(m) if m.is_file() => Ok(file),
        Ok(_) => Err(MediaError::FileUnreadable {
            path: path.to_path_buf(),
            reason: "not a regular file".into(),
        }),
        Err(e) => Err(MediaError::FileUnreadable {
            path: path.to_path_buf(),
            reason: e.to_string(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_settings_are_valid() {
        let s = EncodeSettings::default();
        s.validate().unwrap();
        assert_eq!(s.key_int_max(), 60);
        assert_eq!(s.opus_frame_samples(), 960);
        assert_eq!(s.opus_frame_us(), 20_000);
        assert_eq!(s.opus_nick(), Some("20"));
    }

    #[test]
    fn invalid_settings_are_rejected() {
        let ok = EncodeSettings::default();
        let cases = [
            EncodeSettings {
                width: 641,
                ..ok.clone()
            },
            EncodeSettings {
                height: 0,
                ..ok.clone()
            },
            EncodeSettings {
                fps: 0,
                ..ok.clone()
            },
            EncodeSettings {
                video_kbps: 0,
                ..ok.clone()
            },
            EncodeSettings {
                audio_kbps: 1,
                ..ok.clone()
            },
            EncodeSettings {
                opus_frame_ms: 15.0,
                ..ok.clone()
            },
            EncodeSettings {
                opus_frame_ms: f32::NAN,
                ..ok.clone()
            },
            EncodeSettings {
                keyframe_interval: Duration::ZERO,
                ..ok.clone()
            },
        ];
        for c in cases {
            assert!(
                matches!(c.validate(), Err(MediaError::InvalidSettings(_))),
                "{c:?}"
            );
        }
        let s = EncodeSettings {
            opus_frame_ms: 2.5,
            ..ok
        };
        s.validate().unwrap();
        assert_eq!(s.opus_frame_samples(), 120);
        assert_eq!(s.opus_frame_us(), 2_500);
    }
}
