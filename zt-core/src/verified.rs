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
        let sha256 = provider.cipher_suites.iter().find_map(|suite| {
            let hash = suite.tls13()?.common.hash_provider;
            (hash.algorithm() == HashAlgorithm::SHA256).then_some(hash)
        })?;
        let mut context = sha256.start();
        context.update(&(chain.len() as u64).to_be_bytes());
        for cert in chain {
            context.update(&(cert.len() as u64).to_be_bytes());
            context.update(cert);
        }
        let output = context.finish();
        output.as_ref().try_into().ok().map(Self)
    }
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
    /// `bundles` must be the bundles of the snapshot that owns this record.
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
