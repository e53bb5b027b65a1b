//! The report: a Markdown table of every measure against the targets, and SVG
//! plots, written to a directory. Nothing in it depends on the wall clock, so the same
//! seed gives the same bytes.

use std::fmt::Write as _;
use std::path::Path;

use super::Outcome;
use super::driver::{CAUSE_WINDOW_US, StallCause};
use super::metrics::{Dist, Summary};
use super::svg::{self, Scale, Series};

fn row(s: &mut String, name: &str, unit: &str, x: Summary) {
    let _ = writeln!(
        s,
        "| {name} | {unit} | {} | {:.3} | {:.3} | {:.3} | {:.3} | {:.3} |",
        x.n, x.p50, x.p90, x.p99, x.max, x.mean
    );
}

fn verdict(ok: bool) -> &'static str {
    if ok { "met" } else { "**missed**" }
}

/// The Markdown report.
pub fn markdown(o: &Outcome) -> String {
    // Work on copies: summaries sort the samples.
    let mut first = o.first_frame_ms.clone();
    let mut join = o.join_attach_ms.clone();
    let mut depth = o.depth.clone();
    let mut stretch = o.stretch.clone();
    let mut fan = o.fanout_used.clone();
    let mut repair = o.repair_ms.clone();
    let mut outage = o.outage_ms.clone();
    let mut cont = o.continuity.clone();
    let mut ctl = o.control_per_peer.clone();
    let mut origin = o.origin_mbps.clone();
    let c = &o.config;
    let stream_bytes = c.stream_bps() / 8.0;
    let mut s = String::new();
    let _ = writeln!(
        s,
        "# treecast simulation: `{}`, N = {}, seed {}\n",
        c.scenario, c.peers, c.seed
    );
    let _ = writeln!(
        s,
        "Virtual time {:.0} s; stream {} kbit/s in {} ms segments, keyframe every {:.1} s, {} groups cached; playout buffer {:.1} s; origin accepts {} children; crash noticed after {} ms. Peers that took part: {}, alive at the end: {}.\n",
        c.duration.as_secs_f64(),
        c.stream_kbps,
        c.segment.as_millis(),
        c.keyframe_interval.as_secs_f64(),
        c.cache_groups,
        c.buffer.as_secs_f64(),
        c.origin_capacity,
        c.idle_timeout.as_millis(),
        o.spawned,
        o.alive_end
    );
    let _ = writeln!(s, "## Targets\n");
    let _ = writeln!(s, "| target | measured | verdict |");
    let _ = writeln!(s, "|---|---|---|");
    let st = stretch.summary();
    let _ = writeln!(
        s,
        "| median stretch <= 1.5 | {:.3} | {} |",
        st.p50,
        verdict(st.p50 <= 1.5)
    );
    let ci = o.continuity_index();
    let _ = writeln!(
        s,
        "| continuity >= 0.999 (target stated for churn, {:.1} s buffer) | {:.5} | {} |",
        c.buffer.as_secs_f64(),
        ci,
        verdict(ci >= 0.999)
    );
    let near = o.stalls_after_near_crash();
    let _ = writeln!(
        s,
        "| no stall when the parent or grandparent crashes ({:.1} s buffer, the player re-buffering) | {} stalls ({} parents lost without goodbye) | {} |",
        c.buffer.as_secs_f64(),
        near,
        o.orphaned,
        verdict(near == 0)
    );
    let rp = repair.summary();
    let _ = writeln!(
        s,
        "| repair p99 < 1 s (loss noticed to re-attached) | {:.0} ms (n = {}) | {} |",
        rp.p99,
        rp.n,
        verdict(rp.n == 0 || rp.p99 < 1000.0)
    );
    let ou = outage.summary();
    let _ = writeln!(
        s,
        "| (same, from the parent's crash, detection included) | {:.0} ms (n = {}) | {} |",
        ou.p99,
        ou.n,
        verdict(ou.n == 0 || ou.p99 < 1000.0)
    );
    let og = origin.summary();
    let cap_mbps = f64::from(c.origin_capacity) * c.stream_bps() / 1e6;
    let _ = writeln!(
        s,
        "| origin upload independent of N | mean {:.2} Mbit/s, max {:.2} Mbit/s ({:.1}x the stream; {} slots = {:.1} Mbit/s) | {} |",
        og.mean,
        og.max,
        og.mean / (c.stream_bps() / 1e6),
        c.origin_capacity,
        cap_mbps,
        verdict(og.max <= cap_mbps * 1.5 + 1e-9)
    );
    let share = o.control_mean_bps / stream_bytes;
    let _ = writeln!(
        s,
        "| control traffic < 1% of the stream | {:.1} B/s per peer = {:.3}% | {} |",
        o.control_mean_bps,
        share * 100.0,
        verdict(share < 0.01)
    );
    let hs = o.handshakes_per_peer_s * f64::from(c.handshake_bytes);
    let _ = writeln!(
        s,
        "| (with QUIC handshakes, assumed {} B each: {:.3} per peer per s) | {:.1} B/s = {:.3}% | {} |",
        c.handshake_bytes,
        o.handshakes_per_peer_s,
        o.control_mean_bps + hs,
        (o.control_mean_bps + hs) / stream_bytes * 100.0,
        verdict((o.control_mean_bps + hs) / stream_bytes < 0.01)
    );
    let _ = writeln!(s, "\n## Distributions\n");
    let _ = writeln!(s, "| measure | unit | n | p50 | p90 | p99 | max | mean |");
    let _ = writeln!(s, "|---|---|---|---|---|---|---|---|");
    row(&mut s, "join to first segment", "ms", first.summary());
    let mut start = o.start_ms.clone();
    row(
        &mut s,
        "join to playback start (buffer included)",
        "ms",
        start.summary(),
    );
    row(&mut s, "join to attached (overlay)", "ms", join.summary());
    let mut join_rtts = o.join_rtts.clone();
    row(
        &mut s,
        "join to attached, in RTTs to the origin",
        "RTTs",
        join_rtts.summary(),
    );
    row(&mut s, "tree depth (end)", "hops", depth.summary());
    row(&mut s, "stretch (end)", "ratio", st);
    row(
        &mut s,
        "end-to-end delay, live segments",
        "ms",
        o.e2e_ms.summary(),
    );
    row(
        &mut s,
        "fan-out used / offered (forwarders, end)",
        "ratio",
        fan.summary(),
    );
    row(&mut s, "repair, loss noticed to re-attached", "ms", rp);
    row(&mut s, "repair, parent down to re-attached", "ms", ou);
    row(&mut s, "continuity index per peer", "ratio", cont.summary());
    let mut rebuf = o.rebuffered_ms.clone();
    row(
        &mut s,
        "latency added by re-buffering, per viewer",
        "ms",
        rebuf.summary(),
    );
    let mut slowed = o.stretched_ms.clone();
    row(
        &mut s,
        "latency added by slowing down, per viewer",
        "ms",
        slowed.summary(),
    );
    row(
        &mut s,
        "control bytes per peer (sent+received)",
        "B/s",
        ctl.summary(),
    );
    row(
        &mut s,
        "origin upload (per second, after the ramp)",
        "Mbit/s",
        og,
    );
    let _ = writeln!(s, "\n## Totals\n");
    let _ = writeln!(
        s,
        "- Slots used / offered (end): {} / {} ({:.1}%)",
        o.slots.0,
        o.slots.1,
        100.0 * o.slots.0 as f64 / o.slots.1.max(1) as f64
    );
    let _ = writeln!(
        s,
        "- Continuity: {} of {} segments on time ({:.5})",
        o.continuity_total.0, o.continuity_total.1, ci
    );
    let _ = writeln!(s, "{}", playback(o));
    let _ = writeln!(
        s,
        "- Parents lost without goodbye: {}; repairs: {}, {} of them straight to the standby; moves: {}; loops detected: {}; segments sent from caches: {}; segments dropped by overloaded uploads: {}",
        o.orphaned,
        o.repair_ms.len(),
        o.repaired_by_standby,
        o.moved,
        o.loops,
        o.catchup_segments,
        o.dropped_segments
    );
    let _ = writeln!(
        s,
        "- Origin control traffic: {:.0} B/s",
        o.origin_control_bps
    );
    let _ = writeln!(s, "\n## Control messages (real encoders)\n");
    let _ = writeln!(s, "| message | count | bytes | mean size |");
    let _ = writeln!(s, "|---|---|---|---|");
    for (k, n, b) in &o.control.kinds {
        let _ = writeln!(
            s,
            "| {k} | {n} | {b} | {:.0} |",
            *b as f64 / (*n).max(1) as f64
        );
    }
    let _ = writeln!(s, "| (connections opened) | {} | | |", o.control.handshakes);
    let inv = &o.invariants;
    let _ = writeln!(s, "\n## Invariants\n");
    let _ = writeln!(s, "- cycles: {}", inv.cycles);
    let _ = writeln!(s, "- capacity violations: {}", inv.capacity_violations);
    let _ = writeln!(
        s,
        "- peers alive at the end, not connected to the origin, with nothing in the last 10 s to excuse it: {}",
        inv.detached
    );
    let _ = writeln!(
        s,
        "- (not an error) peers still recovering from a join, loss or crash of the last 10 s: {}",
        o.recovering
    );
    let _ = writeln!(
        s,
        "- (not an error) overlay depth not yet updated (tree message in flight): {}",
        o.stale_depth
    );
    let _ = writeln!(s, "\n## Plots\n");
    for (f, t) in PLOTS {
        let _ = writeln!(s, "- [{t}]({f})");
    }
    s
}

/// The stalls line: playback as the player does it.
fn playback(o: &Outcome) -> String {
    let total: u64 = o.stalls.iter().sum();
    let (stalled, viewers) = o.viewers_stalled;
    let causes: Vec<String> = StallCause::ALL
        .iter()
        .map(|c| format!("{} {}", c.label(), o.stalls[c.index()]))
        .collect();
    format!(
        "- Playback as the player does it (a segment that comes after its time pauses playback, which resumes one buffer after it arrived): {total} stalls ({:.2} per viewer-hour) at {stalled} of {viewers} viewers ({:.2}%), {:.1} s paused in {:.1} viewer-hours played ({:.4}%). What came shortly before each (within {} s, the nearest first): {}",
        total as f64 / (o.playing_s / 3600.0).max(1e-9),
        100.0 * stalled as f64 / viewers.max(1) as f64,
        o.stall_s,
        o.playing_s / 3600.0,
        100.0 * o.stall_s / o.playing_s.max(1e-9),
        CAUSE_WINDOW_US / 1_000_000,
        causes.join("; ")
    )
}

const PLOTS: [(&str, &str); 7] = [
    ("first_segment.svg", "join to first segment (CDF)"),
    ("stretch.svg", "stretch (CDF)"),
    ("depth.svg", "tree depth"),
    ("delay.svg", "end-to-end delay (CDF)"),
    ("repair.svg", "repair time (CDF)"),
    ("continuity.svg", "continuity index per peer (CDF)"),
    (
        "timeline.svg",
        "audience, attached peers and origin upload over time",
    ),
];

fn cdf_series(name: &str, d: &Dist) -> Series {
    let mut d = d.clone();
    Series {
        name: name.into(),
        points: svg::cdf(d.sorted()),
    }
}

/// The plots: (file name, SVG).
pub fn plots(o: &Outcome) -> Vec<(&'static str, String)> {
    let mut out = Vec::new();
    out.push((
        PLOTS[0].0,
        svg::plot(
            "Join to first segment",
            "ms (log)",
            "share of peers",
            Scale::Log,
            &[
                cdf_series("first segment", &o.first_frame_ms),
                cdf_series("attached (overlay)", &o.join_attach_ms),
            ],
        ),
    ));
    out.push((
        PLOTS[1].0,
        svg::plot(
            "Stretch",
            "tree latency / direct latency",
            "share of peers",
            Scale::Linear,
            &[cdf_series("stretch", &o.stretch)],
        ),
    ));
    let mut depth = o.depth.clone();
    let mut counts: Vec<(f64, f64)> = Vec::new();
    for &d in depth.sorted() {
        match counts.last_mut() {
            Some(l) if l.0 == d => l.1 += 1.0,
            _ => counts.push((d, 1.0)),
        }
    }
    out.push((
        PLOTS[2].0,
        svg::plot(
            "Tree depth at the end",
            "depth (hops from the origin)",
            "peers",
            Scale::Linear,
            &[Series {
                name: "peers".into(),
                points: counts,
            }],
        ),
    ));
    out.push((
        PLOTS[3].0,
        svg::plot(
            "End-to-end delay of live segments",
            "ms",
            "share of segments",
            Scale::Linear,
            &[Series {
                name: "emission to arrival".into(),
                points: o.e2e_ms.cdf(),
            }],
        ),
    ));
    out.push((
        PLOTS[4].0,
        svg::plot(
            "Repair time",
            "ms (log)",
            "share of repairs",
            Scale::Log,
            &[
                cdf_series("loss noticed to re-attached", &o.repair_ms),
                cdf_series("parent down to re-attached", &o.outage_ms),
            ],
        ),
    ));
    out.push((
        PLOTS[5].0,
        svg::plot(
            "Continuity index per peer",
            "share of segments on time",
            "share of peers",
            Scale::Linear,
            &[cdf_series("continuity", &o.continuity)],
        ),
    ));
    let alive: Vec<(f64, f64)> = o.series.iter().map(|p| (p.t_s, p.alive as f64)).collect();
    let rooted: Vec<(f64, f64)> = o.series.iter().map(|p| (p.t_s, p.rooted as f64)).collect();
    let stream_mbps = o.config.stream_bps() / 1e6;
    let origin: Vec<(f64, f64)> = o
        .series
        .iter()
        .map(|p| (p.t_s, p.origin_mbps / stream_mbps))
        .collect();
    let mut tl = svg::plot(
        "Audience over time",
        "s",
        "peers",
        Scale::Linear,
        &[
            Series {
                name: "alive".into(),
                points: alive,
            },
            Series {
                name: "connected to origin".into(),
                points: rooted,
            },
        ],
    );
    tl.push_str("<!-- origin upload follows -->\n");
    out.push((PLOTS[6].0, tl));
    out.push((
        "origin_upload.svg",
        svg::plot(
            "Origin upload",
            "s",
            "stream copies per second",
            Scale::Linear,
            &[Series {
                name: "origin upload".into(),
                points: origin,
            }],
        ),
    ));
    out
}

/// Writes `results.md` and the plots to `dir` (created if needed).
pub fn write(o: &Outcome, dir: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let mut md = markdown(o);
    md.push_str("- [origin upload over time](origin_upload.svg)\n");
    std::fs::write(dir.join("results.md"), md)?;
    for (name, svg) in plots(o) {
        std::fs::write(dir.join(name), svg)?;
    }
    Ok(())
}
