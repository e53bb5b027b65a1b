//! Drives the sans-IO [`Overlay`] with real QUIC: carries out its actions, feeds back
//! their results, arms its timers and turns its events into logs and [`NodeEvent`]s.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use tokio::sync::{Notify, mpsc, oneshot};
use tracing::{debug, info, warn};

use super::addr::PeerAddr;
use super::error::PeerError;
use super::events::NodeEvent;
use super::hub::lock;
use super::identity::NodeId;
use super::{Shared, probe, upstream};
use crate::proto::control::ControlMessage;
use crate::proto::overlay::{Action, OverlayEvent};

/// A session with a parent (current, or being moved away from).
#[derive(Debug)]
pub(crate) struct ParentHandle {
    pub addr: PeerAddr,
    pub conn: quinn::Connection,
    pub ctl: mpsc::Sender<ControlMessage>,
    pub detach: Arc<Notify>,
}

/// A child's session, as other tasks see it.
#[derive(Debug, Clone)]
pub(crate) struct ChildCtl {
    pub tx: mpsc::Sender<ControlMessage>,
    pub conn: quinn::Connection,
    /// It announced it is leaving: its children may take its slot.
    pub leaving: Arc<std::sync::atomic::AtomicBool>,
}

/// Control channels to children, by child.
pub(crate) type ChildChannels = Mutex<HashMap<NodeId, ChildCtl>>;

/// Runs until shutdown.
pub(crate) async fn run(
    shared: Arc<Shared>,
    endpoint: quinn::Endpoint,
    mut first: Option<oneshot::Sender<Result<(), PeerError>>>,
) {
    let mut shutdown = shared.shutdown.subscribe();
    loop {
        let (actions, events, timeout) = {
            let mut o = lock(&shared.overlay);
            let mut a = Vec::new();
            while let Some(x) = o.poll_action() {
                a.push(x);
            }
            let mut e = Vec::new();
            while let Some(x) = o.poll_event() {
                e.push(x);
            }
            (a, e, o.poll_timeout())
        };
        for e in events {
            on_event(&shared, e, &mut first);
        }
        for a in actions {
            execute(&shared, &endpoint, a);
        }
        if let Some(err) = lock(&shared.first_error).take()
            && let Some(tx) = first.take()
        {
            let _ = tx.send(Err(err));
        }
        let sleep = async {
            match timeout {
                Some(t) => tokio::time::sleep_until(t.into()).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = shared.kick.notified() => {}
            _ = sleep => {
                // Improvement compares candidates with the parent as it is now, not as it
                // was when (or if) we probed it.
                let parent = lock(&shared.overlay).parent().map(|p| p.id);
                let rtt = parent.and_then(|p| lock(&shared.parents).get(&p).map(|h| h.conn.rtt()));
                let now = Instant::now();
                let mut o = lock(&shared.overlay);
                if let (Some(p), Some(rtt)) = (parent, rtt) {
                    o.handle_parent_rtt(now, &p, rtt);
                }
                o.handle_timeout(now);
            }
            _ = async { let _ = shutdown.wait_for(|s| *s).await; } => return,
        }
    }
}

fn on_event(
    shared: &Shared,
    e: OverlayEvent,
    first: &mut Option<oneshot::Sender<Result<(), PeerError>>>,
) {
    let m = &shared.metrics;
    // One line per tree event, naming the node (tests and the demo run many in a process).
    let node = shared.config.identity.id().short();
    match &e {
        OverlayEvent::Joined {
            parent,
            depth,
            took,
        } => {
            m.joins.inc();
            m.join_seconds.observe(took.as_secs_f64());
            info!(%node, parent = %parent.short(), depth, took_ms = took.as_millis() as u64, "joined the tree");
        }
        OverlayEvent::Repaired {
            parent,
            took,
            standby,
        } => {
            m.repairs.inc();
            m.repair_seconds.observe(took.as_secs_f64());
            info!(%node, parent = %parent.short(), took_ms = took.as_millis() as u64, standby, "re-attached after losing the parent");
        }
        OverlayEvent::Moved { from, to } => {
            m.parent_changes.inc();
            info!(%node, from = %from.short(), to = %to.short(), "parent changed");
        }
        OverlayEvent::Orphaned { parent } => {
            m.parent_losses.inc();
            warn!(%node, parent = %parent.short(), "parent lost; repairing");
        }
        OverlayEvent::LoopDetected => warn!(%node, "found a loop in the tree path; re-joining"),
        OverlayEvent::ChildrenHandedOver => info!(%node, "all children handed over"),
    }
    if matches!(
        e,
        OverlayEvent::Joined { .. } | OverlayEvent::Repaired { .. } | OverlayEvent::Moved { .. }
    ) && let Some(tx) = first.take()
    {
        let _ = tx.send(Ok(()));
    }
    shared.emit(NodeEvent::Overlay(e));
}

fn execute(shared: &Arc<Shared>, endpoint: &quinn::Endpoint, action: Action) {
    match action {
        Action::Probe(addr) => {
            let (shared, endpoint) = (shared.clone(), endpoint.clone());
            tokio::spawn(async move {
                match probe::probe(&shared, &endpoint, &addr).await {
                    Ok((rtt, info, conn)) => {
                        let result = Some((rtt, info));
                        lock(&shared.overlay).handle_probe_result(Instant::now(), &addr, result);
                        probe::watch(&shared, addr.id, conn);
                    }
                    Err(e) => {
                        debug!("probe of {addr} failed: {e}");
                        lock(&shared.overlay).handle_probe_result(Instant::now(), &addr, None);
                        note_failure(&shared, &addr, e);
                    }
                }
                shared.kick.notify_one();
            });
        }
        Action::Attach { to, replaces } => {
            let (shared, endpoint) = (shared.clone(), endpoint.clone());
            tokio::spawn(upstream::attach_and_run(shared, endpoint, to, replaces));
        }
        Action::Detach(id) => {
            if let Some(h) = lock(&shared.parents).get(&id) {
                h.detach.notify_one();
            }
        }
        Action::SendTree { child, info } => {
            send_child(shared, &child, ControlMessage::Tree(info));
        }
        Action::SendStatus {
            free,
            subtree,
            rooms,
        } => {
            let parent = lock(&shared.overlay).parent().map(|p| p.id);
            if let Some(p) = parent
                && let Some(h) = lock(&shared.parents).get(&p)
            {
                let _ = h.ctl.try_send(ControlMessage::Status {
                    free,
                    subtree,
                    rooms,
                });
            }
        }
        Action::AnnounceLeave => {
            let parent = lock(&shared.overlay).parent().map(|p| p.id);
            if let Some(p) = parent
                && let Some(h) = lock(&shared.parents).get(&p)
            {
                let _ = h.ctl.try_send(ControlMessage::Leaving);
            }
        }
        Action::MoveChild { child, to } => {
            send_child(shared, &child, ControlMessage::Goodbye { handover: to });
        }
        Action::Handover(handover) => {
            let kids: Vec<NodeId> = lock(&shared.child_ctl).keys().copied().collect();
            for k in kids {
                send_child(
                    shared,
                    &k,
                    ControlMessage::Goodbye {
                        handover: handover.clone(),
                    },
                );
            }
        }
    }
}

fn send_child(shared: &Shared, child: &NodeId, msg: ControlMessage) {
    if let Some(c) = lock(&shared.child_ctl).get(child) {
        let _ = c.tx.try_send(msg);
    }
}

/// Remembers why joining via a bootstrap or pinned parent failed, for `Node::start`.
pub(crate) fn note_failure(shared: &Shared, addr: &PeerAddr, e: PeerError) {
    let bootstrap = shared.config.parent.iter().chain(&shared.config.join);
    let is_entry = bootstrap.clone().any(|b| b.id == addr.id);
    let joined = lock(&shared.overlay).parent().is_some();
    if !is_entry || joined {
        return;
    }
    let mut failed = lock(&shared.entry_failures);
    failed.insert(addr.id);
    if failed.len() >= bootstrap.count() {
        *lock(&shared.first_error) = Some(e);
    }
}
