//! Helpers for multi-node tests on loopback.
#![allow(dead_code)]

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use treecast_relay::node::{
    Identity, LocalSubscription, Node, NodeConfig, NodeEvent, PeerAddr, Publisher,
};
use treecast_relay::proto::media::{Frame, Packager, VIDEO_TRACK};
use treecast_relay::proto::synthetic::SyntheticSpec;

pub const WAIT: Duration = Duration::from_secs(30);

pub fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_test_writer()
        .try_init();
}

pub fn config(parent: Option<PeerAddr>) -> NodeConfig {
    let mut c = NodeConfig::new(
        Identity::generate().expect("identity"),
        "127.0.0.1:0".parse().expect("addr"),
    );
    c.parent = parent;
    c
}

pub async fn origin() -> (Node, Publisher) {
    let n = Node::start(config(None)).await.expect("origin starts");
    let p = n.publish(SyntheticSpec::default().catalog("test"));
    (n, p)
}

pub async fn relay(parent: &Node) -> Node {
    Node::start(config(Some(parent.addr())))
        .await
        .expect("relay starts")
}

/// A bare QUIC connection to `to` with a fresh identity, as a peer that does not run
/// treecast's node would open.
pub async fn raw_connect(
    to: &PeerAddr,
    alpn: &[u8],
) -> Result<quinn::Connection, quinn::ConnectionError> {
    use quinn::crypto::rustls::QuicClientConfig;
    let me = Identity::generate().expect("identity");
    let tls = treecast_relay::node::tls::client_config(&me, to.id, alpn).expect("tls");
    let quic = QuicClientConfig::try_from(tls).expect("quic tls");
    let cfg = quinn::ClientConfig::new(std::sync::Arc::new(quic));
    let ep = quinn::Endpoint::client("127.0.0.1:0".parse().expect("addr")).expect("endpoint");
    ep.connect_with(
        cfg,
        to.host.parse().expect("host"),
        treecast_relay::node::tls::SERVER_NAME,
    )
    .expect("connect")
    .await
}

/// Reads one control message from `recv` (to its end).
pub async fn read_control(
    recv: &mut quinn::RecvStream,
) -> treecast_relay::proto::control::ControlMessage {
    use treecast_relay::proto::control::ControlDecoder;
    let bytes = recv.read_to_end(64 * 1024).await.expect("a whole message");
    let mut dec = ControlDecoder::new(&treecast_relay::proto::limits::Limits::default());
    dec.push(&bytes);
    dec.next_message().expect("decodes").expect("one message")
}

pub fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

/// Produces synthetic frames with proper group/seq numbering.
pub struct Source {
    pub spec: SyntheticSpec,
    packager: Packager,
    pub next_index: u64,
}

impl Source {
    pub fn new(spec: SyntheticSpec) -> Self {
        Source {
            spec,
            packager: Packager::new(Some(VIDEO_TRACK), 1_000_000),
            next_index: 0,
        }
    }

    pub fn next_frame(&mut self) -> Frame {
        let u = self.spec.unit(self.next_index, now_us());
        self.next_index += 1;
        self.packager
            .pack(u)
            .expect("synthetic starts with a keyframe")
    }
}

/// Receives `n` frames or panics after `WAIT`.
pub async fn take(sub: &LocalSubscription, n: usize) -> Vec<Frame> {
    let mut v = Vec::with_capacity(n);
    tokio::time::timeout(WAIT, async {
        while v.len() < n {
            match sub.next().await {
                Some(f) => v.push(f),
                None => break,
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("timed out: got {} of {n} frames", v.len()));
    v
}

/// Waits for an event matching `pred`, or panics after `WAIT`.
pub async fn wait_event(
    rx: &mut tokio::sync::broadcast::Receiver<NodeEvent>,
    what: &str,
    mut pred: impl FnMut(&NodeEvent) -> bool,
) -> NodeEvent {
    tokio::time::timeout(WAIT, async {
        loop {
            match rx.recv().await {
                Ok(e) if pred(&e) => return e,
                Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                Err(e) => panic!("event stream ended while waiting for {what}: {e}"),
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("timed out waiting for {what}"))
}
