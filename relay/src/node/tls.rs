//! TLS 1.3 for treecast connections: rustls with the ring provider, and identity pinning.
//!
//! Both sides present self-signed certificates carrying their ed25519 node key. A client
//! accepts a server only if the certificate's key is the [`NodeId`] it asked for; a server
//! requires a client certificate and learns the child's node id from it. In both cases the
//! TLS 1.3 handshake signature is verified with the presented key, so nobody can claim a
//! node id without holding its private key. There is no verifier that accepts anything.

use std::sync::Arc;

use rustls::DigitallySignedStruct;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms, verify_tls13_signature};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{CertificateError, DistinguishedName, SignatureScheme};

use super::identity::{Identity, NodeId};
use crate::proto::ALPN;

/// The SNI name used on every connection (identity comes from the key, not the name).
pub const SERVER_NAME: &str = "treecast.invalid";

const ED25519_OID: &str = "1.3.101.112";

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The node id carried by a certificate (its ed25519 subject public key).
pub fn node_id_from_cert(cert: &CertificateDer<'_>) -> Result<NodeId, rustls::Error> {
    let bad = |why: &str| {
        rustls::Error::InvalidCertificate(CertificateError::Other(rustls::OtherError(Arc::new(
            std::io::Error::other(why.to_string()),
        ))))
    };
    let (_, parsed) = x509_parser::parse_x509_certificate(cert.as_ref())
        .map_err(|_| bad("certificate does not parse"))?;
    let spki = parsed.public_key();
    if spki.algorithm.algorithm.to_id_string() != ED25519_OID {
        return Err(bad("certificate key is not ed25519"));
    }
    let raw: [u8; 32] = spki
        .subject_public_key
        .data
        .as_ref()
        .try_into()
        .map_err(|_| bad("ed25519 key is not 32 bytes"))?;
    Ok(NodeId::from_bytes(raw))
}

/// The node id of the peer of an established connection's handshake.
pub fn peer_node_id(identity: Option<Box<dyn std::any::Any>>) -> Option<NodeId> {
    let certs = identity?.downcast::<Vec<CertificateDer<'static>>>().ok()?;
    node_id_from_cert(certs.first()?).ok()
}

#[derive(Debug)]
struct PinnedServer {
    expected: NodeId,
    algs: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for PinnedServer {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let got = node_id_from_cert(end_entity)?;
        if got != self.expected {
            return Err(rustls::Error::InvalidCertificate(CertificateError::Other(
                rustls::OtherError(Arc::new(std::io::Error::other(format!(
                    "peer is node {got}, expected {}",
                    self.expected
                )))),
            )));
        }
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Err(rustls::Error::General("TLS 1.2 is not supported".into()))
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(message, cert, dss, &self.algs)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        vec![SignatureScheme::ED25519]
    }
}

#[derive(Debug)]
struct AnyNodeClient {
    algs: WebPkiSupportedAlgorithms,
}

impl ClientCertVerifier for AnyNodeClient {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        true
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        // Any node may ask to join; what matters is that it proves the key it presents
        // (checked by the handshake signature below). Admission policy is the node's job.
        node_id_from_cert(end_entity)?;
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Err(rustls::Error::General("TLS 1.2 is not supported".into()))
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(message, cert, dss, &self.algs)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        vec![SignatureScheme::ED25519]
    }
}

/// Errors building TLS configurations (local misuse, never the peer's doing).
#[derive(Debug, thiserror::Error)]
#[error("TLS configuration: {0}")]
pub struct TlsConfigError(pub String);

/// The server side: presents `identity`, requires and verifies a client identity.
pub fn server_config(identity: &Identity) -> Result<rustls::ServerConfig, TlsConfigError> {
    let p = provider();
    let verifier = Arc::new(AnyNodeClient {
        algs: p.signature_verification_algorithms,
    });
    let mut cfg = rustls::ServerConfig::builder_with_provider(p)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| TlsConfigError(e.to_string()))?
        .with_client_cert_verifier(verifier)
        .with_single_cert(vec![identity.certificate()], identity.private_key())
        .map_err(|e| TlsConfigError(e.to_string()))?;
    cfg.alpn_protocols = vec![ALPN.to_vec()];
    Ok(cfg)
}

/// The client side: presents `identity`, accepts only a server holding `expected`'s key.
pub fn client_config(
    identity: &Identity,
    expected: NodeId,
    alpn: &[u8],
) -> Result<rustls::ClientConfig, TlsConfigError> {
    let p = provider();
    let verifier = Arc::new(PinnedServer {
        expected,
        algs: p.signature_verification_algorithms,
    });
    let mut cfg = rustls::ClientConfig::builder_with_provider(p)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| TlsConfigError(e.to_string()))?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_client_auth_cert(vec![identity.certificate()], identity.private_key())
        .map_err(|e| TlsConfigError(e.to_string()))?;
    cfg.alpn_protocols = vec![alpn.to_vec()];
    Ok(cfg)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cert_carries_the_node_id() {
        let id = Identity::generate().unwrap();
        assert_eq!(node_id_from_cert(&id.certificate()).unwrap(), id.id());
        assert!(node_id_from_cert(&CertificateDer::from(vec![1, 2, 3])).is_err());
    }

    #[test]
    fn configs_build() {
        let a = Identity::generate().unwrap();
        let b = Identity::generate().unwrap();
        server_config(&a).unwrap();
        client_config(&a, b.id(), ALPN).unwrap();
    }
}
