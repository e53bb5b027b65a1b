//! The media model: tracks, groups and frames (see DESIGN.md, "Media model").
//!
//! A broadcast has tracks. Each track is a sequence of *groups*; a group starts at a
//! keyframe. Frames carry a per-track sequence number that increases by one for every frame
//! the origin emits on that track, across groups, so any receiver can detect loss (a gap)
//! and order (never deliver a sequence number twice or backwards).
//!
//! Timestamps are microseconds of the origin's running time (one time base for all tracks,
//! which is what keeps audio and video in sync at the player). `capture_us` is the origin's
//! wall clock (microseconds since the Unix epoch) when the frame was captured, used to
//! measure glass-to-glass latency.

use bytes::Bytes;
use serde::{Deserialize, Serialize};

/// Identifies a track within a broadcast. Small integers: 0 video, 1 audio by convention.
pub type TrackId = u32;

/// Conventional track id of the video track.
pub const VIDEO_TRACK: TrackId = 0;
/// Conventional track id of the audio track.
pub const AUDIO_TRACK: TrackId = 1;

/// One encoded media frame (an H.264 access unit or an Opus packet).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Frame {
    /// Track this frame belongs to.
    pub track: TrackId,
    /// Group sequence number (increases by one per group on this track).
    pub group: u64,
    /// Frame sequence number on this track (increases by one per frame, across groups).
    pub seq: u64,
    /// Presentation timestamp, microseconds of origin running time.
    pub pts: u64,
    /// Decode timestamp, microseconds of origin running time (`<= pts`).
    pub dts: u64,
    /// Duration in microseconds (0 if unknown).
    pub duration: u32,
    /// True for the first frame of a group (a keyframe / independently decodable frame).
    pub keyframe: bool,
    /// Origin wall-clock capture time, microseconds since the Unix epoch.
    pub capture_us: u64,
    /// The encoded payload. Shared, never copied on the forwarding path.
    pub payload: Bytes,
    /// The origin's signature over all of the above (see [`super::trust::sign`]).
    pub signature: Option<[u8; 64]>,
}

impl Frame {
    /// Bytes this frame occupies in memory queues (payload plus a fixed header estimate);
    /// used for the per-child queue bounds.
    pub fn queued_size(&self) -> usize {
        self.payload.len() + 64 + if self.signature.is_some() { 64 } else { 0 }
    }
}

/// What a track carries and how to decode it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "codec", rename_all = "lowercase")]
pub enum Codec {
    /// H.264, Annex-B byte stream, one access unit per frame, SPS/PPS before every IDR.
    H264 {
        /// Picture width in pixels.
        width: u32,
        /// Picture height in pixels.
        height: u32,
        /// Frame rate numerator.
        fps_num: u32,
        /// Frame rate denominator.
        fps_den: u32,
    },
    /// Raw Opus packets (no container), 48 kHz clock.
    Opus {
        /// Sample rate of the decoded audio (Opus always uses 48000 internally).
        sample_rate: u32,
        /// Channel count (1 or 2).
        channels: u8,
    },
    /// Opaque bytes (synthetic workloads, data tracks).
    Opaque,
    /// Text messages (see [`super::text`]): one message per group, with the last few
    /// repeated so late joiners see them.
    Text,
}

/// Description of one track.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TrackInfo {
    /// Track id used in frames.
    pub id: TrackId,
    /// Human-readable name ("video", "audio").
    pub name: String,
    /// Codec and its parameters.
    #[serde(flatten)]
    pub codec: Codec,
    /// Nominal bitrate in bits per second (0 if unknown).
    pub bitrate: u64,
}

/// The list of tracks of a broadcast, sent to every subscriber before any media.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Catalog {
    /// Broadcast name given by the publisher.
    pub name: String,
    /// The tracks.
    pub tracks: Vec<TrackInfo>,
    /// The stream (`KEY/NAME`) whose publisher signed this catalog and every frame.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream: Option<String>,
    /// Present when payloads are encrypted: the epoch of this origin run, from which
    /// viewers derive the payload key (see [`super::trust::seal`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sealed_epoch: Option<u64>,
    /// Joining needs a token signed by the publisher (see [`super::trust::token`]).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub private: bool,
}

impl Catalog {
    /// The track with this id, if any.
    pub fn track(&self, id: TrackId) -> Option<&TrackInfo> {
        self.tracks.iter().find(|t| t.id == id)
    }
}

/// A catalog as the origin published it: the exact JSON bytes it signed, the parsed
/// catalog and the signature. Relays forward the bytes unchanged.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SignedCatalog {
    /// The parsed catalog.
    pub catalog: Catalog,
    /// Its JSON encoding, as signed.
    pub json: Bytes,
    /// The publisher's signature over `json` (see [`super::trust::sign`]).
    pub signature: Option<[u8; 64]>,
}

impl SignedCatalog {
    /// A catalog without a signature.
    pub fn unsigned(catalog: Catalog) -> SignedCatalog {
        // Serialising our own plain data structure cannot fail.
        let json = Bytes::from(serde_json::to_vec(&catalog).unwrap_or_default());
        SignedCatalog {
            catalog,
            json,
            signature: None,
        }
    }

    /// A catalog signed by `key` for the stream with tag `stream`.
    pub fn signed(
        catalog: Catalog,
        key: &super::trust::PublisherKey,
        stream: &[u8; 32],
    ) -> SignedCatalog {
        let mut c = SignedCatalog::unsigned(catalog);
        c.signature = Some(key.sign_catalog(stream, &c.json));
        c
    }
}

/// An encoded unit as produced by an encoder, before the origin assigns group and sequence
/// numbers (see [`Packager`]).
#[derive(Clone, Debug)]
pub struct EncodedUnit {
    /// Track this unit belongs to.
    pub track: TrackId,
    /// Presentation timestamp, microseconds of origin running time.
    pub pts: u64,
    /// Decode timestamp, microseconds of origin running time.
    pub dts: u64,
    /// Duration in microseconds (0 if unknown).
    pub duration: u32,
    /// Whether the unit can start decoding on its own (H.264 IDR; audio: always true).
    pub keyframe: bool,
    /// Origin wall-clock capture time, microseconds since the Unix epoch.
    pub capture_us: u64,
    /// Encoded bytes.
    pub payload: Bytes,
}

/// Assigns group and sequence numbers at the origin.
///
/// Video groups start at every keyframe. Tracks that are always independently decodable
/// (audio) start a new group at their first unit whose timestamp reaches the latest video
/// keyframe, so audio and video groups line up; in an audio-only broadcast they start
/// every `audio_group_us`.
#[derive(Debug)]
pub struct Packager {
    video_track: Option<TrackId>,
    audio_group_us: u64,
    last_video_key_pts: Option<u64>,
    tracks: Vec<PackTrack>,
}

#[derive(Debug)]
struct PackTrack {
    id: TrackId,
    next_seq: u64,
    group: Option<u64>,
    group_start_pts: u64,
}

impl Packager {
    /// A packager whose groups follow `video_track`'s keyframes (if any), otherwise start
    /// every `audio_group_us` microseconds.
    pub fn new(video_track: Option<TrackId>, audio_group_us: u64) -> Self {
        Packager {
            video_track,
            audio_group_us: audio_group_us.max(1),
            last_video_key_pts: None,
            tracks: Vec::new(),
        }
    }

    /// Turns an encoded unit into a frame. Returns `None` for units that cannot start a
    /// stream (video before its first keyframe).
    pub fn pack(&mut self, unit: EncodedUnit) -> Option<Frame> {
        let is_video = Some(unit.track) == self.video_track;
        if is_video && unit.keyframe {
            self.last_video_key_pts = Some(unit.pts);
        }
        let idx = match self.tracks.iter().position(|t| t.id == unit.track) {
            Some(i) => i,
            None => {
                self.tracks.push(PackTrack {
                    id: unit.track,
                    next_seq: 0,
                    group: None,
                    group_start_pts: 0,
                });
                self.tracks.len() - 1
            }
        };
        let last_key = self.last_video_key_pts;
        let audio_group_us = self.audio_group_us;
        let has_video = self.video_track.is_some();
        let t = &mut self.tracks[idx];
        let starts_group = if is_video {
            unit.keyframe
        } else if has_video {
            // Follow video: a new group once this track reaches the latest video keyframe.
            match (t.group, last_key) {
                (None, Some(_)) => true,
                (None, None) => false,
                (Some(_), Some(k)) => unit.pts >= k && t.group_start_pts < k,
                (Some(_), None) => false,
            }
        } else {
            t.group.is_none() || unit.pts >= t.group_start_pts.saturating_add(audio_group_us)
        };
        if starts_group {
            t.group = Some(t.group.map_or(0, |g| g + 1));
            t.group_start_pts = unit.pts;
        }
        let group = t.group?;
        let seq = t.next_seq;
        t.next_seq += 1;
        Some(Frame {
            track: unit.track,
            group,
            seq,
            pts: unit.pts,
            dts: unit.dts,
            duration: unit.duration,
            keyframe: starts_group,
            capture_us: unit.capture_us,
            payload: unit.payload,
            signature: None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unit(track: TrackId, pts: u64, keyframe: bool) -> EncodedUnit {
        EncodedUnit {
            track,
            pts,
            dts: pts,
            duration: 0,
            keyframe,
            capture_us: 0,
            payload: Bytes::from_static(b"x"),
        }
    }

    #[test]
    fn audio_groups_follow_video_keyframes() {
        let mut p = Packager::new(Some(VIDEO_TRACK), 1_000_000);
        // Audio before any video keyframe cannot start a group.
        assert!(p.pack(unit(AUDIO_TRACK, 0, true)).is_none());
        // Video delta before keyframe is dropped too.
        assert!(p.pack(unit(VIDEO_TRACK, 0, false)).is_none());
        let v = p.pack(unit(VIDEO_TRACK, 33_000, true)).unwrap();
        assert_eq!((v.group, v.seq, v.keyframe), (0, 0, true));
        let a = p.pack(unit(AUDIO_TRACK, 40_000, true)).unwrap();
        assert_eq!((a.group, a.seq, a.keyframe), (0, 0, true));
        let a = p.pack(unit(AUDIO_TRACK, 60_000, true)).unwrap();
        assert_eq!((a.group, a.seq, a.keyframe), (0, 1, false));
        let v = p.pack(unit(VIDEO_TRACK, 66_000, false)).unwrap();
        assert_eq!((v.group, v.seq, v.keyframe), (0, 1, false));
        let v = p.pack(unit(VIDEO_TRACK, 2_000_000, true)).unwrap();
        assert_eq!((v.group, v.seq), (1, 2));
        let a = p.pack(unit(AUDIO_TRACK, 1_990_000, true)).unwrap();
        assert_eq!(
            a.group, 0,
            "audio before the keyframe stays in the old group"
        );
        let a = p.pack(unit(AUDIO_TRACK, 2_010_000, true)).unwrap();
        assert_eq!((a.group, a.keyframe), (1, true));
    }

    #[test]
    fn audio_only_groups_by_duration() {
        let mut p = Packager::new(None, 1_000_000);
        let groups: Vec<u64> = (0..150)
            .map(|i| p.pack(unit(AUDIO_TRACK, i * 20_000, true)).unwrap().group)
            .collect();
        assert_eq!(groups[0], 0);
        assert_eq!(groups[49], 0);
        assert_eq!(groups[50], 1);
        assert_eq!(groups[149], 2);
    }
}
