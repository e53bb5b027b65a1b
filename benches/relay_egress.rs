//! Whole-system relay benchmark on loopback (not a test: it measures, it does not assert).
//!
//! Workload (DESIGN.md, "How results are measured"): one publisher, 30 fps, 8,333-byte
//! frames (2 Mbit/s), 60-frame groups. The relay under test is a real `treecast relay`
//! process pinned to core 0 (`taskset -c 0`); the load generator (origin and children,
//! in this process) is pinned to core 1.
//!
//! 1. Egress: one relay serving N children (N = 1, 4, 16, 64): relay CPU (% of one core),
//!    CPU time per delivered byte, peak RSS, delivery ratio, and frame latency p50/p99.
//! 2. Hop latency: a chain of relay processes with a probe child at every depth; the
//!    latency added per relay hop (p50/p99).
//!
//! Each figure is the median of `BENCH_RUNS` runs (default 3) of a `BENCH_SECS` steady
//! window (default 20) after a 3 s warm-up. `BENCH_FRAME_BYTES` changes the bitrate. Results go to `TREECAST_BENCH_OUT` (default
//! `target/bench-results/relay_egress.json`).
//!
//! Run: `cargo bench --bench relay_egress` (quick look: `BENCH_SECS=5 BENCH_RUNS=1`).

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::json;
use treecast_relay::node::{Identity, Node, NodeConfig, PeerAddr, Publisher};
use treecast_relay::proto::media::{Packager, VIDEO_TRACK};
use treecast_relay::proto::synthetic::SyntheticSpec;

const BIN: &str = env!("CARGO_BIN_EXE_treecast");
const WARMUP: Duration = Duration::from_secs(3);

fn env_num(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

fn have_taskset() -> bool {
    Command::new("taskset")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn clk_tck() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100.0)
}

/// CPU seconds (user + system) used so far by process `pid`.
fn cpu_secs(pid: u32, tck: f64) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name (which is in parentheses and may contain spaces).
    let after = stat.rsplit_once(") ").map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    // utime and stime are fields 14 and 15 of the full line: 11 and 12 after the name.
    (ticks(11) + ticks(12)) / tck
}

/// Peak resident set size of `pid`, in KiB.
fn peak_rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

struct RelayProc {
    child: Child,
    addr: PeerAddr,
}

impl RelayProc {
    fn start(parent: &PeerAddr, max_children: usize, pin: bool) -> RelayProc {
        let mut cmd = if pin {
            let mut c = Command::new("taskset");
            c.args(["-c", "0", BIN]);
            c
        } else {
            Command::new(BIN)
        };
        cmd.args(["relay", "--ephemeral", "--listen", "127.0.0.1:0"])
            .arg("--parent")
            .arg(parent.to_string())
            .arg("--max-children")
            .arg(max_children.to_string())
            .env("RUST_LOG", "error")
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        let mut child = cmd.spawn().expect("start treecast relay");
        let out = child.stdout.take().expect("stdout");
        let mut line = String::new();
        BufReader::new(out)
            .read_line(&mut line)
            .expect("relay prints its address");
        let addr = line
            .split_whitespace()
            .last()
            .and_then(|a| a.parse().ok())
            .expect("relay address");
        RelayProc { child, addr }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for RelayProc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[derive(Default)]
struct Probe {
    frames: u64,
    bytes: u64,
    latencies_us: Vec<u64>,
}

async fn node(parent: Option<PeerAddr>, max_children: usize) -> Node {
    let mut c = NodeConfig::new(
        Identity::generate().expect("identity"),
        SocketAddr::from(([127, 0, 0, 1], 0)),
    );
    c.parent = parent;
    c.max_children = max_children;
    Node::start(c).await.expect("node starts")
}

/// A child node that records what it receives while `active` is set.
async fn probe_child(parent: PeerAddr, active: Arc<AtomicBool>) -> (Node, Arc<Mutex<Probe>>) {
    let n = node(Some(parent), 0).await;
    let sub = n.subscribe_local();
    let probe = Arc::new(Mutex::new(Probe::default()));
    let p = probe.clone();
    tokio::spawn(async move {
        while let Some(f) = sub.next().await {
            if active.load(Ordering::Relaxed) {
                let lat = now_us().saturating_sub(f.capture_us);
                let mut p = p.lock().unwrap_or_else(|e| e.into_inner());
                p.frames += 1;
                p.bytes += f.payload.len() as u64;
                p.latencies_us.push(lat);
            }
        }
    });
    (n, probe)
}

/// Publishes the synthetic workload until dropped; counts frames sent while `active`.
fn pump(
    publisher: Publisher,
    spec: SyntheticSpec,
    active: Arc<AtomicBool>,
    sent: Arc<Mutex<u64>>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut packager = Packager::new(Some(VIDEO_TRACK), 1_000_000);
        let mut tick = tokio::time::interval(Duration::from_micros(spec.interval_us()));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
        for i in 0.. {
            tick.tick().await;
            if let Some(f) = packager.pack(spec.unit(i, now_us())) {
                publisher.send(f);
                if active.load(Ordering::Relaxed) {
                    *sent.lock().unwrap_or_else(|e| e.into_inner()) += 1;
                }
            }
        }
    })
}

fn percentile(sorted: &[u64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[i] as f64 / 1000.0
}

fn median(mut v: Vec<f64>) -> f64 {
    v.retain(|x| x.is_finite());
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

async fn egress_run(
    n: usize,
    spec: SyntheticSpec,
    window: Duration,
    pin: bool,
    tck: f64,
) -> serde_json::Value {
    let origin = node(None, 4).await;
    let publisher = origin.publish(spec.catalog("bench"));
    let active = Arc::new(AtomicBool::new(false));
    let sent = Arc::new(Mutex::new(0u64));
    let pumper = pump(publisher, spec, active.clone(), sent.clone());
    let relay = RelayProc::start(&origin.addr(), n, pin);
    let mut children = Vec::new();
    for _ in 0..n {
        children.push(probe_child(relay.addr.clone(), active.clone()).await);
    }
    tokio::time::sleep(WARMUP).await;
    let cpu0 = cpu_secs(relay.pid(), tck);
    active.store(true, Ordering::Relaxed);
    tokio::time::sleep(window).await;
    active.store(false, Ordering::Relaxed);
    let cpu = cpu_secs(relay.pid(), tck) - cpu0;
    let rss = peak_rss_kib(relay.pid());
    pumper.abort();
    let sent = *sent.lock().unwrap_or_else(|e| e.into_inner());
    let (mut frames, mut bytes, mut lat) = (0u64, 0u64, Vec::new());
    for (_, p) in &children {
        let p = p.lock().unwrap_or_else(|e| e.into_inner());
        frames += p.frames;
        bytes += p.bytes;
        lat.extend_from_slice(&p.latencies_us);
    }
    lat.sort_unstable();
    for (c, _) in children {
        c.shutdown().await;
    }
    drop(relay);
    origin.shutdown().await;
    let secs = window.as_secs_f64();
    json!({
        "children": n,
        "relay_cpu_percent": cpu / secs * 100.0,
        "cpu_ns_per_delivered_byte": if bytes > 0 { cpu * 1e9 / bytes as f64 } else { f64::NAN },
        "egress_mbit_per_s": bytes as f64 * 8.0 / secs / 1e6,
        "delivery_ratio": if sent > 0 { frames as f64 / (sent as f64 * n as f64) } else { f64::NAN },
        "latency_ms_p50": percentile(&lat, 0.5),
        "latency_ms_p99": percentile(&lat, 0.99),
        "relay_peak_rss_kib": rss,
    })
}

async fn hop_run(hops: usize, spec: SyntheticSpec, window: Duration, pin: bool) -> Vec<(f64, f64)> {
    let origin = node(None, 4).await;
    let publisher = origin.publish(spec.catalog("bench"));
    let active = Arc::new(AtomicBool::new(false));
    let pumper = pump(publisher, spec, active.clone(), Arc::new(Mutex::new(0)));
    let mut relays: Vec<RelayProc> = Vec::new();
    let mut probes = vec![probe_child(origin.addr(), active.clone()).await];
    for _ in 0..hops {
        let parent = relays
            .last()
            .map(|r| r.addr.clone())
            .unwrap_or_else(|| origin.addr());
        let r = RelayProc::start(&parent, 2, pin);
        probes.push(probe_child(r.addr.clone(), active.clone()).await);
        relays.push(r);
    }
    tokio::time::sleep(WARMUP).await;
    active.store(true, Ordering::Relaxed);
    tokio::time::sleep(window).await;
    active.store(false, Ordering::Relaxed);
    pumper.abort();
    let mut out = Vec::new();
    for (n, p) in probes {
        let mut lat = p
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .latencies_us
            .clone();
        lat.sort_unstable();
        out.push((percentile(&lat, 0.5), percentile(&lat, 0.99)));
        n.shutdown().await;
    }
    drop(relays);
    origin.shutdown().await;
    out
}

fn main() {
    let window = Duration::from_secs(env_num("BENCH_SECS", 20));
    let runs = env_num("BENCH_RUNS", 3).max(1) as usize;
    let out_path = std::env::var("TREECAST_BENCH_OUT")
        .unwrap_or_else(|_| "target/bench-results/relay_egress.json".into());
    let pin = have_taskset() && std::thread::available_parallelism().is_ok_and(|n| n.get() >= 2);
    if pin {
        // The load generator runs on core 1, the relay on core 0.
        let _ = Command::new("taskset")
            .args(["-a", "-p", "-c", "1", &std::process::id().to_string()])
            .stdout(Stdio::null())
            .status();
    }
    let tck = clk_tck();
    let spec = SyntheticSpec {
        frame_size: env_num("BENCH_FRAME_BYTES", 8333) as usize,
        ..SyntheticSpec::default()
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let results = rt.block_on(async {
        let mut egress = Vec::new();
        for n in [1usize, 4, 16, 64] {
            let mut samples = Vec::new();
            for _ in 0..runs {
                samples.push(egress_run(n, spec, window, pin, tck).await);
            }
            let m = |k: &str| median(samples.iter().map(|s| s[k].as_f64().unwrap_or(f64::NAN)).collect());
            let row = json!({
                "children": n,
                "relay_cpu_percent": m("relay_cpu_percent"),
                "cpu_ns_per_delivered_byte": m("cpu_ns_per_delivered_byte"),
                "egress_mbit_per_s": m("egress_mbit_per_s"),
                "delivery_ratio": m("delivery_ratio"),
                "latency_ms_p50": m("latency_ms_p50"),
                "latency_ms_p99": m("latency_ms_p99"),
                "relay_peak_rss_kib": m("relay_peak_rss_kib"),
                "runs": samples,
            });
            eprintln!(
                "egress N={n:>2}: cpu {:.1}% | {:.1} ns/B | {:.1} Mbit/s | delivery {:.4} | latency p50 {:.2} ms p99 {:.2} ms | rss {} KiB",
                row["relay_cpu_percent"].as_f64().unwrap_or(f64::NAN),
                row["cpu_ns_per_delivered_byte"].as_f64().unwrap_or(f64::NAN),
                row["egress_mbit_per_s"].as_f64().unwrap_or(f64::NAN),
                row["delivery_ratio"].as_f64().unwrap_or(f64::NAN),
                row["latency_ms_p50"].as_f64().unwrap_or(f64::NAN),
                row["latency_ms_p99"].as_f64().unwrap_or(f64::NAN),
                row["relay_peak_rss_kib"],
            );
            egress.push(row);
        }
        let hops = 4;
        let mut per_depth: Vec<Vec<(f64, f64)>> = vec![Vec::new(); hops + 1];
        for _ in 0..runs {
            for (d, v) in hop_run(hops, spec, window, pin).await.into_iter().enumerate() {
                per_depth[d].push(v);
            }
        }
        let depth_rows: Vec<_> = per_depth
            .iter()
            .enumerate()
            .map(|(d, v)| {
                json!({
                    "relays_before_probe": d,
                    "latency_ms_p50": median(v.iter().map(|x| x.0).collect()),
                    "latency_ms_p99": median(v.iter().map(|x| x.1).collect()),
                })
            })
            .collect();
        let p = |i: usize, k: &str| depth_rows[i][k].as_f64().unwrap_or(f64::NAN);
        let added_p50 = (p(hops, "latency_ms_p50") - p(0, "latency_ms_p50")) / hops as f64;
        let added_p99 = (p(hops, "latency_ms_p99") - p(0, "latency_ms_p99")) / hops as f64;
        eprintln!("hop latency: added per relay hop p50 {added_p50:.3} ms, p99 {added_p99:.3} ms");
        json!({
            "benchmark": "relay_egress",
            "workload": {
                "fps": spec.fps, "frame_bytes": spec.frame_size, "group_frames": spec.group_len,
                "bitrate_bit_per_s": spec.bitrate(),
            },
            "window_secs": window.as_secs_f64(),
            "runs": runs,
            "relay_pinned_to_core0": pin,
            "egress": egress,
            "hop_latency": {
                "relays": hops,
                "by_depth": depth_rows,
                "added_per_hop_ms_p50": added_p50,
                "added_per_hop_ms_p99": added_p99,
            },
        })
    });
    if let Some(dir) = std::path::Path::new(&out_path).parent() {
        let _ = std::fs::create_dir_all(dir);
    }
    match std::fs::write(
        &out_path,
        serde_json::to_string_pretty(&results).unwrap_or_default(),
    ) {
        Ok(()) => eprintln!("wrote {out_path}"),
        Err(e) => eprintln!("cannot write {out_path}: {e}"),
    }
}
