//! Time conversions shared by sources and the player: GStreamer clock time ↔ Unix wall
//! clock, and nanosecond/microsecond helpers.

use std::time::{SystemTime, UNIX_EPOCH};

use gstreamer as gst;
use gstreamer::prelude::*;

/// Microseconds since the Unix epoch, now (0 if the system clock is before 1970).
pub(crate) fn unix_now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// A (GStreamer clock time, Unix time) pair taken at the same instant, used to turn later
/// clock times into wall-clock capture times without reading the wall clock per buffer
/// (so capture times follow the monotonic pipeline clock, not NTP steps).
#[derive(Clone, Copy, Debug)]
pub(crate) struct WallClockAnchor {
    clock_ns: u64,
    unix_us: u64,
}

impl WallClockAnchor {
    /// Anchors `clock`'s current time to the current wall-clock time.
    pub(crate) fn now(clock: &gst::Clock) -> Self {
        WallClockAnchor {
            clock_ns: clock.time().nseconds(),
            unix_us: unix_now_us(),
        }
    }

    /// The Unix time (µs) corresponding to clock time `clock_ns`.
    pub(crate) fn unix_us_at(&self, clock_ns: u64) -> u64 {
        let delta_us = (i128::from(clock_ns) - i128::from(self.clock_ns)) / 1000;
        let unix = i128::from(self.unix_us) + delta_us;
        u64::try_from(unix.max(0)).unwrap_or(u64::MAX)
    }
}

/// Nanoseconds to microseconds (truncating).
pub(crate) fn ns_to_us(ns: u64) -> u64 {
    ns / 1000
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn anchor_maps_clock_offsets() {
        let a = WallClockAnchor {
            clock_ns: 5_000_000_000,
            unix_us: 1_700_000_000_000_000,
        };
        assert_eq!(a.unix_us_at(5_000_000_000), 1_700_000_000_000_000);
        assert_eq!(a.unix_us_at(5_001_000_000), 1_700_000_000_001_000);
        assert_eq!(a.unix_us_at(4_999_000_000), 1_699_999_999_999_000);
        assert_eq!(ns_to_us(1_999), 1);
    }
}
