//! The `treecast` command-line tool as a library: each command is a module, so tests and
//! benchmarks drive exactly what users run.
//!
//! - [`publish`]: the origin (`treecast publish`), and [`publish::broadcast`] which feeds
//!   a source into a node.
//! - [`relay_cmd`]: a relay (`treecast relay`).
//! - [`watch`]: a viewer (`treecast watch`), and [`watch::play`] which plays what a node
//!   receives.
//! - [`demo`]: the whole chain on loopback (`treecast demo`).
//! - [`sim_cmd`]: the overlay simulated at scale (`treecast sim`).
//! - [`cli`], [`node_setup`], [`status`]: flags, node configuration, status lines.
pub mod cli;
pub mod demo;
pub mod node_setup;
pub mod publish;
pub mod relay_cmd;
pub mod sim_cmd;
pub mod status;
pub mod watch;
