//! Shared helpers of zt-tonic's integration tests: development CAs and identities
//! made at run time, a Greeter gRPC service, and a tonic server on 127.0.0.1:0
//! behind zt-tonic that counts the connections it accepted.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    dead_code,
    unreachable_pub
)]

pub mod greeter;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio_stream::StreamExt;
use tonic::transport::Channel;
use zt_core::dev::{DevCa, SvidParams};
use zt_core::rustls;
use zt_core::{BundleSet, Format, IdMatcher, Identity, IdentitySource, SpiffeId, StaticSource};
use zt_tonic::{AuthorizeLayer, Connector, Incoming, Policy, PolicyStore};

/// Upper bound for every wait; a hang fails the test instead of blocking it.
pub const TIMEOUT: Duration = Duration::from_secs(20);

pub const SERVER_ID: &str = "spiffe://example.org/api";
pub const CLIENT_ID: &str = "spiffe://example.org/web";
pub const OTHER_CLIENT_ID: &str = "spiffe://example.org/batch";

pub fn id(s: &str) -> SpiffeId {
    s.parse().expect("valid SPIFFE ID")
}

pub fn new_ca() -> DevCa {
    DevCa::new("example.org".parse().unwrap()).expect("dev CA")
}

/// An identity with an SVID minted by `ca` from `params`, trusting `bundles`.
pub fn identity_with(ca: &DevCa, params: SvidParams, bundles: BundleSet) -> StaticSource {
    let svid = ca.mint_with(params).expect("mint SVID");
    StaticSource::new(svid, bundles).expect("identity")
}

/// An identity for `svid_id` minted by `ca`, trusting `ca` only.
pub fn identity(ca: &DevCa, svid_id: &str) -> StaticSource {
    identity_with(
        ca,
        SvidParams::new(id(svid_id)),
        BundleSet::new().with(ca.bundle()),
    )
}

/// Awaits `future`, failing the test after [`TIMEOUT`].
pub async fn within<F: Future>(what: &str, future: F) -> F::Output {
    tokio::time::timeout(TIMEOUT, future)
        .await
        .unwrap_or_else(|_| panic!("timed out after {TIMEOUT:?}: {what}"))
}

/// A JSON policy document.
pub fn policy(json: &str) -> Policy {
    Policy::parse(json, Format::Json).expect("valid policy")
}

/// `SayHello` for `CLIENT_ID`, and nothing else.
pub fn hello_for_client() -> Policy {
    policy(
        r#"{"rules": [{"name": "web-says-hello", "action": "allow",
            "from": {"ids": ["spiffe://example.org/web"]},
            "to": {"grpc": ["helloworld.Greeter/SayHello"]}}]}"#,
    )
}

/// A tonic server with the Greeter and health services behind zt-tonic, on
/// 127.0.0.1:0 until dropped.
pub struct Running {
    pub addr: SocketAddr,
    pub layer: AuthorizeLayer,
    pub health: tonic_health::server::HealthReporter,
    connections: Arc<AtomicUsize>,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<Result<(), tonic::transport::Error>>,
}

impl Running {
    pub async fn start(identity: Identity, policy: PolicyStore) -> Self {
        Self::start_with(Incoming::builder(identity.clone()), identity, policy).await
    }

    /// As [`start`](Self::start), accepting with `builder`.
    pub async fn start_with(
        builder: zt_tonic::IncomingBuilder,
        identity: Identity,
        policy: PolicyStore,
    ) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let connections = Arc::new(AtomicUsize::new(0));
        let counted = Arc::clone(&connections);
        let incoming = builder
            .build(listener)
            .expect("incoming")
            .map(move |connection| {
                counted.fetch_add(1, Ordering::SeqCst);
                connection
            });
        let layer = AuthorizeLayer::new(identity, policy);
        let (health, health_service) = tonic_health::server::health_reporter();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(
            zt_tonic::server()
                .layer(layer.clone())
                .add_service(health_service)
                .add_service(greeter::server())
                .serve_with_incoming_shutdown(incoming, async {
                    let _ = stopped.await;
                }),
        );
        Self {
            addr,
            layer,
            health,
            connections,
            stop: Some(stop),
            task,
        }
    }

    /// How many connections completed their handshake.
    pub fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }

    pub fn url(&self) -> String {
        format!("https://localhost:{}", self.addr.port())
    }

    /// A channel from `client` that accepts only `SERVER_ID`.
    pub async fn channel(&self, client: &StaticSource) -> Channel {
        let connector =
            Connector::new(client.identity(), IdMatcher::exact(id(SERVER_ID))).expect("connector");
        within("connect", connector.connect(self.url()))
            .await
            .expect("channel connects")
    }
}

impl Running {
    /// A channel that verifies `SERVER_ID` with the bundles of `trusting` and
    /// presents no certificate: an anonymous client.
    pub async fn anonymous_channel(&self, trusting: &StaticSource) -> Channel {
        self.anonymous_channel_result(trusting)
            .await
            .expect("channel connects")
    }

    /// As [`anonymous_channel`](Self::anonymous_channel), with the error.
    pub async fn anonymous_channel_result(
        &self,
        trusting: &StaticSource,
    ) -> Result<Channel, Box<dyn std::error::Error + Send + Sync>> {
        #[derive(Debug)]
        struct NoCertificate;

        impl rustls::client::ResolvesClientCert for NoCertificate {
            fn resolve(
                &self,
                _root_hint_subjects: &[&[u8]],
                _sigschemes: &[rustls::SignatureScheme],
            ) -> Option<Arc<rustls::sign::CertifiedKey>> {
                None
            }

            fn has_certs(&self) -> bool {
                false
            }
        }

        let mut config = zt_core::tls::ClientConfigBuilder::new(
            trusting.identity(),
            IdMatcher::exact(id(SERVER_ID)),
        )
        .alpn_protocols(vec![b"h2".to_vec()])
        .build()
        .expect("client config");
        config.client_auth_cert_resolver = Arc::new(NoCertificate);
        let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
        let addr = self.addr;
        let connect = tower::service_fn(move |_uri: http::Uri| {
            let connector = connector.clone();
            async move {
                let tcp = tokio::net::TcpStream::connect(addr).await?;
                let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
                let tls = connector.connect(name, tcp).await?;
                Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(tls))
            }
        });
        let endpoint = zt_tonic::endpoint(self.url())?;
        Ok(within("connect", endpoint.connect_with_connector(connect)).await?)
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        self.task.abort();
    }
}
