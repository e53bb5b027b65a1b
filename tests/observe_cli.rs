//! Observability as users run it: the origin serves metrics where `--metrics` says, a relay
//! with `--metrics off` and a viewer (off by default) open no TCP port at all, and
//! `treecast tree` shows every node below the origin.
#![cfg(feature = "media")]

mod common;

use std::collections::HashSet;
use std::io::{Read, Write};
use std::process::Command;
use std::time::{Duration, Instant};

use common::{BIN, start};

/// TCP sockets in LISTEN state owned by process `pid`.
fn listening_tcp(pid: u32) -> Vec<String> {
    let mut inodes = HashSet::new();
    for fd in std::fs::read_dir(format!("/proc/{pid}/fd")).expect("process fds") {
        let Ok(fd) = fd else { continue };
        if let Ok(target) = std::fs::read_link(fd.path()) {
            let t = target.to_string_lossy().into_owned();
            if let Some(inode) = t.strip_prefix("socket:[").and_then(|x| x.strip_suffix(']')) {
                inodes.insert(inode.to_string());
            }
        }
    }
    let mut found = Vec::new();
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let Ok(text) = std::fs::read_to_string(table) else {
            continue;
        };
        for line in text.lines().skip(1) {
            let f: Vec<&str> = line.split_whitespace().collect();
            if f.len() > 9 && f[3] == "0A" && inodes.contains(f[9]) {
                found.push(f[1].to_string());
            }
        }
    }
    found
}

fn http_get(addr: &str, path: &str) -> String {
    let mut s = std::net::TcpStream::connect(addr).expect("connect to the metrics server");
    write!(s, "GET {path} HTTP/1.1\r\nHost: {addr}\r\n\r\n").expect("send");
    let mut out = String::new();
    s.read_to_string(&mut out).expect("read");
    assert!(out.starts_with("HTTP/1.1 200 OK"), "{out}");
    out
}

/// Runs `treecast tree ADDR` until its output contains every one of `ids`.
fn tree_until_it_lists(origin: &str, ids: &[&str]) -> String {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let out = Command::new(BIN)
            .args(["tree", origin, "--timeout", "5s"])
            .output()
            .expect("run treecast tree");
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        if out.status.success() && ids.iter().all(|id| text.contains(id)) {
            return text;
        }
        assert!(
            Instant::now() < deadline,
            "treecast tree never listed {ids:?}:\n{text}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        // Reports travel up once a second: look again a little later.
        std::thread::park_timeout(Duration::from_millis(250));
    }
}

#[test]
fn metrics_where_asked_no_port_otherwise_and_the_tree_from_the_origin() {
    let (origin, origin_addr, origin_out) = start(&[
        "publish",
        "--ephemeral",
        "--listen",
        "127.0.0.1:0",
        "--metrics",
        "127.0.0.1:0",
        "--duration",
        "60s",
    ]);
    let metrics_addr = loop {
        let line = origin_out
            .recv_timeout(Duration::from_secs(30))
            .expect("the origin prints its metrics address");
        if let Some(rest) = line.trim().strip_prefix("metrics:") {
            let url = rest.split_whitespace().next().expect("a URL");
            let hostport = url
                .trim_start_matches("http://")
                .trim_end_matches("/metrics")
                .to_string();
            break hostport;
        }
    };
    let (relay, relay_addr, _) = start(&[
        "relay",
        "--ephemeral",
        "--listen",
        "127.0.0.1:0",
        "--join",
        &origin_addr,
        "--metrics",
        "off",
        "--duration",
        "60s",
    ]);
    let (viewer, viewer_addr, _) = start(&[
        "watch",
        &relay_addr,
        "--headless",
        "--quiet",
        "--ephemeral",
        "--listen",
        "127.0.0.1:0",
        "--duration",
        "60s",
    ]);

    let short = |a: &str| a[..8].to_string();
    let ids = [short(&relay_addr), short(&viewer_addr)];
    let tree = tree_until_it_lists(&origin_addr, &[&ids[0], &ids[1]]);
    assert!(tree.contains("3 nodes"), "{tree}");
    assert!(tree.starts_with(&short(&origin_addr)), "{tree}");

    let metrics = http_get(&metrics_addr, "/metrics");
    let children: u32 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("treecast_children "))
        .and_then(|v| v.parse().ok())
        .expect("treecast_children");
    assert!((1..=2).contains(&children), "{metrics}");
    assert!(
        metrics.contains("\ntreecast_subtree_nodes 3\n"),
        "{metrics}"
    );
    assert!(metrics.contains("process_cpu_seconds_total"), "{metrics}");
    let page = http_get(&metrics_addr, "/");
    assert!(page.contains(&ids[0]), "the status page shows the relay");

    // The origin's HTTP port shows up in the check, so its absence elsewhere means something.
    assert_eq!(
        listening_tcp(origin.0.id()).len(),
        1,
        "the origin's metrics port"
    );
    assert_eq!(
        listening_tcp(relay.0.id()),
        Vec::<String>::new(),
        "relay, --metrics off"
    );
    assert_eq!(
        listening_tcp(viewer.0.id()),
        Vec::<String>::new(),
        "viewer by default"
    );
}
