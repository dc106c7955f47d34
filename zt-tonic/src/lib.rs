//! # zt-tonic
//!
//! SPIFFE mutual TLS for tonic gRPC servers and clients, with every call
//! authorized per method and re-checked on long-lived HTTP/2 connections.
//!
//! - [`Incoming`]: authenticated connections for
//!   `tonic::transport::Server::serve_with_incoming`. Each client is
//!   authenticated by its X.509-SVID in a handshake task of its own; its
//!   [`PeerIdentity`] reaches every request as tonic connect info, read with
//!   [`peer`]; the connection closes when the client's SVID expires.
//! - [`AuthorizeLayer`]: decides every call with the [`Policy`] in force, on the
//!   gRPC service and method of its path, after re-verifying the client against
//!   today's bundle. Refusals are gRPC statuses (`PERMISSION_DENIED`,
//!   `UNAUTHENTICATED`), never bare HTTP errors.
//! - [`interceptor()`]: per-call application checks with the client's identity, as
//!   a tonic interceptor.
//! - [`Connector`] and [`endpoint`]: tonic channels that present our SVID and
//!   accept only a server with the expected SPIFFE ID.
//!
//! Credentials, bundles and policies are read live: rotations apply to the next
//! handshake or call with no restart. tonic's own TLS cannot do this — it
//! neither reloads certificates nor verifies SPIFFE IDs — so zt-tonic brings its
//! own; tonic's TLS features are not needed, and do no harm when another crate
//! turns them on.
//!
//! ```
//! # use zt_core::{BundleSet, IdentitySource, StaticSource, dev::DevCa};
//! use tonic::transport::Server;
//! use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};
//! use zt_tonic::{AuthorizeLayer, Connector, IdMatcher, Incoming, Policy, PolicyStore};
//!
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! # let ca = DevCa::new("example.org".parse()?)?;
//! # let bundles = BundleSet::new().with(ca.bundle());
//! # let api = StaticSource::new(ca.mint(&"spiffe://example.org/api".parse()?)?, bundles.clone())?;
//! # let web = StaticSource::new(ca.mint(&"spiffe://example.org/web".parse()?)?, bundles)?;
//! // Server side: `api` is our identity (from files, the Workload API, …).
//! let policy = PolicyStore::new(Policy::parse(r#"{"rules": [
//!     {"name": "health-from-our-domain", "action": "allow",
//!      "from": {"trust_domains": ["example.org"]},
//!      "to": {"grpc": ["grpc.health.v1.Health/*"]}}
//! ]}"#, zt_core::Format::Json)?);
//! let (_reporter, health) = tonic_health::server::health_reporter();
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
//! let incoming = Incoming::new(api.identity(), listener)?;
//! let url = format!("https://localhost:{}", incoming.local_addr().unwrap().port());
//! tokio::spawn(
//!     Server::builder()
//!         .layer(AuthorizeLayer::new(api.identity(), policy))
//!         .add_service(health)
//!         .serve_with_incoming(incoming),
//! );
//!
//! // Client side: `web` is the client's identity; it only talks to `api`.
//! let connector = Connector::new(web.identity(), IdMatcher::exact("spiffe://example.org/api".parse()?))?;
//! let mut client = HealthClient::new(connector.connect(&url).await?);
//! let reply = client.check(HealthCheckRequest { service: String::new() }).await?;
//! assert_eq!(reply.into_inner().status, 1); // SERVING
//! # Ok(()) }
//! # tokio::runtime::Runtime::new()?.block_on(demo())?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! ## Health checks
//!
//! gRPC health checking (`grpc.health.v1.Health`, served by `tonic-health`) is a
//! service like any other: the policy decides it, and a policy that says nothing
//! about it refuses probes with `PERMISSION_DENIED`. Allow it on purpose, for the
//! identities that probe:
//!
//! ```yaml
//! - name: health-probes
//!   action: allow
//!   from: { trust_domains: [example.org] }     # or ids: [the prober's ID]
//!   to: { grpc: ["grpc.health.v1.Health/*"] }
//! ```
//!
//! The kubelet's built-in gRPC probe cannot present a client certificate, so it
//! cannot complete an mTLS handshake with a zt server. Probe with an exec probe
//! that does — `grpc_health_probe -tls -tls-client-cert … -tls-client-key …
//! -tls-ca-cert …` with the pod's own SVID files, the ones zt reads — and allow
//! the pod's own ID or, as above, any peer of the trust domain. Health status is
//! not secret, but the rule keeps it to authenticated peers; `Check` and `Watch`
//! are both covered by `Health/*`. See `docs/policy.md` for the policy reference.
//!
//! ## Features
//!
//! - `aws-lc-rs` (default) / `ring`: the default crypto provider of zt-core.
//! - `files` (default), `workload-api`, `policy-yaml`, `policy-toml`, `dev`: the
//!   zt-core features of the same names, forwarded through zt-tower so that one
//!   dependency line does.
//! - `metrics` (default): metrics through the `metrics` facade (see
//!   `zt_tower::metrics`); a no-op until the application installs a recorder.
//! - `jwt`: JWT-SVIDs — validated per call with the mTLS peer, and presented by
//!   clients (`bearer_interceptor`).

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

pub mod authorize;
#[cfg(feature = "jwt")]
pub mod bearer;
pub mod client;
pub mod interceptor;
pub mod server;

pub use authorize::{
    AsyncAuthorize, AsyncAuthorizeLayer, Authorize, AuthorizeLayer, GrpcAnswer, decision,
};
#[cfg(feature = "jwt")]
pub use bearer::{BearerInterceptor, bearer_interceptor};
pub use client::{ChannelError, Connector, ConnectorBuilder, endpoint};
pub use interceptor::{PeerCheck, PeerInterceptor, interceptor};
pub use server::{
    ConnectInfo, Incoming, IncomingBuilder, TlsConnection, connect_info, is_anonymous, peer, server,
};

pub use zt_core::{
    AnonymousPeer, Decision, IdMatcher, Identity, IdentitySource, PeerIdentity, Policy,
    PolicyStore, Principal, SpiffeId,
};
pub use zt_tower::{
    AsyncDecisionHook, AuthzCounts, AuthzMetrics, ClientError, ClientErrorKind, ConnectError,
    DecisionHook, NoHook, Refusal, ServerNoLongerTrusted,
};

/// Re-exported so applications name the same versions as zt-tonic.
pub use {tonic, zt_core, zt_tower};
