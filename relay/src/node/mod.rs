//! The async QUIC node: quinn endpoint, rustls identities, forwarding and caching.
//!
//! A [`Node`] listens for children and, unless it is the origin, keeps a session with
//! its parent. Frames from the parent (or, at the origin, from [`Publisher::send`]) go
//! through the node's hub: into the group cache and into one bounded queue per
//! subscriber. Each child has a sender task writing one QUIC stream per group.
//!
//! Every node also reports a bounded summary of its subtree to its parent each
//! [`NodeConfig::report_interval`] and keeps Prometheus metrics in its own registry;
//! [`Node::observer`] reads both (see [`crate::web`] for the HTTP side), and
//! [`query_tree`] asks any node for its subtree from outside the tree.
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
mod admission;
mod child;
mod config;
mod control_io;
mod driver;
mod endpoint;
mod error;
mod events;
mod hub;
mod identity;
mod metrics;
pub mod netem;
mod observe;
mod probe;
pub mod publisher_key;
mod query;
mod secret_file;
mod throttle;
pub mod tls;
mod trust;
mod upstream;
mod watchdog;

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{Notify, broadcast, oneshot, watch};
use tracing::info;

pub use addr::{AddrError, PeerAddr};
pub use admission::AdmissionLimits;
pub use config::{NodeConfig, Tamper};
pub use error::{NodeError, PeerError, describe_connection_error};
pub use events::NodeEvent;
pub use identity::{Identity, IdentityError, NodeId, ParseNodeIdError};
pub use observe::Observer;
pub use query::query_tree;
pub use trust::TrustConfig;

use crate::proto::ErrorCode;
use crate::proto::cache::Admit;
use crate::proto::media::{Catalog, Frame, SignedCatalog};
use crate::proto::overlay::{Overlay, OverlayEvent};
use crate::proto::report::SubtreeReport;
use driver::{ChildChannels, ParentHandle};
use hub::{Counters, Hub, Subscriber, SubscriberKind, lock};
use identity::NodeId as Id;
use metrics::Metrics;
use probe::ConnCache;
use throttle::Throttle;

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
    /// Frames refused because their signature did not verify (the sender was cut off).
    pub bad_signatures: u64,
    /// Frames the local player could not decrypt.
    pub undecryptable: u64,
}

#[derive(Debug)]
pub(crate) struct Shared {
    pub config: NodeConfig,
    pub hub: Mutex<Hub>,
    pub counters: Counters,
    pub catalog: watch::Sender<Option<Catalog>>,
    /// The catalog as signed by the origin, forwarded to children unchanged.
    pub signed_catalog: Mutex<Option<SignedCatalog>>,
    pub trust: trust::Trust,
    pub admission: admission::Admission,
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
    pub metrics: Metrics,
    /// Children's last subtree reports.
    pub child_reports: Mutex<HashMap<Id, SubtreeReport>>,
    /// Recent glass-to-glass latency in microseconds (an `f64`'s bits; 0: unknown).
    pub latency_us: AtomicU64,
    /// Wall-clock time of the last accepted frame, Unix milliseconds (0: none yet).
    pub last_frame_ms: AtomicU64,
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
        self.metrics
            .protocol_errors
            .with_label_values(&[code.name()])
            .inc();
        self.emit(NodeEvent::PeerMisbehaved {
            addr: addr.to_string(),
            code,
            reason: reason.to_string(),
        });
        conn.close(code.value().into(), reason.as_bytes());
    }

    pub fn ingest(&self, frame: Frame) -> Admit {
        let bytes = frame.payload.len() as u64;
        let (track, capture_us) = (frame.track, frame.capture_us);
        // The hub counts accepted frames before any subscriber can see them.
        let admit = lock(&self.hub).ingest(Instant::now(), frame, &self.counters, &self.events);
        match admit {
            Admit::Accepted { lost } => {
                self.metrics.received(track, bytes, lost);
                observe::frame_arrived(self, capture_us);
            }
            Admit::Late => {
                self.metrics
                    .frames_late
                    .with_label_values(&[&track.to_string()])
                    .inc();
            }
        }
        admit
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
        // With a join token we ask with it after the handshake (see `probe::probe`).
        ocfg.probe_round_trips = if config.trust.credential.is_some() {
            2
        } else {
            1
        };
        let overlay = Overlay::new(config.identity.id(), ocfg, config.seed);
        let shared = Arc::new(Shared {
            hub: Mutex::new(Hub::new(config.cache_groups)),
            counters: Counters::default(),
            catalog: watch::channel(None).0,
            signed_catalog: Mutex::new(None),
            trust: trust::Trust::new(config.trust.clone()),
            admission: admission::Admission::new(config.admission),
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
            metrics: Metrics::new(),
            child_reports: Mutex::new(HashMap::new()),
            latency_us: AtomicU64::new(0),
            last_frame_ms: AtomicU64::new(0),
            config,
        });
        tokio::spawn(child::accept_loop(shared.clone(), endpoint.clone()));
        tokio::spawn(observe::report_loop(shared.clone()));
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
            host: format!("{host}:{}", self.local_addr.port()).into(),
        }
    }

    /// Makes this node the origin of a broadcast with `catalog`.
    ///
    /// With a publisher key in [`NodeConfig::trust`], the catalog and every frame sent
    /// are signed (and sealed, for an encrypted stream).
    pub fn publish(&self, catalog: Catalog) -> Publisher {
        let signed = self.shared.trust.publish_catalog(catalog);
        let parsed = signed.catalog.clone();
        *lock(&self.shared.signed_catalog) = Some(signed);
        self.shared.catalog.send_replace(Some(parsed));
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
        observe::stats(&self.shared)
    }

    /// A read-only handle on this node for metrics and status pages.
    pub fn observer(&self) -> Observer {
        Observer::new(self.shared.clone())
    }

    /// Whether this node holds the key to the stream's encrypted payloads (always true
    /// for a stream that is not encrypted, once its catalog is known).
    pub fn can_decrypt(&self) -> bool {
        let sealed = lock(&self.shared.signed_catalog)
            .as_ref()
            .is_some_and(|c| c.catalog.sealed_epoch.is_some());
        !sealed || self.shared.trust.can_open()
    }

    /// The stream this node carries, once known (given, or named by the first catalog).
    pub fn stream(&self) -> Option<crate::proto::trust::StreamName> {
        self.shared.trust.stream()
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
        let children = {
            let mut o = lock(&self.shared.overlay);
            o.handle_leave(Instant::now());
            o.child_count()
        };
        info!(id = %self.id().short(), children, "leaving the tree; handing the children over");
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
    pub fn send(&self, mut frame: Frame) -> Admit {
        self.shared.trust.seal_and_sign(&mut frame);
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
    ///
    /// Payloads of an encrypted stream arrive decrypted; a frame that does not decrypt
    /// is dropped and counted (see [`NodeStats::undecryptable`]).
    pub async fn next(&self) -> Option<Frame> {
        loop {
            let mut f = self.sub.next().await?;
            match self.shared.trust.open_for_local(&mut f) {
                Ok(()) => return Some(f),
                Err(e) => {
                    self.shared
                        .counters
                        .undecryptable
                        .fetch_add(1, Ordering::Relaxed);
                    tracing::warn!("{e}");
                }
            }
        }
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
