//! How a node is set up: [`NodeConfig`] and its defaults.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use super::admission::AdmissionLimits;
use super::identity::Identity;
use super::netem;
use super::trust::TrustConfig;
use crate::proto::Limits;
use crate::proto::addr::PeerAddr;
use crate::proto::media::Frame;
use crate::proto::overlay::OverlayConfig;
use crate::proto::send_queue::QueueLimits;

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
    ///
    /// 300 ms: three keep-alives, or about ten media packets on a parent link, lost in a
    /// row. QUIC never times out before three probe timeouts (about 3 x (RTT + 25 ms)),
    /// so distant peers get longer. A false alarm costs a repair, not a frame.
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
    /// How often the node sends its parent a summary of its subtree (see
    /// [`crate::proto::report`]); the origin's view of the tree is this old at most
    /// times the depth.
    pub report_interval: Duration,
    /// Signing, verification and access control of the stream.
    pub trust: TrustConfig,
    /// Bounds on connections and requests from strangers.
    pub admission: AdmissionLimits,
    /// Fault injection for tests: every frame this node forwards to its children passes
    /// through this function first (a hostile relay altering or forging media).
    #[doc(hidden)]
    pub tamper: Option<Tamper>,
}

/// A function applied to each frame forwarded to children (see [`NodeConfig::tamper`]).
#[derive(Clone)]
pub struct Tamper(pub Arc<dyn Fn(&mut Frame) + Send + Sync>);

impl std::fmt::Debug for Tamper {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Tamper(..)")
    }
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
            // A crashed parent is noticed within ~0.3-0.4 s, so that with the repair (one
            // round trip to the standby) a 1 s playout buffer covers the gap.
            idle_timeout: Duration::from_millis(300),
            keep_alive: Duration::from_millis(100),
            child_silence: None,
            parent_silence: None,
            peer_timeout: Duration::from_secs(5),
            ingest_rate_limit: None,
            link_model: None,
            report_interval: Duration::from_secs(1),
            trust: TrustConfig::default(),
            admission: AdmissionLimits::default(),
            tamper: None,
        }
    }
}
