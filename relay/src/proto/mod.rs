//! The sans-IO core: media model, wire codec, ordering, caching and queueing policy.
//!
//! Nothing in here owns a socket, a task, a clock or a lock. Inputs are method calls
//! (bytes received, frames decoded, `now` passed in), outputs are return values. The QUIC
//! node in [`crate::node`] drives these pieces; tests and the simulator drive them too.
//!
//! - [`media`]: frames, tracks, catalog, and the origin's [`media::Packager`].
//! - [`varint`], [`control`], [`group`]: the wire format and its bounded decoders.
//! - [`order`]: keeps frames in order across per-group QUIC streams.
//! - [`cache`]: the latest groups of each track, for late joiners and resuming children.
//! - [`send_queue`]: the per-child queue that drops whole stale groups for slow children.
//! - [`trust`]: publisher signatures, join tokens and payload encryption.
//! - [`report`]: bounded subtree summaries that nodes send up the tree.
//! - [`text`]: text messages on a data track (one group per message, with history).
//! - [`playout`]: a viewer's playout clock with re-buffering (the player plays by it,
//!   and the simulator models viewers with it).
pub mod addr;
pub mod cache;
pub mod codes;
pub mod control;
pub mod error;
pub mod group;
pub mod id;
pub mod limits;
pub mod media;
pub mod order;
pub mod overlay;
pub mod playout;
pub mod report;
pub mod send_queue;
pub mod synthetic;
pub mod text;
pub mod tree_msg;
pub mod trust;
pub mod varint;

pub use codes::{ALPN, ErrorCode};
pub use error::DecodeError;
pub use limits::Limits;
