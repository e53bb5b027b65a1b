//! Limits on what strangers can make a node do: connections at once, new connections per
//! second from one IP address, and requests (probes) per second on one connection.
//!
//! The limits are generous for honest peers (a whole office behind one NAT address joins
//! fine) and cut off floods: a connection over its budget is refused before the
//! handshake's work, a probe flood closes that connection with `rate_limited`.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// Bounds on incoming connections and requests.
#[derive(Clone, Copy, Debug)]
pub struct AdmissionLimits {
    /// Most connections served at once (children, probers, joiners).
    pub max_connections: usize,
    /// New connections accepted per second from one IP address (sustained).
    pub connects_per_ip_per_sec: f64,
    /// Burst of new connections from one IP address.
    pub connect_burst: f64,
    /// Requests (probes) per second on one connection (sustained).
    pub requests_per_conn_per_sec: f64,
    /// Burst of requests on one connection.
    pub request_burst: f64,
}

impl Default for AdmissionLimits {
    fn default() -> Self {
        AdmissionLimits {
            max_connections: 1024,
            connects_per_ip_per_sec: 100.0,
            connect_burst: 200.0,
            requests_per_conn_per_sec: 5.0,
            request_burst: 20.0,
        }
    }
}

/// A token bucket.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Bucket {
    tokens: f64,
    at: Instant,
}

impl Bucket {
    pub fn full(burst: f64, now: Instant) -> Bucket {
        Bucket {
            tokens: burst,
            at: now,
        }
    }

    /// Takes one token if there is one.
    pub fn take(&mut self, now: Instant, rate: f64, burst: f64) -> bool {
        let dt = now.saturating_duration_since(self.at).as_secs_f64();
        self.tokens = (self.tokens + dt * rate).min(burst);
        self.at = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// Why a connection was not admitted.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Refusal {
    TooManyConnections,
    TooFast,
}

/// Per-node admission state.
#[derive(Debug)]
pub(crate) struct Admission {
    limits: AdmissionLimits,
    open: Arc<AtomicUsize>,
    per_ip: Mutex<HashMap<IpAddr, Bucket>>,
}

/// Most IP addresses tracked; beyond it, addresses whose bucket has refilled are dropped.
const MAX_TRACKED: usize = 8192;

/// Counts one open connection until dropped.
#[derive(Debug)]
pub(crate) struct Slot(Arc<AtomicUsize>);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Admission {
    pub fn new(limits: AdmissionLimits) -> Admission {
        Admission {
            limits,
            open: Arc::new(AtomicUsize::new(0)),
            per_ip: Mutex::new(HashMap::new()),
        }
    }

    /// Admits a new connection from `ip`, or says why not.
    pub fn admit(&self, ip: IpAddr, now: Instant) -> Result<Slot, Refusal> {
        let l = &self.limits;
        {
            let mut map = self.per_ip.lock().unwrap_or_else(|e| e.into_inner());
            if map.len() >= MAX_TRACKED && !map.contains_key(&ip) {
                let full_after =
                    Duration::from_secs_f64(l.connect_burst / l.connects_per_ip_per_sec.max(1e-3));
                map.retain(|_, b| now.saturating_duration_since(b.at) < full_after);
                if map.len() >= MAX_TRACKED {
                    return Err(Refusal::TooFast);
                }
            }
            let b = map.entry(ip).or_insert(Bucket::full(l.connect_burst, now));
            if !b.take(now, l.connects_per_ip_per_sec, l.connect_burst) {
                return Err(Refusal::TooFast);
            }
        }
        let prev = self.open.fetch_add(1, Ordering::AcqRel);
        let slot = Slot(self.open.clone());
        if prev >= l.max_connections {
            return Err(Refusal::TooManyConnections);
        }
        Ok(slot)
    }

    /// A fresh request budget for one connection.
    pub fn request_bucket(&self, now: Instant) -> RequestBudget {
        RequestBudget {
            bucket: Bucket::full(self.limits.request_burst, now),
            rate: self.limits.requests_per_conn_per_sec,
            burst: self.limits.request_burst,
        }
    }
}

/// The request budget of one connection.
#[derive(Debug)]
pub(crate) struct RequestBudget {
    bucket: Bucket,
    rate: f64,
    burst: f64,
}

impl RequestBudget {
    /// Whether one more request is allowed now.
    pub fn allow(&mut self, now: Instant) -> bool {
        self.bucket.take(now, self.rate, self.burst)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn floods_are_cut_and_budgets_refill() {
        let t0 = Instant::now();
        let a = Admission::new(AdmissionLimits {
            max_connections: 3,
            connects_per_ip_per_sec: 2.0,
            connect_burst: 4.0,
            ..AdmissionLimits::default()
        });
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        let other: IpAddr = "10.0.0.2".parse().unwrap();
        let s: Vec<_> = (0..3).map(|_| a.admit(ip, t0).unwrap()).collect();
        // The node is full: a fourth is refused whoever asks.
        assert_eq!(a.admit(other, t0).unwrap_err(), Refusal::TooManyConnections);
        drop(s);
        // ip has one token of its burst of 4 left, then it must wait for the refill.
        assert!(a.admit(ip, t0).is_ok());
        assert_eq!(a.admit(ip, t0).unwrap_err(), Refusal::TooFast);
        assert!(a.admit(ip, t0 + Duration::from_millis(600)).is_ok());
        let mut r = a.request_bucket(t0);
        let allowed = (0..100).filter(|_| r.allow(t0)).count();
        assert_eq!(allowed, 20);
        assert!(r.allow(t0 + Duration::from_millis(250)));
    }
}
