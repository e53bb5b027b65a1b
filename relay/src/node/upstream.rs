//! Sessions with parents: subscribe (resuming from the last frame held), receive the
//! catalog and tree position, then read one group per unidirectional stream, in order,
//! into the hub, while exchanging tree messages on the control stream.
//!
//! Several sessions may run at once for a moment: a node that moves attaches to the new
//! parent first and detaches from the old one after (make before break). The hub keeps
//! every frame once, whichever parent delivered it first.

use std::sync::Arc;
use std::time::Instant;

use tokio::sync::{Notify, mpsc};
use tracing::{debug, info, warn};

use super::Shared;
use super::addr::PeerAddr;
use super::control_io::ControlRead;
use super::driver::{ParentHandle, note_failure};
use super::error::{PeerError, describe_connection_error};
use super::events::NodeEvent;
use super::hub::lock;
use super::identity::NodeId;
use super::probe;
use crate::proto::control::{ControlDecoder, ControlMessage};
use crate::proto::group::{GroupDecoder, GroupHeader};
use crate::proto::order::StreamOrderer;
use crate::proto::overlay::{Refusal, Refused};
use crate::proto::tree_msg::TreeInfo;
use crate::proto::trust::TrustError;
use crate::proto::{DecodeError, ErrorCode};

/// An established, subscribed session.
pub(crate) struct Session {
    conn: quinn::Connection,
    send: quinn::SendStream,
    recv: quinn::RecvStream,
    dec: ControlDecoder,
}

enum AttachError {
    Refused(PeerError, Refused),
    Failed(PeerError),
}

/// Attaches to `to`, reports the outcome to the overlay and, on success, runs the session
/// until it ends; then reports the loss unless the overlay asked to detach.
pub(crate) async fn attach_and_run(
    shared: Arc<Shared>,
    endpoint: quinn::Endpoint,
    to: PeerAddr,
    replaces: Option<NodeId>,
) {
    match attach(&shared, &endpoint, &to, replaces).await {
        Ok((session, info)) => {
            let (ctl_tx, ctl_rx) = mpsc::channel(64);
            let detach = Arc::new(Notify::new());
            lock(&shared.parents).insert(
                to.id,
                ParentHandle {
                    addr: to.clone(),
                    conn: session.conn.clone(),
                    ctl: ctl_tx,
                    detach: detach.clone(),
                },
            );
            lock(&shared.overlay).handle_attach_result(Instant::now(), &to, Ok(info));
            shared.emit(NodeEvent::ParentAttached { parent: to.clone() });
            shared.kick.notify_one();
            let end = run(&shared, &to, session, ctl_rx, &detach).await;
            lock(&shared.parents).remove(&to.id);
            match end {
                Ok(true) => debug!(parent = %to, "detached"),
                // Stopping closes our own connections: whatever the session ended with
                // then is no news about the parent.
                Err(e) if shared.is_shutting_down() => debug!(parent = %to, "stopped: {e}"),
                Ok(false) => {
                    info!(parent = %to, "parent ended the session");
                    parent_lost(&shared, &to, "parent left".into());
                }
                Err(e) => {
                    warn!("{e}");
                    if is_forgery(&e) {
                        lock(&shared.overlay).handle_distrust(Instant::now(), &to.id);
                    }
                    parent_lost(&shared, &to, e.to_string());
                }
            }
        }
        Err(AttachError::Refused(e, refused)) => {
            debug!("{e}");
            lock(&shared.overlay).handle_attach_result(Instant::now(), &to, Err(Some(refused)));
            // A refusal redirects a joiner; only a parent given by hand, or a refused
            // token, is final.
            let unauthorized = matches!(&e, PeerError::Refused { code, .. } if code.starts_with(ErrorCode::Unauthorized.name()));
            if shared.config.parent.is_some() || unauthorized {
                note_failure(&shared, &to, e);
            }
            shared.kick.notify_one();
        }
        Err(AttachError::Failed(e)) => {
            debug!("attach to {to} failed: {e}");
            if is_forgery(&e) {
                lock(&shared.overlay).handle_distrust(Instant::now(), &to.id);
            }
            lock(&shared.overlay).handle_attach_result(Instant::now(), &to, Err(None));
            note_failure(&shared, &to, e);
            shared.kick.notify_one();
        }
    }
}

fn parent_lost(shared: &Shared, parent: &PeerAddr, reason: String) {
    if shared.is_shutting_down() {
        return;
    }
    lock(&shared.overlay).handle_parent_lost(Instant::now(), &parent.id);
    shared.emit(NodeEvent::ParentLost {
        parent: parent.clone(),
        reason,
    });
    shared.kick.notify_one();
}

/// Whether the parent was cut off for breaking the stream's integrity.
fn is_forgery(e: &PeerError) -> bool {
    matches!(
        e,
        PeerError::Violation {
            code: ErrorCode::BadSignature,
            ..
        }
    )
}

/// Cuts off a parent that sent media or a catalog the publisher did not sign.
fn distrusted(
    shared: &Shared,
    conn: &quinn::Connection,
    parent: &PeerAddr,
    e: TrustError,
) -> PeerError {
    shared
        .counters
        .bad_signatures
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let reason = e.to_string();
    shared.misbehaved(conn, &parent.to_string(), e.code(), &reason);
    PeerError::Violation {
        addr: parent.to_string(),
        code: e.code(),
        reason,
    }
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

fn violation(
    shared: &Shared,
    conn: &quinn::Connection,
    parent: &PeerAddr,
    reason: String,
) -> PeerError {
    shared.misbehaved(
        conn,
        &parent.to_string(),
        ErrorCode::ProtocolViolation,
        &reason,
    );
    PeerError::Violation {
        addr: parent.to_string(),
        code: ErrorCode::ProtocolViolation,
        reason,
    }
}

/// Reads the next control message from a parent.
async fn next_control(
    shared: &Shared,
    parent: &PeerAddr,
    conn: &quinn::Connection,
    recv: &mut quinn::RecvStream,
    dec: &mut ControlDecoder,
) -> Result<Option<ControlMessage>, PeerError> {
    super::control_io::next_message(recv, dec)
        .await
        .map_err(|e| match e {
            ControlRead::Decode(e) => protocol(shared, conn, parent, e),
            ControlRead::Read(quinn::ReadError::ConnectionLost(
                quinn::ConnectionError::ApplicationClosed(c),
            )) => refused(parent, c.error_code.into_inner(), &c.reason),
            ControlRead::Read(e) => PeerError::Lost {
                addr: parent.to_string(),
                reason: e.to_string(),
            },
        })
}

async fn attach(
    shared: &Arc<Shared>,
    endpoint: &quinn::Endpoint,
    to: &PeerAddr,
    replaces: Option<NodeId>,
) -> Result<(Session, TreeInfo), AttachError> {
    let (conn, _) = probe::connection(shared, endpoint, to)
        .await
        .map_err(AttachError::Failed)?;
    let lost = |reason: String| {
        AttachError::Failed(PeerError::Lost {
            addr: to.to_string(),
            reason,
        })
    };
    let (mut send, mut recv) = conn
        .open_bi()
        .await
        .map_err(|e| lost(describe_connection_error(&e)))?;
    let resume = lock(&shared.hub).resume_points();
    let sub = ControlMessage::Subscribe {
        resume,
        capacity: shared.config.max_children as u32,
        replaces,
        token: shared.trust.own_token(),
    };
    send.write_all(&sub.to_bytes())
        .await
        .map_err(|e| lost(e.to_string()))?;
    let mut dec = ControlDecoder::new(&shared.config.limits);
    let timeout = shared.config.peer_timeout;
    let answer = async {
        let mut catalog = false;
        loop {
            match next_control(shared, to, &conn, &mut recv, &mut dec).await {
                Ok(Some(ControlMessage::Catalog(c))) if !catalog => {
                    if let Err(e) = shared.trust.accept_catalog(&c) {
                        return Err(AttachError::Failed(distrusted(shared, &conn, to, e)));
                    }
                    let parsed = c.catalog.clone();
                    *lock(&shared.signed_catalog) = Some(c);
                    shared.catalog.send_replace(Some(parsed));
                    catalog = true;
                }
                Ok(Some(ControlMessage::Tree(info))) if catalog => return Ok(info),
                Ok(Some(ControlMessage::Refuse {
                    code,
                    reason,
                    redirect,
                })) => {
                    let why = if code == ErrorCode::ParentFull.value() {
                        Refusal::Full
                    } else if code == ErrorCode::GoingAway.value() {
                        Refusal::Leaving
                    } else {
                        Refusal::NotRooted
                    };
                    return Err(AttachError::Refused(
                        refused(to, u64::from(code), reason.as_bytes()),
                        Refused { why, redirect },
                    ));
                }
                Ok(Some(other)) => {
                    return Err(AttachError::Failed(violation(
                        shared,
                        &conn,
                        to,
                        format!("unexpected {other:?} while subscribing"),
                    )));
                }
                Ok(None) => return Err(lost("control stream closed while subscribing".into())),
                Err(e @ PeerError::Refused { .. }) => {
                    let r = Refused {
                        why: Refusal::Full,
                        redirect: vec![],
                    };
                    return Err(AttachError::Refused(e, r));
                }
                Err(e) => return Err(AttachError::Failed(e)),
            }
        }
    };
    let info = tokio::time::timeout(timeout, answer).await.map_err(|_| {
        AttachError::Failed(PeerError::Unreachable {
            addr: to.clone(),
            timeout,
        })
    })??;
    Ok((
        Session {
            conn,
            send,
            recv,
            dec,
        },
        info,
    ))
}

/// Runs a session: media in, tree messages both ways. `Ok(true)`: we detached on request.
async fn run(
    shared: &Arc<Shared>,
    parent: &PeerAddr,
    session: Session,
    mut ctl_rx: mpsc::Receiver<ControlMessage>,
    detach: &Notify,
) -> Result<bool, PeerError> {
    let Session {
        conn,
        mut send,
        mut recv,
        mut dec,
    } = session;
    let media = receive(shared, parent, &conn);
    tokio::pin!(media);
    let mut shutdown = shared.shutdown.subscribe();
    let silence = shared.config.parent_silence;
    let every = shared.config.keep_alive / 2;
    let watch = async {
        match silence {
            Some(limit) => {
                super::watchdog::silent_for(&conn, limit, every).await;
                limit
            }
            None => std::future::pending().await,
        }
    };
    tokio::pin!(watch);
    loop {
        tokio::select! {
            r = &mut media => return r.map(|()| false),
            limit = &mut watch => {
                let reason = format!("silent for {} ms", limit.as_millis());
                conn.close(ErrorCode::Timeout.value().into(), reason.as_bytes());
                return Err(PeerError::Lost { addr: parent.to_string(), reason });
            }
            m = next_control(shared, parent, &conn, &mut recv, &mut dec) => match m? {
                Some(ControlMessage::Tree(info)) => {
                    lock(&shared.overlay).handle_tree(Instant::now(), &parent.id, info);
                    shared.kick.notify_one();
                }
                Some(ControlMessage::Goodbye { handover }) => {
                    info!(parent = %parent, "parent is leaving; moving");
                    lock(&shared.overlay).handle_goodbye(Instant::now(), &parent.id, handover);
                    shared.kick.notify_one();
                }
                Some(other) => {
                    return Err(violation(shared, &conn, parent, format!("unexpected {other:?} from a parent")));
                }
                None => return Ok(false),
            },
            Some(msg) = ctl_rx.recv() => {
                if let Err(e) = send.write_all(&msg.to_bytes()).await {
                    return Err(PeerError::Lost { addr: parent.to_string(), reason: e.to_string() });
                }
            }
            _ = detach.notified() => {
                let bye = ControlMessage::Goodbye { handover: vec![] };
                let _ = send.write_all(&bye.to_bytes()).await;
                let _ = send.finish();
                conn.close(ErrorCode::NoError.value().into(), b"moved to another parent");
                return Ok(true);
            }
            _ = async { let _ = shutdown.wait_for(|s| *s).await; } => return Ok(true),
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
            Ok(Ok(None)) => continue,
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
            return Err(violation(shared, conn, parent, reason));
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
            let e = match r {
                Ok(()) => return,
                Err(GroupError::Decode(e)) => protocol(&shared, &conn, &parent, e),
                Err(GroupError::Trust(e)) => distrusted(&shared, &conn, &parent, e),
            };
            let _ = err_tx.try_send(e);
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

/// Why a group stream was cut off.
enum GroupError {
    Decode(DecodeError),
    Trust(TrustError),
}

impl From<DecodeError> for GroupError {
    fn from(e: DecodeError) -> Self {
        GroupError::Decode(e)
    }
}

/// Reads a group's frames into the orderer, each checked against the publisher's
/// signature first (a forged frame is never cached, forwarded or played). A reset stream
/// (stale group dropped by the parent) ends quietly; a malformed or forged one is an
/// error.
async fn read_group(
    shared: &Arc<Shared>,
    orderer: &std::sync::Mutex<StreamOrderer>,
    header: GroupHeader,
    mut recv: quinn::RecvStream,
    mut dec: GroupDecoder,
) -> Result<(), GroupError> {
    let mut out = Vec::new();
    loop {
        while let Some(frame) = dec.next_frame()? {
            shared
                .trust
                .verify_frame(&frame)
                .map_err(GroupError::Trust)?;
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
            Ok(None) => return Ok(dec.finish()?),
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
