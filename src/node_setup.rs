//! Turning command-line node options into a running node.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, Result};
use treecast_relay::node::netem::{LinkModel, LinkParams, UniformLink};
use treecast_relay::node::{Identity, Node, NodeConfig, PeerAddr};

use crate::cli::NodeArgs;

/// The kind of node, which sets the defaults.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    Origin,
    Relay,
    Viewer,
}

impl Role {
    pub fn name(self) -> &'static str {
        match self {
            Role::Origin => "origin",
            Role::Relay => "relay",
            Role::Viewer => "viewer",
        }
    }

    fn default_listen(self) -> SocketAddr {
        match self {
            Role::Origin => SocketAddr::from(([0, 0, 0, 0], 4433)),
            Role::Relay => SocketAddr::from(([0, 0, 0, 0], 4434)),
            Role::Viewer => SocketAddr::from(([0, 0, 0, 0], 0)),
        }
    }

    /// Dedicated relays offer the most upload capacity; the origin uploads only a few
    /// copies; viewers relay to a couple of children.
    fn default_max_children(self) -> usize {
        match self {
            Role::Origin => 4,
            Role::Relay => 8,
            Role::Viewer => 2,
        }
    }
}

/// Where identities live: `--data-dir`, else `$XDG_DATA_HOME/treecast`, else
/// `~/.local/share/treecast`, else `./.treecast`.
pub fn data_dir(args: &NodeArgs) -> PathBuf {
    data_dir_or(args.data_dir.as_ref())
}

/// [`data_dir`] for commands that take only `--data-dir`.
pub fn data_dir_or(given: Option<&PathBuf>) -> PathBuf {
    if let Some(d) = given {
        return d.clone();
    }
    if let Some(x) = std::env::var_os("XDG_DATA_HOME").filter(|v| !v.is_empty()) {
        return PathBuf::from(x).join("treecast");
    }
    if let Some(h) = std::env::var_os("HOME").filter(|v| !v.is_empty()) {
        return PathBuf::from(h).join(".local/share/treecast");
    }
    PathBuf::from(".treecast")
}

pub fn identity(args: &NodeArgs, role: Role) -> Result<Identity> {
    if args.ephemeral {
        return Identity::generate().context("creating an identity");
    }
    let path = data_dir(args).join(format!("{}.key", role.name()));
    Identity::load_or_create(&path)
        .context("loading the node identity (use --ephemeral or --data-dir to choose another)")
}

/// A node configuration: the origin (no `parent`, no `join`), a node with a fixed
/// `parent`, or one that finds its own place through the `join` nodes.
pub fn config(
    args: &NodeArgs,
    role: Role,
    parent: Option<PeerAddr>,
    join: Vec<PeerAddr>,
) -> Result<NodeConfig> {
    let mut c = NodeConfig::new(
        identity(args, role)?,
        args.listen.unwrap_or(role.default_listen()),
    );
    c.max_children = args.max_children.unwrap_or(role.default_max_children());
    c.parent = parent;
    c.join = join;
    c.link_model = link_model(args);
    Ok(c)
}

/// The emulated link (`--emulate-delay`, `--emulate-loss`) on everything this node
/// sends, if asked for: the multi-host lab uses it where `tc netem` is not available.
fn link_model(args: &NodeArgs) -> Option<Arc<dyn LinkModel>> {
    if args.emulate_delay.is_none() && args.emulate_loss.is_none() {
        return None;
    }
    Some(Arc::new(UniformLink(LinkParams {
        delay: args.emulate_delay.unwrap_or_default(),
        loss: args.emulate_loss.unwrap_or(0.0),
        ..LinkParams::default()
    })))
}

pub async fn start(config: NodeConfig) -> Result<Node> {
    let parent = config.parent.is_some() || !config.join.is_empty();
    let node = Node::start(config).await.map_err(anyhow::Error::new);
    match parent {
        true => node.context("cannot join the stream"),
        false => node.context("cannot start the node"),
    }
}

/// The address to print for others to use.
pub fn public_addr(node: &Node, args: &NodeArgs) -> PeerAddr {
    match &args.public_host {
        Some(h) => node.addr_with_host(h),
        None => node.addr(),
    }
}
