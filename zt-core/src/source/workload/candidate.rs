//! One `FetchX509SVID` response turned into a candidate identity: the SVID the
//! picker chooses, its bundle and the federated bundles, each entry checked as
//! the SPIFFE Workload API specification says before anything is published.

use std::error::Error as StdError;

use rustls::crypto::CryptoProvider;
use rustls_pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};

use crate::source::workload_proto::{X509SvidEntry, X509SvidResponse, split_der};

use crate::bundle::{BundleSet, X509Bundle};
use crate::id::TrustDomain;
use crate::svid::X509Svid;

/// What an update offers to publish.
pub(super) struct Candidate {
    pub(super) svid: X509Svid,
    pub(super) bundles: BundleSet,
    /// Why each other SVID of the update that is malformed was left out.
    pub(super) ignored: Vec<String>,
}

/// The picked entry's SPIFFE ID as sent, escaped for logs.
pub(super) fn picked_id(entry: &X509SvidEntry) -> String {
    format!("{:?}", entry.spiffe_id)
}

/// One entry's SVID and its own trust domain's bundle, checked as a whole: the
/// chain and key parse and match, the entry's `spiffe_id` is the SVID's own ID,
/// and the bundle parses.
pub(super) fn entry(entry: &X509SvidEntry) -> Result<(X509Svid, X509Bundle), String> {
    let svid = X509Svid::from_der(
        split_der(&entry.x509_svid).map_err(|err| format!("invalid X.509-SVID: {err}"))?,
        PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(entry.x509_svid_key.clone())),
    )
    .map_err(|err| format!("invalid X.509-SVID: {err}"))?;
    if svid.id().as_str() != entry.spiffe_id {
        return Err(format!(
            "the entry names {:?} but its X.509-SVID is {}",
            entry.spiffe_id,
            svid.id()
        ));
    }
    let own = bundle(svid.id().trust_domain().clone(), &entry.bundle)?;
    Ok((svid, own))
}

/// Another entry than the picked one, checked as publishing would check it: as
/// [`entry`], and its key matches its certificate and its chain verifies against
/// its own bundle now.
pub(super) fn other_entry(
    other: &X509SvidEntry,
    provider: &CryptoProvider,
) -> Result<(X509Svid, X509Bundle), String> {
    let (svid, own) = entry(other)?;
    svid.certified_key(provider)
        .map_err(|err| format!("invalid X.509-SVID: {err}"))?;
    let bundles = BundleSet::new().with(own.clone());
    svid.verify(&bundles, provider, std::time::SystemTime::now())
        .map_err(|err| format!("X.509-SVID does not verify against its bundle: {err}"))?;
    Ok((svid, own))
}

/// The candidate of an update: the picked SVID, its own trust domain's bundle as
/// the SVID entry carries it, the bundles of the update's other SVIDs' trust
/// domains, and the federated bundles.
///
/// - The picked entry must be valid as a whole, or the update is rejected.
/// - Another entry that is malformed is left out (its bundle is not trusted) and
///   reported: it does not make the picked SVID less valid.
/// - A federated entry for a trust domain of the update's own SVIDs would replace
///   the bundle the Workload API gave with the SVID: it is refused, and the update
///   with it, as the file source refuses one.
pub(super) fn candidate(
    picked: &X509SvidEntry,
    update: &X509SvidResponse,
    provider: &CryptoProvider,
) -> Result<Candidate, String> {
    let (svid, own_bundle) = entry(picked)?;
    let mut bundles = BundleSet::new();
    let mut own_domains = vec![own_bundle.trust_domain().clone()];
    bundles.insert(own_bundle);
    let mut ignored = Vec::new();
    for (index, other) in update.svids.iter().enumerate() {
        if std::ptr::eq(other, picked) {
            continue;
        }
        match other_entry(other, provider) {
            // Another SVID's bundle, for its trust domain (the first entry of a
            // trust domain gives it, the picked one before all).
            Ok((_, other_bundle)) => {
                let td = other_bundle.trust_domain().clone();
                if !own_domains.contains(&td) {
                    bundles.insert(other_bundle);
                    own_domains.push(td);
                }
            }
            Err(reason) => ignored.push(format!("SVID {index} ({}): {reason}", picked_id(other))),
        }
    }
    let mut federated: Vec<_> = update.federated_bundles.iter().collect();
    federated.sort_unstable_by_key(|(name, _)| name.as_str());
    for (name, der) in federated {
        let td = federated_trust_domain(name)?;
        if own_domains.contains(&td) {
            return Err(format!(
                "federated bundle for trust domain {td}, which is this workload's own: \
                 refused, a federated entry never replaces the bundle issued with the SVID"
            ));
        }
        bundles.insert(bundle(td, der)?);
    }
    Ok(Candidate {
        svid,
        bundles,
        ignored,
    })
}

/// A `federated_bundles` key: the trust domain's SPIFFE ID (`spiffe://example.org`),
/// or, from some servers, the bare name.
pub(super) fn federated_trust_domain(name: &str) -> Result<TrustDomain, String> {
    let bare = name.strip_prefix("spiffe://").unwrap_or(name);
    bare.parse()
        .map_err(|err| format!("invalid federated trust domain {name:?}: {err}"))
}

pub(super) fn bundle(trust_domain: TrustDomain, der: &[u8]) -> Result<X509Bundle, String> {
    let authorities = split_der(der)
        .map_err(|err| format!("invalid bundle for trust domain {trust_domain}: {err}"))?;
    X509Bundle::new(trust_domain.clone(), authorities)
        .map_err(|err| format!("invalid bundle for trust domain {trust_domain}: {err}"))
}

/// An error with its sources, skipping a source whose text the outer message already
/// repeats.
pub(super) fn error_chain(err: &(dyn StdError + 'static)) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(inner) = source {
        let inner_text = inner.to_string();
        if !text.contains(&inner_text) {
            text.push_str(": ");
            text.push_str(&inner_text);
        }
        source = inner.source();
    }
    text
}
