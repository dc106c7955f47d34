//! The live identity: immutable [`Snapshot`]s published through an atomic pointer.
//!
//! A source (files, the Workload API, memory) owns the one [`IdentityPublisher`];
//! everything that reads — TLS resolvers and verifiers, per-request re-verification,
//! readiness checks — holds a cheap [`Identity`] handle. A candidate SVID and bundle
//! set are validated as a whole before they are swapped in, so a bad candidate never
//! replaces a good snapshot. Before the first good snapshot, the identity is not
//! ready and every handshake fails closed.
//!
//! ```
//! # #[cfg(feature = "dev")] {
//! use zt_core::{BundleSet, IdentityPublisher, dev::DevCa};
//!
//! let ca = DevCa::new("example.org".parse()?)?;
//! let publisher = IdentityPublisher::new()?;
//! let identity = publisher.identity();
//! assert!(!identity.status().is_ready());
//!
//! let svid = ca.mint(&"spiffe://example.org/api".parse()?)?;
//! let snapshot = publisher.publish(svid, BundleSet::new().with(ca.bundle()))?;
//! assert_eq!(snapshot.generation(), 1);
//! assert!(identity.status().is_ready());
//! # }
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwapOption;
use rustls::crypto::CryptoProvider;
use rustls::sign::CertifiedKey;
use rustls_pki_types::CertificateDer;
use tokio::sync::watch;

use crate::bundle::BundleSet;
use crate::error::Error;
use crate::error::{PeerRole, SvidError};
use crate::id::SpiffeId;
use crate::metrics::{self, UpdateSource};
use crate::peer::Verifications;
use crate::svid::{VerifiedPeer, X509Svid};
use crate::verified::{ChainDigest, VerifiedChains};

/// The next snapshot stamp. Stamps name exactly one snapshot in the process,
/// whatever identity published it, so a peer verified under one identity's
/// snapshot can never pass for verified under another's.
static NEXT_STAMP: AtomicU64 = AtomicU64::new(1);

/// One consistent state of our identity: our SVID with its key, the bundles we
/// trust, and a generation number that grows with every publication.
pub struct Snapshot {
    svid: X509Svid,
    bundles: BundleSet,
    generation: u64,
    /// Unique in the process; see `NEXT_STAMP`.
    stamp: u64,
    certified_key: Arc<CertifiedKey>,
    published_at: SystemTime,
    /// The peer chains verified against `bundles`; born empty with the snapshot
    /// and gone with it, so no entry answers for other bundles.
    verified: VerifiedChains,
}

// === impl Snapshot ===

impl Snapshot {
    /// Our SVID.
    pub fn svid(&self) -> &X509Svid {
        &self.svid
    }

    /// Our SPIFFE ID.
    pub fn id(&self) -> &SpiffeId {
        self.svid.id()
    }

    /// The trusted bundles, ours and federated ones.
    pub fn bundles(&self) -> &BundleSet {
        &self.bundles
    }

    /// The generation: 1 for the first snapshot of this identity, growing by one
    /// with each publication. No two snapshots of one identity share one.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// The process-wide unique name of this snapshot, for re-verification.
    pub(crate) fn stamp(&self) -> u64 {
        self.stamp
    }

    /// The peer chains verified against this snapshot's bundles.
    #[cfg(test)]
    pub(crate) fn verified_chains(&self) -> &VerifiedChains {
        &self.verified
    }

    /// Verifies a peer's `chain` (with its `digest`, when known) for `role` against
    /// this snapshot's bundles, once per distinct chain: see [`VerifiedChains`].
    pub(crate) fn verify_peer(
        &self,
        chain: &[CertificateDer<'_>],
        digest: Option<&ChainDigest>,
        role: PeerRole,
        provider: &Arc<CryptoProvider>,
        now: SystemTime,
    ) -> Result<VerifiedPeer, SvidError> {
        self.verified
            .verify(chain, digest, &self.bundles, role, provider, now)
    }

    /// When this snapshot was published.
    pub fn published_at(&self) -> SystemTime {
        self.published_at
    }

    /// Our chain and loaded key, as rustls presents them.
    pub fn certified_key(&self) -> &Arc<CertifiedKey> {
        &self.certified_key
    }
}

impl fmt::Debug for Snapshot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Snapshot")
            .field("generation", &self.generation)
            .field("svid", &self.svid)
            .field("bundles", &self.bundles)
            .finish_non_exhaustive()
    }
}

/// Readiness and the last outcome of the identity source, for health checks and logs.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Status {
    generation: u64,
    id: Option<SpiffeId>,
    not_before: Option<SystemTime>,
    not_after: Option<SystemTime>,
    last_error: Option<String>,
    notice: Option<String>,
    withdrawn: Option<String>,
}

// === impl Status ===

impl Status {
    /// `true` when a good snapshot is serving.
    ///
    /// An SVID that expired while serving (its source stopped rotating it) makes the
    /// identity not ready: peers refuse it, so a readiness probe must too.
    pub fn is_ready(&self) -> bool {
        self.is_ready_at(SystemTime::now())
    }

    /// [`Status::is_ready`] as of `now`.
    pub fn is_ready_at(&self, now: SystemTime) -> bool {
        self.generation > 0
            && self.withdrawn.is_none()
            && self.not_after.is_none_or(|not_after| now <= not_after)
    }

    /// Why the identity is not ready, or `None` when it is.
    pub fn not_ready_reason(&self) -> Option<String> {
        let now = SystemTime::now();
        if self.is_ready_at(now) {
            return None;
        }
        Some(match (&self.withdrawn, &self.last_error, self.generation) {
            (Some(reason), _, _) => format!("identity withdrawn: {reason}"),
            (None, Some(err), 0) => format!("no valid identity yet: {err}"),
            (None, None, 0) => "no identity published yet".to_owned(),
            (None, last_error, _) => {
                let mut reason = "the serving SVID has expired".to_owned();
                if let Some(err) = last_error {
                    reason.push_str(&format!("; last candidate rejected: {err}"));
                }
                reason
            }
        })
    }

    /// The generation of the serving snapshot (0 before the first).
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// The SPIFFE ID of the serving snapshot.
    pub fn id(&self) -> Option<&SpiffeId> {
        self.id.as_ref()
    }

    /// When the serving SVID became valid (the latest `notBefore` of its chain).
    pub fn not_before(&self) -> Option<SystemTime> {
        self.not_before
    }

    /// When the serving SVID expires.
    pub fn not_after(&self) -> Option<SystemTime> {
        self.not_after
    }

    /// Time left before the serving SVID expires (zero once expired).
    pub fn expires_in(&self, now: SystemTime) -> Option<Duration> {
        self.not_after
            .map(|t| t.duration_since(now).unwrap_or(Duration::ZERO))
    }

    /// How much of the serving SVID's lifetime has passed at `now`: 0.0 at
    /// `notBefore`, 1.0 at `notAfter` and after (an SVID that should have been
    /// rotated long ago reads 1.0, not more).
    pub fn lifetime_elapsed(&self, now: SystemTime) -> Option<f64> {
        let (not_before, not_after) = (self.not_before?, self.not_after?);
        Some(lifetime_fraction(not_before, not_after, now))
    }

    /// Something about the serving identity's last update that an operator should
    /// know although the update was accepted, such as another SVID of a Workload
    /// API update that was left out because it is malformed. Cleared by the next
    /// accepted update that has nothing to report.
    pub fn last_notice(&self) -> Option<&str> {
        self.notice.as_deref()
    }

    /// The error of the last rejected candidate, cleared by the next good one.
    pub fn last_error(&self) -> Option<&str> {
        self.last_error.as_deref()
    }
}

struct Shared {
    current: ArcSwapOption<Snapshot>,
    /// Read side only: the publisher owns the sender, so subscribers learn when it
    /// is gone.
    status: watch::Receiver<Status>,
    provider: Arc<CryptoProvider>,
    /// What this identity's verifiers established, for `PeerIdentity::from_connection`.
    verifications: Verifications,
}

/// Read handle on the live identity. Cheap to clone; every clone sees the same state.
#[derive(Clone)]
pub struct Identity {
    shared: Arc<Shared>,
}

// === impl Identity ===

impl Identity {
    /// The serving snapshot, or `None` before the first or after a withdrawal.
    pub fn snapshot(&self) -> Option<Arc<Snapshot>> {
        self.shared.current.load_full()
    }

    /// One atomic load of the serving snapshot, for hot paths.
    pub(crate) fn load(&self) -> arc_swap::Guard<Option<Arc<Snapshot>>> {
        self.shared.current.load()
    }

    /// The generation of the serving snapshot, 0 when there is none.
    pub fn generation(&self) -> u64 {
        self.shared
            .current
            .load()
            .as_ref()
            .map_or(0, |s| s.generation)
    }

    /// Readiness and the last outcome.
    pub fn status(&self) -> Status {
        self.shared.status.borrow().clone()
    }

    /// Whether `self` and `other` are handles on the same identity.
    #[must_use]
    pub fn ptr_eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.shared, &other.shared)
    }

    /// A subscription to changes: publications, rejected candidates, withdrawals.
    pub fn changes(&self) -> Changes {
        let mut rx = self.shared.status.clone();
        // A subscription reports changes from now on, not the ones already made.
        rx.borrow_and_update();
        Changes { rx }
    }

    /// Waits until a good snapshot serves.
    pub async fn ready(&self) -> Arc<Snapshot> {
        let mut changes = self.changes();
        loop {
            if let Some(snapshot) = self.snapshot() {
                return snapshot;
            }
            // The publisher lives as long as a source holds it; if it is gone, no
            // snapshot can ever arrive, so waiting forever is the honest answer.
            if !changes.changed().await {
                std::future::pending::<()>().await;
            }
        }
    }

    /// The crypto provider candidates are validated with.
    pub fn crypto_provider(&self) -> &Arc<CryptoProvider> {
        &self.shared.provider
    }

    pub(crate) fn verifications(&self) -> &Verifications {
        &self.shared.verifications
    }
}

impl fmt::Debug for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Identity")
            .field("status", &*self.shared.status.borrow())
            .finish_non_exhaustive()
    }
}

/// A subscription to identity changes.
#[derive(Debug)]
pub struct Changes {
    rx: watch::Receiver<Status>,
}

impl Changes {
    /// Waits for the next change. Returns `false` once the publisher is gone.
    pub async fn changed(&mut self) -> bool {
        self.rx.changed().await.is_ok()
    }

    /// The status as of the latest change.
    pub fn status(&self) -> Status {
        self.rx.borrow().clone()
    }
}

/// Anything that maintains a live [`Identity`]: watched files, the SPIFFE Workload
/// API, memory.
pub trait IdentitySource: fmt::Debug + Send + Sync {
    /// A read handle on the identity this source maintains.
    fn identity(&self) -> Identity;
}

impl IdentitySource for Identity {
    fn identity(&self) -> Identity {
        self.clone()
    }
}

/// The write side of an [`Identity`]: validates candidates and publishes them.
///
/// Held by one source and not `Clone`; it is `Sync`, and concurrent
/// publications through a shared reference are serialised, so no two snapshots
/// ever get the same generation and the last one published is the one serving.
pub struct IdentityPublisher {
    shared: Arc<Shared>,
    status: watch::Sender<Status>,
    /// Held from reading the serving snapshot to storing its successor.
    publishing: Mutex<()>,
    /// The `source` label of this publisher's updates.
    source: UpdateSource,
}

// === impl IdentityPublisher ===

impl IdentityPublisher {
    /// A publisher using [`default_provider`](crate::default_provider).
    ///
    /// # Errors
    ///
    /// [`Error::NoCryptoProvider`] when there is no default provider.
    pub fn new() -> Result<Self, Error> {
        Ok(Self::with_provider(crate::default_provider()?))
    }

    /// A publisher validating keys and chains with `provider`.
    pub fn with_provider(provider: Arc<CryptoProvider>) -> Self {
        let (status, rx) = watch::channel(Status::default());
        Self {
            shared: Arc::new(Shared {
                current: ArcSwapOption::empty(),
                status: rx,
                provider,
                verifications: Verifications::default(),
            }),
            status,
            publishing: Mutex::new(()),
            source: UpdateSource::Static,
        }
    }

    /// Labels this publisher's updates as coming from `source`.
    #[cfg(any(feature = "files", feature = "workload-api"))]
    pub(crate) fn for_source(mut self, source: UpdateSource) -> Self {
        self.source = source;
        self
    }

    /// A read handle.
    pub fn identity(&self) -> Identity {
        Identity {
            shared: Arc::clone(&self.shared),
        }
    }

    /// Validates the candidate as a whole and, if good, makes it the serving snapshot.
    ///
    /// The key must match the leaf; `bundles` must hold our own trust domain's bundle
    /// and our SVID must verify against it now, as a peer would verify it. A candidate
    /// with the same material as the serving snapshot is not republished (the
    /// generation stays, so connections need no re-verification).
    ///
    /// # Errors
    ///
    /// Why the candidate was rejected. The serving snapshot stays and the error is
    /// recorded in [`Status::last_error`].
    pub fn publish(&self, svid: X509Svid, bundles: BundleSet) -> Result<Arc<Snapshot>, Error> {
        self.publish_unreported(svid, bundles)
            .inspect_err(|err| self.reject(err))
    }

    /// As [`publish`](Self::publish), but a rejection is left to the caller to
    /// report, so that it can say which file or message the candidate came from.
    pub(crate) fn publish_unreported(
        &self,
        svid: X509Svid,
        bundles: BundleSet,
    ) -> Result<Arc<Snapshot>, Error> {
        match self.validate(svid, bundles, None)? {
            Validated::Unchanged(current) => Ok(current),
            Validated::New(snapshot) => Ok(snapshot),
        }
    }

    /// As [`publish`](Self::publish), recording `notice` (see
    /// [`Status::last_notice`]) with the outcome when the candidate is accepted, in
    /// the same status change.
    #[cfg(feature = "workload-api")]
    pub(crate) fn publish_noted(
        &self,
        svid: X509Svid,
        bundles: BundleSet,
        notice: Option<String>,
    ) -> Result<Arc<Snapshot>, Error> {
        match self.validate(svid, bundles, notice) {
            Ok(Validated::Unchanged(current) | Validated::New(current)) => Ok(current),
            Err(err) => {
                self.reject(&err);
                Err(err)
            }
        }
    }

    fn validate(
        &self,
        svid: X509Svid,
        bundles: BundleSet,
        notice: Option<String>,
    ) -> Result<Validated, Error> {
        let now = SystemTime::now();
        let provider = &self.shared.provider;
        let certified_key = svid.certified_key(provider)?;
        let own_td = svid.id().trust_domain();
        if bundles.get(own_td).is_none() {
            return Err(Error::NoOwnBundle(own_td.clone()));
        }
        svid.verify(&bundles, provider, now)?;

        // The lock only orders publications; a panic under it leaves nothing half done.
        let _publishing = self
            .publishing
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let previous = self.shared.current.load_full();
        if let Some(current) = &previous
            && current.svid.chain() == svid.chain()
            && same_bundles(&current.bundles, &bundles)
            && self.status.borrow().withdrawn.is_none()
        {
            self.status.send_if_modified(|status| {
                let had_error = status.last_error.take().is_some();
                let notice_changed = status.notice != notice;
                status.notice = notice;
                had_error || notice_changed
            });
            metrics::identity_update(self.source, true);
            return Ok(Validated::Unchanged(Arc::clone(current)));
        }
        let generation = self.status.borrow().generation + 1;
        let snapshot = Arc::new(Snapshot {
            svid,
            bundles,
            generation,
            stamp: NEXT_STAMP.fetch_add(1, Ordering::Relaxed),
            certified_key: Arc::new(certified_key),
            published_at: now,
            verified: VerifiedChains::new(Arc::clone(provider)),
        });
        self.shared.current.store(Some(Arc::clone(&snapshot)));
        metrics::identity_update(self.source, true);
        metrics::identity_published(&snapshot, previous.as_deref());
        tracing::info!(
            id = %snapshot.id(),
            generation,
            trust_domains = snapshot.bundles.len(),
            "identity published"
        );
        self.status.send_modify(|status| {
            *status = Status {
                generation,
                id: Some(snapshot.id().clone()),
                not_before: Some(snapshot.svid.not_before()),
                not_after: Some(snapshot.svid.not_after()),
                last_error: None,
                notice,
                withdrawn: None,
            };
        });
        Ok(Validated::New(snapshot))
    }

    /// Records that a candidate could not even be assembled (a file is unreadable,
    /// the Workload API is unreachable). The serving snapshot stays.
    pub fn reject(&self, error: &dyn fmt::Display) {
        let message = error.to_string();
        self.log_rejection(None, &message);
        self.record_rejection(message);
    }

    /// Logs a rejected candidate, saying whether a good identity keeps serving or
    /// there is none yet (every handshake fails closed until one is published).
    pub(crate) fn log_rejection(&self, file: Option<&std::path::Path>, error: &dyn fmt::Display) {
        let file = file.map(|f| f.display().to_string());
        if self.shared.current.load().is_some() {
            tracing::warn!(file, error = %error, "identity candidate rejected; keeping the last good identity");
        } else {
            tracing::warn!(file, error = %error, "identity candidate rejected; no identity yet, every handshake fails closed");
        }
    }

    /// Records a rejection the caller has already logged; the one place
    /// rejections are counted.
    pub(crate) fn record_rejection(&self, message: String) {
        metrics::identity_update(self.source, false);
        self.status.send_modify(|status| {
            status.last_error = Some(message);
        });
    }

    /// Withdraws the serving snapshot: from now on handshakes fail closed and
    /// connections are re-verified against nothing, until the next publication.
    pub fn withdraw(&self, reason: &str) {
        tracing::warn!(reason, "identity withdrawn; failing closed");
        let _publishing = self
            .publishing
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        self.shared.current.store(None);
        self.status.send_modify(|status| {
            status.withdrawn = Some(reason.to_owned());
        });
    }
}

impl fmt::Debug for IdentityPublisher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IdentityPublisher")
            .field("status", &*self.status.borrow())
            .finish_non_exhaustive()
    }
}

impl IdentitySource for IdentityPublisher {
    fn identity(&self) -> Identity {
        IdentityPublisher::identity(self)
    }
}

enum Validated {
    Unchanged(Arc<Snapshot>),
    New(Arc<Snapshot>),
}

/// The fraction of `[not_before, not_after]` that has passed at `now`, within 0.0..=1.0.
fn lifetime_fraction(not_before: SystemTime, not_after: SystemTime, now: SystemTime) -> f64 {
    let lifetime = not_after
        .duration_since(not_before)
        .unwrap_or(Duration::ZERO)
        .as_secs_f64();
    let elapsed = now
        .duration_since(not_before)
        .unwrap_or(Duration::ZERO)
        .as_secs_f64();
    if lifetime <= 0.0 {
        return 1.0;
    }
    (elapsed / lifetime).clamp(0.0, 1.0)
}

fn same_bundles(a: &BundleSet, b: &BundleSet) -> bool {
    a.len() == b.len()
        && a.iter().all(|bundle| {
            b.get(bundle.trust_domain())
                .is_some_and(|other| other.same_authorities(bundle))
        })
}
