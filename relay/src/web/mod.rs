//! A node's metrics endpoint and status page over HTTP.
//!
//! [`WebServer::bind`] serves, for one node ([`crate::node::Observer`]):
//!
//! - `/metrics`: Prometheus text format (see the node's metrics for names);
//! - `/`: a status page: the stream's health here and a live SVG drawing of the tree
//!   below (refreshing itself), readable at ten nodes and summarised at ten thousand;
//! - `/status`: the refreshing part of the page alone; `/tree.svg`, `/tree.json`: the tree.
//!
//! ```no_run
//! # async fn demo(node: &treecast_relay::node::Node) -> std::io::Result<()> {
//! use treecast_relay::web::WebServer;
//! let server = WebServer::bind("127.0.0.1:9434".parse().unwrap(), node.observer()).await?;
//! println!("metrics on http://{}/metrics", server.local_addr());
//! # Ok(()) }
//! ```

mod http;
pub mod page;
pub mod svg;

pub use http::{MAX_CONNECTIONS, MAX_REQUEST, REQUEST_TIMEOUT, WebServer};
