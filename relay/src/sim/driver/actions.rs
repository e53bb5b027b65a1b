//! Carrying out an overlay's actions: each becomes a message (counted with the real
//! encoder) that arrives after the link's delay; and recording its events.

use super::*;

impl Sim {
    pub(super) fn on_event(&mut self, p: Peer, e: OverlayEvent) {
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        match e {
            OverlayEvent::Joined { took, .. } => {
                self.m.join_attach_ms.add(ms(took));
                // In round trips to the origin (without jitter): what "a few round
                // trips" is judged by.
                let rtt_us = 2 * self.owd(p, 0).max(1);
                self.m
                    .join_rtts
                    .add(took.as_micros() as f64 / rtt_us as f64);
            }
            OverlayEvent::Repaired { took, standby, .. } => {
                self.m.repair_ms.add(ms(took));
                self.m.repaired_by_standby += u64::from(standby);
                let since = self.orphan_since[p as usize];
                if since != NEVER {
                    self.m.outage_ms.add((self.now - since) as f64 / 1000.0);
                    self.orphan_since[p as usize] = NEVER;
                }
            }
            OverlayEvent::Orphaned { parent } => {
                self.m.orphaned += 1;
                let down = self.down_at[index(&parent) as usize];
                self.orphan_since[p as usize] = if down == NEVER { self.now } else { down };
                self.lost_parent_at[p as usize] = self.orphan_since[p as usize];
            }
            // (`sync_parent` notes the path change, as for any new parent.)
            OverlayEvent::Moved { .. } => self.m.moved += 1,
            OverlayEvent::LoopDetected => {
                self.m.loops += 1;
                self.orphan_since[p as usize] = self.now;
            }
            OverlayEvent::ChildrenHandedOver => {
                if self.leaving[p as usize] {
                    self.q.push(self.now, Event::Close(p));
                }
            }
        }
    }

    pub(super) fn dispatch(&mut self, p: Peer, a: Action) {
        let now = self.now;
        match a {
            Action::Probe(addr) => {
                let to = index(&addr.id);
                let rtt = self.rtt_measured(p, to);
                let setup = self.connect(p, to, rtt);
                // On a new connection the answer comes unasked with the handshake, one
                // round trip in all (`node::probe`); on one a probe left open, the prober
                // asks: one round trip as well.
                if setup == 0 {
                    self.count("probe", p, to, &ControlMessage::Probe { token: None });
                }
                if let Some(silent) = self.kept_conn_ends(setup, p, to) {
                    // The probe fails when its connection does, and the node reports
                    // the peer lost then.
                    self.q.push(silent, Event::PeerSilent { from: p, to });
                    let reply = None;
                    self.q
                        .push(silent, Event::ProbeReply { from: p, to, reply });
                    return;
                }
                self.q.push(
                    now + rtt / 2,
                    Event::ProbeRequest {
                        from: p,
                        to,
                        sent: now,
                        connected: now + setup,
                        rtt_us: rtt,
                    },
                );
            }
            Action::Attach { to, replaces } => {
                let to = index(&to.id);
                let msg = ControlMessage::Subscribe {
                    token: None,
                    resume: vec![
                        ResumePoint {
                            track: 0,
                            next_seq: 1 << 20,
                        },
                        ResumePoint {
                            track: 1,
                            next_seq: 1 << 22,
                        },
                    ],
                    capacity: self.capacity[p as usize],
                    replaces,
                };
                self.count("subscribe", p, to, &msg);
                let rtt = self.rtt_measured(p, to);
                let setup = self.connect(p, to, rtt);
                if let Some(silent) = self.kept_conn_ends(setup, p, to) {
                    // The node gives up the attach when the connection goes silent
                    // (`handle_peer_lost`), not at the attach deadline.
                    self.q.push(silent, Event::PeerSilent { from: p, to });
                    return;
                }
                self.q.push(
                    now + setup + rtt / 2,
                    Event::AttachRequest {
                        from: p,
                        to,
                        replaces,
                        sent: now,
                        connected: now + setup,
                    },
                );
            }
            Action::Detach(parent) => {
                let parent = index(&parent);
                let t = now + self.owd(p, parent);
                self.q.push(t, Event::Detach { child: p, parent });
            }
            Action::SendTree { child, info } => {
                let child = index(&child);
                let msg = ControlMessage::Tree(info);
                self.count("tree", p, child, &msg);
                let ControlMessage::Tree(info) = msg else {
                    return;
                };
                let t = now + self.owd(p, child);
                self.q.push(
                    t,
                    Event::Tree {
                        from: p,
                        to: child,
                        info,
                    },
                );
            }
            Action::SendStatus {
                free,
                subtree,
                rooms,
            } => {
                let Some(parent) = self
                    .overlay(p)
                    .and_then(|o| o.parent())
                    .map(|a| index(&a.id))
                else {
                    return;
                };
                let msg = ControlMessage::Status {
                    free,
                    subtree,
                    rooms,
                };
                self.count("status", p, parent, &msg);
                let ControlMessage::Status { rooms, .. } = msg else {
                    return;
                };
                let t = now + self.owd(p, parent);
                self.q.push(
                    t,
                    Event::Status {
                        from: p,
                        to: parent,
                        free,
                        subtree,
                        rooms,
                    },
                );
            }
            Action::AnnounceLeave => {
                if let Some(parent) = self
                    .overlay(p)
                    .and_then(|o| o.parent())
                    .map(|a| index(&a.id))
                {
                    self.count("leaving", p, parent, &ControlMessage::Leaving);
                }
            }
            Action::MoveChild { child, to } => {
                let child = index(&child);
                self.goodbye(p, child, to);
            }
            Action::Handover(list) => {
                let kids: Vec<Peer> = self
                    .overlay(p)
                    .map(|o| o.children().map(|(id, _)| index(id)).collect())
                    .unwrap_or_default();
                for k in kids {
                    self.goodbye(p, k, list.clone());
                }
            }
        }
    }

    /// When a connection a probe left open (`setup` 0: it was reused) from `p` to `to`
    /// ends, if `to` is gone: see [`Sim::conn_ends_after`].
    fn kept_conn_ends(&self, setup: u64, p: Peer, to: Peer) -> Option<u64> {
        if setup != 0 || self.alive[to as usize] {
            return None;
        }
        Some((self.down_at[to as usize] + self.conn_ends_after(p, to)).max(self.now))
    }

    /// How long after `to` went down `p`'s connection to it ends: the idle timeout if it
    /// crashed, as the node notices; one way if it left in order (a node closes every
    /// connection saying it is going away, and the node reports that of a probe's
    /// connection too).
    fn conn_ends_after(&self, p: Peer, to: Peer) -> u64 {
        if self.crashed[to as usize] {
            self.cfg.idle_timeout.as_micros() as u64
        } else {
            self.owd(to, p)
        }
    }

    /// When a request from `p` to `to` that found `to` down (or not started) fails for
    /// `p`: see [`request_fails_at`].
    pub(super) fn failed_request_at(&self, p: Peer, to: Peer, sent: u64, connected: u64) -> u64 {
        let down = self.down_at[to as usize];
        let went_down = (down != NEVER).then(|| (down, self.conn_ends_after(p, to)));
        let connect_timeout = self.cfg.connect_timeout.as_micros() as u64;
        request_fails_at(sent, connected, went_down, connect_timeout).max(self.now)
    }

    /// Time to get a connection from `p` to `to`: none if a probe left one open, else a
    /// handshake (one RTT).
    pub(super) fn connect(&mut self, p: Peer, to: Peer, rtt: u64) -> u64 {
        let now = self.now;
        let cache = &mut self.probe_conns[p as usize];
        let hit = cache
            .iter()
            .position(|(q, t)| *q == to && now < t + PROBE_CONN_KEEP_US);
        match hit {
            Some(i) => {
                cache.swap_remove(i);
                0
            }
            None => {
                self.m.control.handshakes += 1;
                rtt
            }
        }
    }

    pub(super) fn goodbye(
        &mut self,
        from: Peer,
        to: Peer,
        handover: Vec<crate::proto::tree_msg::Candidate>,
    ) {
        let msg = ControlMessage::Goodbye { handover };
        self.count("goodbye", from, to, &msg);
        let ControlMessage::Goodbye { handover } = msg else {
            return;
        };
        let t = self.now + self.owd(from, to);
        self.q.push(t, Event::Goodbye { from, to, handover });
    }
}

/// When a request sent at `sent` over a connection up from `connected` fails, its target
/// having gone down at `down` (with the connection ending `ends_after` that: the idle
/// timeout after a crash, the going-away close one way after a leave): if the connection
/// was up by then, when it ends, as the node's probe or attach fails with its connection;
/// else (the handshake never finished, or the target never started) after the connect
/// timeout.
pub(super) fn request_fails_at(
    sent: u64,
    connected: u64,
    went_down: Option<(u64, u64)>,
    connect_timeout: u64,
) -> u64 {
    match went_down {
        Some((down, ends_after)) if down >= connected => down.saturating_add(ends_after),
        _ => sent.saturating_add(connect_timeout),
    }
}

#[cfg(test)]
mod tests {
    use super::request_fails_at;

    #[test]
    fn a_request_fails_with_its_connection_or_at_the_connect_timeout() {
        let (idle, connect) = (300_000, 5_000_000);
        let crashed_at = |t: u64| Some((t, idle));
        // Sent at 1 s on a connection a probe left open; the target crashed at 1.02 s.
        assert_eq!(
            request_fails_at(1_000_000, 1_000_000, crashed_at(1_020_000), connect),
            1_320_000
        );
        // Handshake done at 1.1 s, the target crashed at 1.15 s.
        assert_eq!(
            request_fails_at(1_000_000, 1_100_000, crashed_at(1_150_000), connect),
            1_450_000
        );
        // The target was gone before the handshake finished.
        assert_eq!(
            request_fails_at(1_000_000, 1_100_000, crashed_at(1_050_000), connect),
            6_000_000
        );
        // The target never started.
        assert_eq!(
            request_fails_at(1_000_000, 1_100_000, None, connect),
            6_000_000
        );
    }
}
