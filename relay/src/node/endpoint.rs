//! Building the quinn endpoint and the per-direction transport settings.
//!
//! Incoming connections are children: they may open one bidirectional control stream and
//! no unidirectional stream (media only flows down). Outgoing connections go to a parent,
//! which opens one bidirectional stream with its handshake (its probe answer, see
//! [`probe`](super::probe)) and one unidirectional stream per group.

use std::sync::Arc;

use quinn::crypto::rustls::{QuicClientConfig, QuicServerConfig};
use quinn::{IdleTimeout, TransportConfig, VarInt};

use super::NodeConfig;
use super::error::NodeError;
use super::identity::NodeId;
use super::tls::{self, TlsConfigError};

/// Most group streams a parent may have open towards us at once.
pub const MAX_GROUP_STREAMS: u32 = 256;

fn base_transport(cfg: &NodeConfig) -> TransportConfig {
    let mut t = TransportConfig::default();
    t.keep_alive_interval(Some(cfg.keep_alive));
    if let Ok(idle) = IdleTimeout::try_from(cfg.idle_timeout) {
        t.max_idle_timeout(Some(idle));
    }
    t
}

fn child_facing_transport(cfg: &NodeConfig) -> TransportConfig {
    let mut t = base_transport(cfg);
    t.max_concurrent_bidi_streams(VarInt::from_u32(1));
    t.max_concurrent_uni_streams(VarInt::from_u32(0));
    // Bound what quinn buffers per child beyond our own send queue, so a slow child's
    // backlog shows up in the queue (which drops stale groups) instead of in quinn.
    t.send_window(512 * 1024);
    t
}

fn parent_facing_transport(cfg: &NodeConfig) -> TransportConfig {
    let mut t = base_transport(cfg);
    // The one stream the peer opens with its handshake, carrying its probe answer.
    t.max_concurrent_bidi_streams(VarInt::from_u32(1));
    t.max_concurrent_uni_streams(VarInt::from_u32(MAX_GROUP_STREAMS));
    // Bound what the parent can push ahead of what we have read: a node that reads
    // slowly then pushes back on its parent, whose per-child queue drops stale groups.
    t.receive_window(VarInt::from_u32(1024 * 1024));
    t.stream_receive_window(VarInt::from_u32(512 * 1024));
    t
}

/// Binds the endpoint that serves children and connects to parents; with a link model,
/// also returns the emulated socket (so the node can emulate a crash).
pub fn bind(
    cfg: &NodeConfig,
) -> Result<(quinn::Endpoint, Option<Arc<super::netem::EmulatedSocket>>), NodeError> {
    let tls = tls::server_config(&cfg.identity)?;
    let quic = QuicServerConfig::try_from(tls).map_err(|e| TlsConfigError(e.to_string()))?;
    let mut server = quinn::ServerConfig::with_crypto(Arc::new(quic));
    server.transport_config(Arc::new(child_facing_transport(cfg)));
    let bind_err = |cause| NodeError::Bind {
        addr: cfg.listen,
        cause,
    };
    match &cfg.link_model {
        Some(model) => {
            let socket = super::netem::EmulatedSocket::bind(cfg.listen, model.clone(), cfg.seed)
                .map_err(bind_err)?;
            let ep = super::netem::endpoint(
                quinn::EndpointConfig::default(),
                Some(server),
                socket.clone(),
            )
            .map_err(bind_err)?;
            Ok((ep, Some(socket)))
        }
        None => Ok((
            quinn::Endpoint::server(server, cfg.listen).map_err(bind_err)?,
            None,
        )),
    }
}

/// Client settings for connecting to `expected` with ALPN `alpn`.
pub fn client_config(
    cfg: &NodeConfig,
    expected: NodeId,
    alpn: &[u8],
) -> Result<quinn::ClientConfig, TlsConfigError> {
    let tls = tls::client_config(&cfg.identity, expected, alpn)?;
    let quic = QuicClientConfig::try_from(tls).map_err(|e| TlsConfigError(e.to_string()))?;
    let mut c = quinn::ClientConfig::new(Arc::new(quic));
    c.transport_config(Arc::new(parent_facing_transport(cfg)));
    Ok(c)
}
