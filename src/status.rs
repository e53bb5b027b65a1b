//! The one-line status shown while a node runs, and the shutdown signal.

use std::io::{IsTerminal, Write};
use std::time::Duration;

/// Prints status lines: rewritten in place on a terminal, one per interval otherwise.
pub struct StatusLine {
    tty: bool,
    enabled: bool,
}

impl StatusLine {
    pub fn new(enabled: bool) -> Self {
        StatusLine {
            tty: std::io::stderr().is_terminal(),
            enabled,
        }
    }

    pub fn show(&self, line: &str) {
        if !self.enabled {
            return;
        }
        let mut e = std::io::stderr().lock();
        let _ = if self.tty {
            write!(e, "\r\x1b[K{line}")
        } else {
            writeln!(e, "{line}")
        };
        let _ = e.flush();
    }

    /// Prints `line` on standard output, above the status line (which is cleared first on
    /// a terminal and redrawn at the next tick).
    pub fn print_above(&self, line: &str) {
        if self.enabled && self.tty {
            let mut e = std::io::stderr().lock();
            let _ = write!(e, "\r\x1b[K");
            let _ = e.flush();
        }
        let mut o = std::io::stdout().lock();
        let _ = writeln!(o, "{line}");
        let _ = o.flush();
    }

    pub fn finish(&self) {
        if self.enabled && self.tty {
            eprintln!();
        }
    }
}

/// One log line per significant tree event (quiet ones at debug level).
pub fn log_event(e: &treecast_relay::node::NodeEvent) {
    use treecast_relay::node::NodeEvent;
    match e {
        NodeEvent::ChildAttached { child, addr } => {
            tracing::info!(child = %child.short(), %addr, "child attached")
        }
        NodeEvent::ChildDetached { child } => tracing::info!(child = %child.short(), "child left"),
        NodeEvent::PeerMisbehaved { addr, code, reason } => {
            tracing::warn!(%addr, %code, "peer misbehaved: {reason}")
        }
        _ => tracing::debug!("{e:?}"),
    }
}

/// How often the status line refreshes.
pub const STATUS_INTERVAL: Duration = Duration::from_secs(1);

/// Resolves on Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// Resolves after `d`, or never.
pub async fn maybe_sleep(d: Option<Duration>) {
    match d {
        Some(d) => tokio::time::sleep(d).await,
        None => std::future::pending().await,
    }
}

pub fn fmt_bytes_rate(bits_per_sec: f64) -> String {
    if bits_per_sec >= 1e6 {
        format!("{:.2} Mbit/s", bits_per_sec / 1e6)
    } else {
        format!("{:.0} kbit/s", bits_per_sec / 1e3)
    }
}
