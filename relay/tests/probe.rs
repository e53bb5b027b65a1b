//! Probing on real QUIC. A node sends its probe answer unasked with its handshake, so a
//! probe on a new connection takes one round trip. A prober may still ask on a
//! connection it keeps. A private stream's node tells a prober without a token that it
//! needs one, and a prober with one asks with it (see also `trust.rs`).

mod common;

use common::*;
use treecast_relay::proto::ALPN;
use treecast_relay::proto::control::ControlMessage;
use treecast_relay::proto::tree_msg::ProbeInfo;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_connection_brings_the_probe_answer_unasked() {
    init_tracing();
    let (origin, _publisher) = origin().await;
    let relay = relay(&origin).await;
    let conn = raw_connect(&origin.addr(), ALPN).await.expect("handshake");
    // Nothing sent: the answer is on the stream the node opened with its handshake.
    let (_send, mut recv) = conn.accept_bi().await.expect("the node's stream");
    let answer = read_control(&mut recv).await;
    let ControlMessage::ProbeReply(ProbeInfo {
        rooted,
        depth,
        free,
        capacity,
        candidates,
        ..
    }) = answer
    else {
        panic!("expected a probe answer, got {answer:?}");
    };
    assert!(rooted);
    assert_eq!(depth, 0);
    assert_eq!(free, capacity - 1, "one child: the relay");
    assert!(
        candidates.iter().any(|c| c.addr.id == relay.addr().id),
        "the relay has room and is named: {candidates:?}"
    );

    // On the same connection, a probe asked for is answered too (a kept connection).
    let (mut send, mut recv) = conn.open_bi().await.expect("a stream of ours");
    let probe = ControlMessage::Probe { token: None }.to_bytes();
    send.write_all(&probe).await.expect("probe sent");
    send.finish().expect("finish");
    let again = read_control(&mut recv).await;
    assert!(
        matches!(
            again,
            ControlMessage::ProbeReply(ProbeInfo {
                rooted: true,
                depth: 0,
                ..
            })
        ),
        "{again:?}"
    );
    conn.close(0u32.into(), b"done");
    relay.shutdown().await;
    origin.shutdown().await;
}
