//! Serving children: accept a connection, read its subscription, send the catalog, then
//! write one QUIC stream per group from the child's own bounded queue.
//!
//! Whatever a child does wrong closes that child's connection with a named code; no other
//! child is affected.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;

use bytes::BytesMut;
use tracing::{debug, info, warn};

use super::Shared;
use super::control_io::{self, ControlRead};
use super::driver::ChildCtl;
use super::error::{PeerError, describe_connection_error};
use super::events::NodeEvent;
use super::hub::{Subscriber, SubscriberKind, lock};
use super::identity::NodeId;
use super::tls::peer_node_id;
use super::watchdog;
use crate::proto::addr::PeerAddr;
use crate::proto::control::{ControlDecoder, ControlMessage, ResumePoint};
use crate::proto::group::{GroupHeader, encode_frame_header};
use crate::proto::media::{Frame, TrackId};
use crate::proto::overlay::Refusal;
use crate::proto::report::MAX_REPORT_NODES;
use crate::proto::tree_msg::TreeInfo;
use crate::proto::{DecodeError, ErrorCode};

/// Accepts children until the endpoint closes.
pub(crate) async fn accept_loop(shared: Arc<Shared>, endpoint: quinn::Endpoint) {
    while let Some(incoming) = endpoint.accept().await {
        let shared = shared.clone();
        let remote = incoming.remote_address();
        let slot = match shared.admission.admit(remote.ip(), Instant::now()) {
            Ok(slot) => slot,
            Err(why) => {
                debug!(%remote, ?why, "connection refused by the admission limits");
                incoming.refuse();
                continue;
            }
        };
        tokio::spawn(async move {
            let _slot = slot;
            let refused = |e: &quinn::ConnectionError| {
                info!(%remote, "refused connection: {}", describe_connection_error(e));
            };
            let connecting = match incoming.accept() {
                Ok(c) => c,
                Err(e) => return refused(&e),
            };
            // A server may always send before the handshake completes (0.5-RTT data):
            // the probe answer goes out with our handshake flight.
            let conn = match connecting.into_0rtt() {
                Ok((conn, handshake_done)) => {
                    super::probe::answer_unasked(&shared, &conn);
                    handshake_done.await;
                    if let Some(e) = conn.close_reason() {
                        return refused(&e);
                    }
                    conn
                }
                Err(connecting) => match connecting.await {
                    Ok(c) => c,
                    Err(e) => return refused(&e),
                },
            };
            if let Err(e) = serve(shared.clone(), conn).await {
                match &e {
                    PeerError::Protocol { .. } | PeerError::Violation { .. } => {
                        warn!("child {e}")
                    }
                    _ => debug!("child session ended: {e}"),
                }
            }
        });
    }
}

fn close(conn: &quinn::Connection, code: ErrorCode, reason: &str) {
    conn.close(code.value().into(), reason.as_bytes());
}

/// Closes `conn` for a decode error and returns the matching error.
fn protocol_error(
    shared: &Shared,
    conn: &quinn::Connection,
    addr: &str,
    e: DecodeError,
) -> PeerError {
    shared.misbehaved(conn, addr, e.code(), &e.to_string());
    PeerError::Protocol {
        addr: addr.to_string(),
        error: e,
    }
}

fn violation(
    shared: &Shared,
    conn: &quinn::Connection,
    addr: &str,
    code: ErrorCode,
    reason: &str,
) -> PeerError {
    shared.misbehaved(conn, addr, code, reason);
    PeerError::Violation {
        addr: addr.to_string(),
        code,
        reason: reason.to_string(),
    }
}

fn lost(addr: &str, reason: impl ToString) -> PeerError {
    PeerError::Lost {
        addr: addr.to_string(),
        reason: reason.to_string(),
    }
}

/// Reads the next control message, enforcing the decoder bounds.
async fn read_control(
    shared: &Shared,
    conn: &quinn::Connection,
    addr: &str,
    recv: &mut quinn::RecvStream,
    dec: &mut ControlDecoder,
) -> Result<Option<ControlMessage>, PeerError> {
    control_io::next_message(recv, dec)
        .await
        .map_err(|e| match e {
            ControlRead::Decode(e) => protocol_error(shared, conn, addr, e),
            ControlRead::Read(e) => lost(addr, e),
        })
}

/// How long a connection may stay idle between probe and subscription.
const PROBE_GRACE: Duration = Duration::from_secs(10);

async fn serve(shared: Arc<Shared>, conn: quinn::Connection) -> Result<(), PeerError> {
    let addr = conn.remote_address().to_string();
    let Some(peer) = peer_node_id(conn.peer_identity()) else {
        return Err(violation(
            &shared,
            &conn,
            &addr,
            ErrorCode::ProtocolViolation,
            "no node identity",
        ));
    };
    let peer_addr = PeerAddr::new(peer, conn.remote_address());
    let timeout = shared.config.peer_timeout;
    // Probes (within the request budget), then at most one subscription.
    let mut budget = shared.admission.request_bucket(Instant::now());
    let (mut send, mut recv, mut dec, capacity, resume, replaces) = loop {
        let (mut send, mut recv) = match tokio::time::timeout(PROBE_GRACE, conn.accept_bi()).await {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => return Err(lost(&addr, describe_connection_error(&e))),
            Err(_) => {
                close(&conn, ErrorCode::NoError, "idle");
                return Ok(());
            }
        };
        let mut dec = ControlDecoder::new(&shared.config.limits);
        let first = tokio::time::timeout(
            timeout,
            read_control(&shared, &conn, &addr, &mut recv, &mut dec),
        )
        .await;
        match first {
            Ok(Ok(Some(ControlMessage::Probe { .. }))) if !budget.allow(Instant::now()) => {
                return Err(violation(
                    &shared,
                    &conn,
                    &addr,
                    ErrorCode::RateLimited,
                    "too many probes per second",
                ));
            }
            Ok(Ok(Some(ControlMessage::Probe { token }))) => {
                if let Err(e) = shared.trust.check_token(token.as_ref()) {
                    refuse(&conn, &mut send, ErrorCode::Unauthorized, &e.to_string()).await;
                    return Ok(());
                }
                let reply = ControlMessage::ProbeReply(
                    lock(&shared.overlay).probe_answer(Instant::now(), peer.as_bytes()),
                );
                let _ = send.write_all(&reply.to_bytes()).await;
                let _ = send.finish();
            }
            Ok(Ok(Some(ControlMessage::TreeQuery))) if !budget.allow(Instant::now()) => {
                return Err(violation(
                    &shared,
                    &conn,
                    &addr,
                    ErrorCode::RateLimited,
                    "too many tree queries per second",
                ));
            }
            Ok(Ok(Some(ControlMessage::TreeQuery))) => {
                let mut report = super::observe::subtree_report(&shared, MAX_REPORT_NODES);
                // Peers learn only the addresses they need: the audience's addresses go
                // to an operator on this machine, not to whoever asks over the network.
                if !conn.remote_address().ip().is_loopback() {
                    for n in &mut report.nodes {
                        n.host.clear();
                    }
                }
                let _ = send
                    .write_all(&ControlMessage::Report(report).to_bytes())
                    .await;
                let _ = send.finish();
            }
            Ok(Ok(Some(ControlMessage::Subscribe {
                resume,
                capacity,
                replaces,
                token,
            }))) => {
                if let Err(e) = shared.trust.check_token(token.as_ref()) {
                    refuse(&conn, &mut send, ErrorCode::Unauthorized, &e.to_string()).await;
                    return Ok(());
                }
                break (send, recv, dec, capacity, resume, replaces);
            }
            Ok(Ok(Some(other))) => {
                return Err(violation(
                    &shared,
                    &conn,
                    &addr,
                    ErrorCode::ProtocolViolation,
                    &format!("expected probe or subscribe, got {}", message_name(&other)),
                ));
            }
            Ok(Ok(None)) => return Err(lost(&addr, "control stream closed before subscribing")),
            Ok(Err(e)) => return Err(e),
            Err(_) => {
                return Err(violation(
                    &shared,
                    &conn,
                    &addr,
                    ErrorCode::Timeout,
                    "no request in time",
                ));
            }
        }
    };

    // A request for another child's slot stands only if that child has announced it is
    // leaving or has gone silent (crashed): nobody takes a live sibling's place.
    let replaces = match replaces {
        Some(r) => slot_is_free(&shared, r).await.then_some(r),
        None => None,
    };
    // Admission: the overlay decides (capacity, rootedness, loops).
    let admitted =
        lock(&shared.overlay).handle_child_request(Instant::now(), &peer_addr, capacity, replaces);
    shared.kick.notify_one();
    let info = match admitted {
        Ok(info) => info,
        Err(refused) => {
            let (code, reason) = refusal_text(&shared, &refused.why);
            refuse_with(&conn, &mut send, code, &reason, refused.redirect).await;
            return Ok(());
        }
    };

    let (result, vanished) = serve_child(
        &shared, &conn, &addr, peer, info, resume, &mut send, &mut recv, &mut dec,
    )
    .await;
    {
        let mut overlay = lock(&shared.overlay);
        if vanished {
            overlay.handle_child_lost(Instant::now(), &peer);
        } else {
            overlay.handle_child_gone(&peer);
        }
    }
    shared.kick.notify_one();
    result
}

/// Refuses a request (no redirect) and closes the connection.
async fn refuse(
    conn: &quinn::Connection,
    send: &mut quinn::SendStream,
    code: ErrorCode,
    reason: &str,
) {
    debug!(peer = %conn.remote_address(), "refused: {reason}");
    refuse_with(conn, send, code, reason, Vec::new()).await;
}

async fn refuse_with(
    conn: &quinn::Connection,
    send: &mut quinn::SendStream,
    code: ErrorCode,
    reason: &str,
    redirect: Vec<crate::proto::tree_msg::Candidate>,
) {
    let msg = ControlMessage::Refuse {
        code: code.value(),
        reason: reason.to_string(),
        redirect,
    };
    let _ = send.write_all(&msg.to_bytes()).await;
    let _ = send.finish();
    // Let the refusal arrive before the close.
    let _ = tokio::time::timeout(Duration::from_millis(500), send.stopped()).await;
    close(conn, code, reason);
}

/// Whether child `r`'s slot may be taken: it announced it is leaving, or it has sent
/// nothing for a while (longer than its keep-alive interval): it crashed. If it is no
/// longer our child, the overlay decides (it holds a vanished child's slot for a moment
/// for the heir that child named).
async fn slot_is_free(shared: &Shared, r: NodeId) -> bool {
    let Some(c) = lock(&shared.child_ctl).get(&r).cloned() else {
        // Gone already: the overlay may be holding its slot for its heir.
        return true;
    };
    let before = c.conn.stats().udp_rx.datagrams;
    // The leaver's announcement may still be on its way: watch for it a moment.
    for _ in 0..4 {
        if c.leaving.load(Ordering::Acquire) || c.conn.close_reason().is_some() {
            return true;
        }
        tokio::time::sleep(shared.config.keep_alive / 2).await;
    }
    if c.leaving.load(Ordering::Acquire) {
        return true;
    }
    let silent = c.conn.stats().udp_rx.datagrams == before;
    if silent {
        c.conn.close(
            ErrorCode::GoingAway.value().into(),
            b"silent: slot taken over",
        );
    }
    silent
}

fn refusal_text(shared: &Shared, why: &Refusal) -> (ErrorCode, String) {
    match why {
        Refusal::Full => (
            ErrorCode::ParentFull,
            format!(
                "all {} child slots of this node are taken (or kept for nodes that relay)",
                shared.config.max_children
            ),
        ),
        Refusal::NotRooted => (
            ErrorCode::NotRooted,
            "this node is not connected to the origin right now".into(),
        ),
        Refusal::WouldLoop => (
            ErrorCode::WouldLoop,
            "you are an ancestor of this node".into(),
        ),
        Refusal::Leaving => (ErrorCode::GoingAway, "this node is leaving".into()),
    }
}

#[allow(clippy::too_many_arguments)]
async fn serve_child(
    shared: &Arc<Shared>,
    conn: &quinn::Connection,
    addr: &str,
    peer: NodeId,
    info: TreeInfo,
    resume: Vec<ResumePoint>,
    send: &mut quinn::SendStream,
    recv: &mut quinn::RecvStream,
    dec: &mut ControlDecoder,
) -> (Result<(), PeerError>, bool) {
    // The catalog first (a rooted node has it), then the child's place in the tree.
    let mut cat = shared.catalog.subscribe();
    tokio::select! {
        c = cat.wait_for(|c| c.is_some()) => if c.is_err() { return (Ok(()), false) },
        e = conn.closed() => return (Err(lost(addr, describe_connection_error(&e))), false),
    };
    let Some(catalog) = lock(&shared.signed_catalog).clone() else {
        return (Ok(()), false);
    };
    let mut out = BytesMut::new();
    ControlMessage::Catalog(catalog).encode(&mut out);
    ControlMessage::Tree(info).encode(&mut out);
    if let Err(e) = send.write_all(&out).await {
        return (Err(lost(addr, e)), false);
    }

    let (ctl_tx, mut ctl_rx) = mpsc::channel::<ControlMessage>(64);
    let leaving = Arc::new(std::sync::atomic::AtomicBool::new(false));
    lock(&shared.child_ctl).insert(
        peer,
        ChildCtl {
            tx: ctl_tx.clone(),
            conn: conn.clone(),
            leaving: leaving.clone(),
        },
    );
    let sub = subscribe_child(shared, peer, &resume);
    info!(child = %peer.short(), %addr, "child attached");
    shared.metrics.children_attached.inc();
    shared.emit(NodeEvent::ChildAttached {
        child: peer,
        addr: conn.remote_address(),
    });

    let control = async {
        loop {
            tokio::select! {
                m = read_control(shared, conn, addr, recv, dec) => match m? {
                    Some(ControlMessage::Status { free, subtree, rooms }) => {
                        lock(&shared.overlay).handle_child_status(&peer, free, subtree, rooms);
                        shared.kick.notify_one();
                    }
                    Some(ControlMessage::Report(r)) => {
                        super::observe::child_reported(shared, peer, r);
                    }
                    Some(ControlMessage::Leaving) => {
                        leaving.store(true, Ordering::Release);
                    }
                    Some(ControlMessage::Goodbye { .. }) | None => {
                        close(conn, ErrorCode::NoError, "goodbye");
                        return Ok(());
                    }
                    Some(other) => {
                        return Err(violation(
                            shared,
                            conn,
                            addr,
                            ErrorCode::ProtocolViolation,
                            &format!("unexpected {} from a child", message_name(&other)),
                        ));
                    }
                },
                Some(msg) = ctl_rx.recv() => {
                    send.write_all(&msg.to_bytes()).await.map_err(|e| lost(addr, e))?;
                }
            }
        }
    };
    let silence = shared.config.child_silence;
    let mut silent = false;
    let result = tokio::select! {
        r = send_loop(shared, conn, &sub) => r,
        r = control => r,
        r = refuse_uni_streams(shared, conn, addr) => r,
        Some(limit) = async {
            match silence {
                Some(limit) => {
                    watchdog::silent_for(conn, limit, shared.config.keep_alive / 2).await;
                    Some(limit)
                }
                None => std::future::pending().await,
            }
        } => {
            let reason = format!("silent for {} ms", limit.as_millis());
            close(conn, ErrorCode::Timeout, &reason);
            silent = true;
            Err(lost(addr, reason))
        }
    };
    // Crashed (gone silent) or announced its leave: its heir may come for its slot.
    let vanished = silent
        || leaving.load(Ordering::Acquire)
        || matches!(conn.close_reason(), Some(quinn::ConnectionError::TimedOut));
    {
        let mut ctl = lock(&shared.child_ctl);
        if ctl.get(&peer).is_some_and(|c| c.tx.same_channel(&ctl_tx)) {
            ctl.remove(&peer);
        }
    }
    let removed = lock(&shared.hub).unsubscribe(sub.id);
    if let Some(s) = removed {
        let d = s.drops();
        shared
            .counters
            .dropped_frames
            .fetch_add(d.frames, Ordering::Relaxed);
        shared
            .counters
            .dropped_groups
            .fetch_add(d.groups, Ordering::Relaxed);
    }
    super::observe::child_gone(shared, &peer);
    shared.metrics.children_detached.inc();
    info!(child = %peer.short(), %addr, "child detached");
    shared.emit(NodeEvent::ChildDetached { child: peer });
    (result, vanished)
}

fn subscribe_child(shared: &Shared, peer: NodeId, resume: &[ResumePoint]) -> Arc<Subscriber> {
    lock(&shared.hub).subscribe(
        Instant::now(),
        SubscriberKind::Child(peer),
        shared.config.child_queue,
        resume,
    )
}

fn message_name(m: &ControlMessage) -> &'static str {
    match m {
        ControlMessage::Subscribe { .. } => "subscribe",
        ControlMessage::Catalog(_) => "catalog",
        ControlMessage::Refuse { .. } => "refuse",
        ControlMessage::Goodbye { .. } => "goodbye",
        ControlMessage::Probe { .. } => "probe",
        ControlMessage::ProbeReply(_) => "probe reply",
        ControlMessage::Tree(_) => "tree",
        ControlMessage::Status { .. } => "status",
        ControlMessage::Leaving => "leaving",
        ControlMessage::Report(_) => "report",
        ControlMessage::TreeQuery => "tree query",
    }
}

/// Children never open unidirectional streams (transport limits say 0, so this only
/// triggers against a peer that ignores them).
async fn refuse_uni_streams(
    shared: &Shared,
    conn: &quinn::Connection,
    addr: &str,
) -> Result<(), PeerError> {
    match conn.accept_uni().await {
        Ok(_) => Err(violation(
            shared,
            conn,
            addr,
            ErrorCode::UnexpectedStream,
            "children must not open media streams",
        )),
        Err(e) => Err(lost(addr, describe_connection_error(&e))),
    }
}

struct OpenGroup {
    group: u64,
    stream: quinn::SendStream,
}

/// Writes the child's queue out, one stream per group, abandoning stale groups.
async fn send_loop(
    shared: &Shared,
    conn: &quinn::Connection,
    sub: &Subscriber,
) -> Result<(), PeerError> {
    let addr = conn.remote_address().to_string();
    let mut open: HashMap<TrackId, OpenGroup> = HashMap::new();
    loop {
        let frame = tokio::select! {
            f = sub.next() => f,
            _ = sub.group_dropped() => {
                reset_stale(sub, &mut open);
                continue;
            }
        };
        let Some(frame) = frame else {
            // Node shutting down: end streams in order.
            for (_, mut g) in open.drain() {
                let _ = g.stream.finish();
            }
            return Ok(());
        };
        // Fault injection (tests of a hostile relay): alter what goes to children.
        let frame = match &shared.config.tamper {
            Some(t) => {
                let mut f = frame;
                t.0(&mut f);
                f
            }
            None => frame,
        };
        reset_stale(sub, &mut open);
        let need_new = open
            .get(&frame.track)
            .is_none_or(|g| g.group != frame.group);
        if need_new {
            if let Some(mut old) = open.remove(&frame.track) {
                let _ = old.stream.finish();
            }
            let mut stream = conn
                .open_uni()
                .await
                .map_err(|e| lost(&addr, describe_connection_error(&e)))?;
            // Newer groups first: a late group never blocks a fresh one.
            let _ = stream.set_priority(priority(frame.group));
            let header = GroupHeader {
                track: frame.track,
                group: frame.group,
            };
            stream
                .write_chunk(header.to_bytes())
                .await
                .map_err(|e| lost(&addr, e))?;
            open.insert(
                frame.track,
                OpenGroup {
                    group: frame.group,
                    stream,
                },
            );
        }
        let Some(g) = open.get_mut(&frame.track) else {
            continue;
        };
        let (track, group) = (frame.track, frame.group);
        tokio::select! {
            r = write_frame(&mut g.stream, &frame) => {
                if let Err(e) = r {
                    // A stream stopped by the child, or a dead connection.
                    if let Some(reason) = conn.close_reason() {
                        return Err(lost(&addr, describe_connection_error(&reason)));
                    }
                    debug!(%addr, "group stream write failed: {e}");
                    open.remove(&track);
                    continue;
                }
                shared.counters.frames_out.fetch_add(1, Ordering::Relaxed);
                shared.counters.bytes_out.fetch_add(frame.payload.len() as u64, Ordering::Relaxed);
                shared.metrics.forwarded(frame.track, frame.payload.len() as u64);
            }
            _ = wait_stale(sub, track, group) => {
                reset_stale(sub, &mut open);
            }
        }
    }
}

async fn wait_stale(sub: &Subscriber, track: TrackId, group: u64) {
    loop {
        sub.group_dropped().await;
        if sub.is_stale(track, group) {
            return;
        }
    }
}

fn reset_stale(sub: &Subscriber, open: &mut HashMap<TrackId, OpenGroup>) {
    open.retain(|&track, g| {
        if sub.is_stale(track, g.group) {
            let _ = g.stream.reset(ErrorCode::GroupDropped.value().into());
            false
        } else {
            true
        }
    });
}

async fn write_frame(
    stream: &mut quinn::SendStream,
    frame: &Frame,
) -> Result<(), quinn::WriteError> {
    stream.write_chunk(encode_frame_header(frame)).await?;
    stream.write_chunk(frame.payload.clone()).await
}

fn priority(group: u64) -> i32 {
    (group % i32::MAX as u64) as i32
}
