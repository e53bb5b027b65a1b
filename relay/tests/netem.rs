//! The link-emulating socket: delay, jitter, loss and rate as seen by raw datagrams and
//! by QUIC connections on loopback.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use quinn::crypto::rustls::{QuicClientConfig, QuicServerConfig};
use quinn::udp::Transmit;
use quinn::{AsyncUdpSocket, Connection, Endpoint};
use tokio::time::{Instant, timeout};
use treecast_relay::node::Identity;
use treecast_relay::node::netem::{
    self, CoordinateLinks, EmulatedSocket, LinkModel, LinkParams, UniformLink,
};
use treecast_relay::node::tls;
use treecast_relay::proto::ALPN;

/// Bound on every wait: a test failing to make progress fails instead of hanging.
const WAIT: Duration = Duration::from_secs(15);

fn loopback() -> SocketAddr {
    "127.0.0.1:0".parse().expect("addr")
}

fn uniform(params: LinkParams) -> Arc<dyn LinkModel> {
    Arc::new(UniformLink(params))
}

fn one_way(ms: u64) -> LinkParams {
    LinkParams {
        delay: Duration::from_millis(ms),
        ..LinkParams::default()
    }
}

/// A QUIC endpoint on an emulated socket, able to both accept and connect.
struct Peer {
    identity: Identity,
    socket: Arc<EmulatedSocket>,
    endpoint: Endpoint,
}

impl Peer {
    fn new(model: Arc<dyn LinkModel>, seed: u64) -> Peer {
        Self::on(EmulatedSocket::bind(loopback(), model, seed).expect("bind"))
    }

    fn on(socket: Arc<EmulatedSocket>) -> Peer {
        let identity = Identity::generate().expect("identity");
        let tls = tls::server_config(&identity).expect("server tls");
        let quic = QuicServerConfig::try_from(tls).expect("quic server config");
        let server = quinn::ServerConfig::with_crypto(Arc::new(quic));
        let endpoint = netem::endpoint(
            quinn::EndpointConfig::default(),
            Some(server),
            socket.clone(),
        )
        .expect("endpoint");
        Peer {
            identity,
            socket,
            endpoint,
        }
    }

    /// Connects to `server`; returns (our side, the server's side).
    async fn connect(&self, server: &Peer) -> (Connection, Connection) {
        let tls =
            tls::client_config(&self.identity, server.identity.id(), ALPN).expect("client tls");
        let quic = QuicClientConfig::try_from(tls).expect("quic client config");
        let cfg = quinn::ClientConfig::new(Arc::new(quic));
        let addr = server.socket.addr();
        let dial = async {
            self.endpoint
                .connect_with(cfg, addr, tls::SERVER_NAME)
                .expect("connect")
                .await
                .expect("handshake")
        };
        let accept = async {
            server
                .endpoint
                .accept()
                .await
                .expect("incoming")
                .await
                .expect("accepted")
        };
        timeout(WAIT, async { tokio::join!(dial, accept) })
            .await
            .expect("connection within the deadline")
    }
}

/// A few request/response round trips, so the RTT estimate rests on real samples.
async fn ping_pong(client: &Connection, server: &Connection, rounds: usize) {
    let echo = async {
        let (mut send, mut recv) = server.accept_bi().await.expect("accept bi");
        let mut buf = [0u8; 8];
        for _ in 0..rounds {
            recv.read_exact(&mut buf).await.expect("read ping");
            send.write_all(&buf).await.expect("write pong");
        }
    };
    let ping = async {
        let (mut send, mut recv) = client.open_bi().await.expect("open bi");
        let mut buf = [0u8; 8];
        for i in 0..rounds as u64 {
            send.write_all(&i.to_be_bytes()).await.expect("write ping");
            recv.read_exact(&mut buf).await.expect("read pong");
            assert_eq!(u64::from_be_bytes(buf), i);
        }
    };
    timeout(WAIT, async { tokio::join!(echo, ping) })
        .await
        .expect("round trips within the deadline");
}

/// Sends `data` from `from` to `to` on a unidirectional stream; returns what arrived and
/// how long it took until the receiver had all of it.
async fn transfer(from: &Connection, to: &Connection, data: &[u8]) -> (Vec<u8>, Duration) {
    let start = Instant::now();
    let send = async {
        let mut s = from.open_uni().await.expect("open uni");
        s.write_all(data).await.expect("write");
        s.finish().expect("finish");
        // Keep the stream (and connection) alive until the peer has everything.
        let _ = s.stopped().await;
    };
    let recv = async {
        let mut r = to.accept_uni().await.expect("accept uni");
        let got = r.read_to_end(data.len() + 1).await.expect("read to end");
        (got, start.elapsed())
    };
    let (_, got) = timeout(WAIT, async { tokio::join!(send, recv) })
        .await
        .expect("transfer within the deadline");
    got
}

fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 31 % 251) as u8).collect()
}

fn datagram(to: SocketAddr, contents: &[u8]) -> Transmit<'_> {
    Transmit {
        destination: to,
        ecn: None,
        contents,
        segment_size: None,
        src_ip: None,
    }
}

async fn recv_u32(rx: &tokio::net::UdpSocket) -> u32 {
    let mut buf = [0u8; 16];
    let n = timeout(WAIT, rx.recv(&mut buf))
        .await
        .expect("datagram within the deadline")
        .expect("recv");
    assert_eq!(n, 4, "one datagram per segment");
    u32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]])
}

#[tokio::test]
async fn datagrams_are_delayed_in_order() {
    let rx = tokio::net::UdpSocket::bind(loopback())
        .await
        .expect("bind rx");
    let to = rx.local_addr().expect("rx addr");
    let socket = EmulatedSocket::bind(loopback(), uniform(one_way(30)), 1).expect("bind");
    let start = Instant::now();
    for i in 0..100u32 {
        socket
            .try_send(&datagram(to, &i.to_be_bytes()))
            .expect("try_send never fails");
    }
    // A batch (GSO-style transmit) is split into its segments.
    let batch: Vec<u8> = (100..104u32).flat_map(u32::to_be_bytes).collect();
    let mut t = datagram(to, &batch);
    t.segment_size = Some(4);
    socket.try_send(&t).expect("try_send never fails");

    assert_eq!(recv_u32(&rx).await, 0);
    assert!(
        start.elapsed() >= Duration::from_millis(30),
        "{:?}",
        start.elapsed()
    );
    for i in 1..104u32 {
        assert_eq!(recv_u32(&rx).await, i, "FIFO without jitter");
    }
    let stats = socket.stats();
    assert_eq!((stats.scheduled, stats.lost, stats.overflowed), (104, 0, 0));
}

#[tokio::test]
async fn jitter_and_loss_on_raw_datagrams() {
    let rx = tokio::net::UdpSocket::bind(loopback())
        .await
        .expect("bind rx");
    let to = rx.local_addr().expect("rx addr");
    let params = LinkParams {
        delay: Duration::from_millis(5),
        jitter: Duration::from_millis(20),
        loss: 0.25,
        rate_bytes_per_sec: None,
    };
    let socket = EmulatedSocket::bind(loopback(), uniform(params), 7).expect("bind");
    for i in 0..400u32 {
        socket
            .try_send(&datagram(to, &i.to_be_bytes()))
            .expect("try_send never fails");
    }
    let stats = socket.stats();
    assert_eq!(stats.scheduled + stats.lost, 400);
    assert!((50..150).contains(&stats.lost), "{stats:?}");
    let mut got = Vec::new();
    for _ in 0..stats.scheduled {
        got.push(recv_u32(&rx).await);
    }
    let reordered = got.windows(2).filter(|w| w[0] > w[1]).count();
    assert!(reordered > 0, "jitter reorders");
    got.sort_unstable();
    got.dedup();
    assert_eq!(got.len() as u64, stats.scheduled, "no duplicates");
}

#[tokio::test]
async fn rtt_follows_the_link_delay() {
    let a = Peer::new(uniform(one_way(50)), 1);
    let b = Peer::new(uniform(one_way(50)), 2);
    let (client, server) = b.connect(&a).await;
    ping_pong(&client, &server, 5).await;
    let rtt = client.rtt();
    assert!(
        rtt >= Duration::from_millis(100) && rtt < Duration::from_millis(200),
        "{rtt:?}"
    );

    // No emulation: loopback speed.
    let c = Peer::new(uniform(LinkParams::default()), 3);
    let d = Peer::new(uniform(LinkParams::default()), 4);
    let (client, server) = d.connect(&c).await;
    ping_pong(&client, &server, 5).await;
    let rtt = client.rtt();
    assert!(rtt < Duration::from_millis(20), "{rtt:?}");
}

#[tokio::test]
async fn coordinates_order_the_rtts() {
    let map = Arc::new(CoordinateLinks::new(Duration::ZERO));
    let bind = |seed| EmulatedSocket::bind(loopback(), map.clone(), seed).expect("bind");
    let (sa, sb, sc) = (bind(1), bind(2), bind(3));
    map.place(sa.addr(), 0.0, 0.0);
    map.place(sb.addr(), 12.0, 16.0); // 20 ms from a
    map.place(sc.addr(), 0.0, 80.0); // 80 ms from a
    let (a, b, c) = (Peer::on(sa), Peer::on(sb), Peer::on(sc));

    let (near, near_server) = b.connect(&a).await;
    let (far, far_server) = c.connect(&a).await;
    tokio::join!(
        ping_pong(&near, &near_server, 5),
        ping_pong(&far, &far_server, 5)
    );
    let (near, far) = (near.rtt(), far.rtt());
    assert!(
        near >= Duration::from_millis(20) && near < Duration::from_millis(60),
        "{near:?}"
    );
    assert!(
        far >= Duration::from_millis(80) && far < Duration::from_millis(140),
        "{far:?}"
    );
    assert!(near < far);
}

#[tokio::test]
async fn lossy_link_still_delivers_a_stream_intact() {
    let lossy = LinkParams {
        loss: 0.1,
        ..LinkParams::default()
    };
    let a = Peer::new(uniform(lossy), 11);
    let b = Peer::new(uniform(lossy), 12);
    let (client, server) = b.connect(&a).await;
    let data = pattern(1_000_000);
    let (got, _) = transfer(&client, &server, &data).await;
    assert!(got == data, "content differs ({} bytes arrived)", got.len());
    let stats = b.socket.stats();
    assert!(stats.lost > 0, "the link did drop datagrams: {stats:?}");
}

#[tokio::test]
async fn rate_limit_paces_a_transfer() {
    let limited = LinkParams {
        rate_bytes_per_sec: Some(250_000),
        ..LinkParams::default()
    };
    let a = Peer::new(uniform(LinkParams::default()), 21);
    let b = Peer::new(uniform(limited), 22);
    let (client, server) = b.connect(&a).await;
    let data = pattern(500_000);
    let (got, elapsed) = transfer(&client, &server, &data).await;
    assert!(got == data, "content differs ({} bytes arrived)", got.len());
    // 500 kB at 250 kB/s is 2 s of serialisation; allow for the bucket's burst.
    assert!(elapsed >= Duration::from_millis(1500), "{elapsed:?}");
}
