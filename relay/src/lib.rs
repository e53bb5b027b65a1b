//! treecast-relay: everything that moves media between treecast peers.
pub mod proto;
