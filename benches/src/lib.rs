//! Shared helpers for the zt benchmarks.
#![allow(clippy::unwrap_used, clippy::expect_used)]

pub mod client;
pub mod counters;
pub mod goals;
pub mod nginx;
pub mod process;
pub mod reverify;

use std::sync::Arc;

use rustls::{ClientConnection, ConnectionCommon, ServerConnection};

/// Runs a full handshake between `client` and `server` through in-memory buffers in
/// one thread, so a benchmark measures TLS and verification work, not sockets.
///
/// # Errors
///
/// The first rustls error either side reports, or a stall.
pub fn handshake_in_memory(
    client: &mut ClientConnection,
    server: &mut ServerConnection,
) -> Result<(), rustls::Error> {
    let mut buf = Vec::with_capacity(8 * 1024);
    for _ in 0..16 {
        if !client.is_handshaking() && !server.is_handshaking() {
            return Ok(());
        }
        transfer(client, server, &mut buf)?;
        transfer(server, client, &mut buf)?;
    }
    Err(rustls::Error::General("handshake did not complete".into()))
}

fn transfer<A, B>(
    from: &mut ConnectionCommon<A>,
    to: &mut ConnectionCommon<B>,
    buf: &mut Vec<u8>,
) -> Result<(), rustls::Error> {
    buf.clear();
    while from.wants_write() {
        from.write_tls(buf)
            .map_err(|e| rustls::Error::General(e.to_string()))?;
    }
    let mut slice = buf.as_slice();
    while !slice.is_empty() {
        to.read_tls(&mut slice)
            .map_err(|e| rustls::Error::General(e.to_string()))?;
        to.process_new_packets()?;
    }
    Ok(())
}

use rustls::pki_types::CertificateDer;
use rustls::server::{NoServerSessionStorage, WebPkiClientVerifier};
use rustls::{ClientConfig, RootCertStore, ServerConfig, SupportedProtocolVersion};
use zt_core::dev::DevCa;
use zt_core::{BundleSet, IdMatcher, IdentityPublisher, X509Svid, tls};

/// A server and a client config for the same certificates.
#[derive(Debug)]
pub struct Pair {
    /// The server side.
    pub server: Arc<ServerConfig>,
    /// The client side.
    pub client: Arc<ClientConfig>,
    /// The identities behind zt configs, kept alive as long as the configs.
    pub publishers: Vec<IdentityPublisher>,
}

/// zt-built configs (TLS 1.3 only).
///
/// # Panics
///
/// When the dev material is invalid (a bug of the benchmark).
pub fn zt_pair(ca: &DevCa, server: &X509Svid, client: &X509Svid) -> Pair {
    let bundles = BundleSet::new().with(ca.bundle());
    let server_pub = IdentityPublisher::new().unwrap();
    server_pub.publish(server.clone(), bundles.clone()).unwrap();
    let client_pub = IdentityPublisher::new().unwrap();
    client_pub.publish(client.clone(), bundles).unwrap();
    let server_config = tls::ServerConfigBuilder::new(server_pub.identity())
        .tls13_only()
        .build()
        .unwrap();
    let client_config =
        tls::ClientConfigBuilder::new(client_pub.identity(), IdMatcher::exact(server.id().clone()))
            .tls13_only()
            .build()
            .unwrap();
    Pair {
        server: Arc::new(server_config),
        client: Arc::new(client_config),
        publishers: vec![server_pub, client_pub],
    }
}

/// Plain rustls configs on the same certificates: webpki verifiers with the CA as
/// the only root, resumption disabled as in zt (TLS 1.3 only).
///
/// # Panics
///
/// When the dev material is invalid (a bug of the benchmark).
pub fn plain_pair(ca: &DevCa, server: &X509Svid, client: &X509Svid) -> Pair {
    let provider = zt_core::default_provider().unwrap();
    let server_config = plain_server_config(ca.cert_der(), server, &[&rustls::version::TLS13]);
    let mut roots = RootCertStore::empty();
    roots.add(ca.cert_der().clone()).unwrap();
    let mut client_config = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .with_root_certificates(roots)
        .with_client_auth_cert(client.chain().to_vec(), client.private_key().clone_key())
        .unwrap();
    client_config.resumption = rustls::client::Resumption::disabled();
    Pair {
        server: Arc::new(server_config),
        client: Arc::new(client_config),
        publishers: Vec::new(),
    }
}

/// A plain rustls mTLS server config: a webpki client verifier with `ca` as the
/// only root, `server`'s chain and key, and, as in zt, no session cache and no
/// tickets, so every connection is a full handshake.
///
/// # Panics
///
/// When the material is invalid (a bug of the benchmark).
pub fn plain_server_config(
    ca: &CertificateDer<'static>,
    server: &X509Svid,
    versions: &[&'static SupportedProtocolVersion],
) -> ServerConfig {
    let provider = zt_core::default_provider().unwrap();
    let mut roots = RootCertStore::empty();
    roots.add(ca.clone()).unwrap();
    let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .build()
        .unwrap();
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(versions)
        .unwrap()
        .with_client_cert_verifier(verifier)
        .with_single_cert(server.chain().to_vec(), server.private_key().clone_key())
        .unwrap();
    config.session_storage = Arc::new(NoServerSessionStorage {});
    config.send_tls13_tickets = 0;
    config
}
