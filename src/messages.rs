//! Text messages: `treecast publish --messages FILE|-` reads lines and broadcasts each as
//! a message on the data track ([`treecast_relay::proto::text`]); `treecast watch` prints
//! the messages it receives and lists them in its report.

use std::path::Path;

use anyhow::{Context, Result};
use std::collections::VecDeque;
use tokio::io::{AsyncBufReadExt, BufReader};

use tokio::sync::mpsc;
use treecast_relay::proto::media::{Catalog, Codec, Frame, TrackId};
use treecast_relay::proto::text::{MessageReader, MessageTrack};

use crate::status::StatusLine;

/// Lines waiting to be broadcast, read by a background task.
pub struct MessageInput {
    rx: Option<mpsc::Receiver<String>>,
    track: MessageTrack,
}

impl MessageInput {
    /// Reads lines from `path` (`-`: standard input) until its end. Empty lines are skipped.
    pub async fn open(path: &Path) -> Result<MessageInput> {
        let (tx, rx) = mpsc::channel(64);
        if path == Path::new("-") {
            tokio::spawn(pump(BufReader::new(tokio::io::stdin()), tx));
        } else {
            let file = tokio::fs::File::open(path)
                .await
                .with_context(|| format!("cannot open the messages file {}", path.display()))?;
            tokio::spawn(pump(BufReader::new(file), tx));
        }
        Ok(MessageInput {
            rx: Some(rx),
            track: MessageTrack::default(),
        })
    }

    /// No input: [`MessageInput::next`] never resolves.
    pub fn none() -> MessageInput {
        MessageInput {
            rx: None,
            track: MessageTrack::default(),
        }
    }

    /// The next line; never resolves once the input has ended (so it can sit in a
    /// `select!` beside the media).
    pub async fn next(&mut self) -> String {
        if let Some(rx) = &mut self.rx {
            if let Some(line) = rx.recv().await {
                return line;
            }
            self.rx = None;
        }
        std::future::pending().await
    }

    /// The frame carrying `line`, stamped at the media's running time `pts`.
    pub fn frame(&mut self, line: &str, pts: u64) -> treecast_relay::proto::media::Frame {
        self.track.frame(line, pts, crate::publish::now_us())
    }
}

async fn pump<R: tokio::io::AsyncRead + Unpin>(reader: BufReader<R>, tx: mpsc::Sender<String>) {
    let mut lines = reader.lines();
    loop {
        match lines.next_line().await {
            Ok(Some(line)) => {
                let line = line.trim_end();
                if line.is_empty() {
                    continue;
                }
                if tx.send(line.to_string()).await.is_err() {
                    return;
                }
            }
            Ok(None) => return,
            Err(e) => {
                tracing::warn!("reading messages stopped: {e}");
                return;
            }
        }
    }
}

/// One message as the viewer shows it and reports it.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Shown {
    pub number: u64,
    pub text: String,
}

/// Messages kept for the report (the oldest are dropped beyond this).
const MAX_REPORTED: usize = 10_000;

/// The viewer's side: recognises message frames, prints each new message once, in order,
/// as `message: TEXT` on standard output, and keeps them for the report.
pub struct Messages {
    track: Option<TrackId>,
    reader: MessageReader,
    shown: VecDeque<Shown>,
}

impl Messages {
    /// Messages of the catalog's text track (none if it has none).
    pub fn new(catalog: &Catalog) -> Messages {
        Messages {
            track: catalog
                .tracks
                .iter()
                .find(|t| t.codec == Codec::Text)
                .map(|t| t.id),
            reader: MessageReader::default(),
            shown: VecDeque::new(),
        }
    }

    /// The broadcast has a message track.
    pub fn enabled(&self) -> bool {
        self.track.is_some()
    }

    /// `frame` belongs to the message track.
    pub fn is_message(&self, frame: &Frame) -> bool {
        Some(frame.track) == self.track
    }

    /// Prints the messages in `frame` not shown before; returns the newest, if any.
    pub fn accept(&mut self, frame: &Frame, status: &StatusLine) -> Option<String> {
        let new = match self.reader.accept(&frame.payload) {
            Ok(new) => new,
            Err(e) => {
                tracing::warn!("undecodable message frame {}: {e}", frame.seq);
                return None;
            }
        };
        let last = new.last().map(|m| m.text.clone());
        for m in new {
            status.print_above(&format!("message: {}", m.text));
            if self.shown.len() == MAX_REPORTED {
                self.shown.pop_front();
            }
            self.shown.push_back(Shown {
                number: m.number,
                text: m.text,
            });
        }
        last
    }

    /// The messages shown so far (the latest 10,000).
    pub fn shown(&self) -> Vec<Shown> {
        self.shown.iter().cloned().collect()
    }
}
