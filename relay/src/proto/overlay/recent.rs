//! A short, bounded memory of nodes and when something happened to them.

use std::time::{Duration, Instant};

use crate::proto::id::NodeId;

/// Nodes noted lately (each once, with the latest instant), at most `max`, the oldest
/// dropped first. Entries older than the `keep_for` a query gives do not count.
#[derive(Debug)]
pub(super) struct Recent {
    max: usize,
    entries: Vec<(NodeId, Instant)>,
}

impl Recent {
    pub fn new(max: usize) -> Self {
        Recent {
            max,
            entries: Vec::new(),
        }
    }

    /// Notes `id` at `now`, dropping entries older than `keep_for`.
    pub fn note(&mut self, now: Instant, id: NodeId, keep_for: Duration) {
        self.entries
            .retain(|(n, at)| *n != id && now.saturating_duration_since(*at) < keep_for);
        if self.entries.len() >= self.max {
            self.entries.remove(0);
        }
        self.entries.push((id, now));
    }

    /// The nodes noted within `keep_for` of `now`.
    pub fn within(&self, now: Instant, keep_for: Duration) -> impl Iterator<Item = &NodeId> {
        self.entries
            .iter()
            .filter(move |(_, at)| now.saturating_duration_since(*at) < keep_for)
            .map(|(n, _)| n)
    }

    pub fn clear(&mut self) {
        self.entries.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_latest_few_within_the_window() {
        let t0 = crate::test_epoch();
        let s = Duration::from_secs(1);
        let id = |b: u8| NodeId::from_bytes([b; 32]);
        let mut r = Recent::new(2);
        r.note(t0, id(1), 5 * s);
        r.note(t0 + s, id(2), 5 * s);
        r.note(t0 + 2 * s, id(1), 5 * s);
        let now: Vec<NodeId> = r.within(t0 + 2 * s, 5 * s).copied().collect();
        assert_eq!(now, [id(2), id(1)]);
        // A third pushes out the oldest.
        r.note(t0 + 3 * s, id(3), 5 * s);
        let now: Vec<NodeId> = r.within(t0 + 3 * s, 5 * s).copied().collect();
        assert_eq!(now, [id(1), id(3)]);
        // Past the window, nothing counts.
        assert_eq!(r.within(t0 + 9 * s, 5 * s).count(), 0);
    }
}
