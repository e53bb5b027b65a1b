//! Things that happen to a node, for logs, metrics and tests to follow.

use std::net::SocketAddr;

use super::addr::PeerAddr;
use super::identity::NodeId;
use crate::proto::ErrorCode;
use crate::proto::overlay::OverlayEvent;

/// A significant event in a node's life.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NodeEvent {
    /// Subscribed to a parent and received its catalog.
    ParentAttached {
        /// The parent.
        parent: PeerAddr,
    },
    /// The session with the parent ended.
    ParentLost {
        /// The parent.
        parent: PeerAddr,
        /// Why.
        reason: String,
    },
    /// A child subscribed.
    ChildAttached {
        /// The child's identity.
        child: NodeId,
        /// Its address.
        addr: SocketAddr,
    },
    /// A child's session ended.
    ChildDetached {
        /// The child's identity.
        child: NodeId,
    },
    /// A peer broke the protocol; its connection was closed with `code`.
    PeerMisbehaved {
        /// The peer's address.
        addr: String,
        /// The code the connection was closed with.
        code: ErrorCode,
        /// What it did.
        reason: String,
    },
    /// The overlay joined, repaired, moved, found a loop or handed its children over.
    Overlay(OverlayEvent),
    /// A subscriber fell behind and its queue dropped a whole group.
    GroupDropped {
        /// The child, or `None` for the local player.
        child: Option<NodeId>,
    },
}
