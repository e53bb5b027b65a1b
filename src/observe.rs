//! Seeing a running tree: the metrics endpoint and status page a node serves
//! (`--metrics`), the player's metrics, and `treecast tree`.

use std::fmt::Write;
use std::net::SocketAddr;

use anyhow::{Context, Result};
use treecast_relay::node::{Node, query_tree};
use treecast_relay::proto::report::SubtreeReport;
use treecast_relay::web::WebServer;
use treecast_relay::web::svg::{count, ms, nodes};

use crate::cli::{NodeArgs, TreeArgs};
use crate::node_setup::Role;

/// Where to serve metrics, as given by `--metrics`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MetricsAddr {
    /// No HTTP port at all.
    Off,
    /// Listen on this TCP address.
    At(SocketAddr),
}

/// Parses `--metrics`: `off`, or a TCP address such as `0.0.0.0:9434`.
pub fn parse_metrics_addr(s: &str) -> Result<MetricsAddr, String> {
    match s.trim() {
        "off" | "none" | "false" => Ok(MetricsAddr::Off),
        a => a.parse().map(MetricsAddr::At).map_err(|_| {
            format!("invalid metrics address {s:?}: use IP:PORT (e.g. 0.0.0.0:9434) or off")
        }),
    }
}

/// Where a node of `role` serves metrics unless told otherwise: loopback only (the status
/// page lists the addresses of the audience), on for the origin and relays, off for
/// viewers.
pub fn default_metrics(role: Role) -> Option<SocketAddr> {
    match role {
        Role::Origin => Some(SocketAddr::from(([127, 0, 0, 1], 9433))),
        Role::Relay => Some(SocketAddr::from(([127, 0, 0, 1], 9434))),
        Role::Viewer => None,
    }
}

/// Starts the metrics and status server for `node` as `--metrics` says. A default port
/// that is taken (another node on this machine) is a warning; an address given by hand
/// that cannot be used is an error.
pub async fn serve(node: &Node, args: &NodeArgs, role: Role) -> Result<Option<WebServer>> {
    let (addr, explicit) = match args.metrics {
        Some(MetricsAddr::Off) => return Ok(None),
        Some(MetricsAddr::At(a)) => (a, true),
        None => match default_metrics(role) {
            Some(a) => (a, false),
            None => return Ok(None),
        },
    };
    match WebServer::bind(addr, node.observer()).await {
        Ok(s) => {
            let at = s.local_addr();
            println!("  metrics:     http://{at}/metrics  status page: http://{at}/");
            Ok(Some(s))
        }
        Err(e) if !explicit => {
            tracing::warn!(
                "no metrics server: cannot listen on {addr}: {e} (choose one with --metrics ADDR, or --metrics off)"
            );
            Ok(None)
        }
        Err(e) => Err(e).with_context(|| format!("cannot serve metrics on {addr}")),
    }
}

/// `treecast tree ADDR`.
pub async fn tree(args: TreeArgs) -> Result<()> {
    let report = query_tree(&args.addr, args.timeout)
        .await
        .with_context(|| format!("cannot get the tree from {}", args.addr))?;
    if args.json {
        let v = treecast_relay::web::page::tree_json(&report);
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        print!("{}", render_tree(&report, args.levels));
    }
    Ok(())
}

fn node_line(r: &SubtreeReport, i: usize) -> String {
    let n = &r.nodes[i];
    let mut s = n.id.short();
    if !n.host.is_empty() {
        let _ = write!(s, " {}", n.host);
    }
    if i > 0 {
        let _ = write!(s, "  rtt {}", ms(n.rtt_us));
    }
    let _ = write!(
        s,
        "  latency {}  children {}/{}",
        ms(n.latency_us),
        n.children,
        n.capacity
    );
    if n.totals.count > 1 {
        let _ = write!(s, "  subtree {}", count(n.totals.count));
    }
    s
}

fn hidden_line(n: u32, r: &SubtreeReport, i: usize) -> String {
    let t = r.nodes[i].totals;
    format!(
        "… {} more below (max depth {}, worst latency {})",
        count(n),
        t.max_depth,
        ms(t.worst_latency_us)
    )
}

/// The report as an indented tree, listing `levels` levels below its root; deeper nodes,
/// and those the report itself leaves out, appear as totals.
pub fn render_tree(r: &SubtreeReport, levels: u32) -> String {
    let t = r.totals();
    let mut out = format!(
        "{}  depth {}\n  {}, max depth {}, worst latency {}, {} spare child slots\n",
        node_line(r, 0),
        r.root().depth,
        nodes(t.count),
        t.max_depth,
        ms(t.worst_latency_us),
        count(t.spare)
    );
    // Depth-first: (node, prefix for its children, level below the root).
    fn walk(r: &SubtreeReport, i: usize, prefix: &str, level: u32, levels: u32, out: &mut String) {
        let kids: Vec<usize> = if level < levels {
            r.children_of(i).collect()
        } else {
            vec![]
        };
        let hidden = if level < levels {
            r.hidden_below(i)
        } else {
            r.nodes[i].totals.count.saturating_sub(1)
        };
        let items = kids.len() + usize::from(hidden > 0);
        for (k, &c) in kids.iter().enumerate() {
            let last = k + 1 == items;
            let _ = writeln!(
                out,
                "{prefix}{}{}",
                if last { "└─ " } else { "├─ " },
                node_line(r, c)
            );
            let deeper = format!("{prefix}{}", if last { "   " } else { "│  " });
            walk(r, c, &deeper, level + 1, levels, out);
        }
        if hidden > 0 {
            let _ = writeln!(out, "{prefix}└─ {}", hidden_line(hidden, r, i));
        }
    }
    walk(r, 0, "", 0, levels, &mut out);
    out
}

/// The player's metrics in the node's registry: stalls, re-buffers, playing slower,
/// first-frame time,
/// rendered and lost frames, latency and buffer.
#[cfg(feature = "media")]
pub struct PlayerMetrics {
    stalls: prometheus::IntCounter,
    rebuffers: prometheus::IntCounter,
    slowed: prometheus::Counter,
    rendered: prometheus::IntCounter,
    lost: prometheus::IntCounter,
    first_frame: prometheus::Gauge,
    latency: prometheus::Gauge,
    buffer: prometheus::Gauge,
}

#[cfg(feature = "media")]
impl PlayerMetrics {
    /// Registers the player metrics in `registry`.
    pub fn new(registry: &prometheus::Registry) -> Result<Self> {
        use prometheus::{Counter, Gauge, IntCounter};
        let counter = |name: &str, help: &str| -> Result<IntCounter> {
            let c = IntCounter::new(name, help)?;
            registry.register(Box::new(c.clone()))?;
            Ok(c)
        };
        let seconds = |name: &str, help: &str| -> Result<Counter> {
            let c = Counter::new(name, help)?;
            registry.register(Box::new(c.clone()))?;
            Ok(c)
        };
        let gauge = |name: &str, help: &str| -> Result<Gauge> {
            let g = Gauge::new(name, help)?;
            registry.register(Box::new(g.clone()))?;
            Ok(g)
        };
        Ok(PlayerMetrics {
            stalls: counter(
                "treecast_player_stalls_total",
                "Times playback stalled waiting for data.",
            )?,
            rebuffers: counter(
                "treecast_player_rebuffers_total",
                "Times frames came after their playout time and playback was moved later.",
            )?,
            slowed: seconds(
                "treecast_player_slowed_seconds_total",
                "Latency added by playing slower to win back a buffer a slower path wore down.",
            )?,
            rendered: counter(
                "treecast_player_frames_rendered_total",
                "Video frames rendered.",
            )?,
            lost: counter(
                "treecast_player_frames_lost_total",
                "Frames the player never received.",
            )?,
            first_frame: gauge(
                "treecast_player_first_frame_seconds",
                "Time from starting to join until the first frame was rendered (0 before).",
            )?,
            latency: gauge(
                "treecast_player_latency_seconds",
                "Median glass-to-glass latency of recently rendered frames.",
            )?,
            buffer: gauge(
                "treecast_player_buffer_seconds",
                "How far ahead of the playout clock the newest frame is.",
            )?,
        })
    }

    /// Brings the metrics up to the player's current statistics.
    pub fn update(&self, s: &treecast_player::PlayerStats) {
        for (c, v) in [
            (&self.stalls, s.stalls),
            (&self.rebuffers, s.rebuffers),
            (&self.rendered, s.frames_rendered),
            (&self.lost, s.frames_lost),
        ] {
            let have = c.get();
            if v > have {
                c.inc_by(v - have);
            }
        }
        let (slowed, have) = (s.slowed_ms / 1e3, self.slowed.get());
        if slowed > have {
            self.slowed.inc_by(slowed - have);
        }
        self.first_frame
            .set(s.first_frame_ms.map_or(0.0, |v| v / 1e3));
        self.latency.set(s.latency_ms.map_or(0.0, |v| v / 1e3));
        self.buffer.set(s.buffer_ms.map_or(0.0, |v| v / 1e3));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use treecast_relay::node::NodeId;
    use treecast_relay::proto::report::{ReportNode, Totals};

    fn node(n: u8, parent: usize, depth: u32, count: u32) -> ReportNode {
        ReportNode {
            id: NodeId::from_bytes([n; 32]),
            parent,
            host: format!("10.0.0.{n}:4434"),
            depth,
            rtt_us: 2_000,
            latency_us: 30_000,
            children: 1,
            capacity: 2,
            totals: Totals {
                count,
                max_depth: 12,
                worst_latency_us: 250_000,
                spare: 7,
            },
        }
    }

    #[test]
    fn metrics_flag() {
        assert_eq!(parse_metrics_addr("off"), Ok(MetricsAddr::Off));
        assert_eq!(
            parse_metrics_addr("0.0.0.0:9434"),
            Ok(MetricsAddr::At("0.0.0.0:9434".parse().unwrap()))
        );
        assert!(parse_metrics_addr("9434").unwrap_err().contains("IP:PORT"));
        assert_eq!(default_metrics(Role::Viewer), None);
        assert!(default_metrics(Role::Relay).is_some());
        assert!(default_metrics(Role::Origin).is_some());
    }

    #[test]
    fn tree_lists_levels_then_totals() {
        let r = SubtreeReport {
            nodes: vec![
                node(1, 0, 0, 10_000),
                node(2, 0, 1, 6_000),
                node(3, 0, 1, 3_000),
                node(4, 1, 2, 40),
            ],
        };
        let full = render_tree(&r, 6);
        let lines: Vec<&str> = full.lines().collect();
        assert!(lines[0].starts_with(&r.nodes[0].id.short()), "{full}");
        assert!(lines[1].contains("10,000 nodes"), "{full}");
        assert!(lines[2].starts_with("├─ ") && lines[2].contains("10.0.0.2:4434"));
        assert!(lines[3].starts_with("│  ├─ ") && lines[3].contains("10.0.0.4:4434"));
        assert!(lines[4].contains("│  │  └─ … 39 more below"), "{full}");
        assert!(lines[5].contains("│  └─ … 5,959 more below"), "{full}");
        assert!(lines[6].starts_with("├─ ") && lines[6].contains("10.0.0.3:4434"));
        assert!(lines[7].contains("│  └─ … 2,999 more below"), "{full}");
        assert!(lines[8].starts_with("└─ … 999 more below"), "{full}");
        // One level: the children, then everything below as totals.
        let top = render_tree(&r, 1);
        assert!(!top.contains("10.0.0.4"), "{top}");
        assert!(top.contains("… 5,999 more below"), "{top}");
    }

    #[test]
    fn dashboard_and_scrape_config_use_only_defined_metrics() {
        let dash: serde_json::Value =
            serde_json::from_str(include_str!("../deploy/grafana/treecast.json"))
                .expect("the dashboard is JSON");
        let defined = [
            include_str!("../relay/src/node/metrics.rs"),
            include_str!("observe.rs"),
        ]
        .concat();
        let mut used = 0;
        for panel in dash["panels"].as_array().expect("panels") {
            for t in panel["targets"].as_array().expect("targets") {
                let expr = t["expr"].as_str().expect("expr");
                for (i, _) in expr.match_indices("treecast_") {
                    let name: String = expr[i..]
                        .chars()
                        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                        .collect();
                    let family = ["_bucket", "_sum", "_count"]
                        .iter()
                        .find_map(|s| name.strip_suffix(s))
                        .unwrap_or(&name);
                    assert!(
                        defined.contains(&format!("\"{family}\"")),
                        "dashboard uses undefined metric {family}"
                    );
                    used += 1;
                }
            }
        }
        assert!(used > 20, "the dashboard shows treecast metrics");
        let scrape = include_str!("../deploy/prometheus.yml");
        for role in [Role::Origin, Role::Relay] {
            let port = default_metrics(role).expect("on by default").port();
            assert!(scrape.contains(&format!(":{port}\"")), "{port} scraped");
        }
    }
}
