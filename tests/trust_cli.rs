//! Publisher keys, private streams and tokens as users drive them from the shell.

mod common;

use std::process::Command;

use common::{BIN, start};

fn run(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(BIN)
        .args(args)
        .env("RUST_LOG", "warn")
        .output()
        .expect("run treecast");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn keygen_token_and_a_private_stream() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("pub.key");
    let key = key.to_str().unwrap();
    let (ok, out, err) = run(&["keygen", "--key", key]);
    assert!(ok, "{err}");
    let public = out
        .lines()
        .find_map(|l| l.strip_prefix("public key:"))
        .expect("keygen prints the public key")
        .trim()
        .to_string();
    assert_eq!(public.len(), 52, "{out}");
    // A second keygen does not destroy the key that names the streams.
    let (ok, _, err) = run(&["keygen", "--key", key]);
    assert!(
        !ok && err.contains("already exists") && err.contains("--force"),
        "{err}"
    );

    let (_origin, addr, lines) = start(&[
        "publish",
        "--source",
        "synthetic",
        "--name",
        "meeting",
        "--key",
        key,
        "--private",
        "--ephemeral",
        "--listen",
        "127.0.0.1:0",
        "--duration",
        "60s",
    ]);
    let stream = format!("{public}/meeting");
    let hint = lines
        .recv_timeout(std::time::Duration::from_secs(10))
        .expect("publish explains how to join");
    assert!(
        hint.contains("private") && hint.contains("treecast token"),
        "{hint}"
    );

    // Without a token: refused, and told why.
    let join = [
        "relay",
        "--join",
        &addr,
        "--ephemeral",
        "--listen",
        "127.0.0.1:0",
    ];
    let (ok, _, err) = run(&[&join[..], &["--duration", "1s"]].concat());
    assert!(!ok, "joined a private stream without a token");
    assert!(err.contains("token is required"), "{err}");
    // A token that is not one.
    let (ok, _, err) = run(&[&join[..], &["--token", "hello", "--duration", "1s"]].concat());
    assert!(
        !ok && err.contains("--token is not a treecast token"),
        "{err}"
    );
    // A malformed --stream.
    let (ok, _, err) = run(&[&join[..], &["--stream", "nope", "--duration", "1s"]].concat());
    assert!(!ok && err.contains("KEY/NAME"), "{err}");

    // With a token from `treecast token`: joins and relays.
    let (ok, token, err) = run(&[
        "token",
        "--key",
        key,
        "--name",
        "meeting",
        "--for",
        "relay-1",
        "--relay-only",
    ]);
    assert!(ok, "{err}");
    let token = token.trim();
    assert!(token.starts_with("tct1."), "{token}");
    let (_relay, relay_addr, _) = start(
        &[
            &join[..],
            &["--token", token, "--stream", &stream, "--duration", "60s"],
        ]
        .concat(),
    );
    assert!(relay_addr.contains('@'), "{relay_addr}");
    // An expired token is refused with the reason.
    let (ok, old, _) = run(&[
        "token", "--key", key, "--name", "meeting", "--for", "late", "--valid", "0s",
    ]);
    assert!(ok);
    let (ok, _, err) = run(&[&join[..], &["--token", old.trim(), "--duration", "1s"]].concat());
    assert!(!ok && err.contains("expired"), "{err}");
}
