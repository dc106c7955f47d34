//! # zt-tower
//!
//! SPIFFE mutual TLS and per-request authorization for tower, hyper and axum.
//!
//! - [`Server`]: accepts TCP or Unix connections, authenticates each peer with its
//!   X.509-SVID in a handshake task of its own, serves HTTP/1.1 and HTTP/2 to any
//!   tower service (an `axum::Router` too) with the peer's [`PeerIdentity`] in every
//!   request, closes connections when the peer's SVID expires and shuts down
//!   gracefully. With [`ServerBuilder::websockets`] it serves governed WebSocket
//!   upgrades (HTTP/1.1 and HTTP/2 extended CONNECT): decided like any request,
//!   closed once the peer or the policy no longer allows them. [`Server::incoming`] hands the authenticated connections to
//!   another HTTP stack instead (zt-tonic feeds them to tonic).
//! - [`AuthorizeLayer`] / [`Authorize`]: re-verifies the peer and decides every
//!   request with the [`Policy`] in force; refusals are `403 Forbidden`. A
//!   [`DecisionHook`] adds application checks; [`AuthzMetrics`] counts decisions;
//!   [`Authorize::check`] decides for integrations that answer refusals in their
//!   own protocol, and an [`Answer`] other than [`HttpAnswer`] answers them
//!   through the same service (zt-tonic's gRPC statuses).
//! - `Peer` (feature `axum`): the axum extractor for the verified peer;
//!   `PeerOrAnonymous` also shows an anonymous peer, on a server that
//!   [allows them](ServerBuilder::allow_anonymous).
//! - `admin::Admin` (feature `admin`): liveness, readiness, status and metrics on
//!   a plain-HTTP listener of their own, never the mTLS port.
//! - [`Connector`]: an mTLS connector for hyper clients that authorizes the server by
//!   SPIFFE ID and exposes its identity on every response.
//!
//! Credentials, bundles and policies are read live: rotations apply to the next
//! handshake or request with no restart.
//!
//! ```
//! # use zt_core::{BundleSet, StaticSource, dev::DevCa};
//! use axum::{Router, routing::get};
//! use http_body_util::{BodyExt, Empty};
//! use hyper_util::{client::legacy::Client, rt::TokioExecutor};
//! use zt_tower::{AuthorizeLayer, Connector, IdMatcher, IdentitySource, Peer, Policy, PolicyStore, Server};
//!
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! # let ca = DevCa::new("example.org".parse()?)?;
//! # let bundles = BundleSet::new().with(ca.bundle());
//! # let api = StaticSource::new(ca.mint(&"spiffe://example.org/api".parse()?)?, bundles.clone())?;
//! # let web = StaticSource::new(ca.mint(&"spiffe://example.org/web".parse()?)?, bundles)?;
//! // Server side: `api` is our identity (from files, the Workload API, …).
//! let policy = PolicyStore::new(Policy::allow_patterns(["spiffe://example.org/web"])?);
//! let app = Router::new()
//!     .route("/whoami", get(|Peer(peer): Peer| async move { peer.id().to_string() }))
//!     .layer(AuthorizeLayer::new(api.identity(), policy));
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
//! let addr = listener.local_addr()?;
//! let server = Server::builder(api.identity()).build()?;
//! tokio::spawn(server.serve(listener, app).into_future());
//!
//! // Client side: `web` is the client's identity; it only talks to `api`.
//! let connector = Connector::new(web.identity(), IdMatcher::exact("spiffe://example.org/api".parse()?))?;
//! let client = Client::builder(TokioExecutor::new()).build::<_, Empty<bytes::Bytes>>(connector);
//! let response = client.get(format!("https://localhost:{}/whoami", addr.port()).parse()?).await?;
//! assert!(response.status().is_success());
//! let body = response.into_body().collect().await?.to_bytes();
//! assert_eq!(body, "spiffe://example.org/web");
//! # Ok(()) }
//! # tokio::runtime::Runtime::new()?.block_on(demo())?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! ## Features
//!
//! - `aws-lc-rs` (default) / `ring`: the default crypto provider of zt-core.
//! - `files` (default), `workload-api`, `policy-yaml`, `policy-toml`, `dev`: the
//!   zt-core features of the same names, forwarded so that one dependency line
//!   does.
//! - `metrics` (default): metrics through the `metrics` facade, zt-core's and
//!   zt-tower's (see [`metrics`]); a no-op until the application installs a recorder.
//! - `axum` (default): the `Peer` extractor. It needs only `axum-core`, whose few
//!   dependencies hyper mostly brings already, so it is on by default.
//! - `jwt`: JWT-SVIDs — validated per request with the mTLS peer, and presented by
//!   clients (`bearer::BearerLayer`).
//! - `admin`: the status and admin endpoint (`admin::Admin`); adds serde_json.

#![cfg_attr(docsrs, feature(doc_cfg))]
#![cfg_attr(
    test,
    allow(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::indexing_slicing,
        clippy::panic
    )
)]

#[cfg(feature = "admin")]
pub mod admin;
pub mod authorize;
#[cfg(feature = "jwt")]
pub mod bearer;
pub mod client;
#[cfg(feature = "axum")]
pub mod extract;
pub mod metrics;
pub mod server;

pub use authorize::{
    Answer, AsyncAuthorize, AsyncAuthorizeLayer, AsyncDecisionHook, Authorize, AuthorizeLayer,
    DecisionHook, Denial, HttpAnswer, NoHook, Refusal,
};
pub use client::{
    ClientError, ClientErrorKind, ConnectError, Connector, ConnectorBuilder, ServerNoLongerTrusted,
    ZtStream,
};
#[cfg(feature = "axum")]
pub use extract::{Authorized, MissingDecision, MissingPeer, Peer, PeerOrAnonymous, PeerRejection};
pub use metrics::{AuthzCounts, AuthzMetrics};
pub use server::{
    Accepted, Listener, Serve, Server, ServerBuilder, TlsIncoming, WithGracefulShutdown,
};

pub use zt_core::{
    AnonymousPeer, Decision, IdMatcher, Identity, IdentitySource, PeerIdentity, Policy,
    PolicyStore, Principal, SpiffeId,
};

/// Re-exported so applications name the same versions as zt-tower.
pub use {http, hyper, hyper_util, zt_core};

/// The error type services and bodies are converted to.
pub(crate) type BoxError = Box<dyn std::error::Error + Send + Sync>;
