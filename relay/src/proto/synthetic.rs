//! A synthetic workload: fixed-size frames at a fixed rate in fixed-length groups.
//!
//! This is the reference relay workload of DESIGN.md (30 fps, 8,333-byte frames = 2 Mbps,
//! 60-frame groups) and what `publish --source synthetic:...` sends. It needs no media
//! libraries. The caller paces it; this only builds the units.

use bytes::Bytes;

use super::media::{Catalog, Codec, EncodedUnit, TrackInfo, VIDEO_TRACK};

/// Parameters of the synthetic stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SyntheticSpec {
    /// Frames per second.
    pub fps: u32,
    /// Payload bytes per frame.
    pub frame_size: usize,
    /// Frames per group (the first of each is a keyframe).
    pub group_len: u32,
}

impl Default for SyntheticSpec {
    fn default() -> Self {
        SyntheticSpec {
            fps: 30,
            frame_size: 8333,
            group_len: 60,
        }
    }
}

/// Why a synthetic spec string is not valid.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error(
    "invalid synthetic source {0:?}: expected synthetic[:fps=N][,size=BYTES][,group=FRAMES], all above zero"
)]
pub struct SyntheticSpecError(pub String);

impl std::str::FromStr for SyntheticSpec {
    type Err = SyntheticSpecError;
    /// Parses `fps=30,size=8333,group=60` (any subset, any order).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || SyntheticSpecError(s.to_string());
        let mut spec = SyntheticSpec::default();
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (k, v) = part.split_once('=').ok_or_else(err)?;
            let n: u64 = v.trim().parse().map_err(|_| err())?;
            if n == 0 {
                return Err(err());
            }
            match k.trim() {
                "fps" => spec.fps = u32::try_from(n).map_err(|_| err())?,
                "size" => spec.frame_size = usize::try_from(n).map_err(|_| err())?,
                "group" => spec.group_len = u32::try_from(n).map_err(|_| err())?,
                _ => return Err(err()),
            }
        }
        if spec.frame_size > 4 * 1024 * 1024 - 64 {
            return Err(err());
        }
        Ok(spec)
    }
}

impl SyntheticSpec {
    /// The catalog of a synthetic broadcast (one opaque track).
    pub fn catalog(&self, name: &str) -> Catalog {
        Catalog {
            name: name.to_string(),
            tracks: vec![TrackInfo {
                id: VIDEO_TRACK,
                name: "synthetic".into(),
                codec: Codec::Opaque,
                bitrate: self.bitrate(),
            }],
            ..Default::default()
        }
    }

    /// Bits per second.
    pub fn bitrate(&self) -> u64 {
        self.frame_size as u64 * 8 * u64::from(self.fps)
    }

    /// Microseconds between frames.
    pub fn interval_us(&self) -> u64 {
        1_000_000 / u64::from(self.fps.max(1))
    }

    /// The `index`-th frame, captured at `capture_us` (Unix microseconds). The payload
    /// starts with the index so receivers can check integrity.
    pub fn unit(&self, index: u64, capture_us: u64) -> EncodedUnit {
        let mut payload = vec![(index % 251) as u8; self.frame_size];
        let idx = index.to_be_bytes();
        let n = idx.len().min(payload.len());
        payload[..n].copy_from_slice(&idx[..n]);
        let pts = index * self.interval_us();
        EncodedUnit {
            track: VIDEO_TRACK,
            pts,
            dts: pts,
            duration: self.interval_us() as u32,
            keyframe: index.is_multiple_of(u64::from(self.group_len.max(1))),
            capture_us,
            payload: Bytes::from(payload),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse() {
        assert_eq!(
            "".parse::<SyntheticSpec>().unwrap(),
            SyntheticSpec::default()
        );
        let s: SyntheticSpec = "fps=60, size=1000,group=30".parse().unwrap();
        assert_eq!((s.fps, s.frame_size, s.group_len), (60, 1000, 30));
        assert!("fps=0".parse::<SyntheticSpec>().is_err());
        assert!("fps=x".parse::<SyntheticSpec>().is_err());
        assert!("bogus=1".parse::<SyntheticSpec>().is_err());
        assert_eq!(SyntheticSpec::default().bitrate(), 1_999_920);
    }

    #[test]
    fn units() {
        let s = SyntheticSpec {
            fps: 30,
            frame_size: 100,
            group_len: 3,
        };
        let u = s.unit(3, 7);
        assert!(u.keyframe);
        assert!(!s.unit(4, 7).keyframe);
        assert_eq!(u.pts, 3 * 33_333);
        assert_eq!(&u.payload[..8], &3u64.to_be_bytes());
    }
}
