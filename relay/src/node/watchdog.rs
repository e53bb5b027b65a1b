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
/// `every`), or for three times the longest silence seen recently if that is longer.
///
/// Silence is only believed while this node itself was running: if a check comes late
/// (the runtime was starved of CPU, so packets may be sitting unread in the socket), the
/// silence measured so far is discarded. And a peer whose packets have lately come in
/// bursts with long pauses (an overloaded peer) is given correspondingly longer. Without
/// both, an overloaded node or peer would be taken for dead and the repairs it set off
/// would spread the overload.
pub(crate) async fn silent_for(conn: &quinn::Connection, limit: Duration, every: Duration) {
    let mut seen = conn.stats().udp_rx.datagrams;
    let mut last_change = Instant::now();
    let mut last_tick = last_change;
    // The longest pause between arrivals lately; it decays by half every 5 s. A new
    // session starts as if it had seen a pause of `limit`: a parent that has just taken
    // us on is busy (handshake, catalog, the cached groups) and gets 3x the limit at
    // first, the plain limit after about ten seconds.
    let mut longest = limit;
    let mut decay_at = last_change + DECAY;
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let now = Instant::now();
        let late = now.duration_since(last_tick) > every * 2;
        last_tick = now;
        if now >= decay_at {
            longest /= 2;
            decay_at = now + DECAY;
        }
        let now_seen = conn.stats().udp_rx.datagrams;
        if now_seen != seen {
            longest = longest.max(now.duration_since(last_change));
            seen = now_seen;
            last_change = now;
        } else if late {
            last_change = now;
        } else if now.duration_since(last_change) >= limit.max(longest * 3) {
            return;
        }
    }
}

const DECAY: Duration = Duration::from_secs(5);
