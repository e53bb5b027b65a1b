//! A token bucket that paces how fast a node reads from its parent, emulating a slow
//! downlink. QUIC flow control then pushes back on the parent exactly as a slow link
//! would fill its queue. Used by tests and benchmarks (`netem` is not available here).

use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

use super::hub::lock;

/// See the module docs.
#[derive(Debug)]
pub struct Throttle {
    rate: f64,
    burst: f64,
    state: Mutex<(f64, Instant)>,
}

impl Throttle {
    /// Allows `bytes_per_sec` on average with bursts of up to `burst` bytes.
    pub fn new(bytes_per_sec: u64, burst: u64) -> Self {
        Throttle {
            rate: bytes_per_sec.max(1) as f64,
            burst: burst.max(1) as f64,
            state: Mutex::new((burst as f64, Instant::now())),
        }
    }

    /// Waits until `n` bytes may pass.
    pub async fn acquire(&self, n: usize) {
        let wait = {
            let mut s = lock(&self.state);
            let now = Instant::now();
            let (tokens, last) = *s;
            let tokens = (tokens + now.duration_since(last).as_secs_f64() * self.rate)
                .min(self.burst)
                - n as f64;
            *s = (tokens, now);
            if tokens < 0.0 {
                Duration::from_secs_f64(-tokens / self.rate)
            } else {
                Duration::ZERO
            }
        };
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
    }
}
