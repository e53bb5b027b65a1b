//! Resolving peer addresses (the address type itself is plain data in
//! [`crate::proto::addr`]).

use std::net::SocketAddr;

pub use crate::proto::addr::{AddrError, PeerAddr};

/// Resolves the host part of `addr` to socket addresses.
pub async fn resolve(addr: &PeerAddr) -> std::io::Result<Vec<SocketAddr>> {
    let v: Vec<SocketAddr> = tokio::net::lookup_host(&*addr.host).await?.collect();
    if v.is_empty() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::NotFound,
            format!("{} resolves to no address", addr.host),
        ));
    }
    Ok(v)
}
