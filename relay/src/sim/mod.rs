//! A deterministic simulator of the overlay at scale, in virtual time.
//!
//! It drives N instances of the shipped sans-IO [`Overlay`](crate::proto::overlay::Overlay)
//! (the same code the QUIC node runs) over a modelled world network, lets segments of a
//! live stream flow down the tree they build, and measures the result.
//!
//! - [`world`]: regions weighted by population, great-circle RTTs with access delay and
//!   jitter, the upload capacity mix, the seeded RNG.
//! - [`events`]: the virtual-time event queue.
//! - [`driver`]: maps overlay actions to delayed messages and back to `handle_*` calls.
//! - [`media`]: segments through the tree with link delay and upload limits; repairs
//!   resume from the cache, continuity is measured per segment.
//! - [`scenario`]: steady, flash crowd, churn, mass failure, origin-children crash.
//! - [`metrics`], [`outcome`]: distributions and the end-of-run analysis (invariants too).
//! - [`report`], [`svg`]: the Markdown table and the plots.
//!
//! Same [`SimConfig`] (seed included), same bytes out: the RNG is seeded, iteration is in
//! index order, and no wall clock enters the results.
//!
//! ```no_run
//! use treecast_relay::sim::{SimConfig, Scenario, run};
//! let cfg = SimConfig { peers: 1000, scenario: Scenario::Churn, ..SimConfig::default() };
//! let outcome = run(cfg);
//! println!("{}", treecast_relay::sim::report::markdown(&outcome));
//! ```

pub mod driver;
pub mod events;
pub mod media;
pub mod metrics;
pub mod outcome;
pub mod report;
pub mod scenario;
pub mod svg;
pub mod world;

use std::time::Duration;

pub use outcome::Outcome;
pub use scenario::Scenario;

use crate::proto::overlay::OverlayConfig;

/// What to simulate.
#[derive(Clone, Debug)]
pub struct SimConfig {
    /// Seeds every random choice.
    pub seed: u64,
    /// Audience size (peers besides the origin; under churn, the average audience).
    pub peers: usize,
    /// What happens.
    pub scenario: Scenario,
    /// Virtual time simulated.
    pub duration: Duration,
    /// Playout buffer for the continuity index.
    pub buffer: Duration,
    /// Children the origin accepts.
    pub origin_capacity: u32,
    /// The overlay's tunables (the shipped defaults unless changed).
    pub overlay: OverlayConfig,
    /// How long a crashed peer takes to be noticed (the node's idle timeout).
    pub idle_timeout: Duration,
    /// How long a leaving peer waits for its children to move.
    pub leave_timeout: Duration,
    /// How long a connection attempt to a dead peer takes to fail.
    pub connect_timeout: Duration,
    /// Stream rate, kbit/s (video + audio).
    pub stream_kbps: u32,
    /// Segment duration (the media model's granularity).
    pub segment: Duration,
    /// Keyframe interval (one cached group).
    pub keyframe_interval: Duration,
    /// Groups each node caches.
    pub cache_groups: u32,
    /// Assumed bytes of a QUIC+TLS handshake (reported apart from the control messages).
    pub handshake_bytes: u32,
}

impl Default for SimConfig {
    /// The shipped node's defaults: 1.5 Mbit/s video + 64 kbit/s audio, 2 s keyframes,
    /// 2 cached groups, 300 ms idle timeout, 3 s leave timeout.
    fn default() -> Self {
        SimConfig {
            seed: 1,
            peers: 1000,
            scenario: Scenario::Steady,
            duration: Duration::from_secs(120),
            buffer: Duration::from_secs(2),
            origin_capacity: 8,
            overlay: OverlayConfig::default(),
            idle_timeout: Duration::from_millis(300),
            leave_timeout: Duration::from_secs(3),
            connect_timeout: Duration::from_secs(5),
            stream_kbps: 1564,
            segment: Duration::from_millis(200),
            keyframe_interval: Duration::from_secs(2),
            cache_groups: 2,
            handshake_bytes: 4000,
        }
    }
}

impl SimConfig {
    /// Stream rate in bits per second.
    pub fn stream_bps(&self) -> f64 {
        f64::from(self.stream_kbps) * 1000.0
    }
}

/// Why a configuration cannot run.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConfigError {
    /// No audience.
    #[error("--peers must be at least 1")]
    NoPeers,
    /// Too many peers for the index space.
    #[error("--peers must be at most 10000000")]
    TooManyPeers,
    /// Too short to measure anything.
    #[error("--duration must be at least 10s (got {0:?})")]
    TooShort(Duration),
    /// A segment must be a positive fraction of a keyframe interval.
    #[error("segment duration must be above zero and divide the keyframe interval")]
    BadSegment,
    /// The origin must accept someone.
    #[error("--origin-capacity must be at least 1")]
    NoOriginCapacity,
}

impl SimConfig {
    /// Checks the configuration.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.peers == 0 {
            return Err(ConfigError::NoPeers);
        }
        if self.peers > 10_000_000 {
            return Err(ConfigError::TooManyPeers);
        }
        if self.duration < Duration::from_secs(10) {
            return Err(ConfigError::TooShort(self.duration));
        }
        let seg = self.segment.as_micros();
        if seg == 0 || !self.keyframe_interval.as_micros().is_multiple_of(seg) {
            return Err(ConfigError::BadSegment);
        }
        if self.origin_capacity == 0 {
            return Err(ConfigError::NoOriginCapacity);
        }
        Ok(())
    }
}

/// Runs one simulation to the end and analyses it.
///
/// Panics if the configuration is invalid: check it with [`SimConfig::validate`].
pub fn run(cfg: SimConfig) -> Outcome {
    run_with_progress(cfg, &mut |_, _, _| {})
}

/// [`run`], calling `progress` with (virtual seconds, peers alive, events pending) every
/// 10 virtual seconds.
pub fn run_with_progress(cfg: SimConfig, progress: &mut dyn FnMut(f64, u64, usize)) -> Outcome {
    assert_eq!(cfg.validate(), Ok(()), "invalid simulation config");
    let mut sim = driver::Sim::new(cfg);
    sim.run(progress);
    outcome::analyse(sim)
}
