//! Probing candidate parents, and the connections probes leave behind.
//!
//! A probe on a new connection is one QUIC handshake: the probed node sends its answer
//! with its handshake, on a bidirectional stream it opens ([`answer_unasked`]). On a
//! connection a probe left open it is one request/answer on a stream the prober opens.
//! Either way the connection's RTT estimate is the measurement. The connection is kept
//! for a short while so that attaching to the chosen candidate costs no second handshake.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::Shared;
use super::addr::PeerAddr;
use super::control_io::{self, ControlRead};
use super::endpoint;
use super::error::{PeerError, describe_connection_error};
use super::hub::lock;
use super::identity::NodeId;
use crate::proto::control::{ControlDecoder, ControlMessage};
use crate::proto::overlay::ProbeInfo;
use crate::proto::{ALPN, ErrorCode};
use tracing::debug;

/// How long an idle probe connection is kept for a possible attach.
const KEEP: Duration = Duration::from_secs(10);

/// Connections opened by probes, by peer.
#[derive(Debug, Default)]
pub(crate) struct ConnCache {
    map: Mutex<HashMap<NodeId, (quinn::Connection, Instant)>>,
    /// Connections (by `stable_id`) whose end is being watched.
    watched: Mutex<HashSet<usize>>,
}

impl ConnCache {
    /// Whether `conn` is new to the watch list (and now on it).
    fn start_watching(&self, conn: &quinn::Connection) -> bool {
        lock(&self.watched).insert(conn.stable_id())
    }

    fn stop_watching(&self, conn: &quinn::Connection) {
        lock(&self.watched).remove(&conn.stable_id());
    }

    pub fn put(&self, id: NodeId, conn: quinn::Connection) {
        let mut m = lock(&self.map);
        let now = Instant::now();
        m.retain(|_, (c, t)| {
            let keep = now.duration_since(*t) < KEEP && c.close_reason().is_none();
            if !keep {
                c.close(0u32.into(), b"probe done");
            }
            keep
        });
        m.insert(id, (conn, now));
    }

    /// A live cached connection to `id`, removed from the cache.
    pub fn take(&self, id: &NodeId) -> Option<quinn::Connection> {
        let (c, t) = lock(&self.map).remove(id)?;
        (c.close_reason().is_none() && t.elapsed() < KEEP).then_some(c)
    }

    pub fn clear(&self) {
        for (_, (c, _)) in lock(&self.map).drain() {
            c.close(0u32.into(), b"node stopping");
        }
    }
}

/// Opens a verified connection to `peer`.
pub(crate) async fn connect(
    shared: &Shared,
    endpoint: &quinn::Endpoint,
    peer: &PeerAddr,
) -> Result<quinn::Connection, PeerError> {
    let addrs = super::addr::resolve(peer)
        .await
        .map_err(|cause| PeerError::Resolve {
            addr: peer.clone(),
            cause,
        })?;
    let handshake = |reason: String| PeerError::Handshake {
        addr: peer.clone(),
        reason,
    };
    let cfg = endpoint::client_config(&shared.config, peer.id, ALPN)
        .map_err(|e| handshake(e.to_string()))?;
    let timeout = shared.config.connect_timeout;
    let connecting = endpoint
        .connect_with(cfg, addrs[0], super::tls::SERVER_NAME)
        .map_err(|e| handshake(e.to_string()))?;
    match tokio::time::timeout(timeout, connecting).await {
        Err(_) | Ok(Err(quinn::ConnectionError::TimedOut)) => Err(PeerError::Unreachable {
            addr: peer.clone(),
            timeout,
        }),
        Ok(Err(e)) => Err(handshake(describe_connection_error(&e))),
        Ok(Ok(c)) => Ok(c),
    }
}

/// A connection to `peer`: a cached probe connection if there is one, else a new one;
/// and whether it is new (then the peer's unasked probe answer waits on it).
pub(crate) async fn connection(
    shared: &Shared,
    endpoint: &quinn::Endpoint,
    peer: &PeerAddr,
) -> Result<(quinn::Connection, bool), PeerError> {
    if let Some(c) = shared.conns.take(&peer.id) {
        return Ok((c, false));
    }
    Ok((connect(shared, endpoint, peer).await?, true))
}

/// Sends the peer of a new incoming connection our probe answer unasked, with our
/// handshake (0.5-RTT data).
///
/// Most probes go to nodes the prober has never talked to (a joiner measures candidates
/// it has just heard of), and a probe that had to wait for the handshake before asking
/// took two round trips. Answered with the handshake it takes one: in the simulator this
/// halved the median join, 0.95 -> 0.49 s at 10k peers (see `docs/sim/results.md`).
///
/// The peer is not authenticated yet (its certificate comes after our handshake flight),
/// so this is only what anyone may learn: the answer of an open stream, ordered by the
/// peer's address since its id is not known yet. A node carrying a private stream answers
/// instead that a join token is needed, and a prober holding one asks again with it once
/// the handshake is done. Peers that did not come to probe leave the stream unread.
pub(crate) fn answer_unasked(shared: &Shared, conn: &quinn::Connection) {
    let msg = if let Err(e) = shared.trust.check_token(None) {
        ControlMessage::Refuse {
            code: ErrorCode::Unauthorized.value(),
            reason: e.to_string(),
            redirect: Vec::new(),
        }
    } else {
        let asker = conn.remote_address().to_string();
        ControlMessage::ProbeReply(
            lock(&shared.overlay).probe_answer(Instant::now(), asker.as_bytes()),
        )
    };
    let conn = conn.clone();
    tokio::spawn(async move {
        let Ok((mut send, _recv)) = conn.open_bi().await else {
            return;
        };
        let _ = send.write_all(&msg.to_bytes()).await;
        let _ = send.finish();
    });
}

/// Probes `peer`: its answer and the measured RTT.
///
/// On a new connection the answer comes with the handshake ([`answer_unasked`]); on a
/// connection a probe left open, or when the peer wants our join token, we ask on a
/// stream of our own.
pub(crate) async fn probe(
    shared: &Shared,
    endpoint: &quinn::Endpoint,
    peer: &PeerAddr,
) -> Result<(Duration, ProbeInfo, quinn::Connection), PeerError> {
    let (conn, fresh) = connection(shared, endpoint, peer).await?;
    let lost = |reason: String| PeerError::Lost {
        addr: peer.to_string(),
        reason,
    };
    let token = shared.trust.own_token();
    let exchange = async {
        if fresh {
            let (_send, mut recv) = conn
                .accept_bi()
                .await
                .map_err(|e| lost(describe_connection_error(&e)))?;
            match read_answer(shared, peer, &mut recv).await? {
                Answer::Info(info) => return Ok(info),
                Answer::Refused { code, .. }
                    if code == ErrorCode::Unauthorized.value() && token.is_some() => {}
                Answer::Refused { code, reason } => return Err(refused(peer, code, reason)),
            }
        }
        let (mut send, mut recv) = conn
            .open_bi()
            .await
            .map_err(|e| lost(describe_connection_error(&e)))?;
        let probe = ControlMessage::Probe { token };
        send.write_all(&probe.to_bytes())
            .await
            .map_err(|e| lost(e.to_string()))?;
        let _ = send.finish();
        match read_answer(shared, peer, &mut recv).await? {
            Answer::Info(info) => Ok(info),
            Answer::Refused { code, reason } => Err(refused(peer, code, reason)),
        }
    };
    let info = tokio::time::timeout(shared.config.peer_timeout, exchange)
        .await
        .map_err(|_| PeerError::Unreachable {
            addr: peer.clone(),
            timeout: shared.config.peer_timeout,
        })??;
    let rtt = conn.rtt();
    shared.conns.put(peer.id, conn.clone());
    Ok((rtt, info, conn))
}

/// What a probed node answered.
enum Answer {
    Info(ProbeInfo),
    Refused { code: u32, reason: String },
}

fn refused(peer: &PeerAddr, code: u32, reason: String) -> PeerError {
    PeerError::Refused {
        addr: peer.clone(),
        code: ErrorCode::from_value(u64::from(code))
            .map(|c| c.to_string())
            .unwrap_or_else(|| format!("code 0x{code:x}")),
        reason,
    }
}

/// Reads a probe answer (or a refusal) from `recv`.
async fn read_answer(
    shared: &Shared,
    peer: &PeerAddr,
    recv: &mut quinn::RecvStream,
) -> Result<Answer, PeerError> {
    let mut dec = ControlDecoder::new(&shared.config.limits);
    match control_io::next_message(recv, &mut dec).await {
        Ok(Some(ControlMessage::Refuse { code, reason, .. })) => {
            Ok(Answer::Refused { code, reason })
        }
        Ok(Some(ControlMessage::ProbeReply(info))) => Ok(Answer::Info(info)),
        Ok(Some(other)) => Err(PeerError::Violation {
            addr: peer.to_string(),
            code: ErrorCode::ProtocolViolation,
            reason: format!("answered a probe with {other:?}"),
        }),
        Ok(None) => Err(PeerError::Lost {
            addr: peer.to_string(),
            reason: "probe stream ended without an answer".into(),
        }),
        Err(ControlRead::Decode(error)) => Err(PeerError::Protocol {
            addr: peer.to_string(),
            error,
        }),
        Err(ControlRead::Read(e)) => Err(PeerError::Lost {
            addr: peer.to_string(),
            reason: e.to_string(),
        }),
    }
}

/// Reports `peer` to the overlay as lost if `conn` (a probe's, kept open to measure a
/// standby and attach to it at once) ends because the peer went silent or closed it
/// saying it is going away (it is shutting down), rather than being closed as idle.
/// Watches each connection once.
pub(crate) fn watch(shared: &Arc<Shared>, peer: NodeId, conn: quinn::Connection) {
    if !shared.conns.start_watching(&conn) {
        return;
    }
    let shared = shared.clone();
    tokio::spawn(async move {
        let why = conn.closed().await;
        shared.conns.stop_watching(&conn);
        if peer_gone(&why) && !shared.is_shutting_down() {
            debug!(%peer, "a probed peer went silent or away: {why}");
            lock(&shared.overlay).handle_peer_lost(Instant::now(), &peer);
            shared.kick.notify_one();
        }
    });
}

/// Whether a connection ended because the peer is gone: it went silent (crashed, cut
/// off) or closed the connection saying it is going away (shutting down). Not when
/// either side closed it as idle or done.
fn peer_gone(why: &quinn::ConnectionError) -> bool {
    match why {
        quinn::ConnectionError::TimedOut => true,
        quinn::ConnectionError::ApplicationClosed(close) => {
            close.error_code.into_inner() == u64::from(crate::proto::ErrorCode::GoingAway.value())
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::peer_gone;
    use crate::proto::ErrorCode;

    fn closed(code: ErrorCode) -> quinn::ConnectionError {
        quinn::ConnectionError::ApplicationClosed(quinn::ApplicationClose {
            error_code: code.value().into(),
            reason: bytes::Bytes::from_static(b"bye"),
        })
    }

    #[test]
    fn a_peer_is_gone_when_silent_or_going_away_not_when_idle() {
        assert!(peer_gone(&quinn::ConnectionError::TimedOut));
        assert!(peer_gone(&closed(ErrorCode::GoingAway)));
        assert!(!peer_gone(&closed(ErrorCode::NoError)), "closed as idle");
        assert!(!peer_gone(&quinn::ConnectionError::LocallyClosed));
    }
}
