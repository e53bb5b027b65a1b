//! treecast media: capture and encode at the origin, decode, render and record at the viewer.
//!
//! The relay crate moves [`Frame`](treecast_relay::proto::media::Frame)s; this crate makes
//! them from real media and turns them back into pictures and sound. It uses GStreamer 1.22
//! (Debian 12 packages) and libopus.
//!
//! # Origin: [`source::MediaSource`]
//!
//! 1. [`init`] (optional; every constructor calls it).
//! 2. [`MediaSource::start`](source::MediaSource::start) with a [`SourceSpec`]
//!    (`Test`, `File`, `Wav`, `Srt` ingest, `Device` capture) and [`EncodeSettings`]. Its
//!    [`catalog`](source::MediaSource::catalog) lists the tracks (video
//!    [`VIDEO_TRACK`](treecast_relay::proto::media::VIDEO_TRACK) H.264, audio
//!    [`AUDIO_TRACK`](treecast_relay::proto::media::AUDIO_TRACK) Opus) — publish it first.
//! 3. Loop on `source.next().await`: each [`EncodedUnit`](treecast_relay::proto::media::EncodedUnit)
//!    goes through the relay's `Packager` (which assigns groups and sequence numbers) and
//!    into the tree. `None` means the source ended.
//! 4. [`stop`](source::MediaSource::stop) (or drop) releases the pipeline.
//!
//! Timestamps are microseconds of the source's running time (one base for all tracks);
//! `capture_us` is the Unix wall clock at capture.
//!
//! # Viewer: [`player::Player`]
//!
//! 1. [`Player::new`](player::Player::new) with the received catalog and a
//!    [`PlayerConfig`] (`headless` for servers/tests, `record` to also
//!    write a Matroska file, `output` to re-serve MPEG-TS over UDP/SRT, `buffer` playout
//!    delay, `joined_at` for time-to-first-frame). A catalog with a text track gets a
//!    message overlay: [`show_message`](player::Player::show_message).
//! 2. [`push`](player::Player::push) each received frame (per track in sequence order; gaps
//!    are fine and are counted as lost).
//! 3. [`stats`](player::Player::stats) for a live status line; [`error`](player::Player::error)
//!    to poll for a pipeline failure (`push` also returns it).
//! 4. [`finish`](player::Player::finish) drains the pipeline, finalises the recording and
//!    returns a [`PlayerReport`] (frames rendered, first-frame time,
//!    stalls, loss, latency percentiles).
//!
//! # Errors
//!
//! Everything returns [`MediaError`]. A missing GStreamer plugin is reported with the Debian
//! package to install (see [`elements`]).

pub mod elements;
mod error;
pub mod player;
pub mod source;
mod timing;

pub use error::MediaError;
pub use player::{
    LATE_FRAME, LatencySummary, MAX_REBUFFERED, Player, PlayerConfig, PlayerReport, PlayerStats,
    STALL_GAP,
};
pub use source::{EncodeSettings, MediaSource, SourceSpec};

/// Initialises GStreamer. Idempotent and cheap after the first call.
pub fn init() -> Result<(), MediaError> {
    gstreamer::init().map_err(|e| MediaError::Init(e.to_string()))
}
