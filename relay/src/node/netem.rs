//! Network emulation in code: a quinn UDP socket that delays, jitters, drops and
//! rate-limits its outgoing datagrams.
//!
//! `tc netem` is not available on our test machines, so links with latency and loss are
//! emulated here instead. An [`EmulatedSocket`] wraps the ordinary tokio UDP socket quinn
//! would use and applies a [`LinkModel`] to every datagram it *sends*: each node's
//! outgoing traffic is delayed by the link towards the destination, so two emulated
//! endpoints with a one-way delay of 50 ms each see an RTT of about 100 ms. Receiving is
//! untouched.
//!
//! Driving it: bind a socket with a model, then build the quinn endpoint on it.
//!
//! ```no_run
//! # async fn demo() -> std::io::Result<()> {
//! use std::sync::Arc;
//! use std::time::Duration;
//! use treecast_relay::node::netem::{self, CoordinateLinks, EmulatedSocket, LinkParams, UniformLink};
//!
//! // Every datagram from this socket: 50 ms one-way, up to 5 ms jitter, 1 % loss.
//! let model = Arc::new(UniformLink(LinkParams {
//!     delay: Duration::from_millis(50),
//!     jitter: Duration::from_millis(5),
//!     loss: 0.01,
//!     rate_bytes_per_sec: None,
//! }));
//! let socket = EmulatedSocket::bind("127.0.0.1:0".parse().unwrap(), model, 1)?;
//! let endpoint = netem::endpoint(quinn::EndpointConfig::default(), None, socket)?;
//!
//! // Or a shared map of nodes in a plane, where RTT = distance (ms): one model for all.
//! let map = Arc::new(CoordinateLinks::new(Duration::ZERO));
//! let a = EmulatedSocket::bind("127.0.0.1:0".parse().unwrap(), map.clone(), 2)?;
//! map.place(a.addr(), 0.0, 0.0);
//! # let _ = endpoint; Ok(()) }
//! ```
//!
//! How a datagram goes out: [`try_send`](quinn::AsyncUdpSocket::try_send) never blocks
//! and never fails. It decides loss with a seeded RNG, passes the datagram through a
//! per-destination token bucket when the link has a rate (a tail-drop queue holding
//! about one second of traffic), and schedules it at `now + delay + uniform(0..=jitter)`.
//! One background tokio task per socket sends each datagram at its departure time.
//! Without jitter, datagrams to one destination leave in the order they were sent; with
//! jitter they may be reordered, as on a real jittery path. At most
//! [`MAX_QUEUED_BYTES`] wait in the socket at once; beyond that datagrams are dropped.
//! Send errors of the real socket are logged at debug level and the datagram is lost,
//! as UDP would lose it.
//!
//! The socket reports one datagram per transmit (no GSO), so every datagram gets its own
//! loss decision and departure time.

use std::cmp::Ordering;
use std::collections::{BinaryHeap, HashMap};
use std::fmt;
use std::future::poll_fn;
use std::io::{self, IoSliceMut};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering as AtomicOrdering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::task::{Context, Poll};
use std::time::Duration;

use quinn::udp::{EcnCodepoint, RecvMeta, Transmit};
use quinn::{AsyncUdpSocket, Runtime, TokioRuntime, UdpPoller};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio::sync::Notify;
use tokio::time::Instant;
use tracing::debug;

/// Most datagram bytes waiting in one socket for their departure time.
pub const MAX_QUEUED_BYTES: usize = 64 * 1024 * 1024;

/// How much traffic a rate-limited link queues before dropping (tail drop).
pub const RATE_QUEUE: Duration = Duration::from_secs(1);

/// Delays and jitter are capped to this (keeps time arithmetic finite).
const MAX_DELAY: Duration = Duration::from_secs(3600);

/// Token bucket depth of a rate-limited link: this much of the rate, at least two
/// full-size datagrams, may leave back to back.
const BURST: Duration = Duration::from_millis(10);
const MIN_BURST_BYTES: u64 = 3000;

/// Destinations remembered before idle ones are forgotten.
const MAX_DESTINATIONS: usize = 4096;

/// How one direction of a link behaves.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct LinkParams {
    /// One-way propagation delay.
    pub delay: Duration,
    /// Extra delay drawn uniformly from `0..=jitter` for each datagram (reorders).
    pub jitter: Duration,
    /// Probability (0..=1) that a datagram is lost.
    pub loss: f64,
    /// Bottleneck rate; datagrams beyond about one second of queue are dropped.
    pub rate_bytes_per_sec: Option<u64>,
}

/// What a link from this socket to `to` looks like.
pub trait LinkModel: Send + Sync + fmt::Debug + 'static {
    /// One-way delay, jitter bound and loss probability for datagrams from `from` to `to`.
    fn link(&self, from: SocketAddr, to: SocketAddr) -> LinkParams;
}

/// A [`LinkModel`] with the same params for every destination.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct UniformLink(pub LinkParams);

impl LinkModel for UniformLink {
    fn link(&self, _from: SocketAddr, _to: SocketAddr) -> LinkParams {
        self.0
    }
}

/// A [`LinkModel`] placing nodes on a plane whose units are milliseconds.
///
/// Between two placed nodes the one-way delay is `base + distance / 2`, so a pair of
/// sockets sharing this model sees an RTT of `distance + 2 * base`. A link with an
/// unplaced end gets `base` only. Jitter, loss and rate come from the template and apply
/// to every link. Nodes are placed as they bind; one model is usually shared by every
/// socket of a test.
///
/// Addresses are compared after mapping IPv4-mapped IPv6 addresses to IPv4 and an
/// unspecified IP (a socket bound to `0.0.0.0`) to loopback, so place the address other
/// nodes use to reach the socket, or its local address on a loopback test.
#[derive(Debug, Default)]
pub struct CoordinateLinks {
    template: LinkParams,
    places: RwLock<HashMap<SocketAddr, (f64, f64)>>,
}

impl CoordinateLinks {
    /// A map where every link has at least `base` one-way delay.
    pub fn new(base: Duration) -> Self {
        Self::with_template(LinkParams {
            delay: base,
            ..LinkParams::default()
        })
    }

    /// A map whose links all get `template`'s jitter, loss and rate, and its delay as
    /// the base delay.
    pub fn with_template(template: LinkParams) -> Self {
        CoordinateLinks {
            template,
            places: RwLock::new(HashMap::new()),
        }
    }

    /// Places (or moves) the node reachable at `addr`.
    pub fn place(&self, addr: SocketAddr, x_ms: f64, y_ms: f64) {
        let mut places = self.places.write().unwrap_or_else(|e| e.into_inner());
        places.insert(normalize(addr), (x_ms, y_ms));
    }

    /// Forgets a node: its links fall back to the base delay.
    pub fn remove(&self, addr: SocketAddr) {
        let mut places = self.places.write().unwrap_or_else(|e| e.into_inner());
        places.remove(&normalize(addr));
    }

    /// The one-way delay from `from` to `to` (both ways are equal).
    pub fn delay(&self, from: SocketAddr, to: SocketAddr) -> Duration {
        let places = self.places.read().unwrap_or_else(|e| e.into_inner());
        let extra = match (places.get(&normalize(from)), places.get(&normalize(to))) {
            (Some(&(ax, ay)), Some(&(bx, by))) => {
                let half_ms = (ax - bx).hypot(ay - by) / 2.0;
                Duration::try_from_secs_f64(half_ms / 1000.0)
                    .unwrap_or(MAX_DELAY)
                    .min(MAX_DELAY)
            }
            _ => Duration::ZERO,
        };
        self.template.delay.saturating_add(extra)
    }
}

impl LinkModel for CoordinateLinks {
    fn link(&self, from: SocketAddr, to: SocketAddr) -> LinkParams {
        LinkParams {
            delay: self.delay(from, to),
            ..self.template
        }
    }
}

fn normalize(addr: SocketAddr) -> SocketAddr {
    let ip = match addr.ip() {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(v6),
        },
        v4 => v4,
    };
    let ip = match ip {
        IpAddr::V4(v4) if v4.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(v6) if v6.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    SocketAddr::new(ip, addr.port())
}

/// What happened to the datagrams handed to an [`EmulatedSocket`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NetemStats {
    /// Datagrams accepted (scheduled for sending).
    pub scheduled: u64,
    /// Datagrams dropped by the loss probability.
    pub lost: u64,
    /// Datagrams dropped because a rate-limited link's queue or the socket's queue was full.
    pub overflowed: u64,
}

#[derive(Debug, Default)]
struct Counters {
    scheduled: AtomicU64,
    lost: AtomicU64,
    overflowed: AtomicU64,
}

/// A datagram waiting for its departure time.
struct Scheduled {
    at: Instant,
    seq: u64,
    to: SocketAddr,
    ecn: Option<EcnCodepoint>,
    src_ip: Option<IpAddr>,
    data: Vec<u8>,
}

// Ordered so that `BinaryHeap` (a max-heap) pops the earliest departure first, and among
// equal departures the one sent first.
impl Ord for Scheduled {
    fn cmp(&self, other: &Self) -> Ordering {
        (other.at, other.seq).cmp(&(self.at, self.seq))
    }
}
impl PartialOrd for Scheduled {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl PartialEq for Scheduled {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.seq) == (other.at, other.seq)
    }
}
impl Eq for Scheduled {}

/// Per-destination link state.
#[derive(Clone, Copy)]
struct Dest {
    /// Token bucket as a virtual clock (GCRA): when the bucket would be full again.
    tat: Instant,
    /// Latest departure scheduled so far (keeps FIFO order without jitter).
    last: Instant,
}

struct Queue {
    heap: BinaryHeap<Scheduled>,
    bytes: usize,
    seq: u64,
    rng: StdRng,
    dests: HashMap<SocketAddr, Dest>,
}

struct Shared {
    inner: Arc<dyn AsyncUdpSocket>,
    queue: Mutex<Queue>,
    wake: Notify,
    closed: AtomicBool,
    counters: Counters,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A quinn UDP socket whose outgoing datagrams follow a [`LinkModel`].
pub struct EmulatedSocket {
    shared: Arc<Shared>,
    model: Arc<dyn LinkModel>,
    local: SocketAddr,
    /// A crashed host: nothing goes out, everything that comes in is discarded.
    dead: AtomicBool,
}

impl fmt::Debug for EmulatedSocket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EmulatedSocket")
            .field("local", &self.local)
            .field("model", &self.model)
            .finish_non_exhaustive()
    }
}

impl EmulatedSocket {
    /// Binds a UDP socket at `addr` whose sends follow `model`; `seed` makes the loss
    /// and jitter draws reproducible. Must be called inside a tokio runtime (it spawns
    /// the socket's sender task there).
    pub fn bind(addr: SocketAddr, model: Arc<dyn LinkModel>, seed: u64) -> io::Result<Arc<Self>> {
        let handle = tokio::runtime::Handle::try_current()
            .map_err(|_| io::Error::other("EmulatedSocket::bind needs a tokio runtime"))?;
        let std_socket = std::net::UdpSocket::bind(addr)?;
        let inner = TokioRuntime.wrap_udp_socket(std_socket)?;
        let local = inner.local_addr()?;
        let shared = Arc::new(Shared {
            inner,
            queue: Mutex::new(Queue {
                heap: BinaryHeap::new(),
                bytes: 0,
                seq: 0,
                rng: StdRng::seed_from_u64(seed),
                dests: HashMap::new(),
            }),
            wake: Notify::new(),
            closed: AtomicBool::new(false),
            counters: Counters::default(),
        });
        handle.spawn(run(shared.clone()));
        Ok(Arc::new(EmulatedSocket {
            shared,
            model,
            local,
            dead: AtomicBool::new(false),
        }))
    }

    /// The local address the socket is bound to.
    pub fn addr(&self) -> SocketAddr {
        self.local
    }

    /// Emulates the host vanishing: from now on nothing is sent and everything received
    /// is discarded, without any close message. Peers notice only by their idle timeout.
    pub fn kill(&self) {
        self.dead.store(true, AtomicOrdering::Relaxed);
    }

    /// What has happened to the datagrams sent so far.
    pub fn stats(&self) -> NetemStats {
        let c = &self.shared.counters;
        NetemStats {
            scheduled: c.scheduled.load(AtomicOrdering::Relaxed),
            lost: c.lost.load(AtomicOrdering::Relaxed),
            overflowed: c.overflowed.load(AtomicOrdering::Relaxed),
        }
    }

    /// Applies the link to one datagram and queues it (or drops it).
    fn schedule(&self, t: &Transmit<'_>, data: &[u8], link: &LinkParams, now: Instant) {
        let counters = &self.shared.counters;
        let mut q = self.shared.lock();
        let q = &mut *q;
        if q.rng.random::<f64>() < link.loss {
            counters.lost.fetch_add(1, AtomicOrdering::Relaxed);
            return;
        }
        if q.bytes.saturating_add(data.len()) > MAX_QUEUED_BYTES {
            counters.overflowed.fetch_add(1, AtomicOrdering::Relaxed);
            return;
        }
        if q.dests.len() >= MAX_DESTINATIONS && !q.dests.contains_key(&t.destination) {
            q.dests.retain(|_, d| d.tat > now || d.last > now);
        }
        let dest = q.dests.entry(t.destination).or_insert(Dest {
            tat: now,
            last: now,
        });

        // The bottleneck queue: when may this datagram leave the (rate-limited) router?
        let mut leave = now;
        if let Some(rate) = link.rate_bytes_per_sec {
            let Some((start, tat)) = shape(dest.tat, now, rate, data.len()) else {
                counters.overflowed.fetch_add(1, AtomicOrdering::Relaxed);
                return;
            };
            leave = start;
            dest.tat = tat;
        }

        let mut at = leave + link.delay.min(MAX_DELAY);
        let jitter = link.jitter.min(MAX_DELAY);
        if jitter.is_zero() {
            at = at.max(dest.last);
        } else {
            let nanos = q.rng.random_range(0..=jitter.as_nanos() as u64);
            at += Duration::from_nanos(nanos);
        }
        dest.last = dest.last.max(at);

        q.seq += 1;
        q.bytes += data.len();
        let wake = q.heap.peek().is_none_or(|first| at < first.at);
        q.heap.push(Scheduled {
            at,
            seq: q.seq,
            to: t.destination,
            ecn: t.ecn,
            src_ip: t.src_ip,
            data: data.to_vec(),
        });
        counters.scheduled.fetch_add(1, AtomicOrdering::Relaxed);
        if wake {
            self.shared.wake.notify_one();
        }
    }
}

/// Token bucket as GCRA: given the theoretical arrival time `tat`, returns when a
/// datagram of `len` bytes may leave and the new `tat`, or `None` when it would wait
/// more than [`RATE_QUEUE`] (tail drop).
fn shape(tat: Instant, now: Instant, rate: u64, len: usize) -> Option<(Instant, Instant)> {
    if rate == 0 {
        return None;
    }
    let per_byte = |bytes: u64| {
        let nanos = u128::from(bytes) * 1_000_000_000 / u128::from(rate);
        Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX)).min(MAX_DELAY)
    };
    let burst_bytes = (rate.saturating_mul(BURST.as_millis() as u64) / 1000).max(MIN_BURST_BYTES);
    let tau = per_byte(burst_bytes);
    let tat = tat.max(now);
    let start = tat.checked_sub(tau).unwrap_or(now).max(now);
    if start.duration_since(now) > RATE_QUEUE {
        return None;
    }
    Some((start, tat + per_byte(len as u64)))
}

impl Drop for EmulatedSocket {
    fn drop(&mut self) {
        self.shared.closed.store(true, AtomicOrdering::Release);
        self.shared.wake.notify_one();
    }
}

impl AsyncUdpSocket for EmulatedSocket {
    fn create_io_poller(self: Arc<Self>) -> Pin<Box<dyn UdpPoller>> {
        Box::pin(AlwaysWritable)
    }

    fn try_send(&self, transmit: &Transmit<'_>) -> io::Result<()> {
        if self.dead.load(AtomicOrdering::Relaxed) {
            return Ok(());
        }
        let link = self.model.link(self.local, transmit.destination);
        let now = Instant::now();
        // Defensive: `max_transmit_segments` is 1, but split any batch all the same.
        let segment = transmit
            .segment_size
            .unwrap_or(transmit.contents.len())
            .max(1);
        for datagram in transmit.contents.chunks(segment) {
            self.schedule(transmit, datagram, &link, now);
        }
        Ok(())
    }

    fn poll_recv(
        &self,
        cx: &mut Context<'_>,
        bufs: &mut [IoSliceMut<'_>],
        meta: &mut [RecvMeta],
    ) -> Poll<io::Result<usize>> {
        loop {
            let r = self.shared.inner.poll_recv(cx, bufs, meta);
            match r {
                Poll::Ready(Ok(_)) if self.dead.load(AtomicOrdering::Relaxed) => continue,
                other => return other,
            }
        }
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.shared.inner.local_addr()
    }

    fn max_transmit_segments(&self) -> usize {
        1
    }

    fn max_receive_segments(&self) -> usize {
        self.shared.inner.max_receive_segments()
    }

    fn may_fragment(&self) -> bool {
        self.shared.inner.may_fragment()
    }
}

/// `try_send` never blocks, so the socket is always writable.
#[derive(Debug)]
struct AlwaysWritable;

impl UdpPoller for AlwaysWritable {
    fn poll_writable(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

/// The socket's sender task: sends each datagram at its departure time. After the socket
/// is dropped it finishes sending what is queued (datagrams already "on the wire"), then
/// ends.
async fn run(shared: Arc<Shared>) {
    let mut poller = shared.inner.clone().create_io_poller();
    let mut due = Vec::new();
    loop {
        let now = Instant::now();
        let next = {
            let mut q = shared.lock();
            while q.heap.peek().is_some_and(|p| p.at <= now) && due.len() < 64 {
                if let Some(p) = q.heap.pop() {
                    q.bytes = q.bytes.saturating_sub(p.data.len());
                    due.push(p);
                }
            }
            q.heap.peek().map(|p| p.at)
        };
        if !due.is_empty() {
            for p in due.drain(..) {
                send(&*shared.inner, &mut poller, &p).await;
            }
            continue;
        }
        match next {
            Some(at) => {
                tokio::select! {
                    _ = tokio::time::sleep_until(at) => {}
                    _ = shared.wake.notified() => {}
                }
            }
            None if shared.closed.load(AtomicOrdering::Acquire) => return,
            None => shared.wake.notified().await,
        }
    }
}

async fn send(inner: &dyn AsyncUdpSocket, poller: &mut Pin<Box<dyn UdpPoller>>, p: &Scheduled) {
    loop {
        let transmit = Transmit {
            destination: p.to,
            ecn: p.ecn,
            contents: &p.data,
            segment_size: None,
            src_ip: p.src_ip,
        };
        match inner.try_send(&transmit) {
            Ok(()) => return,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                if let Err(e) = poll_fn(|cx| poller.as_mut().poll_writable(cx)).await {
                    debug!(to = %p.to, error = %e, "netem: socket not writable, datagram dropped");
                    return;
                }
            }
            Err(e) => {
                debug!(to = %p.to, error = %e, "netem: send failed, datagram dropped");
                return;
            }
        }
    }
}

/// A quinn endpoint on an emulated socket, driven by tokio.
pub fn endpoint(
    config: quinn::EndpointConfig,
    server: Option<quinn::ServerConfig>,
    socket: Arc<EmulatedSocket>,
) -> io::Result<quinn::Endpoint> {
    quinn::Endpoint::new_with_abstract_socket(config, server, socket, Arc::new(TokioRuntime))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn coordinates_give_half_the_distance_plus_base() {
        let m = CoordinateLinks::new(Duration::from_millis(1));
        let a = addr("127.0.0.1:1000");
        let b = addr("127.0.0.1:2000");
        let c = addr("127.0.0.1:3000");
        m.place(a, 0.0, 0.0);
        m.place(b, 30.0, 40.0);
        assert_eq!(m.link(a, b).delay, Duration::from_millis(26));
        assert_eq!(m.link(b, a).delay, Duration::from_millis(26));
        assert_eq!(m.link(a, c).delay, Duration::from_millis(1));
        // IPv4-mapped and wildcard addresses find the same place.
        assert_eq!(
            m.link(addr("[::ffff:127.0.0.1]:1000"), addr("0.0.0.0:2000"))
                .delay,
            Duration::from_millis(26)
        );
        m.place(c, f64::NAN, 0.0);
        assert!(m.link(a, c).delay <= MAX_DELAY + Duration::from_millis(1));
    }

    #[test]
    fn shaping_paces_and_tail_drops() {
        let now = Instant::now();
        let rate = 100_000; // 100 kB/s: 1000 bytes take 10 ms; burst 3000 bytes.
        let mut tat = now;
        let mut starts = Vec::new();
        while let Some((start, next)) = shape(tat, now, rate, 1000) {
            starts.push(start - now);
            tat = next;
        }
        // The first few leave at once (burst), then one every 10 ms, up to ~1 s queued.
        assert_eq!(starts[0], Duration::ZERO);
        assert_eq!(starts[3], Duration::ZERO);
        assert_eq!(starts[4], Duration::from_millis(10));
        assert!((100..=105).contains(&starts.len()), "{}", starts.len());
        assert!(shape(now, now, 0, 1).is_none());
    }
}
