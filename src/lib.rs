//! The `treecast` command-line tool as a library: each command is a module, so tests and
//! benchmarks drive exactly what users run.
//!
//! - [`publish`]: the origin (`treecast publish`), and [`publish::broadcast`] which feeds
//!   a source into a node.
//! - [`relay_cmd`]: a relay (`treecast relay`).
//! - [`watch`]: a viewer (`treecast watch`), and [`watch::play`] which plays what a node
//!   receives.
//! - [`messages`]: text messages read at the origin and shown by viewers.
//! - [`demo`]: the whole chain on loopback (`treecast demo`).
//! - [`observe`]: the metrics endpoint and status page of a node (`--metrics`), and
//!   `treecast tree`.
//! - [`sim_cmd`]: the overlay simulated at scale (`treecast sim`).
//! - [`cli`], [`config`], [`node_setup`], [`status`]: flags, config files and env
//!   variables, node configuration, status lines.
pub mod cli;
pub mod config;
pub mod demo;
pub mod messages;
pub mod node_setup;
pub mod observe;
pub mod publish;
pub mod relay_cmd;
pub mod sim_cmd;
pub mod status;
pub mod trust_cmd;
pub mod watch;
