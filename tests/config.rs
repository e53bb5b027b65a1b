//! Config files and environment variables, as users run the `treecast` binary:
//! file < env < flag, and a clear error for a key the file must not have.

mod common;

use std::path::Path;
use std::process::{Command, Output};

use common::BIN;

/// `treecast ARGS` with only the given TREECAST_* variables set.
fn run(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut c = Command::new(BIN);
    for (k, _) in std::env::vars() {
        if k.starts_with("TREECAST_") {
            c.env_remove(k);
        }
    }
    c.args(args)
        .envs(env.iter().copied())
        .output()
        .expect("run treecast")
}

fn ok(out: Output) -> String {
    assert!(
        out.status.success(),
        "failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn key_in(dir: &Path, role: &str) -> bool {
    dir.join(format!("{role}.key")).exists()
}

#[test]
fn file_then_env_then_flag() {
    let t = tempfile::tempdir().unwrap();
    let (a, b, c) = (t.path().join("a"), t.path().join("b"), t.path().join("c"));
    let cfg = t.path().join("treecast.toml");
    std::fs::write(
        &cfg,
        format!(
            "[node]\ndata-dir = {:?}\nmax_children = 5\n\n[id]\nrole = \"viewer\"\n\n[relay]\nmax-children = 3\n",
            a.to_str().unwrap()
        ),
    )
    .unwrap();
    let cfg = cfg.to_str().unwrap();

    // The file alone: its data dir and its role.
    let id_a = ok(run(&["id", "--config", cfg], &[]));
    assert!(
        key_in(&a, "viewer"),
        "the file's data-dir and role are used"
    );
    // The same stored identity comes back: it persists in the data dir.
    assert_eq!(ok(run(&["--config", cfg, "id"], &[])), id_a);

    // Env over the file; the file's other keys still apply.
    let env_b = [("TREECAST_DATA_DIR", b.to_str().unwrap())];
    ok(run(&["id", "--config", cfg], &env_b));
    assert!(key_in(&b, "viewer"), "env overrides the file's data-dir");
    // The config file named by env.
    let env_cfg = [("TREECAST_CONFIG", cfg), env_b[0]];
    ok(run(&["id", "--role", "origin"], &env_cfg));
    assert!(key_in(&b, "origin"));

    // A flag over both.
    ok(run(
        &["id", "--config", cfg, "--data-dir", c.to_str().unwrap()],
        &env_b,
    ));
    assert!(key_in(&c, "viewer"), "the flag overrides env and file");
    assert!(!key_in(&a, "relay") && !key_in(&b, "relay") && !key_in(&c, "relay"));

    // `config --print` says which value won and why.
    let p = ok(run(&["config", "--print", "relay", "--config", cfg], &[]));
    assert!(p.contains("max-children = 3  # file"), "{p}");
    assert!(p.contains("[relay]") && p.contains("data-dir = "), "{p}");
    let env7 = [("TREECAST_MAX_CHILDREN", "7")];
    let p = ok(run(&["--config", cfg, "config", "--print", "relay"], &env7));
    assert!(
        p.contains("max-children = 7  # env TREECAST_MAX_CHILDREN"),
        "{p}"
    );
    let p = ok(run(
        &[
            "--config",
            cfg,
            "config",
            "--print",
            "relay",
            "--max-children",
            "9",
        ],
        &env7,
    ));
    assert!(p.contains("max-children = 9  # flag"), "{p}");
    // [node] applies to every command that has the key; [relay] wins for the relay.
    let p = ok(run(&["--config", cfg, "config", "--print", "watch"], &[]));
    assert!(p.contains("max-children = 5  # file"), "{p}");
}

#[test]
fn file_values_meet_requirements_and_yield_to_conflicting_flags() {
    let t = tempfile::tempdir().unwrap();
    let id = ok(run(&["id", "--ephemeral"], &[]));
    let cfg = t.path().join("relay.toml");
    // Nobody listens on port 9: the relay reports that, so the file's `parent`
    // satisfied `relay`'s need for --join or --parent.
    std::fs::write(
        &cfg,
        format!(
            "[relay]\nparent = \"{}@127.0.0.1:9\"\nephemeral = true\nlisten = \"127.0.0.1:0\"\n",
            id.trim()
        ),
    )
    .unwrap();
    let cfg = cfg.to_str().unwrap();
    let out = run(&["relay", "--config", cfg], &[]);
    let e = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        e.contains("no answer from") && e.contains("127.0.0.1:9"),
        "{e}"
    );

    // --join on the command line conflicts with the file's parent: the file's yields.
    let join = format!("{}@127.0.0.1:10", id.trim());
    let p = ok(run(
        &[
            "config", "--print", "relay", "--config", cfg, "--join", &join,
        ],
        &[],
    ));
    assert!(p.contains("# parent: not set"), "{p}");
    assert!(p.contains("join = [\"") && p.contains("# flag"), "{p}");
}

#[test]
fn unknown_keys_and_bad_values_are_clear_errors() {
    let t = tempfile::tempdir().unwrap();
    let check = |text: &str, want: &[&str]| {
        let cfg = t.path().join("bad.toml");
        std::fs::write(&cfg, text).unwrap();
        let out = run(&["relay", "--config", cfg.to_str().unwrap()], &[]);
        assert!(!out.status.success(), "{text} should be refused");
        let e = String::from_utf8_lossy(&out.stderr).into_owned();
        assert_eq!(e.lines().count(), 1, "one line: {e}");
        for w in want {
            assert!(e.contains(w), "{text}: {e} lacks {w}");
        }
    };
    let path = t.path().join("bad.toml");
    let path = path.to_str().unwrap();
    check(
        "[relay]\nmax-childs = 3\n",
        &[
            path,
            "[relay]",
            "`max-childs`",
            "did you mean `max-children`",
        ],
    );
    check(
        "[node]\npublic_hots = \"x\"\n",
        &[path, "[node]", "`public_hots`", "`public-host`"],
    );
    check("[rellay]\n", &[path, "unknown section [rellay]", "`relay`"]);
    check(
        "[relay]\nmax-children = \"many\"\n",
        &[path, "[relay] max-children", "many"],
    );
    check("[relay\n", &[path, "not valid TOML"]);
    let out = run(&["relay", "--config", "/nonexistent/treecast.toml"], &[]);
    let e = String::from_utf8_lossy(&out.stderr);
    assert!(e.contains("/nonexistent/treecast.toml"), "{e}");
}
