//! Delivering events: each message reaches its peer's overlay as a `handle_*` call;
//! crashes and orderly closes are noticed by the neighbours.

use super::*;

impl Sim {
    pub(super) fn handle(&mut self, ev: Event) {
        let now = self.now;
        match ev {
            Event::Join(p) => {
                self.alive[p as usize] = true;
                let bootstrap = vec![self.addrs[0].clone()];
                self.deliver(p, |o, at| o.handle_join(at, bootstrap));
            }
            Event::Timer(p) => {
                if !self.alive[p as usize] || self.timer_at[p as usize] != now {
                    return;
                }
                self.timer_at[p as usize] = NEVER;
                let parent = self
                    .overlay(p)
                    .and_then(|o| o.parent())
                    .map(|a| index(&a.id));
                let rtt = parent.map(|q| self.rtt_measured(p, q));
                let at = self.at(now);
                if let Some(o) = self.overlays[p as usize].as_mut() {
                    if let (Some(q), Some(rtt)) = (parent, rtt) {
                        o.handle_parent_rtt(at, &node_id(q), Duration::from_micros(rtt));
                    }
                    o.handle_timeout(at);
                }
                self.after(p);
            }
            Event::ProbeRequest {
                from,
                to,
                sent,
                connected,
                rtt_us,
            } => {
                let Some(o) = self.overlays[to as usize]
                    .as_ref()
                    .filter(|_| self.alive[to as usize])
                else {
                    let t = self.failed_request_at(from, to, sent, connected);
                    self.q.push(
                        t,
                        Event::ProbeReply {
                            from,
                            to,
                            reply: None,
                        },
                    );
                    return;
                };
                let msg = ControlMessage::ProbeReply(
                    o.probe_answer(self.at(now), node_id(from).as_bytes()),
                );
                self.count("probe reply", to, from, &msg);
                let ControlMessage::ProbeReply(info) = msg else {
                    return;
                };
                self.q.push(
                    now + rtt_us / 2,
                    Event::ProbeReply {
                        from,
                        to,
                        reply: Some((rtt_us, info)),
                    },
                );
            }
            Event::PeerSilent { from, to } => {
                self.deliver(from, |o, at| o.handle_peer_lost(at, &node_id(to)));
            }
            Event::ProbeReply { from, to, reply } => {
                if !self.alive[from as usize] {
                    return;
                }
                if reply.is_some() {
                    let cache = &mut self.probe_conns[from as usize];
                    cache.retain(|(q, t)| *q != to && now < t + PROBE_CONN_KEEP_US);
                    cache.push((to, now));
                }
                let addr = self.addrs[to as usize].clone();
                let r = reply.map(|(rtt, info)| (Duration::from_micros(rtt), info));
                self.deliver(from, |o, at| o.handle_probe_result(at, &addr, r));
            }
            Event::AttachRequest {
                from,
                to,
                replaces,
                sent,
                connected,
            } => {
                if !self.alive[to as usize] || self.overlays[to as usize].is_none() {
                    let t = self.failed_request_at(from, to, sent, connected);
                    self.q.push(
                        t,
                        Event::AttachReply {
                            from,
                            to,
                            result: Err(None),
                        },
                    );
                    return;
                }
                let me = self.addrs[from as usize].clone();
                let cap = self.capacity[from as usize];
                // As the node does (`slot_is_free`): a slot is taken over only from a
                // child that announced its leave or went silent, or that is no longer
                // connected (the overlay may hold its slot for its heir).
                let replaces = replaces.filter(|r| {
                    let r = index(r) as usize;
                    !self.alive[r] || self.leaving[r] || self.parent[r] != to
                });
                let at = self.at(now);
                let Some(o) = self.overlays[to as usize].as_mut() else {
                    return;
                };
                let result = o.handle_child_request(at, &me, cap, replaces);
                if o.child_count() as u32 > self.capacity[to as usize] {
                    self.m.capacity_violations += 1;
                }
                match &result {
                    Ok(info) => {
                        let tree = ControlMessage::Tree(info.clone());
                        self.count("tree", to, from, &tree);
                        let n = self.catalog_len;
                        self.count_len("catalog", to, from, n);
                        if !self.conns[from as usize].contains(&to) {
                            self.conns[from as usize].push(to);
                        }
                        if !self.alive[from as usize] {
                            let t = now + self.cfg.idle_timeout.as_micros() as u64;
                            self.q.push(
                                t,
                                Event::ChildGone {
                                    parent: to,
                                    child: from,
                                },
                            );
                        }
                    }
                    Err(r) => {
                        let (code, reason) = match r.why {
                            Refusal::Full => (
                                ErrorCode::ParentFull,
                                "all 4 child slots of this node are taken (or kept for nodes that relay)",
                            ),
                            Refusal::NotRooted => (
                                ErrorCode::NotRooted,
                                "this node is not connected to the origin right now",
                            ),
                            Refusal::WouldLoop => {
                                (ErrorCode::WouldLoop, "you are an ancestor of this node")
                            }
                            Refusal::Leaving => (ErrorCode::GoingAway, "this node is leaving"),
                        };
                        let msg = ControlMessage::Refuse {
                            code: code.value(),
                            reason: reason.into(),
                            redirect: r.redirect.clone(),
                        };
                        self.count("refuse", to, from, &msg);
                    }
                }
                self.after(to);
                let owd = self.owd(from, to);
                self.q.push(
                    now + owd,
                    Event::AttachReply {
                        from,
                        to,
                        result: result.map_err(Some),
                    },
                );
            }
            Event::AttachReply { from, to, result } => {
                let addr = self.addrs[to as usize].clone();
                self.deliver(from, |o, at| o.handle_attach_result(at, &addr, result));
            }
            Event::Detach { child, parent } => {
                self.conns[child as usize].retain(|p| *p != parent);
                self.child_gone(parent, child, false);
            }
            Event::ChildGone { parent, child } => self.child_gone(parent, child, true),
            Event::Tree { from, to, info } => {
                self.deliver(to, |o, at| o.handle_tree(at, &node_id(from), info));
            }
            Event::Status {
                from,
                to,
                free,
                subtree,
                rooms,
            } => {
                self.deliver(to, |o, _| {
                    o.handle_child_status(&node_id(from), free, subtree, rooms);
                });
            }
            Event::Goodbye { from, to, handover } => {
                self.deliver(to, |o, at| o.handle_goodbye(at, &node_id(from), handover));
            }
            Event::ParentLost { child, parent } => {
                self.deliver(child, |o, at| o.handle_parent_lost(at, &node_id(parent)));
            }
            Event::Leave(p) => {
                if !self.alive[p as usize] || self.leaving[p as usize] {
                    return;
                }
                self.leaving[p as usize] = true;
                self.deliver(p, |o, at| o.handle_leave(at));
                let t = now + self.cfg.leave_timeout.as_micros() as u64;
                self.q.push(t, Event::Close(p));
            }
            Event::Close(p) => self.kill(p, true),
            Event::Crash(p) => self.kill(p, false),
            Event::CrashOriginChildren => {
                let victims: Vec<Peer> = self.kids[0]
                    .iter()
                    .copied()
                    .filter(|c| self.alive[*c as usize])
                    .collect();
                for v in victims {
                    // Their end was not known in advance: left out of the continuity index.
                    self.media.end[v as usize] = NEVER;
                    self.kill(v, false);
                }
            }
            Event::Segment(k) => {
                let links = Links {
                    alive: &self.alive,
                    place: &self.place,
                    upload: &self.upload,
                    kids: &self.kids,
                };
                self.media.segment(k, now, &links);
                self.note_stalls();
                let next = u64::from(k + 1) * self.cfg.segment.as_micros() as u64;
                self.q.push(next, Event::Segment(k + 1));
            }
            Event::Sample => {
                let alive = self.alive.iter().skip(1).filter(|a| **a).count() as u64;
                let rooted = (1..self.overlays.len())
                    .filter(|i| self.alive[*i])
                    .filter(|i| self.overlays[*i].as_ref().is_some_and(|o| o.is_rooted()))
                    .count() as u64;
                let bits = self.media.origin_bits - self.last_origin_bits;
                self.last_origin_bits = self.media.origin_bits;
                self.m.series.push(SamplePoint {
                    t_s: now as f64 / 1e6,
                    alive,
                    rooted,
                    origin_mbps: bits / 1e6,
                });
                self.q.push(now + 1_000_000, Event::Sample);
            }
        }
    }

    /// `vanished`: the connection died (a crash, or a leaver closing) rather than the
    /// child detaching.
    pub(super) fn child_gone(&mut self, parent: Peer, child: Peer, vanished: bool) {
        self.deliver(parent, |o, at| {
            if vanished {
                o.handle_child_lost(at, &node_id(child));
            } else {
                o.handle_child_gone(&node_id(child));
            }
        });
    }

    /// Hands something that happened to `p`'s overlay (if `p` is up) at the current
    /// virtual time, then carries out the actions and records the events that follow.
    fn deliver(&mut self, p: Peer, f: impl FnOnce(&mut Overlay, Instant)) {
        if !self.alive[p as usize] {
            return;
        }
        let at = self.at(self.now);
        if let Some(o) = self.overlays[p as usize].as_mut() {
            f(o, at);
        }
        self.after(p);
    }

    /// `p` stops: its neighbours notice at once (an orderly close) or after the idle
    /// timeout (a crash).
    pub(super) fn kill(&mut self, p: Peer, graceful: bool) {
        let pu = p as usize;
        if !self.alive[pu] || p == 0 {
            return;
        }
        self.alive[pu] = false;
        self.down_at[pu] = self.now;
        self.crashed[pu] = !graceful;
        let wait = if graceful {
            0
        } else {
            self.cfg.idle_timeout.as_micros() as u64
        };
        let kids = self.kids[pu].clone();
        for c in kids {
            if self.alive[c as usize] && self.parent[c as usize] == p {
                let t = self.now + self.owd(p, c) + wait;
                self.q.push(
                    t,
                    Event::ParentLost {
                        child: c,
                        parent: p,
                    },
                );
            }
        }
        for q in std::mem::take(&mut self.conns[pu]) {
            let t = self.now + self.owd(p, q) + wait;
            self.q.push(
                t,
                Event::ChildGone {
                    parent: q,
                    child: p,
                },
            );
        }
        let old = self.parent[pu];
        if old != NONE {
            self.kids[old as usize].retain(|c| *c != p);
        }
        self.parent[pu] = NONE;
        self.overlays[pu] = None;
        self.timer_at[pu] = NEVER;
        self.probe_conns[pu] = Vec::new();
    }
}
