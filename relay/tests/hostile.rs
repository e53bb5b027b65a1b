//! Hostile peers: each gets its connection closed with a named code, nothing panics, and
//! the relay keeps serving everyone else.

mod common;

use std::sync::Arc;

use bytes::BytesMut;
use common::*;
use quinn::crypto::rustls::QuicServerConfig;
use treecast_relay::node::{Identity, Node, PeerAddr, tls};
use treecast_relay::proto::control::ControlMessage;
use treecast_relay::proto::group::{GroupHeader, encode_frame_header};
use treecast_relay::proto::media::SignedCatalog;
use treecast_relay::proto::synthetic::SyntheticSpec;
use treecast_relay::proto::tree_msg::TreeInfo;
use treecast_relay::proto::{ALPN, ErrorCode, varint};

fn close_code(e: &quinn::ConnectionError) -> Option<ErrorCode> {
    match e {
        quinn::ConnectionError::ApplicationClosed(c) => {
            ErrorCode::from_value(c.error_code.into_inner())
        }
        _ => None,
    }
}

/// A relay with one well-behaved child that is receiving a live stream.
struct Setup {
    origin: Node,
    relay: Node,
    good: Node,
    publisher: treecast_relay::node::Publisher,
    src: Source,
}

impl Setup {
    async fn new() -> Setup {
        init_tracing();
        let (origin, publisher) = origin().await;
        let relay = relay(&origin).await;
        let good = common::relay(&relay).await;
        Setup {
            origin,
            relay,
            good,
            publisher,
            src: Source::new(SyntheticSpec {
                fps: 30,
                frame_size: 500,
                group_len: 10,
            }),
        }
    }

    /// Sends `n` frames and checks the good child gets all of them.
    async fn good_child_still_served(
        &mut self,
        sub: &treecast_relay::node::LocalSubscription,
        n: usize,
    ) {
        let first = self.src.next_index;
        for _ in 0..n {
            self.publisher.send(self.src.next_frame());
        }
        let got = take(sub, n).await;
        assert_eq!(got.first().map(|f| f.seq), Some(first));
        assert_eq!(got.last().map(|f| f.seq), Some(first + n as u64 - 1));
    }

    async fn stop(self) {
        for n in [self.good, self.relay, self.origin] {
            n.shutdown().await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_on_the_control_stream_is_a_protocol_violation() {
    let mut s = Setup::new().await;
    let sub = s.good.subscribe_local();
    s.good_child_still_served(&sub, 20).await;

    let conn = raw_connect(&s.relay.addr(), ALPN).await.expect("handshake");
    let (mut send, _recv) = conn.open_bi().await.unwrap();
    send.write_all(&[0x03, 0xee, 0xff, 0x00]).await.unwrap();
    let e = conn.closed().await;
    assert_eq!(close_code(&e), Some(ErrorCode::ProtocolViolation), "{e}");

    s.good_child_still_served(&sub, 20).await;
    assert_eq!(s.relay.stats().protocol_errors, 1);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversize_length_is_refused_as_too_large() {
    let mut s = Setup::new().await;
    let sub = s.good.subscribe_local();
    let conn = raw_connect(&s.relay.addr(), ALPN).await.expect("handshake");
    let (mut send, _recv) = conn.open_bi().await.unwrap();
    let mut b = BytesMut::new();
    varint::put(&mut b, 1 << 40);
    send.write_all(&b).await.unwrap();
    let e = conn.closed().await;
    assert_eq!(close_code(&e), Some(ErrorCode::TooLarge), "{e}");
    s.good_child_still_served(&sub, 20).await;
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_alpn_is_refused_in_the_handshake() {
    let mut s = Setup::new().await;
    let sub = s.good.subscribe_local();
    let e = raw_connect(&s.relay.addr(), b"not-treecast/9")
        .await
        .expect_err("must be refused");
    // TLS alert 120: no_application_protocol.
    assert!(e.to_string().contains("error 120"), "{e}");
    s.good_child_still_served(&sub, 20).await;
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_identity_is_refused_by_the_child() {
    let s = Setup::new().await;
    // Address the relay under another node's id: the pinned verifier refuses it.
    let impostor = PeerAddr {
        id: Identity::generate().unwrap().id(),
        host: s.relay.addr().host,
    };
    let e = Node::start(config(Some(impostor)))
        .await
        .expect_err("must not attach");
    let msg = e.to_string();
    assert!(
        msg.contains("handshake") && msg.contains("expected"),
        "{msg}"
    );
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscribing_twice_is_a_protocol_violation() {
    let mut s = Setup::new().await;
    let sub = s.good.subscribe_local();
    let conn = raw_connect(&s.relay.addr(), ALPN).await.expect("handshake");
    let (mut send, _recv) = conn.open_bi().await.unwrap();
    let m = ControlMessage::Subscribe {
        resume: vec![],
        capacity: 0,
        replaces: None,
        token: None,
    }
    .to_bytes();
    send.write_all(&m).await.unwrap();
    send.write_all(&m).await.unwrap();
    let e = conn.closed().await;
    assert_eq!(close_code(&e), Some(ErrorCode::ProtocolViolation), "{e}");
    s.good_child_still_served(&sub, 10).await;
    s.stop().await;
}

/// A fake parent that serves a catalog and then whatever bytes the test wants on one
/// group stream; returns how the relay closed the connection.
async fn hostile_parent(group_stream: Vec<u8>) -> (Option<ErrorCode>, Node) {
    let (go_tx, go_rx) = tokio::sync::oneshot::channel();
    let _ = go_tx.send(());
    let (task, relay) = hostile_parent_on_signal(group_stream, go_rx).await;
    let code = tokio::time::timeout(WAIT, task).await.unwrap().unwrap();
    (code, relay)
}

/// Like [`hostile_parent`], but the bad stream is sent only when `go` fires; returns the
/// task that yields the close code.
async fn hostile_parent_on_signal(
    group_stream: Vec<u8>,
    go: tokio::sync::oneshot::Receiver<()>,
) -> (tokio::task::JoinHandle<Option<ErrorCode>>, Node) {
    init_tracing();
    let me = Identity::generate().unwrap();
    let tls_cfg = tls::server_config(&me).unwrap();
    let server =
        quinn::ServerConfig::with_crypto(Arc::new(QuicServerConfig::try_from(tls_cfg).unwrap()));
    let ep = quinn::Endpoint::server(server, "127.0.0.1:0".parse().unwrap()).unwrap();
    let addr = PeerAddr::new(me.id(), ep.local_addr().unwrap());
    let me_id = me.id();
    let server_task = tokio::spawn(async move {
        let conn = ep.accept().await.unwrap().await.unwrap();
        let (mut send, mut recv) = conn.accept_bi().await.unwrap();
        let mut buf = [0u8; 64];
        let _ = recv.read(&mut buf).await.unwrap();
        send.write_all(
            &ControlMessage::Catalog(SignedCatalog::unsigned(
                SyntheticSpec::default().catalog("evil"),
            ))
            .to_bytes(),
        )
        .await
        .unwrap();
        let tree = TreeInfo {
            rooted: true,
            path: vec![me_id],
            backups: vec![],
        };
        send.write_all(&ControlMessage::Tree(tree).to_bytes())
            .await
            .unwrap();
        let _ = go.await;
        let mut uni = conn.open_uni().await.unwrap();
        uni.write_all(&group_stream).await.unwrap();
        uni.finish().unwrap();
        let e = conn.closed().await;
        drop(ep);
        close_code(&e)
    });
    let relay = Node::start(config(Some(addr)))
        .await
        .expect("attaches to the fake parent");
    (server_task, relay)
}

fn valid_frame_then(tail: &[u8]) -> Vec<u8> {
    let mut src = Source::new(SyntheticSpec {
        fps: 30,
        frame_size: 100,
        group_len: 10,
    });
    let f = src.next_frame();
    let mut w = GroupHeader {
        track: f.track,
        group: f.group,
    }
    .to_bytes()
    .to_vec();
    w.extend_from_slice(&encode_frame_header(&f));
    w.extend_from_slice(&f.payload);
    w.extend_from_slice(tail);
    w
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn truncated_frame_from_a_parent_is_named_and_the_relay_keeps_its_children() {
    // The relay's child attaches first (it has the catalog), then the parent misbehaves.
    let mut src = Source::new(SyntheticSpec {
        fps: 30,
        frame_size: 100,
        group_len: 10,
    });
    let _ = src.next_frame();
    let f = src.next_frame();
    let header = encode_frame_header(&f);
    let (go_tx, go_rx) = tokio::sync::oneshot::channel();
    let (task, relay) =
        hostile_parent_on_signal(valid_frame_then(&header[..header.len()]), go_rx).await;
    // The relay's child attaches while the parent still behaves.
    let child = common::relay(&relay).await;
    let sub = child.subscribe_local();
    let _ = go_tx.send(());
    let code = tokio::time::timeout(WAIT, task).await.unwrap().unwrap();
    assert_eq!(code, Some(ErrorCode::Truncated));
    // Counted before the connection was closed, so already visible.
    assert_eq!(relay.stats().protocol_errors, 1);
    // The valid frame before the truncated one was taken in and forwarded.
    assert_eq!(relay.stats().frames_received, 1);
    let got = take(&sub, 1).await;
    assert_eq!(got[0].seq, 0);
    // The child is still attached to the relay (which now looks for a new parent).
    assert_eq!(child.parent().map(|p| p.id), Some(relay.id()));
    assert_eq!(relay.stats().children, 1);
    child.shutdown().await;
    relay.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversize_frame_and_garbage_stream_from_a_parent_are_named() {
    let mut b = BytesMut::new();
    varint::put(&mut b, 1 << 40);
    let (code, relay) = hostile_parent(valid_frame_then(&b)).await;
    assert_eq!(code, Some(ErrorCode::TooLarge));
    relay.shutdown().await;

    let (code, relay) = hostile_parent(b"GET / HTTP/1.1\r\n\r\n".to_vec()).await;
    assert_eq!(code, Some(ErrorCode::ProtocolViolation));
    relay.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_probe_flood_is_cut_off_with_rate_limited() {
    let mut s = Setup::new().await;
    let sub = s.good.subscribe_local();
    let conn = raw_connect(&s.relay.addr(), ALPN).await.expect("handshake");
    let probe = ControlMessage::Probe { token: None }.to_bytes();
    let mut answered = 0;
    for _ in 0..200 {
        let Ok((mut send, mut recv)) = conn.open_bi().await else {
            break;
        };
        if send.write_all(&probe).await.is_err() {
            break;
        }
        let _ = send.finish();
        match recv.read_to_end(64 * 1024).await {
            Ok(b) if !b.is_empty() => answered += 1,
            _ => break,
        }
    }
    let e = conn.closed().await;
    assert_eq!(close_code(&e), Some(ErrorCode::RateLimited), "{e}");
    // The burst is answered, the flood is not.
    assert!((20..200).contains(&answered), "{answered} probes answered");
    s.good_child_still_served(&sub, 10).await;
    s.stop().await;
}
