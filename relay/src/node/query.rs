//! Asking any node for the tree below it (`treecast tree ADDR`), without joining: one
//! verified QUIC connection from a throwaway identity, one `TreeQuery` on a bidirectional
//! stream (like a probe), one `Report` back.

use std::net::SocketAddr;
use std::time::Duration;

use super::addr::{PeerAddr, resolve};
use super::control_io::{self, ControlRead};
use super::endpoint;
use super::error::{NodeError, PeerError, describe_connection_error};
use super::identity::Identity;
use super::{NodeConfig, tls};
use crate::proto::control::{ControlDecoder, ControlMessage};
use crate::proto::report::SubtreeReport;
use crate::proto::{ALPN, ErrorCode};

/// Asks `peer` for its subtree report, waiting at most `timeout` in all.
pub async fn query_tree(peer: &PeerAddr, timeout: Duration) -> Result<SubtreeReport, NodeError> {
    let addrs = resolve(peer).await.map_err(|cause| PeerError::Resolve {
        addr: peer.clone(),
        cause,
    })?;
    let target = addrs[0];
    let bind: SocketAddr = if target.is_ipv4() {
        ([0, 0, 0, 0], 0).into()
    } else {
        (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
    };
    let mut cfg = NodeConfig::new(Identity::generate()?, bind);
    cfg.connect_timeout = timeout;
    let ep =
        quinn::Endpoint::client(bind).map_err(|cause| NodeError::Bind { addr: bind, cause })?;
    let client = endpoint::client_config(&cfg, peer.id, ALPN)?;
    let handshake = |reason: String| PeerError::Handshake {
        addr: peer.clone(),
        reason,
    };
    let lost = |reason: String| PeerError::Lost {
        addr: peer.to_string(),
        reason,
    };
    let exchange = async {
        let conn = ep
            .connect_with(client, target, tls::SERVER_NAME)
            .map_err(|e| handshake(e.to_string()))?
            .await
            .map_err(|e| handshake(describe_connection_error(&e)))?;
        let (mut send, mut recv) = conn
            .open_bi()
            .await
            .map_err(|e| lost(describe_connection_error(&e)))?;
        send.write_all(&ControlMessage::TreeQuery.to_bytes())
            .await
            .map_err(|e| lost(e.to_string()))?;
        let _ = send.finish();
        let mut dec = ControlDecoder::new(&cfg.limits);
        let answer = match control_io::next_message(&mut recv, &mut dec).await {
            Ok(Some(ControlMessage::Report(r))) => Ok(r),
            Ok(Some(other)) => Err(PeerError::Violation {
                addr: peer.to_string(),
                code: ErrorCode::ProtocolViolation,
                reason: format!("answered a tree query with {other:?}"),
            }),
            Ok(None) => Err(lost(
                "the node closed the stream without answering (an older version?)".into(),
            )),
            Err(ControlRead::Decode(error)) => Err(PeerError::Protocol {
                addr: peer.to_string(),
                error,
            }),
            Err(ControlRead::Read(e)) => Err(lost(e.to_string())),
        };
        conn.close(ErrorCode::NoError.value().into(), b"done");
        answer
    };
    let result = tokio::time::timeout(timeout, exchange).await;
    ep.close(ErrorCode::NoError.value().into(), b"done");
    match result {
        Ok(r) => Ok(r?),
        Err(_) => Err(PeerError::Unreachable {
            addr: peer.clone(),
            timeout,
        }
        .into()),
    }
}
