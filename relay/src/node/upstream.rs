//! The session with the parent: connect, subscribe (resuming from the last frame held),
//! receive the catalog, then read one group per unidirectional stream, in order, into
//! the hub. Lost sessions are retried with backoff; the first attempt's failure is
//! returned to the caller so a wrong address is reported at once.

use std::sync::Arc;
use std::time::Duration;

use tracing::{debug, info, warn};

use super::Shared;
use super::addr::PeerAddr;
use super::endpoint;
use super::error::{PeerError, describe_connection_error};
use super::events::NodeEvent;
use super::hub::lock;
use crate::proto::control::{ControlDecoder, ControlMessage};
use crate::proto::group::{GroupDecoder, GroupHeader};
use crate::proto::order::StreamOrderer;
use crate::proto::{ALPN, DecodeError, ErrorCode};

/// An established, subscribed session.
pub(crate) struct Session {
    conn: quinn::Connection,
    // Kept open: closing our side of the control stream would read as a goodbye.
    _control: (quinn::SendStream, quinn::RecvStream),
}

/// Connects to `parent` and subscribes. On success the catalog is known.
pub(crate) async fn connect(
    shared: &Arc<Shared>,
    endpoint: &quinn::Endpoint,
    parent: &PeerAddr,
) -> Result<Session, PeerError> {
    let addrs = parent.resolve().await.map_err(|cause| PeerError::Resolve {
        addr: parent.clone(),
        cause,
    })?;
    let cfg = endpoint::client_config(&shared.config, parent.id, ALPN).map_err(|e| {
        PeerError::Handshake {
            addr: parent.clone(),
            reason: e.to_string(),
        }
    })?;
    let timeout = shared.config.connect_timeout;
    let connecting = endpoint
        .connect_with(cfg, addrs[0], super::tls::SERVER_NAME)
        .map_err(|e| PeerError::Handshake {
            addr: parent.clone(),
            reason: e.to_string(),
        })?;
    let conn = match tokio::time::timeout(timeout, connecting).await {
        Err(_) | Ok(Err(quinn::ConnectionError::TimedOut)) => {
            return Err(PeerError::Unreachable {
                addr: parent.clone(),
                timeout,
            });
        }
        Ok(Err(quinn::ConnectionError::ApplicationClosed(c))) => {
            return Err(refused(parent, c.error_code.into_inner(), &c.reason));
        }
        Ok(Err(e)) => {
            return Err(PeerError::Handshake {
                addr: parent.clone(),
                reason: describe_connection_error(&e),
            });
        }
        Ok(Ok(c)) => c,
    };
    let lost = |e: &dyn std::fmt::Display| PeerError::Lost {
        addr: parent.to_string(),
        reason: e.to_string(),
    };
    let closed = |e: quinn::ConnectionError| match e {
        quinn::ConnectionError::ApplicationClosed(c) => {
            refused(parent, c.error_code.into_inner(), &c.reason)
        }
        e => lost(&describe_connection_error(&e)),
    };
    let (mut send, mut recv) = conn.open_bi().await.map_err(closed)?;
    let resume = lock(&shared.hub).resume_points();
    send.write_all(&ControlMessage::Subscribe { resume }.to_bytes())
        .await
        .map_err(|e| lost(&e))?;
    let mut dec = ControlDecoder::new(&shared.config.limits);
    let answer = tokio::time::timeout(timeout, async {
        loop {
            match dec.next_message() {
                Ok(Some(m)) => return Ok(m),
                Ok(None) => {}
                Err(e) => return Err(protocol(shared, &conn, parent, e)),
            }
            match recv.read_chunk(16 * 1024, true).await {
                Ok(Some(c)) => dec.push(&c.bytes),
                Ok(None) => {
                    return Err(match conn.closed().await {
                        e @ quinn::ConnectionError::ApplicationClosed(_) => closed(e),
                        e => lost(&describe_connection_error(&e)),
                    });
                }
                Err(quinn::ReadError::ConnectionLost(e)) => return Err(closed(e)),
                Err(e) => return Err(lost(&e)),
            }
        }
    })
    .await
    .map_err(|_| PeerError::Unreachable {
        addr: parent.clone(),
        timeout,
    })??;
    match answer {
        ControlMessage::Catalog(c) => {
            shared.catalog.send_replace(Some(c));
        }
        ControlMessage::Refuse { code, reason } => {
            return Err(refused(parent, u64::from(code), reason.as_bytes()));
        }
        other => {
            let reason = format!("expected catalog, got {other:?}");
            shared.misbehaved(
                &conn,
                &parent.to_string(),
                ErrorCode::ProtocolViolation,
                &reason,
            );
            return Err(PeerError::Violation {
                addr: parent.to_string(),
                code: ErrorCode::ProtocolViolation,
                reason,
            });
        }
    }
    info!(parent = %parent, rtt_ms = conn.rtt().as_millis() as u64, "attached to parent");
    *lock(&shared.parent_conn) = Some((parent.clone(), conn.clone()));
    shared.emit(NodeEvent::ParentAttached {
        parent: parent.clone(),
    });
    Ok(Session {
        conn,
        _control: (send, recv),
    })
}

fn refused(parent: &PeerAddr, code: u64, reason: &[u8]) -> PeerError {
    PeerError::Refused {
        addr: parent.clone(),
        code: ErrorCode::from_value(code)
            .map(|c| c.to_string())
            .unwrap_or_else(|| format!("code 0x{code:x}")),
        reason: String::from_utf8_lossy(reason).into_owned(),
    }
}

fn protocol(
    shared: &Shared,
    conn: &quinn::Connection,
    parent: &PeerAddr,
    e: DecodeError,
) -> PeerError {
    shared.misbehaved(conn, &parent.to_string(), e.code(), &e.to_string());
    PeerError::Protocol {
        addr: parent.to_string(),
        error: e,
    }
}

/// Runs sessions with `parent` until the node shuts down, reconnecting after losses.
pub(crate) async fn run(
    shared: Arc<Shared>,
    endpoint: quinn::Endpoint,
    parent: PeerAddr,
    first: Session,
) {
    let mut session = Some(first);
    let mut backoff = Duration::from_millis(100);
    let mut shutdown = shared.shutdown.subscribe();
    loop {
        if let Some(s) = session.take() {
            backoff = Duration::from_millis(100);
            let r = tokio::select! {
                r = receive(&shared, &parent, &s.conn) => r,
                _ = shutdown.wait_for(|s| *s) => return,
            };
            *lock(&shared.parent_conn) = None;
            if shared.is_shutting_down() {
                return;
            }
            match r {
                Ok(()) => {
                    info!(parent = %parent, "parent ended the session");
                    shared.emit(NodeEvent::ParentLost {
                        parent: parent.clone(),
                        reason: "parent left".into(),
                    });
                }
                Err(e @ (PeerError::Protocol { .. } | PeerError::Violation { .. })) => {
                    warn!("parent {e}");
                    shared.emit(NodeEvent::ParentLost {
                        parent: parent.clone(),
                        reason: e.to_string(),
                    });
                }
                Err(e) => {
                    warn!("{e}");
                    shared.emit(NodeEvent::ParentLost {
                        parent: parent.clone(),
                        reason: e.to_string(),
                    });
                }
            }
        }
        if shared.is_shutting_down() {
            return;
        }
        tokio::select! {
            _ = tokio::time::sleep(backoff) => {}
            _ = shutdown.wait_for(|s| *s) => return,
        }
        backoff = (backoff * 2).min(Duration::from_secs(5));
        match connect(&shared, &endpoint, &parent).await {
            Ok(s) => session = Some(s),
            Err(e) => warn!("reconnecting: {e}"),
        }
    }
}

/// Receives group streams until the connection ends.
async fn receive(
    shared: &Arc<Shared>,
    parent: &PeerAddr,
    conn: &quinn::Connection,
) -> Result<(), PeerError> {
    let orderer = Arc::new(std::sync::Mutex::new(StreamOrderer::new(
        shared.config.child_queue.max_bytes * 2,
    )));
    let (err_tx, mut err_rx) = tokio::sync::mpsc::channel::<PeerError>(1);
    loop {
        let mut recv = tokio::select! {
            biased;
            Some(e) = err_rx.recv() => return Err(e),
            s = conn.accept_uni() => match s {
                Ok(s) => s,
                Err(quinn::ConnectionError::ApplicationClosed(c))
                    if c.error_code.into_inner() == u64::from(ErrorCode::NoError.value())
                        || c.error_code.into_inner() == u64::from(ErrorCode::GoingAway.value()) =>
                {
                    return Ok(());
                }
                Err(e) => {
                    // We may have closed it ourselves for a protocol error.
                    if let Ok(pe) = err_rx.try_recv() {
                        return Err(pe);
                    }
                    return Err(PeerError::Lost {
                        addr: parent.to_string(),
                        reason: describe_connection_error(&e),
                    });
                }
            },
        };
        // Read the header here, in stream order, so the orderer learns groups in the
        // order the parent opened them.
        let mut dec = GroupDecoder::new(&shared.config.limits);
        let header =
            tokio::time::timeout(shared.config.peer_timeout, read_header(&mut recv, &mut dec))
                .await;
        let header = match header {
            Ok(Ok(Some(h))) => h,
            Ok(Ok(None)) => continue, // reset before its header: nothing to do
            Ok(Err(e)) => return Err(protocol(shared, conn, parent, e)),
            Err(_) => {
                let reason = "media stream header not sent in time";
                shared.misbehaved(conn, &parent.to_string(), ErrorCode::Timeout, reason);
                return Err(PeerError::Violation {
                    addr: parent.to_string(),
                    code: ErrorCode::Timeout,
                    reason: reason.into(),
                });
            }
        };
        if !lock(&orderer).open(header) {
            let reason = format!(
                "second stream for group {} of track {}",
                header.group, header.track
            );
            conn.close(
                ErrorCode::ProtocolViolation.value().into(),
                reason.as_bytes(),
            );
            return Err(PeerError::Violation {
                addr: parent.to_string(),
                code: ErrorCode::ProtocolViolation,
                reason,
            });
        }
        let (shared, orderer, conn, parent, err_tx) = (
            shared.clone(),
            orderer.clone(),
            conn.clone(),
            parent.clone(),
            err_tx.clone(),
        );
        tokio::spawn(async move {
            let r = read_group(&shared, &orderer, header, recv, dec).await;
            let mut out = Vec::new();
            let mut o = lock(&orderer);
            o.end(header, &mut out);
            for f in out {
                shared.ingest(f);
            }
            drop(o);
            if let Err(e) = r {
                let _ = err_tx.try_send(protocol(&shared, &conn, &parent, e));
            }
        });
    }
}

async fn read_header(
    recv: &mut quinn::RecvStream,
    dec: &mut GroupDecoder,
) -> Result<Option<GroupHeader>, DecodeError> {
    loop {
        if let Some(h) = dec.header()? {
            return Ok(Some(h));
        }
        match recv.read_chunk(4096, true).await {
            Ok(Some(c)) => dec.push(&c.bytes),
            Ok(None) => {
                dec.finish()?;
                return Err(DecodeError::Truncated("media stream header"));
            }
            Err(_) => return Ok(None),
        }
    }
}

/// Reads a group's frames into the orderer. A reset stream (stale group dropped by the
/// parent) ends quietly; a malformed one is an error.
async fn read_group(
    shared: &Arc<Shared>,
    orderer: &std::sync::Mutex<StreamOrderer>,
    header: GroupHeader,
    mut recv: quinn::RecvStream,
    mut dec: GroupDecoder,
) -> Result<(), DecodeError> {
    let mut out = Vec::new();
    loop {
        loop {
            let frame = dec.next_frame()?;
            let Some(frame) = frame else { break };
            let mut o = lock(orderer);
            o.frame(frame, &mut out);
            for f in out.drain(..) {
                shared.ingest(f);
            }
        }
        match recv.read_chunk(64 * 1024, true).await {
            Ok(Some(c)) => {
                if let Some(t) = &shared.throttle {
                    t.acquire(c.bytes.len()).await;
                }
                dec.push(&c.bytes);
            }
            Ok(None) => return dec.finish(),
            Err(quinn::ReadError::Reset(code)) => {
                debug!(track = header.track, group = header.group, code = %code, "group stream reset by parent");
                return Ok(());
            }
            Err(e) => {
                debug!(
                    track = header.track,
                    group = header.group,
                    "group stream ended: {e}"
                );
                return Ok(());
            }
        }
    }
}
