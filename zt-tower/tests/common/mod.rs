//! Shared helpers of zt-tower's integration tests: development CAs and identities
//! made at run time, a zt server on 127.0.0.1:0, and raw TLS + hyper clients that
//! keep one connection so tests can assert what happens on it.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    dead_code,
    unreachable_pub
)]

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::routing::get;
use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Empty};
use hyper::client::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;
use zt_core::dev::{DevCa, SvidParams};
use zt_core::rustls::pki_types::ServerName;
use zt_core::{BundleSet, IdMatcher, Identity, IdentitySource, SpiffeId, StaticSource, tls};
use zt_tower::{AuthorizeLayer, Peer, PolicyStore, Server, ServerBuilder};

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

/// An identity with an SVID for `svid_id` minted by `ca`, trusting `bundles`.
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

/// The app most tests serve: `/whoami` answers with the peer's SPIFFE ID.
pub fn whoami_router() -> Router {
    Router::new().route(
        "/whoami",
        get(|Peer(peer): Peer| async move { peer.id().to_string() }),
    )
}

/// `router` behind [`AuthorizeLayer`] with `policy`, re-verifying against `identity`.
pub fn authorized(router: Router, identity: Identity, policy: PolicyStore) -> Router {
    router.layer(AuthorizeLayer::new(identity, policy))
}

/// A zt server running on 127.0.0.1:0 until stopped.
pub struct Running {
    pub addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    pub task: JoinHandle<std::io::Result<()>>,
}

impl Running {
    /// Fires the graceful-shutdown signal.
    pub fn shutdown(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.task.abort();
    }
}

pub async fn serve(builder: ServerBuilder, app: Router) -> Running {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server: Server = builder.build().expect("server");
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(
        server
            .serve(listener, app)
            .with_graceful_shutdown(async {
                let _ = stopped.await;
            })
            .into_future(),
    );
    Running {
        addr,
        stop: Some(stop),
        task,
    }
}

/// A raw TLS client config for `client`, accepting the server `server_id`.
pub fn client_config(
    client: &StaticSource,
    server_id: &str,
    alpn: &[&[u8]],
) -> Arc<rustls::ClientConfig> {
    let config = tls::ClientConfigBuilder::new(client.identity(), IdMatcher::exact(id(server_id)))
        .alpn_protocols(alpn.iter().map(|p| p.to_vec()).collect())
        .build()
        .expect("client config");
    Arc::new(config)
}

/// A raw TLS client config that verifies the server `server_id` with the bundles
/// of `trusting` but presents no certificate: an anonymous client.
pub fn anonymous_client_config(
    trusting: &StaticSource,
    server_id: &str,
    alpn: &[&[u8]],
) -> Arc<rustls::ClientConfig> {
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

    let mut config = Arc::unwrap_or_clone(client_config(trusting, server_id, alpn));
    config.client_auth_cert_resolver = Arc::new(NoCertificate);
    Arc::new(config)
}

/// One TLS connection to `addr`.
pub async fn tls_connect(
    addr: SocketAddr,
    config: Arc<rustls::ClientConfig>,
) -> std::io::Result<TlsStream<TcpStream>> {
    let tcp = TcpStream::connect(addr).await?;
    TlsConnector::from(config)
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
}

/// An HTTP client bound to exactly one connection, HTTP/1.1 or HTTP/2.
pub enum OneConnection {
    H1(http1::SendRequest<Empty<Bytes>>),
    H2(http2::SendRequest<Empty<Bytes>>),
}

/// Which HTTP version a test runs over.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Version {
    Http1,
    Http2,
}

impl Version {
    /// The ALPN protocol that asks for it.
    pub fn alpn(self) -> &'static [&'static [u8]] {
        match self {
            Self::Http1 => &[b"http/1.1"],
            Self::Http2 => &[b"h2"],
        }
    }
}

impl OneConnection {
    /// Opens one TLS connection to `addr` as `client` and runs HTTP `version` on it.
    /// The returned handle resolves when the connection closes.
    pub async fn open(
        addr: SocketAddr,
        client: &StaticSource,
        version: Version,
    ) -> (Self, JoinHandle<()>) {
        Self::open_with(
            addr,
            client_config(client, SERVER_ID, version.alpn()),
            version,
        )
        .await
    }

    /// As [`open`](Self::open), presenting no certificate; the server is verified
    /// with the bundles of `trusting`.
    pub async fn open_anonymous(
        addr: SocketAddr,
        trusting: &StaticSource,
        version: Version,
    ) -> (Self, JoinHandle<()>) {
        let config = anonymous_client_config(trusting, SERVER_ID, version.alpn());
        Self::open_with(addr, config, version).await
    }

    /// As [`open`](Self::open), with the TLS client config `config`.
    pub async fn open_with(
        addr: SocketAddr,
        config: Arc<rustls::ClientConfig>,
        version: Version,
    ) -> (Self, JoinHandle<()>) {
        let tls = within("TLS handshake", tls_connect(addr, config))
            .await
            .expect("TLS handshake");
        let io = TokioIo::new(tls);
        match version {
            Version::Http1 => {
                let (sender, conn) = within("HTTP/1 handshake", http1::handshake(io))
                    .await
                    .unwrap();
                let closed = tokio::spawn(async move {
                    let _ = conn.await;
                });
                (Self::H1(sender), closed)
            }
            Version::Http2 => {
                let (sender, conn) = within(
                    "HTTP/2 handshake",
                    http2::handshake(TokioExecutor::new(), io),
                )
                .await
                .unwrap();
                let closed = tokio::spawn(async move {
                    let _ = conn.await;
                });
                (Self::H2(sender), closed)
            }
        }
    }

    /// `GET path` on this connection: the status and body.
    pub async fn get(&mut self, path: &str) -> Result<(StatusCode, String), hyper::Error> {
        // HTTP/2 needs the scheme and authority pseudo-headers; HTTP/1 the origin form.
        let uri = match self {
            Self::H1(_) => path.to_owned(),
            Self::H2(_) => format!("https://localhost{path}"),
        };
        let mut request = Request::get(uri);
        if let Self::H1(_) = self {
            request = request.header(http::header::HOST, "localhost");
        }
        let request = request.body(Empty::<Bytes>::new()).unwrap();
        let response = match self {
            Self::H1(sender) => {
                within("connection ready", sender.ready()).await?;
                within("response", sender.send_request(request)).await?
            }
            Self::H2(sender) => {
                within("connection ready", sender.ready()).await?;
                within("response", sender.send_request(request)).await?
            }
        };
        let status = response.status();
        let body = within("body", response.into_body().collect())
            .await?
            .to_bytes();
        Ok((status, String::from_utf8_lossy(&body).into_owned()))
    }

    /// Sends `request` on this connection: the response status.
    pub async fn send(&mut self, request: Request<Empty<Bytes>>) -> StatusCode {
        let response = match self {
            Self::H1(sender) => within("response", sender.send_request(request)).await,
            Self::H2(sender) => within("response", sender.send_request(request)).await,
        };
        response.expect("response").status()
    }

    pub fn is_closed(&self) -> bool {
        match self {
            Self::H1(sender) => sender.is_closed(),
            Self::H2(sender) => sender.is_closed(),
        }
    }
}

/// `GET path` over a fresh connection as `client`.
pub async fn get_once(
    addr: SocketAddr,
    client: &StaticSource,
    version: Version,
    path: &str,
) -> (StatusCode, String) {
    let (mut conn, _closed) = OneConnection::open(addr, client, version).await;
    conn.get(path).await.expect("request")
}

/// Serves `app` on 127.0.0.1:0 the way an application embedding only
/// [`zt_tower::Authorize`] would: mTLS handshake, peer identity into each request,
/// hyper — and no close at the peer's SVID expiry, so a request can arrive after it.
pub async fn serve_without_expiry_close(server: &StaticSource, app: Router) -> SocketAddr {
    use tower::ServiceExt;
    use zt_core::{PeerIdentity, PeerRole};

    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let identity = server.identity();
    let config = tls::ServerConfigBuilder::new(identity.clone())
        .alpn_protocols(vec![b"h2".to_vec(), b"http/1.1".to_vec()])
        .build()
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let acceptor = acceptor.clone();
            let identity = identity.clone();
            let app = app.clone();
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let peer =
                    PeerIdentity::from_connection(tls.get_ref().1, PeerRole::Client, &identity)
                        .unwrap();
                let service = hyper::service::service_fn(
                    move |mut request: Request<hyper::body::Incoming>| {
                        request.extensions_mut().insert(peer.clone());
                        app.clone().oneshot(request)
                    },
                );
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(tls), service)
                    .await;
            });
        }
    });
    addr
}

/// The `zt::authz` events emitted while a test runs, each as its fields.
pub mod events {
    use std::collections::BTreeMap;
    use std::fmt;
    use std::sync::{Arc, Mutex};

    use tracing::field::{Field, Visit};
    use tracing::span::{Attributes, Id, Record};
    use tracing::{Event, Metadata, Subscriber};

    pub type Fields = BTreeMap<String, String>;

    /// Records the events of target `zt::authz`.
    #[derive(Clone, Default)]
    pub struct Capture {
        events: Arc<Mutex<Vec<(tracing::Level, Fields)>>>,
    }

    impl Capture {
        /// Installs the capture for the current thread (a current-thread runtime
        /// runs every task there) until the guard is dropped.
        pub fn install() -> (Self, tracing::subscriber::DefaultGuard) {
            let capture = Self::default();
            let guard = tracing::subscriber::set_default(capture.clone());
            (capture, guard)
        }

        pub fn events(&self) -> Vec<(tracing::Level, Fields)> {
            self.events.lock().unwrap().clone()
        }
    }

    struct Visitor<'a>(&'a mut Fields);

    impl Visit for Visitor<'_> {
        fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
            self.0.insert(field.name().to_owned(), format!("{value:?}"));
        }

        fn record_str(&mut self, field: &Field, value: &str) {
            self.0.insert(field.name().to_owned(), value.to_owned());
        }
    }

    impl Subscriber for Capture {
        fn enabled(&self, metadata: &Metadata<'_>) -> bool {
            metadata.target() == "zt::authz"
        }

        fn new_span(&self, _span: &Attributes<'_>) -> Id {
            Id::from_u64(1)
        }

        fn record(&self, _span: &Id, _values: &Record<'_>) {}

        fn record_follows_from(&self, _span: &Id, _follows: &Id) {}

        fn event(&self, event: &Event<'_>) {
            let mut fields = Fields::new();
            event.record(&mut Visitor(&mut fields));
            self.events
                .lock()
                .unwrap()
                .push((*event.metadata().level(), fields));
        }

        fn enter(&self, _span: &Id) {}

        fn exit(&self, _span: &Id) {}
    }
}
