//! Drawing a subtree report as SVG: the first levels node by node (readable at ten nodes),
//! and below them, or past [`MAX_DRAWN`] nodes, one badge per cut subtree with its totals
//! (so ten thousand nodes read as a few boxes of numbers).

use std::fmt::Write;

use crate::proto::report::{ReportNode, SubtreeReport};

/// Most nodes drawn one by one.
pub const MAX_DRAWN: usize = 40;

const DX: f64 = 150.0;
const DY: f64 = 112.0;
const TOP: f64 = 56.0;

/// Escapes text for XML/HTML (host strings come from peers).
pub fn esc(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&#39;"),
            c if c.is_control() => o.push('?'),
            c => o.push(c),
        }
    }
    o
}

/// Milliseconds, from microseconds, for labels ("-" when unknown).
pub fn ms(us: u32) -> String {
    match us {
        0 => "-".into(),
        u if u < 10_000 => format!("{:.1} ms", f64::from(u) / 1e3),
        u => format!("{:.0} ms", f64::from(u) / 1e3),
    }
}

/// `n node(s)`, with thousands separators.
pub fn nodes(n: u32) -> String {
    format!("{} node{}", count(n), if n == 1 { "" } else { "s" })
}

/// Thousands separators.
pub fn count(n: u32) -> String {
    let s = n.to_string();
    let mut o = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            o.push(',');
        }
        o.push(c);
    }
    o
}

/// Most nodes drawn side by side on one level; a wider level and everything below it is
/// summarised in badges.
pub const MAX_COLUMNS: usize = 12;

/// Which nodes to draw: whole levels from the top, as long as no level is wider than
/// [`MAX_COLUMNS`] and at most `max_drawn` nodes are drawn. Returns the chosen nodes (with
/// parent indices into the result), in report order.
fn choose(report: &SubtreeReport, max_drawn: usize) -> Vec<ReportNode> {
    let n = report.nodes.len();
    let mut level = vec![0usize; n];
    for i in 1..n {
        level[i] = level[report.nodes[i].parent.min(i - 1)] + 1;
    }
    let deepest = level.iter().copied().max().unwrap_or(0);
    let mut width = vec![0usize; deepest + 1];
    for &l in &level {
        width[l] += 1;
    }
    let (mut last, mut total) = (0, 1);
    for (l, &w) in width.iter().enumerate().skip(1) {
        if w > MAX_COLUMNS || total + w > max_drawn.max(1) {
            break;
        }
        total += w;
        last = l;
    }
    let mut index = vec![usize::MAX; n];
    let mut out: Vec<ReportNode> = Vec::with_capacity(total);
    for (i, node) in report.nodes.iter().enumerate() {
        if level[i] > last {
            continue;
        }
        let mut node = node.clone();
        node.parent = if i == 0 {
            0
        } else {
            index[node.parent.min(i - 1)]
        };
        index[i] = out.len();
        out.push(node);
    }
    out
}

/// The tree as an SVG document: see `choose` for what is drawn node by node.
pub fn draw(report: &SubtreeReport, max_drawn: usize) -> String {
    let chosen = choose(report, max_drawn);
    let n = chosen.len();
    let nodes = &chosen[..];
    let mut kids = vec![Vec::new(); n];
    for (i, node) in nodes.iter().enumerate().skip(1) {
        kids[node.parent].push(i);
    }
    // Descendants reached through children that are not drawn: one badge per node.
    let mut hidden: Vec<u32> = nodes
        .iter()
        .map(|n| n.totals.count.saturating_sub(1))
        .collect();
    for node in nodes.iter().skip(1) {
        hidden[node.parent] = hidden[node.parent].saturating_sub(node.totals.count);
    }
    // Layout: leaves left to right in depth-first order, parents centred over children;
    // a node with hidden descendants gets a column for its badge.
    let mut x = vec![0.0f64; n];
    let mut level = vec![0usize; n];
    let mut next = 0.0f64;
    let mut stack = vec![(0usize, false)];
    while let Some((i, done)) = stack.pop() {
        if done {
            let k = &kids[i];
            x[i] = if k.is_empty() {
                let v = next;
                next += 1.0;
                v
            } else {
                (x[k[0]] + x[k[k.len() - 1]]) / 2.0
            };
            continue;
        }
        stack.push((i, true));
        for &c in kids[i].iter().rev() {
            level[c] = level[i] + 1;
            stack.push((c, false));
        }
    }
    let levels = level.iter().max().copied().unwrap_or(0) + 1;
    let has_badges = hidden.iter().any(|&h| h > 0);
    let width = (next.max(1.0) * DX + 40.0).max(520.0);
    let height = TOP + levels as f64 * DY + if has_badges { 56.0 } else { 0.0 } + 10.0;
    let t = report.totals();
    let mut s = String::new();
    let _ = write!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" id="tree" class="tree" viewBox="0 0 {width:.0} {height:.0}" width="{width:.0}" height="{height:.0}" font-family="sans-serif" font-size="12">"#
    );
    let _ = write!(
        s,
        r#"<text x="12" y="22" font-size="14" font-weight="bold" class="summary">{} · max depth {} · worst latency {} · spare slots {}{}</text>"#,
        self::nodes(t.count),
        t.max_depth,
        ms(t.worst_latency_us),
        count(t.spare),
        if has_badges {
            format!(" · {n} shown")
        } else {
            String::new()
        }
    );
    let pos = |i: usize| {
        (
            20.0 + x[i] * DX + DX / 2.0,
            TOP + level[i] as f64 * DY + 14.0,
        )
    };
    for (i, node) in nodes.iter().enumerate().skip(1) {
        let (x1, y1) = pos(node.parent);
        let (x2, y2) = pos(i);
        let _ = write!(
            s,
            r##"<line x1="{x1:.1}" y1="{:.1}" x2="{x2:.1}" y2="{:.1}" stroke="#8a9bb0" stroke-width="1.5"/>"##,
            y1 + 62.0,
            y2 - 14.0
        );
    }
    for (i, node) in nodes.iter().enumerate() {
        let (cx, cy) = pos(i);
        let full = node.capacity > 0 && node.children >= node.capacity;
        let fill = if i == 0 {
            "#2f6fdf"
        } else if full {
            "#d98b1c"
        } else {
            "#3a9d5d"
        };
        let host = if node.host.is_empty() {
            String::new()
        } else {
            format!(" {}", esc(&node.host))
        };
        let _ = write!(
            s,
            r##"<g class="node" data-id="{id}" data-parent="{pid}"><title>{id}{host} depth {d}</title><circle cx="{cx:.1}" cy="{cy:.1}" r="13" fill="{fill}"/><text x="{cx:.1}" y="{:.1}" text-anchor="middle" fill="#fff" font-size="10">{d}</text><text x="{cx:.1}" y="{:.1}" text-anchor="middle" font-weight="bold" class="node-id">{short}</text><text x="{cx:.1}" y="{:.1}" text-anchor="middle" fill="#444">rtt {rtt} · lat {lat}</text><text x="{cx:.1}" y="{:.1}" text-anchor="middle" fill="#444">{c}/{cap} children</text></g>"##,
            cy + 4.0,
            cy + 28.0,
            cy + 42.0,
            cy + 56.0,
            id = node.id,
            pid = if i == 0 {
                String::new()
            } else {
                nodes[node.parent].id.to_string()
            },
            d = node.depth,
            short = node.id.short(),
            rtt = ms(node.rtt_us),
            lat = ms(node.latency_us),
            c = node.children,
            cap = node.capacity,
        );
        if hidden[i] > 0 {
            let by = cy + 66.0;
            let _ = write!(
                s,
                r##"<g class="more"><rect x="{:.1}" y="{by:.1}" width="136" height="34" rx="5" fill="#eef2f7" stroke="#8a9bb0"/><text x="{cx:.1}" y="{:.1}" text-anchor="middle">+{} more below</text><text x="{cx:.1}" y="{:.1}" text-anchor="middle" fill="#444" font-size="10">depth ≤{} · worst {}</text></g>"##,
                cx - 68.0,
                by + 14.0,
                count(hidden[i]),
                by + 27.0,
                node.totals.max_depth,
                ms(node.totals.worst_latency_us),
            );
        }
    }
    s.push_str("</svg>");
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::id::NodeId;
    use crate::proto::report::{ReportNode, Totals};

    fn node(n: u8, parent: usize, depth: u32, count: u32) -> ReportNode {
        ReportNode {
            id: NodeId::from_bytes([n; 32]),
            parent,
            host: "<b>&".into(),
            depth,
            rtt_us: 1500,
            latency_us: 40_000,
            children: 1,
            capacity: 2,
            totals: Totals {
                count,
                max_depth: 9,
                worst_latency_us: 90_000,
                spare: 3,
            },
        }
    }

    #[test]
    fn small_trees_show_every_node_and_large_ones_a_badge() {
        let r = SubtreeReport {
            nodes: vec![
                node(1, 0, 0, 10_000),
                node(2, 0, 1, 9_000),
                node(3, 1, 2, 5),
            ],
        };
        let all = draw(&r, 10);
        for n in &r.nodes {
            assert!(all.contains(&n.id.short()), "{all}");
        }
        assert!(all.contains("10,000 nodes"));
        // Node 3 hides 4 below it, node 2 8,994 besides node 3's, the origin 999.
        assert!(all.contains("+4 more below"), "{all}");
        assert!(all.contains("+8,994 more below"), "{all}");
        assert!(all.contains("+999 more below"), "{all}");
        assert!(!all.contains("<b>"), "peer text is escaped");
        let cut = draw(&r, 2);
        assert!(!cut.contains(&r.nodes[2].id.short()));
        assert!(cut.contains("+8,999 more below"), "{cut}");
        // A level wider than MAX_COLUMNS is summarised with everything below it.
        let mut wide = vec![node(1, 0, 0, 10_000)];
        for k in 0..=MAX_COLUMNS as u8 {
            wide.push(node(10 + k, 0, 1, 700));
        }
        wide.push(node(99, 1, 2, 5));
        let w = draw(&SubtreeReport { nodes: wide }, MAX_DRAWN);
        assert!(!w.contains(&NodeId::from_bytes([10; 32]).short()), "{w}");
        assert!(w.contains("+9,999 more below"), "{w}");
        assert!(w.contains("1 shown"), "{w}");
    }

    #[test]
    fn numbers_read_well() {
        assert_eq!(count(1_234_567), "1,234,567");
        assert_eq!(count(12), "12");
        assert_eq!(ms(0), "-");
        assert_eq!(ms(1_500), "1.5 ms");
        assert_eq!(ms(120_000), "120 ms");
    }
}
