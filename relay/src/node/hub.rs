//! The hub: where frames enter a node (from its parent or its source) and fan out to every
//! subscriber (children and the local player), each through its own bounded queue.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use tokio::sync::{Notify, broadcast};

use super::events::NodeEvent;
use super::identity::NodeId;
use crate::proto::cache::{Admit, GroupCache};
use crate::proto::control::ResumePoint;
use crate::proto::media::{Frame, TrackId};
use crate::proto::send_queue::{DropStats, QueueLimits, SendQueue};

/// Locks a mutex, recovering the data if a panicking thread poisoned it (the state is
/// plain data that stays consistent between statements).
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Counters shared by the node's tasks.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub frames_in: AtomicU64,
    pub bytes_in: AtomicU64,
    pub frames_late: AtomicU64,
    pub frames_lost: AtomicU64,
    pub frames_out: AtomicU64,
    pub bytes_out: AtomicU64,
    pub dropped_frames: AtomicU64,
    pub dropped_groups: AtomicU64,
    pub protocol_errors: AtomicU64,
    pub bad_signatures: AtomicU64,
    pub undecryptable: AtomicU64,
}

/// Who a subscriber is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum SubscriberKind {
    Child(NodeId),
    Local,
}

/// One subscriber's queue and wake-ups.
#[derive(Debug)]
pub(crate) struct Subscriber {
    pub id: u64,
    pub kind: SubscriberKind,
    queue: Mutex<SendQueue>,
    ready: Notify,
    dropped: Notify,
    closed: AtomicBool,
}

impl Subscriber {
    fn new(id: u64, kind: SubscriberKind, limits: QueueLimits) -> Self {
        Subscriber {
            id,
            kind,
            queue: Mutex::new(SendQueue::new(limits)),
            ready: Notify::new(),
            dropped: Notify::new(),
            closed: AtomicBool::new(false),
        }
    }

    /// Queues a frame; true if the queue had to drop a group.
    fn push(&self, now: Instant, frame: Frame) -> bool {
        let grew = {
            let mut q = lock(&self.queue);
            let before = q.drops().groups;
            q.push(now, frame);
            q.drops().groups > before
        };
        self.ready.notify_one();
        if grew {
            self.dropped.notify_one();
        }
        grew
    }

    /// The next frame, waiting for one; `None` once closed and drained.
    pub async fn next(&self) -> Option<Frame> {
        loop {
            if let Some(f) = lock(&self.queue).pop() {
                return Some(f);
            }
            if self.closed.load(Ordering::Acquire) {
                return None;
            }
            self.ready.notified().await;
        }
    }

    /// Resolves when the queue has dropped a group (the sender checks [`Self::is_stale`]).
    pub async fn group_dropped(&self) {
        self.dropped.notified().await;
    }

    /// Whether this group has been dropped for this subscriber.
    pub fn is_stale(&self, track: TrackId, group: u64) -> bool {
        lock(&self.queue).is_stale(track, group)
    }

    /// What this subscriber's queue dropped.
    pub fn drops(&self) -> DropStats {
        lock(&self.queue).drops()
    }

    pub fn close(&self) {
        self.closed.store(true, Ordering::Release);
        self.ready.notify_one();
    }
}

/// The cache and the subscribers.
#[derive(Debug)]
pub(crate) struct Hub {
    cache: GroupCache,
    subscribers: HashMap<u64, Arc<Subscriber>>,
    next_id: u64,
}

impl Hub {
    pub fn new(cache_groups: usize) -> Self {
        Hub {
            cache: GroupCache::new(cache_groups),
            subscribers: HashMap::new(),
            next_id: 0,
        }
    }

    /// Takes in a frame: into the cache and every subscriber's queue. Returns what the
    /// cache made of it.
    pub fn ingest(
        &mut self,
        now: Instant,
        frame: Frame,
        counters: &Counters,
        events: &broadcast::Sender<NodeEvent>,
    ) -> Admit {
        let admit = self.cache.admit(&frame);
        match admit {
            Admit::Late => {
                counters.frames_late.fetch_add(1, Ordering::Relaxed);
            }
            Admit::Accepted { lost } => {
                // Counted before any subscriber can see the frame, so whoever reads the
                // frame also reads a count that includes it.
                counters.frames_in.fetch_add(1, Ordering::Relaxed);
                counters
                    .bytes_in
                    .fetch_add(frame.payload.len() as u64, Ordering::Relaxed);
                counters.frames_lost.fetch_add(lost, Ordering::Relaxed);
                for s in self.subscribers.values() {
                    if s.push(now, frame.clone()) {
                        let child = match s.kind {
                            SubscriberKind::Child(id) => Some(id),
                            SubscriberKind::Local => None,
                        };
                        let _ = events.send(NodeEvent::GroupDropped { child });
                    }
                }
            }
        }
        admit
    }

    /// Adds a subscriber that starts with the cached frames selected by `resume`.
    pub fn subscribe(
        &mut self,
        now: Instant,
        kind: SubscriberKind,
        limits: QueueLimits,
        resume: &[ResumePoint],
    ) -> Arc<Subscriber> {
        let id = self.next_id;
        self.next_id += 1;
        let s = Arc::new(Subscriber::new(id, kind, limits));
        for f in self.cache.start_frames(resume) {
            let _ = s.push(now, f);
        }
        self.subscribers.insert(id, s.clone());
        s
    }

    /// Removes a subscriber; returns it if it was present.
    pub fn unsubscribe(&mut self, id: u64) -> Option<Arc<Subscriber>> {
        let s = self.subscribers.remove(&id)?;
        s.close();
        Some(s)
    }

    pub fn children(&self) -> impl Iterator<Item = &Arc<Subscriber>> {
        self.subscribers
            .values()
            .filter(|s| matches!(s.kind, SubscriberKind::Child(_)))
    }

    pub fn child_count(&self) -> usize {
        self.children().count()
    }

    pub fn resume_points(&self) -> Vec<ResumePoint> {
        self.cache.resume_points()
    }

    pub fn cache_bytes(&self) -> usize {
        self.cache.bytes()
    }

    pub fn close_all(&mut self) {
        for s in self.subscribers.values() {
            s.close();
        }
    }
}
