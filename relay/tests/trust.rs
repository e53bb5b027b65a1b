//! Trust on real QUIC: signed media, hostile relays, private and encrypted streams.

mod common;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use common::*;
use treecast_relay::node::publisher_key::PublisherKeyFile;
use treecast_relay::node::{Node, NodeConfig, NodeEvent, PeerAddr, Tamper, TrustConfig};
use treecast_relay::proto::ErrorCode;
use treecast_relay::proto::control::ControlMessage;
use treecast_relay::proto::media::Frame;
use treecast_relay::proto::synthetic::SyntheticSpec;
use treecast_relay::proto::trust::{Credential, JoinToken, StreamName, TokenClaims};

/// An origin signing stream `name` with a fresh key, publishing synthetic frames every
/// 5 ms from a background task; what it sent is recorded by sequence number.
struct SignedOrigin {
    node: Node,
    key: PublisherKeyFile,
    stream: StreamName,
    sent: Arc<Mutex<BTreeMap<u64, Frame>>>,
    stop: Arc<AtomicBool>,
}

impl SignedOrigin {
    async fn start(max_children: usize, private: bool, encrypt: bool) -> SignedOrigin {
        let key = PublisherKeyFile::generate().unwrap();
        let stream = StreamName::new(key.key.public(), "show").unwrap();
        let mut cfg = config(None);
        cfg.max_children = max_children;
        cfg.trust = TrustConfig {
            stream: Some(stream.clone()),
            signer: Some(key.key.clone()),
            private,
            seal: encrypt.then(|| (key.content_key("show"), 7)),
            credential: None,
        };
        let node = Node::start(cfg).await.expect("origin starts");
        let publisher = node.publish(SyntheticSpec::default().catalog("show"));
        let sent = Arc::new(Mutex::new(BTreeMap::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (s, st) = (sent.clone(), stop.clone());
        tokio::spawn(async move {
            let mut src = Source::new(SyntheticSpec {
                fps: 200,
                frame_size: 1200,
                group_len: 400,
            });
            let mut tick = tokio::time::interval(Duration::from_millis(5));
            while !st.load(Ordering::Relaxed) {
                tick.tick().await;
                let f = src.next_frame();
                s.lock().unwrap().insert(f.seq, f.clone());
                publisher.send(f);
            }
        });
        SignedOrigin {
            node,
            key,
            stream,
            sent,
            stop,
        }
    }

    fn token(&self, subject: &str, valid_for: i64, relay_only: bool) -> Credential {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64;
        let claims = TokenClaims {
            stream: self.stream.tag(),
            subject: subject.into(),
            not_before: (now - 3600) as u64,
            expires: (now + valid_for) as u64,
            relay_only,
        };
        Credential {
            token: JoinToken::issue(&self.key.key, claims),
            content_key: (!relay_only).then(|| self.key.content_key("show")),
        }
    }

    /// Whether `f` is exactly what the origin sent (header and payload).
    fn authentic(&self, f: &Frame) -> bool {
        self.sent.lock().unwrap().get(&f.seq).is_some_and(|s| {
            s.payload == f.payload
                && s.group == f.group
                && s.pts == f.pts
                && s.keyframe == f.keyframe
        })
    }
}

fn joiner(parent: &PeerAddr, max_children: usize, trust: TrustConfig) -> NodeConfig {
    let mut c = config(Some(parent.clone()));
    c.max_children = max_children;
    c.trust = trust;
    c
}

fn pinned(stream: &StreamName) -> TrustConfig {
    TrustConfig {
        stream: Some(stream.clone()),
        ..TrustConfig::default()
    }
}

/// Tree: origin(2) ← a(1) ← bad(3) ← v1, v2 (watch-only, joining through the origin,
/// which keeps its last slot for a forwarding node); then g(4) takes the origin's last
/// slot. `bad` is at depth 2; once armed it applies `tamper` to frame `target` (for every
/// child) or to every frame from `target` on, as `tamper` decides.
async fn hostile_relay_is_cut_off_and_viewers_play_on(
    tamper: impl Fn(&mut Frame, u64) + Send + Sync + 'static,
) {
    init_tracing();
    let o = SignedOrigin::start(2, false, false).await;
    let a = Node::start(joiner(&o.node.addr(), 1, pinned(&o.stream)))
        .await
        .unwrap();
    let target = Arc::new(AtomicU64::new(u64::MAX));
    let mut bad_cfg = joiner(&a.addr(), 3, pinned(&o.stream));
    let t = target.clone();
    bad_cfg.tamper = Some(Tamper(Arc::new(move |f: &mut Frame| {
        tamper(f, t.load(Ordering::Relaxed))
    })));
    let bad = Node::start(bad_cfg).await.unwrap();
    let via_origin = |trust| {
        let mut c = joiner(&o.node.addr(), 0, trust);
        c.parent = None;
        c.join = vec![o.node.addr()];
        c
    };
    // v1 trusts whatever stream its first parent names (no --stream): the signature
    // still binds it to the origin's key. v2 is pinned to the stream.
    let v1 = Node::start(via_origin(TrustConfig::default()))
        .await
        .unwrap();
    let v2 = Node::start(via_origin(pinned(&o.stream))).await.unwrap();
    let g = Node::start(joiner(&o.node.addr(), 4, pinned(&o.stream)))
        .await
        .unwrap();
    assert_eq!(bad.stats().depth, Some(2));
    assert_eq!(v1.parent().unwrap().id, bad.id());
    assert_eq!(v2.parent().unwrap().id, bad.id());
    let subs = [v1.subscribe_local(), v2.subscribe_local()];
    let mut events = [v1.events(), v2.events()];
    for s in &subs {
        take(s, 20).await;
    }
    let last = *o.sent.lock().unwrap().keys().next_back().unwrap();
    target.store(last + 5, Ordering::Relaxed);

    for (i, v) in [&v1, &v2].into_iter().enumerate() {
        let e = wait_event(&mut events[i], "the forger is cut off", |e| {
            matches!(
                e,
                NodeEvent::PeerMisbehaved {
                    code: ErrorCode::BadSignature,
                    ..
                }
            )
        })
        .await;
        if let NodeEvent::PeerMisbehaved { reason, .. } = e {
            assert!(reason.contains("signature"), "{reason}");
        }
        // Back in the tree under an honest parent, and playing.
        wait_event(
            &mut events[i],
            "re-attached",
            |e| matches!(e, NodeEvent::ParentAttached { parent } if parent.id != bad.id()),
        )
        .await;
        assert_ne!(v.parent().map(|p| p.id), Some(bad.id()));
        assert!(v.stats().bad_signatures >= 1);
    }
    // Every frame the viewers got is the origin's, in order, without a gap: the forged
    // frame was dropped and the new parent's cache filled in from the last good one.
    for s in &subs {
        let got = take(s, 150).await;
        for w in got.windows(2) {
            assert_eq!(w[1].seq, w[0].seq + 1, "gap or reorder after {}", w[0].seq);
        }
        for f in &got {
            assert!(o.authentic(f), "forged frame {} reached a viewer", f.seq);
        }
    }
    // The forger is never taken back as a parent.
    assert!(bad.children().is_empty());
    o.stop.store(true, Ordering::Relaxed);
    for n in [v1, v2, bad, g, a, o.node] {
        n.stop_now().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_altering_one_byte_is_cut_off() {
    hostile_relay_is_cut_off_and_viewers_play_on(|f, target| {
        if f.seq == target {
            let mut p = f.payload.to_vec();
            p[0] ^= 1;
            f.payload = Bytes::from(p);
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_injecting_frames_of_its_own_is_cut_off() {
    // It signs its own frames with its own key: still not the publisher's.
    let own = PublisherKeyFile::generate().unwrap();
    hostile_relay_is_cut_off_and_viewers_play_on(move |f, target| {
        if f.seq >= target {
            f.payload = Bytes::from_static(b"buy cheap watches");
            let tag = StreamName::new(own.key.public(), "show").unwrap().tag();
            own.key.sign_frame(&tag, f);
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_publisher_with_another_key_cannot_feed_a_stream() {
    init_tracing();
    let o = SignedOrigin::start(2, false, false).await;
    let other = PublisherKeyFile::generate().unwrap();
    let want = StreamName::new(other.key.public(), "show").unwrap();
    let e = Node::start(joiner(&o.node.addr(), 0, pinned(&want)))
        .await
        .expect_err("a stream signed by another key is refused");
    let text = e.to_string();
    assert!(
        text.contains("serves stream") && text.contains(&want.to_string()),
        "{text}"
    );
    o.stop.store(true, Ordering::Relaxed);
    o.node.stop_now().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_private_stream_needs_a_valid_token() {
    init_tracing();
    let o = SignedOrigin::start(4, true, false).await;
    let with = |c: Option<Credential>| TrustConfig {
        credential: c,
        ..pinned(&o.stream)
    };
    let refused = |cfg| async { Node::start(cfg).await.expect_err("refused").to_string() };
    let e = refused(joiner(&o.node.addr(), 0, with(None))).await;
    assert!(
        e.contains("unauthorized") && e.contains("token is required"),
        "{e}"
    );
    let e = refused(joiner(
        &o.node.addr(),
        0,
        with(Some(o.token("eve", -10, false))),
    ))
    .await;
    assert!(e.contains("expired"), "{e}");
    let mut forged = o.token("mallory", 3600, false);
    let stranger = PublisherKeyFile::generate().unwrap();
    forged.token = JoinToken::issue(&stranger.key, forged.token.claims.clone());
    let e = refused(joiner(&o.node.addr(), 0, with(Some(forged)))).await;
    assert!(e.contains("not signed by the stream's publisher"), "{e}");

    // A valid token joins; a relay below it checks tokens too.
    let relay = Node::start(joiner(
        &o.node.addr(),
        2,
        with(Some(o.token("relay", 3600, true))),
    ))
    .await
    .expect("a token holder joins");
    let sub = relay.subscribe_local();
    take(&sub, 10).await;
    let e = refused(joiner(&relay.addr(), 0, with(None))).await;
    assert!(e.contains("token is required"), "{e}");
    let viewer = Node::start(joiner(
        &relay.addr(),
        0,
        with(Some(o.token("bob", 3600, false))),
    ))
    .await
    .expect("a viewer with a token joins through the relay");
    for f in take(&viewer.subscribe_local(), 10).await {
        assert!(o.authentic(&f));
    }
    o.stop.store(true, Ordering::Relaxed);
    for n in [viewer, relay, o.node] {
        n.stop_now().await;
    }
}

/// Joining by probing (no parent given): a node answers a new connection's probe with
/// its handshake, before it knows who asks, so on a private stream that answer says a
/// token is needed; a token holder then asks with its token.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_private_stream_answers_probes_only_with_a_token() {
    init_tracing();
    let o = SignedOrigin::start(4, true, false).await;
    let conn = raw_connect(&o.node.addr(), treecast_relay::proto::ALPN)
        .await
        .expect("handshake");
    let (_send, mut recv) = conn.accept_bi().await.expect("the node's stream");
    match read_control(&mut recv).await {
        ControlMessage::Refuse {
            code,
            reason,
            redirect,
        } => {
            assert_eq!(code, ErrorCode::Unauthorized.value());
            assert!(reason.contains("token is required"), "{reason}");
            assert!(
                redirect.is_empty(),
                "a prober without a token learns nothing"
            );
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
    conn.close(0u32.into(), b"done");

    let prober = |c: Option<Credential>| {
        let mut cfg = config(None);
        cfg.join = vec![o.node.addr()];
        cfg.trust = TrustConfig {
            credential: c,
            ..pinned(&o.stream)
        };
        cfg
    };
    let e = Node::start(prober(None)).await.expect_err("refused");
    assert!(e.to_string().contains("token is required"), "{e}");
    let viewer = Node::start(prober(Some(o.token("bob", 3600, false))))
        .await
        .expect("a token holder finds its place");
    for f in take(&viewer.subscribe_local(), 10).await {
        assert!(o.authentic(&f));
    }
    o.stop.store(true, Ordering::Relaxed);
    for n in [viewer, o.node] {
        n.stop_now().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_encrypted_stream_is_opaque_to_relay_only_holders() {
    init_tracing();
    let o = SignedOrigin::start(4, true, true).await;
    let with = |c: Credential| TrustConfig {
        credential: Some(c),
        ..pinned(&o.stream)
    };
    let relay = Node::start(joiner(
        &o.node.addr(),
        2,
        with(o.token("relay", 3600, true)),
    ))
    .await
    .unwrap();
    let viewer = Node::start(joiner(&relay.addr(), 0, with(o.token("bob", 3600, false))))
        .await
        .unwrap();
    assert!(!relay.can_decrypt());
    assert!(viewer.can_decrypt());
    // The relay forwards ciphertext it cannot read...
    for f in take(&relay.subscribe_local(), 10).await {
        assert!(!o.authentic(&f), "the relay saw plaintext");
        assert!(f.payload.len() > 1200);
    }
    // ...which the viewer opens.
    for f in take(&viewer.subscribe_local(), 30).await {
        assert!(
            o.authentic(&f),
            "frame {} did not decrypt to the original",
            f.seq
        );
    }
    assert_eq!(viewer.stats().undecryptable, 0);
    o.stop.store(true, Ordering::Relaxed);
    for n in [viewer, relay, o.node] {
        n.stop_now().await;
    }
}
