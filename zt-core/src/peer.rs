//! The verified identity of the other end of a connection.
//!
//! A [`PeerIdentity`] is built once per connection after the handshake and travels
//! with every request on it. [`PeerIdentity::reverify`] re-checks it against the
//! serving snapshot: when the snapshot has not changed since the last check, that is
//! one atomic load and a time comparison; when it has, the chain is verified again
//! against today's bundle, once per distinct chain: every connection that presented
//! the same chain finds the result in the new snapshot's record of verified chains,
//! with the time checked against the whole chain's validity again.
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
//! let peer = PeerIdentity::from_chain(client.chain().to_vec(), PeerRole::Client)?;
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

use std::collections::VecDeque;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, SystemTime};

use rustls::CommonState;
use rustls_pki_types::CertificateDer;

use crate::error::{PeerRole, SvidError};
use crate::id::SpiffeId;
use crate::identity::Identity;
use crate::identity::Snapshot;
use crate::policy::PeerRules;
use crate::svid::VerifiedPeer;
use crate::svid::inspect_chain_facts;
use crate::verified::ChainDigest;

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
    /// The stamp of the newest snapshot the chain is known to verify under (0:
    /// none). Stamps are unique in the process, across identities.
    verified_stamp: AtomicU64,
    /// The chain's key in each snapshot's verified chains, computed at most once.
    digest: OnceLock<Option<ChainDigest>>,
    /// The policy rules that can match `id`, for the policy that last decided
    /// one of this connection's requests.
    policy_rules: PeerRules,
}

// === impl PeerIdentity ===

impl PeerIdentity {
    /// The identity of a TLS connection's peer, after a completed handshake in which
    /// the verifier of `identity` (a config from [`tls`](crate::tls) built on it)
    /// accepted it.
    ///
    /// What that verifier established about exactly this chain — the ID, the
    /// expiry, and the snapshot it verified under — is taken from `identity`'s own
    /// record, so the chain is not parsed again and the first
    /// [`reverify`](Self::reverify) under the same snapshot is one atomic load.
    /// Nothing a caller passes vouches for the chain: without a record (another
    /// identity's verifier, another role, a chain it never accepted) the chain is
    /// parsed and left to `reverify`.
    ///
    /// # Errors
    ///
    /// [`SvidError::NoCertificate`] when the peer presented none, or the chain's
    /// SVID rule error.
    pub fn from_connection(
        conn: &CommonState,
        role: PeerRole,
        identity: &Identity,
    ) -> Result<Self, SvidError> {
        let presented = conn.peer_certificates().ok_or(SvidError::NoCertificate)?;
        let chain: Vec<_> = presented.iter().map(|c| c.clone().into_owned()).collect();
        if let Some(record) = identity.verifications().take(role, &chain) {
            let peer = Self::assemble(record.id, chain, role, record.not_after, record.stamp);
            if let Some(digest) = record.digest {
                let _ = peer.inner.digest.set(Some(digest));
            }
            return Ok(peer);
        }
        Self::from_chain(chain, role)
    }

    /// The identity of a peer that presented `chain` (leaf first). The chain's SVID
    /// rules are checked here; its trust is established by the first
    /// [`reverify`](Self::reverify).
    ///
    /// # Errors
    ///
    /// The chain's SVID rule error.
    pub fn from_chain(
        chain: Vec<CertificateDer<'static>>,
        role: PeerRole,
    ) -> Result<Self, SvidError> {
        let (id, not_after) = inspect_chain_facts(&chain)?;
        Ok(Self::assemble(id, chain, role, not_after, 0))
    }

    fn assemble(
        id: SpiffeId,
        chain: Vec<CertificateDer<'static>>,
        role: PeerRole,
        not_after: SystemTime,
        verified_stamp: u64,
    ) -> Self {
        Self {
            inner: Arc::new(PeerInner {
                id,
                chain,
                role,
                not_after,
                verified_stamp: AtomicU64::new(verified_stamp),
                digest: OnceLock::new(),
                policy_rules: PeerRules::default(),
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

    /// How long after `now` the peer's chain stays valid, for a timer that ends
    /// the peer's connection when it expires: zero once it has expired, and at
    /// most a year.
    ///
    /// A connection of a peer whose SVID is valid for longer than a year closes
    /// after a year instead, which only makes the peer reconnect and be verified
    /// anew; the timer never fires after the expiry, and never needs a deadline
    /// years ahead, which not every timer holds (tokio's wheel spans about two
    /// years).
    ///
    /// ```
    /// # #[cfg(feature = "dev")] {
    /// use std::time::{Duration, SystemTime};
    /// use zt_core::{PeerIdentity, PeerRole, dev::DevCa};
    ///
    /// let ca = DevCa::new("example.org".parse()?)?;
    /// let svid = ca.mint(&"spiffe://example.org/client".parse()?)?;
    /// let peer = PeerIdentity::from_chain(svid.chain().to_vec(), PeerRole::Client)?;
    /// let now = SystemTime::now();
    /// assert!(peer.time_left(now) > Duration::ZERO);
    /// assert_eq!(peer.time_left(peer.not_after() + Duration::from_secs(1)), Duration::ZERO);
    /// # }
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn time_left(&self, now: SystemTime) -> Duration {
        self.inner
            .not_after
            .duration_since(now)
            .map_or(Duration::ZERO, |left| left.min(MAX_TIME_LEFT))
    }

    /// What [`Policy::decide_peer`](crate::Policy::decide_peer) keeps for this
    /// peer.
    pub(crate) fn policy_rules(&self) -> &PeerRules {
        &self.inner.policy_rules
    }

    /// Whether the peer is known to verify under `snapshot` (so that
    /// [`reverify`](Self::reverify) against it is one atomic load).
    pub fn is_verified_under(&self, snapshot: &Snapshot) -> bool {
        self.inner.verified_stamp.load(Ordering::Acquire) == snapshot.stamp()
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
        // Counted here, the one place every caller (requests, client streams) goes
        // through; the hot path, a verified peer, records nothing.
        self.check(identity, now)
            .inspect_err(crate::metrics::reverify_failed)
    }

    fn check(&self, identity: &Identity, now: SystemTime) -> Result<(), SvidError> {
        // notAfter is inclusive (RFC 5280 §4.1.2.5), as webpki treats it.
        if now > self.inner.not_after {
            return Err(SvidError::Expired);
        }
        let snapshot = identity.load();
        let Some(snapshot) = snapshot.as_ref() else {
            return Err(SvidError::NoBundle(self.inner.id.trust_domain().clone()));
        };
        let stamp = snapshot.stamp();
        if stamp == self.inner.verified_stamp.load(Ordering::Acquire) {
            return Ok(());
        }
        // A new snapshot: one verification per distinct chain, shared by every
        // connection that presented it.
        let provider = identity.crypto_provider();
        let digest = self
            .inner
            .digest
            .get_or_init(|| ChainDigest::of(provider, &self.inner.chain));
        snapshot.verify_peer(
            &self.inner.chain,
            digest.as_ref(),
            self.inner.role,
            provider,
            now,
        )?;
        // Stamps grow with every publication, so the newest verification wins a race.
        self.inner.verified_stamp.fetch_max(stamp, Ordering::AcqRel);
        Ok(())
    }
}

/// A connection's peer that presented no client certificate, on a server that
/// requests one without requiring it (zt-tower's
/// `ServerBuilder::allow_anonymous`).
///
/// The server puts it into the requests of such a connection instead of a
/// [`PeerIdentity`]: an anonymous request is always marked as one, never
/// inferred from a missing identity, which stays a setup error. The policy
/// decides it with [`Policy::decide_anonymous`](crate::Policy::decide_anonymous):
/// only rules written for anonymous peers (`from: {unauthenticated: true}`)
/// admit it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub struct AnonymousPeer;

impl AnonymousPeer {
    /// The marker.
    #[must_use]
    pub const fn new() -> Self {
        Self
    }
}

/// Who is at the other end of a server's connection: a peer verified by its
/// X.509-SVID or, on a server that admits them, an anonymous peer.
///
/// Displays as the peer's SPIFFE ID, or `anonymous`.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum Principal {
    /// A peer that presented an X.509-SVID the verifier accepted.
    Verified(PeerIdentity),
    /// A peer that presented no certificate.
    Anonymous(AnonymousPeer),
}

// === impl Principal ===

impl Principal {
    /// The verified identity; `None` for an anonymous peer.
    #[must_use]
    pub fn verified(&self) -> Option<&PeerIdentity> {
        match self {
            Self::Verified(peer) => Some(peer),
            Self::Anonymous(_) => None,
        }
    }

    /// Whether the peer presented no certificate.
    #[must_use]
    pub fn is_anonymous(&self) -> bool {
        matches!(self, Self::Anonymous(_))
    }
}

impl From<PeerIdentity> for Principal {
    fn from(peer: PeerIdentity) -> Self {
        Self::Verified(peer)
    }
}

impl From<AnonymousPeer> for Principal {
    fn from(peer: AnonymousPeer) -> Self {
        Self::Anonymous(peer)
    }
}

impl fmt::Display for Principal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Verified(peer) => fmt::Display::fmt(peer.id(), f),
            Self::Anonymous(_) => f.write_str("anonymous"),
        }
    }
}

/// The most [`PeerIdentity::time_left`] answers.
const MAX_TIME_LEFT: Duration = Duration::from_secs(365 * 24 * 3600);

/// How many verifier results an identity keeps for handshakes still finishing.
/// A record is taken when its connection's `PeerIdentity` is built; one never
/// taken (a handshake that failed after the certificate was verified) ages out.
const MAX_RECORDS: usize = 64;

/// What an identity's verifier established about a chain it accepted.
struct Record {
    role: PeerRole,
    chain: Vec<CertificateDer<'static>>,
    id: SpiffeId,
    not_after: SystemTime,
    stamp: u64,
    digest: Option<ChainDigest>,
}

/// The verifier-to-`PeerIdentity` handoff of one identity: its verifiers record
/// each chain they accept, `PeerIdentity::from_connection` takes the record for
/// exactly the chain its connection presented. Verification depends only on the
/// chain, the role and the snapshot, so a record vouches for its chain on any
/// connection of this identity, and for nothing on another identity's.
#[derive(Default)]
pub(crate) struct Verifications {
    records: Mutex<VecDeque<Record>>,
}

impl Verifications {
    pub(crate) fn record(
        &self,
        role: PeerRole,
        chain: &[CertificateDer<'_>],
        verified: &VerifiedPeer,
        stamp: u64,
        digest: Option<ChainDigest>,
    ) {
        let record = Record {
            role,
            chain: chain.iter().map(|c| c.clone().into_owned()).collect(),
            id: verified.id().clone(),
            not_after: verified.not_after(),
            stamp,
            digest,
        };
        // A poisoned lock only means another thread panicked while holding it;
        // the queue itself is always consistent.
        let mut records = self
            .records
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if records.len() >= MAX_RECORDS {
            records.pop_front();
        }
        records.push_back(record);
    }

    fn take(&self, role: PeerRole, chain: &[CertificateDer<'static>]) -> Option<Record> {
        let mut records = self
            .records
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        // The newest record first: it is normally this connection's.
        let position = records
            .iter()
            .rposition(|r| r.role == role && r.chain == chain)?;
        records.remove(position)
    }
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
