//! A deliberately small HTTP/1.1 server: GET and HEAD, one request per connection, request
//! heads of at most [`MAX_REQUEST`] bytes, at most [`MAX_CONNECTIONS`] at once, each done
//! within [`REQUEST_TIMEOUT`]. Enough for Prometheus and a browser; nothing else.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio::task::JoinHandle;
use tracing::debug;

use super::{page, svg};
use crate::node::Observer;
use crate::proto::report::MAX_REPORT_NODES;

/// Largest request head accepted (request line and headers).
pub const MAX_REQUEST: usize = 8 * 1024;
/// Most connections served at once; more are closed at once.
pub const MAX_CONNECTIONS: usize = 32;
/// Time a client has to send its request and read the answer.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// A running metrics and status server. Dropping it stops it.
#[derive(Debug)]
pub struct WebServer {
    addr: SocketAddr,
    task: JoinHandle<()>,
}

impl WebServer {
    /// Listens on `addr` and serves `observer`'s metrics (`/metrics`), status page (`/`),
    /// and tree (`/tree.json`, `/tree.svg`).
    pub async fn bind(addr: SocketAddr, observer: Observer) -> std::io::Result<WebServer> {
        let listener = TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let task = tokio::spawn(accept_loop(listener, observer));
        Ok(WebServer { addr, task })
    }

    /// The address it listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for WebServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn accept_loop(listener: TcpListener, observer: Observer) {
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let stream = match listener.accept().await {
            Ok((s, _)) => s,
            Err(e) => {
                // Out of file descriptors and the like: back off instead of spinning.
                debug!("metrics server: accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            continue;
        };
        let observer = observer.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let served = tokio::time::timeout(REQUEST_TIMEOUT, serve(stream, &observer)).await;
            if let Ok(Err(e)) = served {
                debug!("metrics server: {e}");
            }
        });
    }
}

/// An answer: status line, content type, body.
struct Response {
    status: &'static str,
    content_type: &'static str,
    body: Vec<u8>,
}

impl Response {
    fn ok(content_type: &'static str, body: impl Into<Vec<u8>>) -> Self {
        Response {
            status: "200 OK",
            content_type,
            body: body.into(),
        }
    }

    fn error(status: &'static str) -> Self {
        Response {
            status,
            content_type: "text/plain; charset=utf-8",
            body: format!("{status}\n").into_bytes(),
        }
    }
}

async fn serve(mut stream: TcpStream, observer: &Observer) -> std::io::Result<()> {
    let mut head = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    let response = loop {
        if let Some(end) = head.windows(4).position(|w| w == b"\r\n\r\n") {
            head.truncate(end);
            break None;
        }
        if head.len() > MAX_REQUEST {
            break Some(Response::error("431 Request Header Fields Too Large"));
        }
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Ok(());
        }
        head.extend_from_slice(&chunk[..n]);
    };
    let (response, head_only) = match response {
        Some(r) => (r, false),
        None => {
            let line = head.split(|&b| b == b'\r').next().unwrap_or_default();
            let line = String::from_utf8_lossy(line);
            let mut parts = line.split(' ');
            match (parts.next(), parts.next(), parts.next(), parts.next()) {
                (Some(m @ ("GET" | "HEAD")), Some(target), Some(v), None)
                    if v.starts_with("HTTP/1.") =>
                {
                    (route(target, observer), m == "HEAD")
                }
                (Some(_), Some(_), Some(v), None) if v.starts_with("HTTP/1.") => {
                    (Response::error("405 Method Not Allowed"), false)
                }
                _ => (Response::error("400 Bad Request"), false),
            }
        }
    };
    let mut out = format!(
        "HTTP/1.1 {}\r\nContent-Type: {}\r\nContent-Length: {}\r\nCache-Control: no-store\r\n\
         X-Content-Type-Options: nosniff\r\nConnection: close\r\n\r\n",
        response.status,
        response.content_type,
        response.body.len()
    )
    .into_bytes();
    if !head_only {
        out.extend_from_slice(&response.body);
    }
    stream.write_all(&out).await?;
    stream.shutdown().await
}

fn route(target: &str, observer: &Observer) -> Response {
    let path = target.split('?').next().unwrap_or(target);
    match path {
        "/metrics" => Response::ok(
            "text/plain; version=0.0.4; charset=utf-8",
            observer.metrics_text(),
        ),
        "/" => Response::ok("text/html; charset=utf-8", page::page(observer)),
        "/status" => Response::ok("text/html; charset=utf-8", page::fragment(observer)),
        "/tree.svg" => Response::ok(
            "image/svg+xml",
            svg::draw(&observer.tree(MAX_REPORT_NODES), svg::MAX_DRAWN),
        ),
        "/tree.json" => Response::ok(
            "application/json",
            page::tree_json(&observer.tree(MAX_REPORT_NODES)).to_string(),
        ),
        _ => Response::error("404 Not Found"),
    }
}
