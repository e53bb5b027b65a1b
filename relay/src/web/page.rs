//! The status page: the stream's health at this node and a drawing of the tree below it,
//! refreshed by a few lines of script that fetch `/status` again every report interval
//! (the page is complete without script; it just does not refresh then).

use std::fmt::Write;
use std::time::Duration;

use serde_json::{Value, json};

use super::svg::{self, esc, ms};
use crate::node::Observer;
use crate::proto::report::{MAX_REPORT_NODES, SubtreeReport};

/// Frames older than this make the stream "stalled".
const STALLED_AFTER: Duration = Duration::from_secs(3);

/// The whole page.
pub fn page(o: &Observer) -> String {
    let role = if o.is_origin() { "origin" } else { "node" };
    let every = o
        .report_interval()
        .max(Duration::from_millis(500))
        .as_millis();
    format!(
        r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>treecast {role} {short}</title>
<style>
body {{ font-family: sans-serif; margin: 1.2em; color: #222; background: #fafbfc; }}
h1 {{ font-size: 1.3em; margin: 0 0 .6em 0; }}
.health {{ display: inline-block; padding: .15em .6em; border-radius: .8em; color: #fff; }}
.ok {{ background: #3a9d5d; }} .warn {{ background: #d98b1c; }} .bad {{ background: #c43c3c; }}
table {{ border-collapse: collapse; margin: .8em 0; }}
td {{ padding: .15em 1em .15em 0; }} td:first-child {{ color: #666; }}
.treebox {{ overflow: auto; border: 1px solid #dde3ea; background: #fff; }}
</style></head>
<body>
<h1>treecast {role} <code>{short}</code></h1>
<div id="status">{fragment}</div>
<script>
async function refresh() {{
  try {{
    const r = await fetch('/status', {{ cache: 'no-store' }});
    if (r.ok) document.getElementById('status').innerHTML = await r.text();
  }} catch (e) {{ /* the node may be restarting: try again next time */ }}
}}
setInterval(refresh, {every});
</script>
</body></html>
"#,
        short = o.id().short(),
        fragment = fragment(o),
    )
}

/// The part that refreshes: health table and tree drawing.
pub fn fragment(o: &Observer) -> String {
    let s = o.stats();
    let tree = o.tree(MAX_REPORT_NODES);
    let age = o.last_frame_age();
    let (class, health) = if !o.is_rooted() {
        ("bad", "not connected to the origin (repairing)".to_string())
    } else {
        match age {
            None => ("warn", "connected, no media yet".to_string()),
            Some(a) if a > STALLED_AFTER => (
                "bad",
                format!("stalled: no frame for {:.0} s", a.as_secs_f64()),
            ),
            Some(_) => ("ok", "healthy: media flowing".to_string()),
        }
    };
    let t = tree.totals();
    let mut h = String::new();
    let _ = write!(
        h,
        r#"<p><span class="health {class}" id="health">{health}</span></p><table>"#
    );
    let rows: Vec<(&str, String)> = vec![
        ("node", o.id().to_string()),
        ("depth", s.depth.map_or("-".to_string(), |d| d.to_string())),
        ("parent", s.parent.clone().unwrap_or_else(|| "-".into())),
        (
            "parent rtt",
            s.parent_rtt_ms.map_or("-".into(), |r| format!("{r:.1} ms")),
        ),
        (
            "glass-to-glass latency",
            ms(o.latency()
                .map_or(0, |l| u32::try_from(l.as_micros()).unwrap_or(u32::MAX))),
        ),
        (
            "last frame",
            age.map_or("-".into(), |a| format!("{:.1} s ago", a.as_secs_f64())),
        ),
        (
            "frames in / forwarded",
            format!("{} / {}", s.frames_received, s.frames_forwarded),
        ),
        (
            "lost / late / dropped for slow children",
            format!(
                "{} / {} / {}",
                s.frames_lost, s.frames_late, s.child_dropped_frames
            ),
        ),
        (
            "children",
            format!("{} of {}", s.children, tree.root().capacity),
        ),
        (
            "subtree",
            format!(
                "{}, max depth {}, worst latency {}, {} spare slots",
                svg::nodes(t.count),
                t.max_depth,
                ms(t.worst_latency_us),
                svg::count(t.spare)
            ),
        ),
    ];
    for (k, v) in rows {
        let _ = write!(h, "<tr><td>{k}</td><td>{}</td></tr>", esc(&v));
    }
    h.push_str(r#"</table><div class="treebox">"#);
    h.push_str(&svg::draw(&tree, svg::MAX_DRAWN));
    h.push_str("</div>");
    h
}

/// The report as JSON (for scripts; `treecast tree --json` prints the same shape).
pub fn tree_json(r: &SubtreeReport) -> Value {
    let nodes: Vec<Value> = r
        .nodes
        .iter()
        .enumerate()
        .map(|(i, n)| {
            json!({
                "id": n.id.to_string(),
                "parent": if i == 0 { Value::Null } else { json!(r.nodes[n.parent].id.to_string()) },
                "host": n.host,
                "depth": n.depth,
                "rtt_ms": f64::from(n.rtt_us) / 1e3,
                "latency_ms": f64::from(n.latency_us) / 1e3,
                "children": n.children,
                "capacity": n.capacity,
                "subtree": {
                    "nodes": n.totals.count,
                    "max_depth": n.totals.max_depth,
                    "worst_latency_ms": f64::from(n.totals.worst_latency_us) / 1e3,
                    "spare_slots": n.totals.spare,
                    "not_listed": r.hidden_below(i),
                },
            })
        })
        .collect();
    json!({ "nodes": nodes })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::id::NodeId;
    use crate::proto::report::{ReportNode, Totals};

    #[test]
    fn tree_json_names_parents_and_what_is_left_out() {
        let node = |n: u8, parent: usize, count: u32| ReportNode {
            id: NodeId::from_bytes([n; 32]),
            parent,
            host: format!("h{n}:1"),
            depth: u32::from(n),
            rtt_us: 1_500,
            latency_us: 20_000,
            children: 1,
            capacity: 2,
            totals: Totals {
                count,
                max_depth: 5,
                worst_latency_us: 70_000,
                spare: 1,
            },
        };
        let r = SubtreeReport {
            nodes: vec![node(0, 0, 50), node(1, 0, 10)],
        };
        let v = tree_json(&r);
        let nodes = v["nodes"].as_array().expect("nodes");
        assert_eq!(nodes.len(), 2);
        assert!(nodes[0]["parent"].is_null());
        assert_eq!(nodes[1]["parent"], r.nodes[0].id.to_string());
        assert_eq!(nodes[1]["host"], "h1:1");
        assert_eq!(nodes[1]["rtt_ms"], 1.5);
        assert_eq!(nodes[0]["subtree"]["nodes"], 50);
        assert_eq!(nodes[0]["subtree"]["not_listed"], 39);
        assert_eq!(nodes[1]["subtree"]["not_listed"], 9);
    }
}
