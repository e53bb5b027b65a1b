//! treecast-relay: everything that moves media between treecast peers.
//!
//! - [`proto`]: the sans-IO core (media model, wire codec, ordering, cache, queue policy).
//!   Deterministic, no IO; driven by the node below and by tests.
//! - [`node`]: the async QUIC node (quinn + rustls) that drives the core: it accepts
//!   children, keeps a session with its parent, caches and forwards frames.
//! - [`web`]: a node's Prometheus metrics and status page over HTTP.
//!
//! This crate has no GStreamer dependency: a relay-only binary needs nothing else.
pub mod node;
pub mod proto;
pub mod sim;
pub mod web;

/// A starting instant for the unit tests of the sans-IO core (`proto`), which never reads
/// a clock itself: its tests pass times in, as its drivers do.
#[cfg(test)]
pub(crate) fn test_epoch() -> std::time::Instant {
    std::time::Instant::now()
}
