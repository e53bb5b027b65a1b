//! Reading H.264 Annex-B access units from outside encoders (SRT ingest): which NAL units
//! an access unit holds (so keyframes come from the bitstream, not from container flags),
//! and the checks that tell a broadcaster which encoder setting the tree cannot carry.

use std::time::Duration;

/// NAL unit type of an IDR slice.
const NAL_IDR: u8 = 5;
/// NAL unit type of a sequence parameter set.
const NAL_SPS: u8 = 7;

/// Longest keyframe interval accepted without a warning: a viewer joining waits up to one
/// interval for a picture, and every relay caches two of them.
pub(crate) const MAX_GOP: Duration = Duration::from_secs(10);

/// The NAL unit types of an Annex-B byte stream, in order (start codes of 3 or 4 bytes).
pub(crate) fn nal_types(au: &[u8]) -> impl Iterator<Item = (u8, &[u8])> {
    let mut i = 0usize;
    std::iter::from_fn(move || {
        // Find the next start code 00 00 01.
        while i + 3 <= au.len() {
            if au[i] == 0 && au[i + 1] == 0 && au[i + 2] == 1 {
                let start = i + 3;
                let mut end = start;
                while end + 3 <= au.len() && !(au[end] == 0 && au[end + 1] == 0 && au[end + 2] <= 1)
                {
                    end += 1;
                }
                if end + 3 > au.len() {
                    end = au.len();
                }
                i = end;
                let nal = &au[start..end];
                return nal.first().map(|h| (h & 0x1f, nal));
            }
            i += 1;
        }
        None
    })
}

/// What one access unit holds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct AuInfo {
    /// It holds an IDR slice: decoding can start here.
    pub idr: bool,
    /// `profile_idc` of the SPS it carries, if any (66 baseline, 77 main, 100 high...).
    pub sps_profile: Option<u8>,
}

/// Scans one access unit.
pub(crate) fn inspect(au: &[u8]) -> AuInfo {
    let mut info = AuInfo::default();
    for (ty, nal) in nal_types(au) {
        match ty {
            NAL_IDR => info.idr = true,
            NAL_SPS => info.sps_profile = info.sps_profile.or(nal.get(1).copied()),
            _ => {}
        }
    }
    info
}

/// The name of an H.264 `profile_idc`.
fn profile_name(idc: u8) -> String {
    match idc {
        66 => "baseline".into(),
        77 => "main".into(),
        88 => "extended".into(),
        100 => "high".into(),
        110 => "high 10".into(),
        122 => "high 4:2:2".into(),
        244 => "high 4:4:4".into(),
        other => format!("profile {other}"),
    }
}

/// What [`StreamCheck::video`] found wrong with the incoming stream.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Finding {
    /// Frames are reordered (B-frames): the tree carries frames in presentation order only.
    BFrames { profile: Option<u8> },
    /// Keyframes further apart than [`MAX_GOP`] (reported once).
    LongGop { seconds: u64 },
}

impl Finding {
    /// The message for the broadcaster, naming the setting to change.
    pub(crate) fn message(&self) -> String {
        match self {
            Finding::BFrames { profile } => format!(
                "the incoming H.264 stream uses B-frames (frames arrive out of presentation order{}); \
                 treecast relays frames in presentation order only: turn B-frames off in the encoder \
                 (OBS: Settings > Output > Output Mode Advanced > Profile baseline, or x264 options bframes=0; \
                 ffmpeg: -bf 0)",
                profile.map_or(String::new(), |p| format!(", {} profile", profile_name(p)))
            ),
            Finding::LongGop { seconds } => format!(
                "the incoming stream has keyframes {seconds} s or more apart: viewers joining wait that \
                 long for a picture; set the keyframe interval to 2 s (OBS: Settings > Output > \
                 Keyframe Interval 2; ffmpeg: -g 60 for 30 fps)"
            ),
        }
    }
}

/// Watches an incoming video stream for settings the tree cannot carry.
#[derive(Debug, Default)]
pub(crate) struct StreamCheck {
    /// The finding that stopped the stream, if any (set by the caller).
    pub fatal: Option<Finding>,
    profile: Option<u8>,
    last_key_us: Option<u64>,
    warned_gop: bool,
}

impl StreamCheck {
    /// Checks one access unit with its timestamps (µs, running time). Returns a finding
    /// the first time one applies (a long GOP only once).
    pub(crate) fn video(
        &mut self,
        info: &AuInfo,
        pts_us: u64,
        dts_us: Option<u64>,
    ) -> Option<Finding> {
        if info.sps_profile.is_some() {
            self.profile = info.sps_profile;
        }
        if dts_us.is_some_and(|d| d < pts_us) {
            return Some(Finding::BFrames {
                profile: self.profile,
            });
        }
        if info.idr {
            self.last_key_us = Some(pts_us);
            return None;
        }
        let since = pts_us.saturating_sub(self.last_key_us?);
        if !self.warned_gop && since > MAX_GOP.as_micros() as u64 {
            self.warned_gop = true;
            return Some(Finding::LongGop {
                seconds: MAX_GOP.as_secs(),
            });
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// SPS (high profile), PPS, IDR slice with 4-byte and 3-byte start codes.
    const IDR_AU: &[u8] = &[
        0, 0, 0, 1, 0x67, 100, 0, 30, 0xaa, 0, 0, 1, 0x68, 0xce, 0x3c, 0x80, 0, 0, 0, 1, 0x65,
        0x88, 0x84, 0,
    ];
    const P_AU: &[u8] = &[
        0, 0, 0, 1, 0x09, 0xf0, 0, 0, 1, 0x41, 0x9a, 0x00, 0x00, 0x03,
    ];

    #[test]
    fn finds_nal_types_and_keyframes_in_the_bitstream() {
        let types: Vec<u8> = nal_types(IDR_AU).map(|(t, _)| t).collect();
        assert_eq!(types, [7, 8, 5]);
        assert_eq!(
            inspect(IDR_AU),
            AuInfo {
                idr: true,
                sps_profile: Some(100)
            }
        );
        let types: Vec<u8> = nal_types(P_AU).map(|(t, _)| t).collect();
        assert_eq!(types, [9, 1]);
        assert_eq!(inspect(P_AU), AuInfo::default());
        assert_eq!(inspect(&[]), AuInfo::default());
        assert_eq!(inspect(&[0, 0, 1]), AuInfo::default());
        assert_eq!(inspect(&[1, 2, 3, 4, 5]), AuInfo::default());
    }

    #[test]
    fn reordered_frames_are_b_frames() {
        let mut c = StreamCheck::default();
        assert_eq!(c.video(&inspect(IDR_AU), 0, Some(0)), None);
        assert_eq!(c.video(&inspect(P_AU), 33_000, None), None);
        let f = c.video(&inspect(P_AU), 100_000, Some(66_000)).unwrap();
        assert_eq!(f, Finding::BFrames { profile: Some(100) });
        assert!(f.message().contains("-bf 0") && f.message().contains("high profile"));
    }

    #[test]
    fn long_gop_is_reported_once() {
        let mut c = StreamCheck::default();
        c.video(&inspect(IDR_AU), 0, None);
        assert_eq!(c.video(&inspect(P_AU), 9_000_000, None), None);
        let f = c.video(&inspect(P_AU), 10_500_000, None).unwrap();
        assert!(matches!(f, Finding::LongGop { .. }));
        assert!(f.message().contains("-g 60"), "{}", f.message());
        assert_eq!(c.video(&inspect(P_AU), 11_000_000, None), None);
    }
}
