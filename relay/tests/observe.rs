//! Observability on real nodes in one process: the Prometheus endpoint parses and moves
//! during a stream, the tree a node reports matches the real parent/child relations of a
//! 20-node tree, and the status page renders the tree in headless Chromium.

mod common;

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::path::PathBuf;
use std::time::Duration;

use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use treecast_relay::node::{Node, NodeId, Publisher, query_tree};
use treecast_relay::proto::report::SubtreeReport;
use treecast_relay::proto::synthetic::SyntheticSpec;
use treecast_relay::web::WebServer;

const POLL: Duration = Duration::from_millis(100);

/// Checks `cond` every `POLL` until it returns `Some`, or panics with `what` after `WAIT`.
async fn until<T, F: Future<Output = Option<T>>>(what: &str, mut cond: impl FnMut() -> F) -> T {
    let mut tick = tokio::time::interval(POLL);
    let r = tokio::time::timeout(WAIT, async {
        loop {
            tick.tick().await;
            if let Some(v) = cond().await {
                return v;
            }
        }
    })
    .await;
    r.unwrap_or_else(|_| panic!("timed out waiting for {what}"))
}

fn pump(publisher: Publisher) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let spec = SyntheticSpec::default();
        let mut src = Source::new(spec);
        let mut tick = tokio::time::interval(Duration::from_micros(spec.interval_us()));
        loop {
            tick.tick().await;
            publisher.send(src.next_frame());
        }
    })
}

fn fast_config(join: Option<&Node>, cap: usize) -> treecast_relay::node::NodeConfig {
    let mut c = config(None);
    c.join = join.map(|n| vec![n.addr()]).unwrap_or_default();
    c.max_children = cap;
    c.report_interval = Duration::from_millis(100);
    c
}

/// Sends a raw request and returns (status line, body).
async fn http(addr: std::net::SocketAddr, request: &[u8]) -> (String, String) {
    let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
    s.write_all(request).await.expect("send request");
    let mut out = Vec::new();
    s.read_to_end(&mut out).await.expect("read answer");
    let text = String::from_utf8(out).expect("UTF-8 answer");
    let (head, body) = text.split_once("\r\n\r\n").expect("a head and a body");
    let status = head.lines().next().unwrap_or_default().to_string();
    (status, body.to_string())
}

async fn get(addr: std::net::SocketAddr, path: &str) -> String {
    let (status, body) = http(
        addr,
        format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes(),
    )
    .await;
    assert_eq!(status, "HTTP/1.1 200 OK", "GET {path}");
    body
}

/// A strict parser of the Prometheus text format (0.0.4): every sample belongs to a family
/// declared by `# HELP` and `# TYPE` before it, names and labels are well-formed, values
/// parse, counters end in `_total`, histograms have `_bucket` (ending at `+Inf`), `_sum` and
/// `_count`. Returns samples by `name{labels}`.
fn parse_prometheus(text: &str) -> BTreeMap<String, f64> {
    let name_ok = |n: &str| {
        !n.is_empty()
            && n.chars().enumerate().all(|(i, c)| {
                c.is_ascii_alphabetic() || c == '_' || c == ':' || (i > 0 && c.is_ascii_digit())
            })
    };
    let mut types: HashMap<String, String> = HashMap::new();
    let mut helped: Vec<String> = Vec::new();
    let mut samples = BTreeMap::new();
    let mut infs = HashMap::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let (name, _) = rest.split_once(' ').expect("HELP has text");
            assert!(name_ok(name), "bad name {name}");
            helped.push(name.to_string());
            continue;
        }
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, ty) = rest.split_once(' ').expect("TYPE has a type");
            assert!(
                ["counter", "gauge", "histogram", "summary", "untyped"].contains(&ty),
                "type {ty}"
            );
            assert!(
                helped.last().is_some_and(|h| h == name),
                "TYPE {name} after its HELP"
            );
            if ty == "counter" && name.starts_with("treecast_") {
                assert!(name.ends_with("_total"), "counter {name} ends in _total");
            }
            types.insert(name.to_string(), ty.to_string());
            continue;
        }
        assert!(
            !line.starts_with('#') && !line.is_empty(),
            "stray line {line:?}"
        );
        let (series, value) = line.rsplit_once(' ').expect("sample has a value");
        let value: f64 = match value {
            "+Inf" => f64::INFINITY,
            "-Inf" => f64::NEG_INFINITY,
            v => v
                .parse()
                .unwrap_or_else(|_| panic!("bad value in {line:?}")),
        };
        let name = series.split('{').next().unwrap_or_default();
        assert!(name_ok(name), "bad name in {line:?}");
        if let Some(labels) = series.strip_prefix(name)
            && !labels.is_empty()
        {
            let inner = labels
                .strip_prefix('{')
                .and_then(|l| l.strip_suffix('}'))
                .unwrap_or_else(|| panic!("bad labels in {line:?}"));
            for pair in inner.split(',') {
                let (k, v) = pair.split_once('=').expect("label=value");
                assert!(name_ok(k), "bad label name in {line:?}");
                assert!(
                    v.len() >= 2 && v.starts_with('"') && v.ends_with('"'),
                    "{line:?}"
                );
            }
        }
        let family = types
            .keys()
            .filter(|f| {
                name == f.as_str()
                    || ["_bucket", "_sum", "_count"]
                        .iter()
                        .any(|s| name.strip_suffix(s) == Some(f.as_str()))
            })
            .max_by_key(|f| f.len())
            .unwrap_or_else(|| panic!("sample {name} of no declared family"));
        if types[family] == "histogram"
            && name.ends_with("_bucket")
            && series.contains("le=\"+Inf\"")
        {
            infs.insert(family.clone(), value);
        }
        samples.insert(series.to_string(), value);
    }
    for (f, ty) in &types {
        if ty == "histogram" {
            let count = samples[&format!("{f}_count")];
            assert_eq!(infs.get(f), Some(&count), "{f}: +Inf bucket equals _count");
            assert!(samples.contains_key(&format!("{f}_sum")), "{f}_sum");
        }
    }
    samples
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_parse_and_move_during_a_stream() {
    init_tracing();
    let origin = Node::start(fast_config(None, 4)).await.expect("origin");
    let publisher = origin.publish(SyntheticSpec::default().catalog("test"));
    let relay = Node::start(fast_config(Some(&origin), 4))
        .await
        .expect("relay");
    // Pinned below the relay (a joiner would find the origin's free slots).
    let mut leaf_cfg = fast_config(None, 4);
    leaf_cfg.parent = Some(relay.addr());
    let leaf = Node::start(leaf_cfg).await.expect("leaf");
    let web = WebServer::bind("127.0.0.1:0".parse().unwrap(), relay.observer())
        .await
        .expect("metrics server");
    let addr = web.local_addr();
    let pumping = pump(publisher);

    let first = parse_prometheus(&get(addr, "/metrics").await);
    for m in [
        "treecast_children",
        "treecast_depth",
        "treecast_parent_rtt_seconds",
        "treecast_joins_total",
        "treecast_join_duration_seconds_count",
        "treecast_subtree_nodes",
        "process_resident_memory_bytes",
    ] {
        assert!(first.contains_key(m), "{m} missing from\n{first:#?}");
    }
    assert_eq!(first["treecast_joins_total"], 1.0);
    assert_eq!(first["treecast_depth"], 1.0);

    let received = r#"treecast_frames_received_total{track="0"}"#;
    let forwarded = r#"treecast_frames_forwarded_total{track="0"}"#;
    let before = until("frames to arrive and be forwarded", || async {
        let m = parse_prometheus(&get(addr, "/metrics").await);
        (m.get(received).copied().unwrap_or(0.0) > 0.0 && m.contains_key(forwarded)).then_some(m)
    })
    .await;
    let after = until("counters to move", || async {
        let m = parse_prometheus(&get(addr, "/metrics").await);
        let moved = |k: &str| m.get(k).copied().unwrap_or(0.0) > before[k];
        (moved(received)
            && moved(forwarded)
            && moved(r#"treecast_received_bytes_total{track="0"}"#)
            && moved("treecast_glass_to_glass_latency_seconds_count")
            && m["treecast_subtree_nodes"] == 2.0)
            .then_some(m)
    })
    .await;
    assert_eq!(after["treecast_children"], 1.0);
    assert!(after["treecast_parent_rtt_seconds"] > 0.0);

    // Anything but a plain GET of a known path gets a clear refusal.
    let (status, _) = http(addr, b"GET /nope HTTP/1.1\r\n\r\n").await;
    assert_eq!(status, "HTTP/1.1 404 Not Found");
    let (status, _) = http(addr, b"POST /metrics HTTP/1.1\r\n\r\n").await;
    assert_eq!(status, "HTTP/1.1 405 Method Not Allowed");
    let mut huge = b"GET /metrics HTTP/1.1\r\nX: ".to_vec();
    huge.extend(std::iter::repeat_n(b'a', 20_000));
    let (status, _) = http(addr, &huge).await;
    assert_eq!(status, "HTTP/1.1 431 Request Header Fields Too Large");

    pumping.abort();
    leaf.stop_now().await;
    relay.stop_now().await;
    origin.stop_now().await;
}

/// Parent of every node (by id) in a report.
fn report_parents(r: &SubtreeReport) -> BTreeMap<NodeId, Option<NodeId>> {
    r.nodes
        .iter()
        .enumerate()
        .map(|(i, n)| (n.id, (i > 0).then(|| r.nodes[n.parent].id)))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tree_query_matches_a_twenty_node_tree() {
    init_tracing();
    let origin = Node::start(fast_config(None, 3)).await.expect("origin");
    let publisher = origin.publish(SyntheticSpec::default().catalog("test"));
    let pumping = pump(publisher);
    let mut nodes: Vec<Node> = Vec::new();
    for i in 0..20 {
        // Small capacities make a tree several levels deep.
        let via = if i == 0 { &origin } else { &nodes[i / 2] };
        let n = Node::start(fast_config(Some(via), 2))
            .await
            .expect("node joins");
        nodes.push(n);
    }
    let real = || {
        let mut m: BTreeMap<NodeId, Option<NodeId>> = BTreeMap::new();
        m.insert(origin.id(), None);
        for n in &nodes {
            m.insert(n.id(), n.parent().map(|p| p.id));
        }
        m
    };
    let (report, expected) = until("the origin's report to match the tree", || {
        let expected = real();
        let addr = origin.addr();
        async move {
            let r = query_tree(&addr, Duration::from_secs(5))
                .await
                .expect("tree query");
            (report_parents(&r) == expected && r.totals().count == 21).then_some((r, expected))
        }
    })
    .await;
    assert_eq!(report.nodes.len(), 21);
    let depth = report.totals().max_depth;
    assert!(
        depth >= 3,
        "a tree of capacity-2 nodes is deep, got {depth}"
    );
    for n in &report.nodes {
        let real = if n.id == origin.id() {
            origin.children().len()
        } else {
            let node = nodes.iter().find(|x| x.id() == n.id).expect("a real node");
            assert_eq!(
                node.stats().depth,
                Some(n.depth),
                "depth of {}",
                n.id.short()
            );
            node.children().len()
        };
        assert_eq!(n.children as usize, real, "children of {}", n.id.short());
    }
    // Any node answers for its own subtree.
    let mid = nodes
        .iter()
        .find(|n| !n.children().is_empty())
        .expect("a node with children");
    let sub = until("a relay's report to match its subtree", || {
        let addr = mid.addr();
        let expected = expected.clone();
        async move {
            let r = query_tree(&addr, Duration::from_secs(5))
                .await
                .expect("tree query");
            let ok = report_parents(&r)
                .iter()
                .all(|(id, p)| *id == r.root().id || expected.get(id) == Some(p));
            ok.then_some(r)
        }
    })
    .await;
    assert_eq!(sub.root().id, mid.id());
    assert!(sub.totals().count > mid.children().len() as u32);

    pumping.abort();
    for n in nodes {
        n.stop_now().await;
    }
    origin.stop_now().await;
}

fn artefact_dir() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target"));
    let dir = target.join("test-artefacts");
    std::fs::create_dir_all(&dir).expect("artefact directory");
    dir
}

async fn chromium(args: Vec<String>) -> String {
    let run = move || {
        std::process::Command::new("chromium")
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--hide-scrollbars",
            ])
            .args(args)
            .output()
    };
    let out = tokio::task::spawn_blocking(run)
        .await
        .expect("chromium task")
        .expect("chromium runs (deploy/install-deps.sh installs it)");
    assert!(
        out.status.success(),
        "chromium failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_page_shows_the_tree_in_headless_chromium() {
    init_tracing();
    let origin = Node::start(fast_config(None, 2)).await.expect("origin");
    let publisher = origin.publish(SyntheticSpec::default().catalog("test"));
    let pumping = pump(publisher);
    let mut nodes: Vec<Node> = Vec::new();
    for i in 0..6 {
        let via = if i == 0 { &origin } else { &nodes[(i - 1) / 2] };
        nodes.push(Node::start(fast_config(Some(via), 2)).await.expect("joins"));
    }
    let web = WebServer::bind("127.0.0.1:0".parse().unwrap(), origin.observer())
        .await
        .expect("status server");
    let url = format!("http://{}/", web.local_addr());
    let observer = origin.observer();
    until("the origin to see all 7 nodes", || {
        let n = observer.tree(64).totals().count;
        async move { (n == 7).then_some(()) }
    })
    .await;

    // The DOM after the page's script has run (and refreshed at least once).
    let dom = chromium(vec![
        "--virtual-time-budget=3000".into(),
        "--dump-dom".into(),
        url.clone(),
    ])
    .await;
    assert!(dom.contains("<svg"), "no drawing in\n{dom}");
    assert!(dom.contains("7 nodes"), "no summary in\n{dom}");
    assert!(dom.contains("healthy"), "no health in\n{dom}");
    for n in nodes.iter().map(|n| n.id()).chain([origin.id()]) {
        assert!(
            dom.contains(&n.short()),
            "{} missing from\n{dom}",
            n.short()
        );
        if let Some(p) = nodes.iter().find(|x| x.id() == n).and_then(|x| x.parent()) {
            // The drawing links each node to its real parent.
            let edge = format!(r#"data-id="{n}" data-parent="{}""#, p.id);
            assert!(dom.contains(&edge), "{edge} missing from\n{dom}");
        }
    }

    let png = artefact_dir().join("status-page.png");
    let _ = std::fs::remove_file(&png);
    chromium(vec![
        "--virtual-time-budget=2000".into(),
        format!("--screenshot={}", png.display()),
        "--window-size=1200,900".into(),
        url,
    ])
    .await;
    let bytes = std::fs::read(&png).expect("screenshot written");
    assert!(bytes.starts_with(b"\x89PNG"), "a PNG");
    assert!(bytes.len() > 10_000, "a screenshot with content");

    pumping.abort();
    for n in nodes {
        n.stop_now().await;
    }
    origin.stop_now().await;
}
