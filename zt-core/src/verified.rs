//! The chains a snapshot has verified, so that a bundle rotation costs one
//! verification per distinct peer chain rather than one per connection.
//!
//! Each [`Snapshot`](crate::Snapshot) owns one [`VerifiedChains`]: a new snapshot
//! starts with an empty one by construction, and an entry can only ever answer
//! for the bundles it was verified against. An entry is keyed by the peer's TLS
//! role and the SHA-256 digest of the whole presented chain (a peer chooses those
//! bytes, so the digest must resist collisions), and holds what verification
//! established: the SPIFFE ID and the validity window of every presented
//! certificate (the latest `notBefore`, the earliest `notAfter`; an intermediate
//! may expire before the leaf). Every hit checks `now` against that window again,
//! and anything outside it is verified afresh. Failures are never kept.
//!
//! The map holds at most [`MAX_VERIFIED_CHAINS`] entries and never evicts: once
//! full, further chains are verified on every check without being kept, which
//! costs time, never a security property. No lock is held while a chain is
//! verified; two threads verifying the same chain at once both verify, and the
//! second result replaces the first (they are the same).

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::SystemTime;

use rustls::crypto::CryptoProvider;
use rustls::crypto::hash::HashAlgorithm;
use rustls_pki_types::CertificateDer;

use crate::bundle::BundleSet;
use crate::error::{PeerRole, SvidError};
use crate::svid::{VerifiedPeer, verify_peer_chain};

/// The most distinct (role, chain) pairs one snapshot remembers as verified.
///
/// An entry is an ID and two times, about 100 bytes with the map's overhead, so a
/// full map stays under half a megabyte. A snapshot lives until our SVID or a
/// bundle changes (SVIDs rotate hourly in common deployments), so this is the
/// number of distinct peer SVIDs seen within one SVID lifetime.
pub(crate) const MAX_VERIFIED_CHAINS: usize = 4096;

/// The SHA-256 digest of a presented chain (see [`ChainDigest::of`]).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct ChainDigest([u8; 32]);

impl ChainDigest {
    /// The digest of `chain` with `provider`'s SHA-256, or `None` when the provider
    /// offers none (then nothing is cached). Each certificate is prefixed with its
    /// length and the whole with the count, so no two chains encode alike.
    pub(crate) fn of(provider: &CryptoProvider, chain: &[CertificateDer<'_>]) -> Option<Self> {
        let mut context = sha256(provider)?.start();
        context.update(&(chain.len() as u64).to_be_bytes());
        for cert in chain {
            context.update(&(cert.len() as u64).to_be_bytes());
            context.update(cert);
        }
        let output = context.finish();
        output.as_ref().try_into().ok().map(Self)
    }
}

/// `provider`'s SHA-256, from its TLS 1.3 suites; `None` when it offers none.
pub(crate) fn sha256(provider: &CryptoProvider) -> Option<&'static dyn rustls::crypto::hash::Hash> {
    provider.cipher_suites.iter().find_map(|suite| {
        let hash = suite.tls13()?.common.hash_provider;
        (hash.algorithm() == HashAlgorithm::SHA256).then_some(hash)
    })
}

impl fmt::Debug for ChainDigest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ChainDigest(")?;
        for byte in &self.0 {
            write!(f, "{byte:02x}")?;
        }
        f.write_str(")")
    }
}

/// One snapshot's record of the peer chains that verified against its bundles.
pub(crate) struct VerifiedChains {
    /// The provider the snapshot's identity verifies with: results obtained with
    /// another one (a TLS config may name its own) are neither used nor kept,
    /// since it may support other signature algorithms.
    provider: Arc<CryptoProvider>,
    entries: Mutex<HashMap<(PeerRole, ChainDigest), VerifiedPeer>>,
    /// How many chains were verified through this record, for tests.
    #[cfg(test)]
    verifications: std::sync::atomic::AtomicUsize,
}

impl VerifiedChains {
    pub(crate) fn new(provider: Arc<CryptoProvider>) -> Self {
        Self {
            provider,
            entries: Mutex::new(HashMap::new()),
            #[cfg(test)]
            verifications: std::sync::atomic::AtomicUsize::new(0),
        }
    }

    /// Verifies `chain` (whose digest is `digest`, when known) for `role` against
    /// `bundles` at `now`, answering from the record when the same chain verified
    /// for the same role before and `now` is within its validity window.
    ///
    /// `bundles` must be the bundles of the snapshot that owns this record, which
    /// is why callers go through `Snapshot::verify_peer`.
    pub(crate) fn verify(
        &self,
        chain: &[CertificateDer<'_>],
        digest: Option<&ChainDigest>,
        bundles: &BundleSet,
        role: PeerRole,
        provider: &Arc<CryptoProvider>,
        now: SystemTime,
    ) -> Result<VerifiedPeer, SvidError> {
        let key = digest
            .filter(|_| Arc::ptr_eq(provider, &self.provider))
            .map(|digest| (role, *digest));
        if let Some(key) = &key
            && let Some(verified) = self.lookup(key, now)
        {
            return Ok(verified);
        }
        #[cfg(test)]
        self.verifications
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let verified = verify_peer_chain(chain, bundles, role, provider, now)?;
        if let Some(key) = key {
            self.keep(key, &verified);
        }
        Ok(verified)
    }

    fn lookup(&self, key: &(PeerRole, ChainDigest), now: SystemTime) -> Option<VerifiedPeer> {
        let entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        let verified = entries.get(key)?;
        // Both ends inclusive, as verification treats them (RFC 5280 §4.1.2.5).
        (verified.not_before() <= now && now <= verified.not_after()).then(|| verified.clone())
    }

    fn keep(&self, key: (PeerRole, ChainDigest), verified: &VerifiedPeer) {
        // A poisoned lock only means another thread panicked while holding it;
        // the map itself is always consistent.
        let mut entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        if entries.len() < MAX_VERIFIED_CHAINS || entries.contains_key(&key) {
            entries.insert(key, verified.clone());
        }
    }

    /// How many entries the record holds.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.entries
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }

    /// How many chains were verified (not answered from the record) through it.
    #[cfg(test)]
    pub(crate) fn verifications(&self) -> usize {
        self.verifications
            .load(std::sync::atomic::Ordering::Relaxed)
    }
}

impl fmt::Debug for VerifiedChains {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let entries = self.entries.lock().map_or(0, |entries| entries.len());
        f.debug_struct("VerifiedChains")
            .field("entries", &entries)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
mod tests {
    use std::time::Duration;

    use zt_testkit::ca::{ExtendedKeyUsagePurpose, LeafSpec, TestCa};

    use super::*;
    use crate::bundle::X509Bundle;
    use crate::identity::{Identity, IdentityPublisher, Snapshot};
    use crate::peer::PeerIdentity;
    use crate::svid::X509Svid;

    const MINUTE: Duration = Duration::from_secs(60);

    fn bundle(ca: &TestCa) -> X509Bundle {
        X509Bundle::new(
            ca.trust_domain().parse().unwrap(),
            vec![ca.root_cert().clone()],
        )
        .unwrap()
    }

    /// Publishes a new snapshot serving a fresh SVID of `own` with `trusted`'s
    /// bundles, so every publication is a new snapshot.
    fn publish(publisher: &IdentityPublisher, own: &TestCa, trusted: &[&TestCa]) -> Arc<Snapshot> {
        let cred = own.valid(&format!("spiffe://{}/server", own.trust_domain()));
        let svid = X509Svid::from_der(cred.chain, cred.key).unwrap();
        let bundles = trusted
            .iter()
            .fold(BundleSet::new(), |set, ca| set.with(bundle(ca)));
        publisher.publish(svid, bundles).unwrap()
    }

    fn chains(ca: &TestCa, count: usize) -> Vec<Vec<CertificateDer<'static>>> {
        (0..count)
            .map(|i| {
                ca.valid(&format!("spiffe://{}/client/{i}", ca.trust_domain()))
                    .chain
            })
            .collect()
    }

    /// `peers` peers over `chains`, round robin.
    fn peers(chains: &[Vec<CertificateDer<'static>>], count: usize) -> Vec<PeerIdentity> {
        (0..count)
            .map(|i| {
                PeerIdentity::from_chain(chains[i % chains.len()].clone(), PeerRole::Client)
                    .unwrap()
            })
            .collect()
    }

    fn current(identity: &Identity) -> Arc<Snapshot> {
        identity.snapshot().unwrap()
    }

    fn provider(identity: &Identity) -> Arc<CryptoProvider> {
        Arc::clone(identity.crypto_provider())
    }

    #[test]
    fn a_rotation_verifies_each_distinct_chain_once_not_each_connection() {
        let ca = TestCa::new("example.org");
        let publisher = IdentityPublisher::new().unwrap();
        let identity = publisher.identity();
        publish(&publisher, &ca, &[&ca]);
        let chains = chains(&ca, 4);
        let peers = peers(&chains, 40);
        let now = SystemTime::now();

        for peer in &peers {
            peer.reverify(&identity, now).unwrap();
        }
        assert_eq!(current(&identity).verified_chains().verifications(), 4);

        let rotated = publish(&publisher, &ca, &[&ca]);
        assert_eq!(rotated.verified_chains().len(), 0);
        for peer in &peers {
            assert!(!peer.is_verified_under(&rotated));
            peer.reverify(&identity, now).unwrap();
            assert!(peer.is_verified_under(&rotated));
        }
        assert_eq!(rotated.verified_chains().verifications(), 4);
        assert_eq!(rotated.verified_chains().len(), 4);
    }

    #[test]
    fn a_cached_chain_stops_verifying_when_its_intermediate_expires_before_its_leaf() {
        let now = SystemTime::now();
        let root = TestCa::new("example.org");
        let intermediate = root.intermediate_valid_between(now - MINUTE, now + 10 * MINUTE);
        // The leaf outlives its issuer by most of an hour.
        let chain = intermediate
            .issue(&LeafSpec::valid("spiffe://example.org/client"))
            .chain;
        let publisher = IdentityPublisher::new().unwrap();
        let identity = publisher.identity();
        let snapshot = publish(&publisher, &root, &[&root]);
        let verified = snapshot.verified_chains();
        let provider = provider(&identity);
        let digest = ChainDigest::of(&provider, &chain);
        let verify = |at| {
            verified.verify(
                &chain,
                digest.as_ref(),
                snapshot.bundles(),
                PeerRole::Client,
                &provider,
                at,
            )
        };

        verify(now).unwrap();
        verify(now + 9 * MINUTE).unwrap();
        assert_eq!(verified.verifications(), 1, "answered from the record");
        let after = now + 11 * MINUTE;
        assert!(matches!(verify(after), Err(SvidError::Expired)));
        assert_eq!(verified.verifications(), 2, "verified again, and refused");

        let peer = PeerIdentity::from_chain(chain.clone(), PeerRole::Client).unwrap();
        peer.reverify(&identity, now).unwrap();
        assert!(matches!(
            peer.reverify(&identity, after),
            Err(SvidError::Expired)
        ));
    }

    #[test]
    fn a_withdrawn_trust_domain_fails_the_next_check_of_every_cached_chain() {
        let ours = TestCa::new("example.org");
        let theirs = TestCa::new("other.org");
        let publisher = IdentityPublisher::new().unwrap();
        let identity = publisher.identity();
        publish(&publisher, &ours, &[&ours, &theirs]);
        let peers = peers(&chains(&theirs, 3), 12);
        let now = SystemTime::now();
        for peer in &peers {
            peer.reverify(&identity, now).unwrap();
        }
        assert_eq!(current(&identity).verified_chains().len(), 3);

        publish(&publisher, &ours, &[&ours]);
        for peer in &peers {
            assert!(matches!(
                peer.reverify(&identity, now),
                Err(SvidError::NoBundle(_))
            ));
        }
        assert_eq!(current(&identity).verified_chains().len(), 0);
    }

    #[test]
    fn an_entry_of_one_snapshot_never_answers_for_the_next() {
        let old_ca = TestCa::new("example.org");
        let new_ca = TestCa::new("example.org");
        let publisher = IdentityPublisher::new().unwrap();
        let identity = publisher.identity();
        let first = publish(&publisher, &old_ca, &[&old_ca]);
        let chain = old_ca.valid("spiffe://example.org/client").chain;
        let provider = provider(&identity);
        let digest = ChainDigest::of(&provider, &chain);
        let now = SystemTime::now();
        let verify = |snapshot: &Snapshot| {
            snapshot.verified_chains().verify(
                &chain,
                digest.as_ref(),
                snapshot.bundles(),
                PeerRole::Client,
                &provider,
                now,
            )
        };
        verify(&first).unwrap();
        assert_eq!(first.verified_chains().len(), 1);

        // Same trust domain, another CA: the old chain is no longer trusted.
        let second = publish(&publisher, &new_ca, &[&new_ca]);
        assert!(matches!(verify(&second), Err(SvidError::UnknownIssuer(_))));
        assert_eq!(second.verified_chains().verifications(), 1);
        assert_eq!(second.verified_chains().len(), 0);
    }

    #[test]
    fn the_role_is_part_of_the_key() {
        let ca = TestCa::new("example.org");
        let publisher = IdentityPublisher::new().unwrap();
        let identity = publisher.identity();
        let snapshot = publish(&publisher, &ca, &[&ca]);
        let mut spec = LeafSpec::valid("spiffe://example.org/server-only");
        spec.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let chain = ca.issue(&spec).chain;
        let provider = provider(&identity);
        let digest = ChainDigest::of(&provider, &chain);
        let now = SystemTime::now();
        let verify = |role| {
            snapshot.verified_chains().verify(
                &chain,
                digest.as_ref(),
                snapshot.bundles(),
                role,
                &provider,
                now,
            )
        };

        verify(PeerRole::Server).unwrap();
        assert!(matches!(
            verify(PeerRole::Client),
            Err(SvidError::WrongUsage(PeerRole::Client))
        ));
        assert_eq!(snapshot.verified_chains().verifications(), 2);
        assert_eq!(snapshot.verified_chains().len(), 1);
    }

    #[test]
    fn refusals_are_not_kept() {
        let ca = TestCa::new("example.org");
        let publisher = IdentityPublisher::new().unwrap();
        let identity = publisher.identity();
        let snapshot = publish(&publisher, &ca, &[&ca]);
        let now = SystemTime::now();
        let chain = ca
            .issue(
                &LeafSpec::valid("spiffe://example.org/later")
                    .valid_between(now + 10 * MINUTE, now + 60 * MINUTE),
            )
            .chain;
        let provider = provider(&identity);
        let digest = ChainDigest::of(&provider, &chain);
        let verify = |at| {
            snapshot.verified_chains().verify(
                &chain,
                digest.as_ref(),
                snapshot.bundles(),
                PeerRole::Client,
                &provider,
                at,
            )
        };

        assert!(matches!(verify(now), Err(SvidError::NotYetValid)));
        assert_eq!(snapshot.verified_chains().len(), 0);
        verify(now + 11 * MINUTE).unwrap();
        // Before the window again (a clock stepped back): verified, and refused.
        assert!(matches!(verify(now), Err(SvidError::NotYetValid)));
        assert_eq!(snapshot.verified_chains().verifications(), 3);
    }

    #[test]
    fn results_of_another_crypto_provider_are_neither_used_nor_kept() {
        let ca = TestCa::new("example.org");
        let publisher = IdentityPublisher::new().unwrap();
        let snapshot = publish(&publisher, &ca, &[&ca]);
        let chain = ca.valid("spiffe://example.org/client").chain;
        let other = Arc::new((*crate::default_provider().unwrap()).clone());
        let digest = ChainDigest::of(&other, &chain);
        let now = SystemTime::now();
        for _ in 0..2 {
            snapshot
                .verified_chains()
                .verify(
                    &chain,
                    digest.as_ref(),
                    snapshot.bundles(),
                    PeerRole::Client,
                    &other,
                    now,
                )
                .unwrap();
        }
        assert_eq!(snapshot.verified_chains().verifications(), 2);
        assert_eq!(snapshot.verified_chains().len(), 0);
    }

    #[test]
    fn the_record_holds_at_most_its_bound_and_verifies_the_rest_without_keeping_them() {
        let ca = TestCa::new("example.org");
        let publisher = IdentityPublisher::new().unwrap();
        let identity = publisher.identity();
        let snapshot = publish(&publisher, &ca, &[&ca]);
        let verified = snapshot.verified_chains();
        let chain = ca.valid("spiffe://example.org/client").chain;
        let provider = provider(&identity);
        let now = SystemTime::now();
        let result = verified
            .verify(
                &chain,
                None,
                snapshot.bundles(),
                PeerRole::Client,
                &provider,
                now,
            )
            .unwrap();
        for i in 0..MAX_VERIFIED_CHAINS + 10 {
            let mut digest = [0; 32];
            digest[..8].copy_from_slice(&(i as u64).to_be_bytes());
            verified.keep((PeerRole::Client, ChainDigest(digest)), &result);
        }
        assert_eq!(verified.len(), MAX_VERIFIED_CHAINS);

        let digest = ChainDigest::of(&provider, &chain);
        for _ in 0..3 {
            verified
                .verify(
                    &chain,
                    digest.as_ref(),
                    snapshot.bundles(),
                    PeerRole::Client,
                    &provider,
                    now,
                )
                .unwrap();
        }
        assert_eq!(verified.verifications(), 4, "one before, three once full");
        assert_eq!(verified.len(), MAX_VERIFIED_CHAINS);
    }

    #[test]
    fn chains_that_differ_in_how_their_bytes_split_have_different_digests() {
        let provider = crate::default_provider().unwrap();
        let ab = [
            CertificateDer::from(vec![1, 2]),
            CertificateDer::from(vec![3]),
        ];
        let a_b = [
            CertificateDer::from(vec![1]),
            CertificateDer::from(vec![2, 3]),
        ];
        let whole = [CertificateDer::from(vec![1, 2, 3])];
        let digests =
            [&ab[..], &a_b[..], &whole[..]].map(|c| ChainDigest::of(&provider, c).unwrap());
        assert_ne!(digests[0], digests[1]);
        assert_ne!(digests[0], digests[2]);
        assert_ne!(digests[1], digests[2]);
    }

    #[test]
    fn racing_checks_of_one_chain_all_succeed_and_keep_one_entry() {
        let ca = TestCa::new("example.org");
        let publisher = IdentityPublisher::new().unwrap();
        let identity = publisher.identity();
        publish(&publisher, &ca, &[&ca]);
        let peers = peers(&chains(&ca, 1), 8);
        let now = SystemTime::now();
        std::thread::scope(|scope| {
            for peer in &peers {
                let identity = &identity;
                scope.spawn(move || peer.reverify(identity, now).unwrap());
            }
        });
        let snapshot = current(&identity);
        assert_eq!(snapshot.verified_chains().len(), 1);
        assert!((1..=8).contains(&snapshot.verified_chains().verifications()));
    }
}
