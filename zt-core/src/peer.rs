//! The verified identity of the other end of a connection.
//!
//! A [`PeerIdentity`] is built once per connection after the handshake and travels
//! with every request on it. [`PeerIdentity::reverify`] re-checks it against the
//! serving snapshot: when the snapshot has not changed since the last check, that is
//! one atomic load and a time comparison; when it has, the chain is verified again
//! against today's bundle.
//!
//! ```
//! # #[cfg(feature = "dev")] {
//! use std::time::SystemTime;
//! use zt_core::{BundleSet, IdentityPublisher, PeerIdentity, PeerRole, dev::DevCa};
//!
//! let ca = DevCa::new("example.org".parse()?)?;
//! let publisher = IdentityPublisher::new()?;
//! publisher.publish(ca.mint(&"spiffe://example.org/server".parse()?)?, BundleSet::new().with(ca.bundle()))?;
//! let identity = publisher.identity();
//!
//! let client = ca.mint(&"spiffe://example.org/client".parse()?)?;
//! let peer = PeerIdentity::from_chain(client.chain().to_vec(), PeerRole::Client, 0)?;
//! peer.reverify(&identity, SystemTime::now())?;
//! assert_eq!(peer.id().path(), "/client");
//!
//! // The CA is withdrawn: the open connection's peer no longer verifies.
//! let other = DevCa::new("example.org".parse()?)?;
//! publisher.publish(other.mint(&"spiffe://example.org/server".parse()?)?, BundleSet::new().with(other.bundle()))?;
//! assert!(peer.reverify(&identity, SystemTime::now()).is_err());
//! # }
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::cell::RefCell;
use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::SystemTime;

use rustls::CommonState;
use rustls_pki_types::CertificateDer;

use crate::svid::inspect_chain_facts;
use crate::{Identity, PeerRole, SpiffeId, SvidError, VerifiedPeer, verify_peer_chain};

/// The verified SPIFFE identity of a connection's peer. Cheap to clone.
#[derive(Clone)]
pub struct PeerIdentity {
    inner: Arc<PeerInner>,
}

struct PeerInner {
    id: SpiffeId,
    chain: Vec<CertificateDer<'static>>,
    role: PeerRole,
    not_after: SystemTime,
    /// The newest snapshot generation the chain is known to verify under.
    verified_generation: AtomicU64,
}

// === impl PeerIdentity ===

impl PeerIdentity {
    /// The identity of a TLS connection's peer, after a completed handshake in which
    /// zt's verifier accepted it.
    ///
    /// `verified_since` is the [`Identity::generation`] read **before** the handshake
    /// began: the verifier used that snapshot or a newer one, so the first
    /// [`reverify`](Self::reverify) under that generation can skip the chain check.
    /// Passing 0 is always safe and costs one extra verification.
    ///
    /// # Errors
    ///
    /// [`SvidError::NoCertificate`] when the peer presented none, or the chain's
    /// SVID rule error.
    pub fn from_connection(
        conn: &CommonState,
        role: PeerRole,
        verified_since: u64,
    ) -> Result<Self, SvidError> {
        let presented = conn.peer_certificates().ok_or(SvidError::NoCertificate)?;
        let chain: Vec<_> = presented.iter().map(|c| c.clone().into_owned()).collect();
        // The verifier has just parsed and verified this very chain, normally in the
        // same poll on this thread: reuse what it established instead of parsing the
        // certificates again. Any mismatch falls back to parsing.
        if let Some((id, not_after, generation)) = recall_verified(role, &chain) {
            return Ok(Self::assemble(id, chain, role, not_after, generation));
        }
        Self::from_chain(chain, role, verified_since)
    }

    /// The identity of a peer that presented `chain` (leaf first). The chain's SVID
    /// rules are checked here; its trust is established by [`reverify`](Self::reverify)
    /// unless `verified_since` vouches for it as in
    /// [`from_connection`](Self::from_connection).
    ///
    /// # Errors
    ///
    /// The chain's SVID rule error.
    pub fn from_chain(
        chain: Vec<CertificateDer<'static>>,
        role: PeerRole,
        verified_since: u64,
    ) -> Result<Self, SvidError> {
        let (id, not_after) = inspect_chain_facts(&chain)?;
        Ok(Self::assemble(id, chain, role, not_after, verified_since))
    }

    fn assemble(
        id: SpiffeId,
        chain: Vec<CertificateDer<'static>>,
        role: PeerRole,
        not_after: SystemTime,
        verified_generation: u64,
    ) -> Self {
        Self {
            inner: Arc::new(PeerInner {
                id,
                chain,
                role,
                not_after,
                verified_generation: AtomicU64::new(verified_generation),
            }),
        }
    }

    /// The peer's SPIFFE ID.
    pub fn id(&self) -> &SpiffeId {
        &self.inner.id
    }

    /// The peer's chain, leaf first.
    pub fn chain(&self) -> &[CertificateDer<'static>] {
        &self.inner.chain
    }

    /// The peer's leaf certificate.
    pub fn leaf(&self) -> Option<&CertificateDer<'static>> {
        self.inner.chain.first()
    }

    /// Which TLS role the peer plays.
    pub fn role(&self) -> PeerRole {
        self.inner.role
    }

    /// When the first certificate of the peer's chain expires.
    pub fn not_after(&self) -> SystemTime {
        self.inner.not_after
    }

    /// The newest snapshot generation the peer is known to verify under (0: none).
    pub fn verified_generation(&self) -> u64 {
        self.inner.verified_generation.load(Ordering::Acquire)
    }

    /// Checks that the peer is still trusted now: its chain has not expired, and it
    /// verifies against the bundles of the serving snapshot.
    ///
    /// # Errors
    ///
    /// [`SvidError::Expired`] once the chain expired; [`SvidError::NoBundle`] when no
    /// snapshot serves or it lacks the peer's trust domain; any verification error
    /// against a changed bundle.
    pub fn reverify(&self, identity: &Identity, now: SystemTime) -> Result<(), SvidError> {
        // notAfter is inclusive (RFC 5280 §4.1.2.5), as webpki treats it.
        if now > self.inner.not_after {
            return Err(SvidError::Expired);
        }
        let snapshot = identity.load();
        let Some(snapshot) = snapshot.as_ref() else {
            return Err(SvidError::NoBundle(self.inner.id.trust_domain().clone()));
        };
        let generation = snapshot.generation();
        if generation == self.inner.verified_generation.load(Ordering::Acquire) {
            return Ok(());
        }
        verify_peer_chain(
            &self.inner.chain,
            snapshot.bundles(),
            self.inner.role,
            identity.crypto_provider(),
            now,
        )?;
        self.inner
            .verified_generation
            .fetch_max(generation, Ordering::AcqRel);
        Ok(())
    }
}

/// The chain zt's verifier accepted last on this thread, with what it established.
struct LastVerified {
    role: PeerRole,
    chain: Vec<CertificateDer<'static>>,
    id: SpiffeId,
    not_after: SystemTime,
    generation: u64,
}

thread_local! {
    static LAST_VERIFIED: RefCell<Option<LastVerified>> = const { RefCell::new(None) };
}

/// Records that the verifier accepted `chain` for `role` under snapshot `generation`.
pub(crate) fn remember_verified(
    role: PeerRole,
    chain: &[CertificateDer<'_>],
    verified: &VerifiedPeer,
    generation: u64,
) {
    LAST_VERIFIED.with(|slot| {
        if let Ok(mut slot) = slot.try_borrow_mut() {
            *slot = Some(LastVerified {
                role,
                chain: chain.iter().map(|c| c.clone().into_owned()).collect(),
                id: verified.id().clone(),
                not_after: verified.not_after(),
                generation,
            });
        }
    });
}

/// What the verifier established about exactly this chain for this role, if it was
/// the last one it accepted on this thread. Verification depends only on the chain,
/// the role and the snapshot, so the recorded generation vouches for the chain.
fn recall_verified(
    role: PeerRole,
    chain: &[CertificateDer<'static>],
) -> Option<(SpiffeId, SystemTime, u64)> {
    LAST_VERIFIED.with(|slot| {
        let slot = slot.try_borrow().ok()?;
        let last = slot.as_ref()?;
        (last.role == role && last.chain == chain)
            .then(|| (last.id.clone(), last.not_after, last.generation))
    })
}

impl fmt::Debug for PeerIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PeerIdentity")
            .field("id", &self.inner.id.as_str())
            .field("role", &self.inner.role)
            .field("not_after", &self.inner.not_after)
            .finish_non_exhaustive()
    }
}
