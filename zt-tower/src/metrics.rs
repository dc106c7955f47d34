//! Counters of authorization decisions.
//!
//! [`AuthzMetrics`] is a handful of atomic counters shared by every clone of an
//! [`Authorize`](crate::Authorize) service; [`AuthzMetrics::counts`] reads them for
//! an exporter (Prometheus, OpenTelemetry, the `metrics` facade, a status page).
//!
//! Why not the `metrics` facade directly: each decision then costs a recorder
//! lookup and, with labels, a key hash and registry lookup, and every application
//! would pull the facade in. Here a decision costs one relaxed atomic add, and the
//! counts can be exported to any system. Per-rule and per-peer breakdowns are left
//! to the `tracing` event each decision emits (target `zt::authz`), where their
//! cardinality does not grow a metrics registry.
//!
//! ```
//! let metrics = zt_tower::AuthzMetrics::default();
//! assert_eq!(metrics.counts().allowed, 0);
//! ```

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// Shared decision counters. Cheap to clone; clones count together.
#[derive(Clone, Default)]
pub struct AuthzMetrics {
    inner: Arc<Counters>,
}

#[derive(Default)]
struct Counters {
    allowed: AtomicU64,
    denied: AtomicU64,
    dry_run_denied: AtomicU64,
    audited: AtomicU64,
    untrusted_peer: AtomicU64,
    no_identity: AtomicU64,
    hook_denied: AtomicU64,
    malformed: AtomicU64,
}

/// The counts at one moment. Every request is counted once in exactly one of
/// `allowed`, `dry_run_denied`, `denied`, `untrusted_peer`, `no_identity`,
/// `hook_denied` and `malformed`; `audited` counts requests that matched an audit rule as well.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct AuthzCounts {
    /// Passed on: allowed by the policy and by the decision hook.
    pub allowed: u64,
    /// Refused by the policy.
    pub denied: u64,
    /// Passed on although the policy would deny them, because it is in dry-run mode.
    pub dry_run_denied: u64,
    /// Matched at least one audit rule (in addition to their outcome).
    pub audited: u64,
    /// Refused because the peer no longer verifies: its SVID expired or today's
    /// bundle no longer vouches for it.
    pub untrusted_peer: u64,
    /// Refused because they carried no peer identity: a server setup error.
    pub no_identity: u64,
    /// Allowed by the policy, refused by the application's decision hook.
    pub hook_denied: u64,
    /// Refused before the policy for their shape: a malformed or conflicting
    /// authority, a lower-case method, `CONNECT` or `Upgrade`.
    pub malformed: u64,
}

#[derive(Clone, Copy, Debug)]
pub(crate) enum Outcome {
    Allowed,
    Denied,
    DryRunDenied,
    UntrustedPeer,
    NoIdentity,
    HookDenied,
    Malformed,
}

// === impl AuthzMetrics ===

impl AuthzMetrics {
    /// The current counts.
    pub fn counts(&self) -> AuthzCounts {
        let c = &*self.inner;
        AuthzCounts {
            allowed: c.allowed.load(Ordering::Relaxed),
            denied: c.denied.load(Ordering::Relaxed),
            dry_run_denied: c.dry_run_denied.load(Ordering::Relaxed),
            audited: c.audited.load(Ordering::Relaxed),
            untrusted_peer: c.untrusted_peer.load(Ordering::Relaxed),
            no_identity: c.no_identity.load(Ordering::Relaxed),
            hook_denied: c.hook_denied.load(Ordering::Relaxed),
            malformed: c.malformed.load(Ordering::Relaxed),
        }
    }

    pub(crate) fn record(&self, outcome: Outcome) {
        let c = &*self.inner;
        let counter = match outcome {
            Outcome::Allowed => &c.allowed,
            Outcome::Denied => &c.denied,
            Outcome::DryRunDenied => &c.dry_run_denied,
            Outcome::UntrustedPeer => &c.untrusted_peer,
            Outcome::NoIdentity => &c.no_identity,
            Outcome::HookDenied => &c.hook_denied,
            Outcome::Malformed => &c.malformed,
        };
        // Counters order nothing; relaxed is enough and the cheapest.
        counter.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn record_audit(&self) {
        self.inner.audited.fetch_add(1, Ordering::Relaxed);
    }
}

impl fmt::Debug for AuthzMetrics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuthzMetrics")
            .field("counts", &self.counts())
            .finish_non_exhaustive()
    }
}
