//! Separate `treecast` processes joined with `--join`: a relay is killed with SIGKILL and
//! the viewers below it re-attach without losing a frame.
#![cfg(feature = "media")]

mod common;

use std::sync::mpsc;
use std::time::Duration;

use common::start;

/// The `parent:` line a node prints after joining.
fn parent_of(rx: &mpsc::Receiver<String>) -> String {
    let line = rx
        .recv_timeout(Duration::from_secs(30))
        .expect("the node prints its parent");
    line.split_whitespace().last().expect("parent").to_string()
}

fn id(addr: &str) -> &str {
    addr.split('@').next().unwrap_or(addr)
}

#[test]
fn viewers_lose_no_frame_when_their_relay_is_killed() {
    let dir = tempfile::tempdir().unwrap();
    let base = ["--ephemeral", "--listen", "127.0.0.1:0"];
    // The origin takes two children: the two relays (they join first).
    let (_origin, origin, _) = start(
        &[
            &["publish", "--max-children", "2", "--duration", "60s"][..],
            &base,
        ]
        .concat(),
    );
    let (mut relay_a, a, a_out) = start(
        &[
            &[
                "relay",
                "--join",
                &origin,
                "--max-children",
                "1",
                "--duration",
                "60s",
            ][..],
            &base,
        ]
        .concat(),
    );
    assert_eq!(id(&parent_of(&a_out)), id(&origin));
    let (_relay_b, b, b_out) = start(
        &[
            &[
                "relay",
                "--join",
                &origin,
                "--max-children",
                "1",
                "--duration",
                "60s",
            ][..],
            &base,
        ]
        .concat(),
    );
    assert_eq!(id(&parent_of(&b_out)), id(&origin));
    // Each relay has one slot: one viewer lands under each.
    let mut viewers = Vec::new();
    let mut under_a = None;
    for i in 0..2 {
        let report = dir.path().join(format!("viewer{i}.json"));
        let report_s = report.to_string_lossy().into_owned();
        let (p, _addr, out) = start(
            &[
                &[
                    "watch",
                    &origin,
                    "--headless",
                    "--max-children",
                    "0",
                    "--duration",
                    "8s",
                    "--report",
                    &report_s,
                ][..],
                &base,
            ]
            .concat(),
        );
        let parent = parent_of(&out);
        assert!(
            id(&parent) == id(&a) || id(&parent) == id(&b),
            "viewer {i} under {parent}"
        );
        if id(&parent) == id(&a) {
            under_a = Some(i);
        }
        viewers.push((p, report));
    }
    let under_a = under_a.expect("a viewer under relay A");
    // Kill relay A without warning.
    relay_a.0.kill().expect("SIGKILL");
    let _ = relay_a.0.wait();
    for (i, (mut p, report)) in viewers.into_iter().enumerate() {
        let status = p.0.wait().expect("viewer exits");
        assert!(status.success(), "viewer {i} failed");
        let r: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&report).expect("report")).expect("json");
        eprintln!(
            "viewer {i}{}: {r}",
            if i == under_a {
                " (was under the killed relay)"
            } else {
                ""
            }
        );
        assert_eq!(r["frames_lost"], 0, "viewer {i} lost frames");
        assert_eq!(r["node"]["frames_lost"], 0, "viewer {i}'s node saw a gap");
        assert!(
            r["frames_rendered"].as_u64().unwrap_or(0) > 150,
            "viewer {i} played on"
        );
    }
}
