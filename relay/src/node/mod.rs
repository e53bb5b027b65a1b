//! The async QUIC node: quinn endpoint, rustls identities, forwarding and caching.
//!
//! A [`Node`] listens for children and, unless it is the origin, keeps a session with
//! its parent. Frames from the parent (or, at the origin, from [`Publisher::send`]) go
//! through the node's hub: into the group cache and into one bounded queue per
//! subscriber. Each child has a sender task writing one QUIC stream per group.
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use treecast_relay::node::{Identity, Node, NodeConfig};
//! // An origin:
//! let origin = Node::start(NodeConfig::new(Identity::generate()?, "127.0.0.1:0".parse()?)).await?;
//! let publisher = origin.publish(Default::default());
//! // A relay below it:
//! let mut cfg = NodeConfig::new(Identity::generate()?, "127.0.0.1:0".parse()?);
//! cfg.parent = Some(origin.addr());
//! let relay = Node::start(cfg).await?;
//! // A local consumer (what a viewer's player reads):
//! let sub = relay.subscribe_local();
//! # let _ = (publisher, sub); Ok(()) }
//! ```

mod addr;
mod child;
mod control_io;
mod driver;
mod endpoint;
mod error;
mod events;
mod hub;
mod identity;
pub mod netem;
mod probe;
mod throttle;
pub mod tls;
mod upstream;
mod watchdog;

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{Notify, broadcast, oneshot, watch};
use tracing::info;

pub use addr::{AddrError, PeerAddr};
pub use error::{NodeError, PeerError, describe_connection_error};
pub use events::NodeEvent;
pub use identity::{Identity, IdentityError, NodeId, ParseNodeIdError};

use crate::proto::cache::Admit;
use crate::proto::media::{Catalog, Frame};
use crate::proto::overlay::{Overlay, OverlayConfig, OverlayEvent};
use crate::proto::send_queue::QueueLimits;
use crate::proto::{ErrorCode, Limits};
use driver::{ChildChannels, ParentHandle};
use hub::{Counters, Hub, Subscriber, SubscriberKind, lock};
use identity::NodeId as Id;
use probe::ConnCache;
use throttle::Throttle;

/// How a node is set up.
#[derive(Clone, Debug)]
pub struct NodeConfig {
    /// The node's long-lived identity.
    pub identity: Identity,
    /// UDP address to listen on for children.
    pub listen: SocketAddr,
    /// A parent given by hand: attach to it directly (repair still uses backups).
    pub parent: Option<PeerAddr>,
    /// Nodes already in the tree to join through: the node finds its own place.
    /// A node with neither `parent` nor `join` is the origin.
    pub join: Vec<PeerAddr>,
    /// Overlay tunables (capacity and role are set from this config).
    pub overlay: OverlayConfig,
    /// Seed for the overlay's timer jitter.
    pub seed: u64,
    /// How long a leaving node waits for its children to move before it closes.
    pub leave_timeout: Duration,
    /// Most children accepted at once (0: accept none).
    pub max_children: usize,
    /// Wire decoder bounds.
    pub limits: Limits,
    /// Bounds of each child's send queue.
    pub child_queue: QueueLimits,
    /// Bounds of the local player's queue.
    pub local_queue: QueueLimits,
    /// Groups of each track kept for late joiners and resuming children.
    pub cache_groups: usize,
    /// How long to wait for a parent to answer a connection attempt.
    pub connect_timeout: Duration,
    /// A peer that sends nothing (not even keep-alives) for this long is gone.
    pub idle_timeout: Duration,
    /// Keep-alive interval (keeps idle detection working on a quiet stream).
    pub keep_alive: Duration,
    /// Experimental, off by default: a child that sends nothing for this long is taken
    /// for crashed and its slot freed (faster than the idle timeout).
    ///
    /// With 250/350 ms it cut repair times at 50-100 in-process nodes (p50 0.46 s and
    /// 0.82 s instead of 0.81 s and 1.6-2.0 s), but at 200 in-process nodes on 2 cores
    /// most orphans then failed to repair within 8 s; until that is understood it stays
    /// off.
    pub child_silence: Option<Duration>,
    /// Experimental, off by default: the same for the parent (set it longer than
    /// `child_silence`, so a crashed node's parent frees the slot before orphans ask).
    pub parent_silence: Option<Duration>,
    /// How long a peer may take to send what it must (stream headers, the subscription).
    pub peer_timeout: Duration,
    /// Emulate a slow downlink from the parent: read at most this many bytes per second.
    pub ingest_rate_limit: Option<u64>,
    /// Emulate network links (delay, jitter, loss, rate) on this node's outgoing
    /// datagrams; for tests and benchmarks, since `tc netem` is not available.
    pub link_model: Option<Arc<dyn netem::LinkModel>>,
}

impl NodeConfig {
    /// Defaults for a relay with `identity` listening on `listen`.
    pub fn new(identity: Identity, listen: SocketAddr) -> Self {
        let seed = u64::from_le_bytes(identity.id().as_bytes()[..8].try_into().unwrap_or([1; 8]));
        NodeConfig {
            identity,
            listen,
            parent: None,
            join: Vec::new(),
            overlay: OverlayConfig::default(),
            seed,
            leave_timeout: Duration::from_secs(3),
            max_children: 4,
            limits: Limits::default(),
            child_queue: QueueLimits::default(),
            local_queue: QueueLimits {
                max_bytes: 32 * 1024 * 1024,
                max_wait: Duration::from_secs(10),
            },
            cache_groups: 2,
            connect_timeout: Duration::from_secs(5),
            // A crashed parent is noticed within ~0.45 s, so that with the repair a viewer
            // with a 1 s playout buffer does not stall.
            idle_timeout: Duration::from_millis(450),
            keep_alive: Duration::from_millis(100),
            child_silence: None,
            parent_silence: None,
            peer_timeout: Duration::from_secs(5),
            ingest_rate_limit: None,
            link_model: None,
        }
    }
}

/// A snapshot of a node's counters.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize)]
pub struct NodeStats {
    /// Frames accepted from the parent or source.
    pub frames_received: u64,
    /// Bytes of payload accepted.
    pub bytes_received: u64,
    /// Frames refused as late or duplicate.
    pub frames_late: u64,
    /// Sequence numbers skipped on arrival (lost upstream).
    pub frames_lost: u64,
    /// Frames written to children.
    pub frames_forwarded: u64,
    /// Payload bytes written to children.
    pub bytes_forwarded: u64,
    /// Frames dropped from children's queues (slow children).
    pub child_dropped_frames: u64,
    /// Groups dropped from children's queues.
    pub child_dropped_groups: u64,
    /// Connections closed because the peer broke the protocol.
    pub protocol_errors: u64,
    /// Children (the slots the overlay counts against `max_children`).
    pub children: usize,
    /// Sessions served: the children plus any that gave up their slot and are still
    /// being fed until they finish moving away (briefly, during handovers).
    pub sessions: usize,
    /// Bytes held in the group cache.
    pub cache_bytes: usize,
    /// The parent, if connected.
    pub parent: Option<String>,
    /// Round-trip time to the parent, in milliseconds.
    pub parent_rtt_ms: Option<f64>,
    /// Depth in the tree (origin 0), while connected to the origin.
    pub depth: Option<u32>,
    /// Nodes in this node's subtree (itself included), as its children report.
    pub subtree: u32,
}

#[derive(Debug)]
pub(crate) struct Shared {
    pub config: NodeConfig,
    pub hub: Mutex<Hub>,
    pub counters: Counters,
    pub catalog: watch::Sender<Option<Catalog>>,
    pub shutdown: watch::Sender<bool>,
    pub throttle: Option<Throttle>,
    pub events: broadcast::Sender<NodeEvent>,
    pub overlay: Mutex<Overlay>,
    pub kick: Notify,
    pub parents: Mutex<HashMap<Id, ParentHandle>>,
    pub child_ctl: ChildChannels,
    pub conns: ConnCache,
    pub first_error: Mutex<Option<PeerError>>,
    pub entry_failures: Mutex<HashSet<Id>>,
}

impl Shared {
    pub fn emit(&self, event: NodeEvent) {
        // No receiver is fine: events are for whoever listens.
        let _ = self.events.send(event);
    }

    /// Records that a peer broke the protocol and closes its connection with `code`.
    pub fn misbehaved(&self, conn: &quinn::Connection, addr: &str, code: ErrorCode, reason: &str) {
        self.counters
            .protocol_errors
            .fetch_add(1, Ordering::Relaxed);
        self.emit(NodeEvent::PeerMisbehaved {
            addr: addr.to_string(),
            code,
            reason: reason.to_string(),
        });
        conn.close(code.value().into(), reason.as_bytes());
    }

    pub fn ingest(&self, frame: Frame) -> Admit {
        lock(&self.hub).ingest(Instant::now(), frame, &self.counters, &self.events)
    }

    pub fn is_shutting_down(&self) -> bool {
        *self.shutdown.borrow()
    }
}

/// A running node. Dropping it does not stop it: call [`Node::shutdown`].
#[derive(Debug)]
pub struct Node {
    shared: Arc<Shared>,
    endpoint: quinn::Endpoint,
    local_addr: SocketAddr,
    socket: Option<Arc<netem::EmulatedSocket>>,
}

impl Node {
    /// Binds the endpoint, and if a parent is configured, connects and subscribes to it
    /// (an error if that first attempt fails; later losses are retried).
    pub async fn start(config: NodeConfig) -> Result<Node, NodeError> {
        let (endpoint, socket) = endpoint::bind(&config)?;
        let local_addr = endpoint.local_addr().map_err(|cause| NodeError::Bind {
            addr: config.listen,
            cause,
        })?;
        let throttle = config
            .ingest_rate_limit
            .map(|r| Throttle::new(r, (r / 10).max(16 * 1024)));
        let (shutdown, _) = watch::channel(false);
        let origin = config.parent.is_none() && config.join.is_empty();
        let mut ocfg = config.overlay.clone();
        ocfg.capacity = config.max_children as u32;
        ocfg.origin = origin;
        ocfg.pinned = config.parent.is_some();
        let overlay = Overlay::new(config.identity.id(), ocfg, config.seed);
        let shared = Arc::new(Shared {
            hub: Mutex::new(Hub::new(config.cache_groups)),
            counters: Counters::default(),
            catalog: watch::channel(None).0,
            shutdown,
            throttle,
            events: broadcast::channel(4096).0,
            overlay: Mutex::new(overlay),
            kick: Notify::new(),
            parents: Mutex::new(HashMap::new()),
            child_ctl: Mutex::new(HashMap::new()),
            conns: ConnCache::default(),
            first_error: Mutex::new(None),
            entry_failures: Mutex::new(HashSet::new()),
            config,
        });
        tokio::spawn(child::accept_loop(shared.clone(), endpoint.clone()));
        let (first_tx, first_rx) = oneshot::channel();
        if !origin {
            let bootstrap: Vec<PeerAddr> = shared
                .config
                .parent
                .iter()
                .chain(&shared.config.join)
                .cloned()
                .collect();
            lock(&shared.overlay).handle_join(Instant::now(), bootstrap);
        }
        tokio::spawn(driver::run(
            shared.clone(),
            endpoint.clone(),
            Some(first_tx),
        ));
        let node = Node {
            shared,
            endpoint,
            local_addr,
            socket,
        };
        if !origin {
            // Wait for the first attach, or for every entry point to have failed.
            let limit = node.shared.config.connect_timeout * 3;
            let outcome = tokio::time::timeout(limit, first_rx).await;
            let err = match outcome {
                Ok(Ok(Ok(()))) => None,
                Ok(Ok(Err(e))) => Some(NodeError::Parent(e)),
                Ok(Err(_)) => Some(NodeError::JoinTimeout(limit)),
                Err(_) => Some(match lock(&node.shared.first_error).take() {
                    Some(e) => NodeError::Parent(e),
                    None => NodeError::JoinTimeout(limit),
                }),
            };
            if let Some(e) = err {
                node.stop_now().await;
                return Err(e);
            }
        }
        info!(id = %node.id(), addr = %local_addr, "node started");
        Ok(node)
    }

    /// This node's identity.
    pub fn id(&self) -> NodeId {
        self.shared.config.identity.id()
    }

    /// The local UDP address.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The address others use to reach this node. An unspecified listen IP is shown as
    /// loopback; pass [`Node::addr_with_host`] a reachable host for remote peers.
    pub fn addr(&self) -> PeerAddr {
        let mut a = self.local_addr;
        if a.ip().is_unspecified() {
            a.set_ip(if a.is_ipv4() {
                std::net::Ipv4Addr::LOCALHOST.into()
            } else {
                std::net::Ipv6Addr::LOCALHOST.into()
            });
        }
        PeerAddr::new(self.id(), a)
    }

    /// This node's address with another host name or IP.
    pub fn addr_with_host(&self, host: &str) -> PeerAddr {
        PeerAddr {
            id: self.id(),
            host: format!("{host}:{}", self.local_addr.port()),
        }
    }

    /// Makes this node the origin of a broadcast with `catalog`.
    pub fn publish(&self, catalog: Catalog) -> Publisher {
        self.shared.catalog.send_replace(Some(catalog));
        Publisher {
            shared: self.shared.clone(),
        }
    }

    /// Significant events from now on (joins, losses, misbehaving peers, drops).
    pub fn events(&self) -> broadcast::Receiver<NodeEvent> {
        self.shared.events.subscribe()
    }

    /// The broadcast's catalog, once known.
    pub fn catalog(&self) -> watch::Receiver<Option<Catalog>> {
        self.shared.catalog.subscribe()
    }

    /// A local consumer of the stream (the viewer's player), starting at the latest
    /// keyframe in the cache.
    pub fn subscribe_local(&self) -> LocalSubscription {
        let sub = lock(&self.shared.hub).subscribe(
            Instant::now(),
            SubscriberKind::Local,
            self.shared.config.local_queue,
            &[],
        );
        LocalSubscription {
            shared: self.shared.clone(),
            sub,
        }
    }

    /// Current counters.
    pub fn stats(&self) -> NodeStats {
        let c = &self.shared.counters;
        let hub = lock(&self.shared.hub);
        let (mut df, mut dg) = (
            c.dropped_frames.load(Ordering::Relaxed),
            c.dropped_groups.load(Ordering::Relaxed),
        );
        for s in hub.children() {
            let d = s.drops();
            df += d.frames;
            dg += d.groups;
        }
        let (parent_id, depth, subtree, children) = {
            let o = lock(&self.shared.overlay);
            (
                o.parent().map(|p| p.id),
                o.depth(),
                o.subtree_size(),
                o.child_count(),
            )
        };
        let parent = parent_id.and_then(|id| {
            lock(&self.shared.parents)
                .get(&id)
                .map(|h| (h.addr.to_string(), h.conn.rtt().as_secs_f64() * 1e3))
        });
        let depth = if self.shared.config.parent.is_none() && self.shared.config.join.is_empty() {
            Some(0)
        } else {
            depth
        };
        NodeStats {
            frames_received: c.frames_in.load(Ordering::Relaxed),
            bytes_received: c.bytes_in.load(Ordering::Relaxed),
            frames_late: c.frames_late.load(Ordering::Relaxed),
            frames_lost: c.frames_lost.load(Ordering::Relaxed),
            frames_forwarded: c.frames_out.load(Ordering::Relaxed),
            bytes_forwarded: c.bytes_out.load(Ordering::Relaxed),
            child_dropped_frames: df,
            child_dropped_groups: dg,
            protocol_errors: c.protocol_errors.load(Ordering::Relaxed),
            children,
            sessions: hub.child_count(),
            cache_bytes: hub.cache_bytes(),
            parent_rtt_ms: parent.as_ref().map(|p| p.1),
            parent: parent.map(|p| p.0),
            depth,
            subtree,
        }
    }

    /// The node's current parent, if attached.
    pub fn parent(&self) -> Option<PeerAddr> {
        lock(&self.shared.overlay).parent().cloned()
    }

    /// The node's current children.
    pub fn children(&self) -> Vec<NodeId> {
        lock(&self.shared.overlay)
            .children()
            .map(|(id, _)| *id)
            .collect()
    }

    /// Leaves in order: hands the children over to other parents, waits (up to
    /// `leave_timeout`) until they have moved, then closes.
    pub async fn shutdown(self) {
        let mut events = self.events();
        lock(&self.shared.overlay).handle_leave(Instant::now());
        self.shared.kick.notify_one();
        let handed_over = async {
            loop {
                match events.recv().await {
                    Ok(NodeEvent::Overlay(OverlayEvent::ChildrenHandedOver)) => return,
                    Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => {}
                    Err(_) => return,
                }
            }
        };
        let _ = tokio::time::timeout(self.shared.config.leave_timeout, handed_over).await;
        self.stop_now().await;
        info!(id = %self.id().short(), "node stopped");
    }

    /// Stops at once, like a crash but closing connections politely (tests use this to
    /// emulate a node that disappears; children see their parent go and repair).
    pub async fn stop_now(&self) {
        self.shared.shutdown.send_replace(true);
        lock(&self.shared.hub).close_all();
        self.shared.conns.clear();
        self.endpoint
            .close(ErrorCode::GoingAway.value().into(), b"node shutting down");
        let _ = tokio::time::timeout(Duration::from_secs(2), self.endpoint.wait_idle()).await;
    }

    /// Vanishes without a word, like a crashed host: with an emulated link (see
    /// [`NodeConfig::link_model`]) nothing is sent or received any more; peers notice only
    /// by their idle timeout. Without one, connections are abandoned and the endpoint is
    /// moved to a fresh socket, which peers see the same way in practice.
    pub fn crash(&self) {
        if let Some(s) = &self.socket {
            s.kill();
        } else if let Ok(sock) = std::net::UdpSocket::bind("127.0.0.1:0") {
            let _ = self.endpoint.rebind(sock);
        }
        self.shared.shutdown.send_replace(true);
        lock(&self.shared.hub).close_all();
    }
}

/// The origin's handle for injecting frames.
#[derive(Clone, Debug)]
pub struct Publisher {
    shared: Arc<Shared>,
}

impl Publisher {
    /// Sends a frame to every child (and local subscriber). Frames must carry increasing
    /// sequence numbers per track (use [`crate::proto::media::Packager`]).
    pub fn send(&self, frame: Frame) -> Admit {
        self.shared.ingest(frame)
    }
}

/// Frames for a local consumer, in order per track.
#[derive(Debug)]
pub struct LocalSubscription {
    shared: Arc<Shared>,
    sub: Arc<Subscriber>,
}

impl LocalSubscription {
    /// The next frame; `None` when the node shuts down.
    pub async fn next(&self) -> Option<Frame> {
        self.sub.next().await
    }

    /// Frames this consumer's queue had to drop because it fell behind.
    pub fn dropped_frames(&self) -> u64 {
        self.sub.drops().frames
    }
}

impl Drop for LocalSubscription {
    fn drop(&mut self) {
        lock(&self.shared.hub).unsubscribe(self.sub.id);
    }
}
