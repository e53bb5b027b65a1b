//! `treecast sim` as users run it: a summary line, a report, and clear errors.

mod common;

use std::process::Command;

use common::BIN;

#[test]
fn a_small_churn_run_reports_stalls_and_their_causes() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(BIN)
        .args(["sim", "--seed", "2", "--peers", "80", "--scenario", "churn"])
        .args(["--duration", "30s", "--buffer", "1s", "--out"])
        .arg(dir.path())
        .output()
        .expect("run treecast sim");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("churn: N = 80") && stdout.contains("after a parent or grandparent crash"),
        "{stdout}"
    );
    let report = std::fs::read_to_string(dir.path().join("results.md")).unwrap();
    for needle in [
        "| no stall when the parent or grandparent crashes (1.0 s buffer",
        "- Playback as the player does it",
        "| latency added by re-buffering, per viewer |",
    ] {
        assert!(report.contains(needle), "{needle} missing from:\n{report}");
    }
}

#[test]
fn bad_sim_flags_are_clear_errors() {
    for (flags, says) in [
        (["--scenario", "meteor"], "steady, flash"),
        (["--peers", "0"], "--peers must be at least 1"),
    ] {
        let out = Command::new(BIN)
            .arg("sim")
            .args(flags)
            .output()
            .expect("run treecast sim");
        assert!(!out.status.success(), "{flags:?} accepted");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(says), "{flags:?}: {err}");
    }
}
