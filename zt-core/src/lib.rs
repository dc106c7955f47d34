//! # zt-core
//!
//! SPIFFE workload identity and live mutual TLS for services that are their own
//! zero-trust edge.
//!
//! - [`SpiffeId`], [`TrustDomain`] and [`IdMatcher`]: identities parsed exactly as the
//!   SPIFFE-ID specification says, and matchers to authorize them.
//! - [`X509Svid`] and [`verify_peer_chain`]: X.509-SVIDs parsed and verified with every
//!   validator rule of the X509-SVID specification on top of webpki path validation.
//! - [`X509Bundle`] and [`BundleSet`]: trust bundles per trust domain, for federation.
//! - [`Identity`], [`IdentityPublisher`], [`Snapshot`]: the live identity, swapped
//!   atomically and validated as a whole before it serves.
//! - [`tls`]: rustls server and client configs that read the live identity on every
//!   handshake and authorize peers by SPIFFE ID.
//! - [`PeerIdentity`]: the verified identity of a connection's peer, re-checked per
//!   request against today's bundle.
//! - [`policy`]: default-deny authorization of every request on the peer's SPIFFE ID:
//!   [`Policy`], [`PolicyStore`], [`Decision`].
//! - `FileSource` (feature `files`, default): the identity read from PEM files
//!   (spiffe-helper, Kubernetes TLS Secrets, csi-driver-spiffe, explicit paths) and
//!   reloaded when they change, validated as a whole before it serves.
//!   `PolicyStore::watch_file` keeps a policy in step with its file the same way.
//! - `dev` (feature `dev`): a development CA for tests and demos.
//! - `WorkloadApiSource` (feature `workload-api`): X.509-SVIDs and bundles streamed
//!   from the SPIFFE Workload API (a SPIRE agent, for instance).
//!
//! ## Features
//!
//! - `aws-lc-rs` (default): aws-lc-rs is the default crypto provider.
//! - `ring`: ring is the default crypto provider when `aws-lc-rs` is off.
//! - `files` (default): `FileSource`, watched credential files (notify, tokio).
//! - `metrics` (default): metrics through the `metrics` facade; see [`metrics`].
//! - `dev`: the development CA.
//! - `workload-api`: the SPIFFE Workload API source (needs a tokio runtime).
//! - `policy-yaml`, `policy-toml`: policy documents in YAML and TOML (JSON is always
//!   available).
//!
//! Whatever the features, every config can be given an explicit
//! `Arc<rustls::crypto::CryptoProvider>`; see [`default_provider`].
//!
//! ```
//! # #[cfg(feature = "dev")] {
//! use zt_core::{BundleSet, IdMatcher, StaticSource, IdentitySource, dev::DevCa, tls};
//!
//! let ca = DevCa::new("example.org".parse()?)?;
//! let svid = ca.mint(&"spiffe://example.org/billing".parse()?)?;
//! let source = StaticSource::new(svid, BundleSet::new().with(ca.bundle()))?;
//!
//! let config = tls::ServerConfigBuilder::new(source.identity())
//!     .authorize(IdMatcher::pattern("spiffe://example.org/frontend/**")?)
//!     .build()?;
//! # let _ = config;
//! # }
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

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

mod bundle;
#[cfg(feature = "dev")]
pub mod dev;
mod error;
pub mod id;
mod identity;
#[cfg(feature = "jwt")]
pub mod jwt;
pub mod matcher;
pub mod metrics;
mod peer;
pub mod policy;
#[cfg(feature = "files")]
mod policy_watch;
mod provider;
mod read;
mod segments;
mod source;
mod svid;
pub mod tls;
mod verified;
#[cfg(feature = "files")]
mod watch;
mod x509;

pub use bundle::{BundleSet, MAX_AUTHORITIES, MAX_BUNDLE_BYTES, X509Bundle};
pub use error::{BundleError, Error, FileError, FileErrorKind, PeerRole, SvidError};
pub use id::{IdError, MAX_ID_LEN, MAX_TRUST_DOMAIN_LEN, SpiffeId, TrustDomain};
pub use identity::{Changes, Identity, IdentityPublisher, IdentitySource, Snapshot, Status};
pub use matcher::{IdMatcher, PatternError};
pub use peer::{AnonymousPeer, PeerIdentity, Principal};
pub use policy::{
    Decision, Format, Headers, Mode, Policy, PolicyError, PolicyStore, Request, Upgrade, Verdict,
};
#[cfg(feature = "files")]
pub use policy_watch::PolicyWatch;
pub use provider::default_provider;
pub use source::StaticSource;
#[cfg(feature = "workload-api")]
#[cfg_attr(docsrs, doc(cfg(feature = "workload-api")))]
pub use source::{
    DEFAULT_FIRST_UPDATE_TIMEOUT, DEFAULT_INITIAL_BACKOFF, DEFAULT_MAX_BACKOFF,
    SPIFFE_ENDPOINT_SOCKET, SvidPicker, WorkloadApiError, WorkloadApiSource,
    WorkloadApiSourceBuilder,
};
#[cfg(feature = "files")]
pub use source::{FileLayout, FileSource, FileSourceBuilder};
#[cfg(all(feature = "workload-api", feature = "jwt"))]
#[cfg_attr(docsrs, doc(cfg(all(feature = "workload-api", feature = "jwt"))))]
pub use source::{WorkloadJwtBundles, WorkloadJwtSvid};
pub use svid::{MAX_CHAIN_LEN, MAX_SVID_PEM_BYTES, VerifiedPeer, X509Svid, verify_peer_chain};

/// Re-exported so applications name the same rustls as zt.
pub use rustls;
