//! Noticing a silent peer faster than the QUIC idle timeout.
//!
//! Peers send keep-alives every `keep_alive`, and media flows far more often, so a
//! connection on which nothing arrives for a few keep-alive intervals belongs to a peer
//! that has crashed. A parent watches its children with a shorter limit than children
//! watch their parent: when a node crashes, its parent frees the slot a moment before
//! the orphans come asking for it.

use std::time::Duration;

use tokio::time::Instant;

/// Resolves once nothing has been received on `conn` for `limit` (checking every
/// `every`).
///
/// Silence is only believed while this node itself was running: if a check comes late
/// (the runtime was starved of CPU, so packets may be sitting unread in the socket), the
/// silence measured so far is discarded. Otherwise an overloaded node would take all its
/// peers for dead at once and set off a storm of repairs.
pub(crate) async fn silent_for(conn: &quinn::Connection, limit: Duration, every: Duration) {
    let mut seen = conn.stats().udp_rx.datagrams;
    let mut last_change = Instant::now();
    let mut last_tick = last_change;
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let now = Instant::now();
        let late = now.duration_since(last_tick) > every * 2;
        last_tick = now;
        let now_seen = conn.stats().udp_rx.datagrams;
        if now_seen != seen || late {
            seen = now_seen;
            last_change = now;
        } else if now.duration_since(last_change) >= limit {
            return;
        }
    }
}
