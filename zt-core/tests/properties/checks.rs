//! Properties of zt-core's parsers, shared by `tests/properties.rs` (bounded runs on
//! every `cargo test`) and the libFuzzer targets in `fuzz/` (open-ended runs), so both
//! check exactly the same things.
//!
//! Every check takes untrusted input, runs it through the public API and panics when a
//! property does not hold. Nothing else may make them panic: a panic inside zt-core is
//! itself a finding.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use std::sync::{Arc, LazyLock};
use std::time::{Duration, SystemTime};

use base64::Engine as _;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use x509_parser::prelude::{FromDer, X509Certificate};
use zt_core::dev::{DevCa, SvidParams};
use zt_core::id::{MAX_ID_LEN, MAX_TRUST_DOMAIN_LEN};
use zt_core::rustls::crypto::CryptoProvider;
use zt_core::{
    BundleSet, IdError, IdMatcher, MAX_AUTHORITIES, MAX_CHAIN_LEN, PatternError, PeerIdentity,
    PeerRole, SpiffeId, TrustDomain, X509Bundle, X509Svid, verify_peer_chain,
};

/// The trust domain of the fixture and of every bundle the checks build.
pub(crate) const TRUST_DOMAIN: &str = "example.org";

/// A real dev CA hierarchy and SVIDs minted by it, created once per process.
///
/// Keys are fresh in every process, so certificates from a saved corpus do not verify
/// against this bundle; the checks that need a valid signature mutate this fixture's
/// chain instead of reading certificates from their input.
pub(crate) struct Fixture {
    /// `spiffe://example.org/api`.
    pub(crate) id: SpiffeId,
    /// Leaf of `id`, then the intermediate that signed it.
    pub(crate) chain: Vec<CertificateDer<'static>>,
    /// The leaf's private key.
    pub(crate) key: PrivateKeyDer<'static>,
    /// `chain` as PEM.
    pub(crate) chain_pem: String,
    /// `key` as PKCS#8 PEM.
    pub(crate) key_pem: String,
    /// A second SVID of the same intermediate, `spiffe://example.org/web`.
    pub(crate) other_id: SpiffeId,
    /// Leaf of `other_id`, then the intermediate.
    pub(crate) other_chain: Vec<CertificateDer<'static>>,
    /// The root CA, the bundle's only authority.
    pub(crate) root: CertificateDer<'static>,
    /// The bundle as PEM.
    pub(crate) bundle_pem: String,
    /// The bundle as a SPIFFE bundle document.
    pub(crate) bundle_json: String,
    /// A set holding only the bundle of `example.org`.
    pub(crate) bundles: BundleSet,
    /// The provider every verification uses.
    pub(crate) provider: Arc<CryptoProvider>,
    /// When the fixture was made; every certificate is valid then.
    pub(crate) now: SystemTime,
}

static FIXTURE: LazyLock<Fixture> = LazyLock::new(make_fixture);

/// The process-wide fixture.
pub(crate) fn fixture() -> &'static Fixture {
    &FIXTURE
}

fn make_fixture() -> Fixture {
    let td: TrustDomain = TRUST_DOMAIN.parse().unwrap();
    let root = DevCa::new(td.clone()).unwrap();
    let intermediate = root.intermediate().unwrap();
    let id: SpiffeId = "spiffe://example.org/api".parse().unwrap();
    let other_id: SpiffeId = "spiffe://example.org/web".parse().unwrap();
    let (chain_pem, key_pem) = intermediate.mint_pem(SvidParams::new(id.clone())).unwrap();
    let svid = X509Svid::from_pem(chain_pem.as_bytes(), key_pem.as_bytes()).unwrap();
    let other = intermediate.mint(&other_id).unwrap();
    let bundle = root.bundle();
    Fixture {
        id,
        chain: svid.chain().to_vec(),
        key: svid.private_key().clone_key(),
        chain_pem,
        key_pem,
        other_id,
        other_chain: other.chain().to_vec(),
        root: root.cert_der().clone(),
        bundle_pem: root.bundle_pem(),
        bundle_json: encode_bundle_json(bundle.authorities()),
        bundles: BundleSet::new().with(bundle),
        provider: zt_core::default_provider().unwrap(),
        now: SystemTime::now(),
    }
}

// === SPIFFE IDs, trust domains, patterns ===

/// Checks every ID, trust domain and pattern entry point on one string.
///
/// - `SpiffeId::new`, `FromStr` and serde agree on accept/reject and on the value;
/// - `TrustDomain::new`, `FromStr`, serde and `from_id_or_name` agree likewise;
/// - an accepted ID displays as its input, re-parses to itself and rebuilds from its
///   parts; a pattern built from it (as written, or with wildcards) matches it;
/// - an accepted pattern displays as its input.
pub(crate) fn spiffe_id(input: &str) {
    let parsed = SpiffeId::new(input);
    assert_eq!(
        input.parse::<SpiffeId>(),
        parsed,
        "FromStr and new disagree"
    );
    agree_with_serde(input, &parsed);

    let bare = TrustDomain::new(input);
    assert_eq!(
        input.parse::<TrustDomain>(),
        bare,
        "FromStr and new disagree"
    );
    agree_with_serde(input, &bare);
    if let Ok(td) = &bare {
        assert_eq!(td.as_str(), input);
        assert_eq!(td.to_string(), input);
        assert_eq!(SpiffeId::new(&format!("spiffe://{input}")), Ok(td.id()));
        assert!(td.id().is_root());
    }
    let either = TrustDomain::from_id_or_name(input);
    if input.contains(":/") {
        let via_id = parsed.as_ref().map(|id| id.trust_domain().clone());
        assert_eq!(either, via_id.map_err(Clone::clone));
    } else {
        assert_eq!(either, bare);
    }

    if let Ok(matcher) = IdMatcher::pattern(input) {
        assert_eq!(matcher.to_string(), input, "a pattern displays as written");
        let again = IdMatcher::pattern(&matcher.to_string()).unwrap();
        assert_eq!(again.to_string(), input);
    }
    if let Ok(id) = &parsed {
        valid_id(id, input);
    }
}

fn agree_with_serde<T>(input: &str, parsed: &Result<T, IdError>)
where
    T: serde::de::DeserializeOwned + serde::Serialize + PartialEq + std::fmt::Debug,
{
    let json = serde_json::to_string(input).unwrap();
    match (parsed, serde_json::from_str::<T>(&json)) {
        (Ok(value), Ok(via_serde)) => {
            assert_eq!(value, &via_serde);
            assert_eq!(serde_json::to_string(value).unwrap(), json);
        }
        (Err(err), Err(serde_err)) => {
            let (want, got) = (err.to_string(), serde_err.to_string());
            assert!(got.contains(&want), "serde error {got:?} lacks {want:?}");
        }
        (parsed, via_serde) => {
            panic!("FromStr and serde disagree on {input:?}: {parsed:?} vs {via_serde:?}")
        }
    }
}

fn valid_id(id: &SpiffeId, input: &str) {
    assert_eq!(id.as_str(), input);
    assert_eq!(id.to_string(), input);
    assert_eq!(SpiffeId::new(&id.to_string()).as_ref(), Ok(id));
    assert!(input.len() <= MAX_ID_LEN);
    let td = id.trust_domain();
    assert!(td.as_str().len() <= MAX_TRUST_DOMAIN_LEN);
    assert_eq!(TrustDomain::new(td.as_str()).as_ref(), Ok(td));
    assert!(id.is_member_of(td));
    assert_eq!(SpiffeId::from_parts(td, id.path()).as_ref(), Ok(id));
    assert_eq!(id.is_root(), id.path().is_empty());

    let segments: Vec<&str> = id.segments().collect();
    assert_eq!(with_slashes(&segments), id.path());
    let mut backwards: Vec<&str> = id.segments().rev().collect();
    backwards.reverse();
    assert_eq!(backwards, segments);

    assert!(IdMatcher::pattern(input).unwrap().matches(id));
    assert!(IdMatcher::exact(id.clone()).matches(id));
    assert!(IdMatcher::trust_domain(td.clone()).matches(id));
    assert!(!IdMatcher::not(IdMatcher::exact(id.clone())).matches(id));
    wildcard_patterns_match(id, &segments);
}

/// Patterns made from a valid ID by turning segments into wildcards all match it.
fn wildcard_patterns_match(id: &SpiffeId, segments: &[&str]) {
    let prefix = format!("spiffe://{}", id.trust_domain());
    let everything = format!("{prefix}/**");
    assert_eq!(
        IdMatcher::pattern(&everything).unwrap().matches(id),
        !id.is_root(),
        "{everything} matches every ID of the domain but the root"
    );
    // Long IDs have hundreds of segments; the first and last few cover every shape.
    let positions = (0..segments.len()).filter(|k| *k < 8 || *k + 8 >= segments.len());
    for k in positions {
        let mut one = segments.to_vec();
        one[k] = "*";
        let mut rest = segments[..k].to_vec();
        rest.push("**");
        for pattern in [one, rest] {
            let pattern = format!("{prefix}{}", with_slashes(&pattern));
            match IdMatcher::pattern(&pattern) {
                Ok(matcher) => assert!(matcher.matches(id), "{pattern} does not match {id}"),
                // `**` is longer than a one-byte segment it replaces.
                Err(err) => {
                    assert!(pattern.len() > MAX_ID_LEN, "{pattern}: {err}");
                    assert_eq!(err, PatternError::Id(IdError::TooLong));
                }
            }
        }
    }
}

fn with_slashes(segments: &[&str]) -> String {
    segments.iter().map(|s| format!("/{s}")).collect()
}

/// When both strings parse, the compiled pattern and a naive matcher written straight
/// from the documented rules agree on whether the pattern matches the ID.
pub(crate) fn pattern_against_id(pattern: &str, id: &str) {
    let (Ok(matcher), Ok(parsed)) = (IdMatcher::pattern(pattern), SpiffeId::new(id)) else {
        return;
    };
    let expected = reference_matches(pattern, id);
    assert_eq!(
        matcher.matches(&parsed),
        expected,
        "{pattern} against {id}: the reference says {expected}"
    );
    assert_eq!(IdMatcher::not(matcher.clone()).matches(&parsed), !expected);
    let both = IdMatcher::all_of([matcher.clone(), IdMatcher::exact(parsed.clone())]);
    assert_eq!(both.matches(&parsed), expected);
    let either = IdMatcher::any_of([matcher, IdMatcher::one_of([])]);
    assert_eq!(either.matches(&parsed), expected);
}

/// The pattern rules, for a pattern and an ID that are both valid: same trust domain;
/// `*` is any one segment; a final `**` is one or more segments; otherwise equal.
fn reference_matches(pattern: &str, id: &str) -> bool {
    fn split(s: &str) -> (&str, Vec<&str>) {
        let rest = &s["spiffe://".len()..];
        match rest.split_once('/') {
            Some((td, path)) => (td, path.split('/').collect()),
            None => (rest, Vec::new()),
        }
    }
    let (pattern_td, pattern) = split(pattern);
    let (id_td, id) = split(id);
    if pattern_td != id_td {
        return false;
    }
    let same = |p: &&str, s: &&str| *p == "*" || p == s;
    match pattern.split_last() {
        Some((&"**", head)) => {
            id.len() > head.len() && head.iter().zip(&id).all(|(p, s)| same(p, s))
        }
        _ => id.len() == pattern.len() && pattern.iter().zip(&id).all(|(p, s)| same(p, s)),
    }
}

// === SVIDs ===

/// Checks the PEM entry points. Input up to the first NUL is the chain and after it
/// the key; without a NUL, the whole input is both.
///
/// - `from_combined_pem(x)` is `from_pem(x, x)`;
/// - an accepted SVID has the invariants of [`accepted_svid`].
pub(crate) fn svid_pem(input: &[u8]) {
    let (chain, key) = match input.iter().position(|b| *b == 0) {
        Some(nul) => (&input[..nul], &input[nul + 1..]),
        None => (input, input),
    };
    if let Ok(svid) = X509Svid::from_pem(chain, key) {
        accepted_svid(&svid);
    }
    let combined = X509Svid::from_combined_pem(input);
    let twice = X509Svid::from_pem(input, input);
    match (&combined, &twice) {
        (Ok(a), Ok(b)) => {
            assert_eq!(a.chain(), b.chain());
            accepted_svid(a);
        }
        (Err(a), Err(b)) => assert_eq!(a, b),
        _ => panic!("from_combined_pem and from_pem disagree: {combined:?} vs {twice:?}"),
    }
}

/// What holds for every SVID zt accepted: a non-root ID, a bounded chain whose first
/// certificate is the leaf, and a PEM and DER round trip to the same SVID.
fn accepted_svid(svid: &X509Svid) {
    let fx = fixture();
    assert!(!svid.id().is_root());
    assert!(!svid.chain().is_empty() && svid.chain().len() <= MAX_CHAIN_LEN);
    assert_eq!(svid.leaf(), &svid.chain()[0]);
    assert!(leaf_tbs(svid.leaf()).is_some(), "an accepted leaf parses");

    let der = X509Svid::from_der(svid.chain().to_vec(), svid.private_key().clone_key()).unwrap();
    assert_eq!(der.id(), svid.id());
    assert_eq!(der.not_after(), svid.not_after());
    let chain_pem: String = svid.chain().iter().map(|c| pem("CERTIFICATE", c)).collect();
    let key_pem = pem("PRIVATE KEY", svid.private_key().secret_der());
    let again = X509Svid::from_pem(chain_pem.as_bytes(), key_pem.as_bytes()).unwrap();
    assert_eq!(again.chain(), svid.chain());

    let peer = PeerIdentity::from_chain(svid.chain().to_vec(), PeerRole::Client).unwrap();
    assert_eq!(peer.id(), svid.id());
    assert_eq!(peer.not_after(), svid.not_after());
    // Loading an arbitrary key must fail cleanly; the fixture's own pair must match.
    let certified = svid.certified_key(&fx.provider);
    if svid.chain() == fx.chain && svid.private_key().secret_der() == fx.key.secret_der() {
        assert!(certified.is_ok(), "{certified:?}");
    }
}

/// Checks the DER entry points on a chain cut from the input (see [`split_der`]).
///
/// - `X509Svid::from_der` and `PeerIdentity::from_chain` agree on accept/reject, the
///   error and the ID;
/// - a chain that verifies against the fixture bundle passes the SVID rules, and its
///   leaf is one the fixture CA signed;
/// - with the input's last certificate as the only authority, verification never
///   panics and accepts only chains that pass the SVID rules.
pub(crate) fn svid_der_chain(input: &[u8]) {
    let fx = fixture();
    let chain: Vec<CertificateDer<'static>> = split_der(input, MAX_CHAIN_LEN + 2)
        .into_iter()
        .map(|der| CertificateDer::from(der.to_vec()))
        .collect();
    let svid = X509Svid::from_der(chain.clone(), fx.key.clone_key());
    let peer = PeerIdentity::from_chain(chain.clone(), PeerRole::Client);
    assert_eq!(
        svid.as_ref().map(X509Svid::id).map_err(Clone::clone),
        peer.as_ref().map(PeerIdentity::id).map_err(Clone::clone),
        "from_der and from_chain disagree"
    );
    if let Ok(svid) = &svid {
        accepted_svid(svid);
    }
    for role in [PeerRole::Client, PeerRole::Server] {
        if let Ok(verified) = verify_peer_chain(&chain, &fx.bundles, role, &fx.provider, fx.now) {
            assert_eq!(svid.as_ref().map(X509Svid::id), Ok(verified.id()));
            assert_signed_by_fixture(&chain, verified.id());
        }
    }

    let Some((anchor, presented)) = chain.split_last() else {
        return;
    };
    let Ok(inspected) = X509Svid::from_der(presented.to_vec(), fx.key.clone_key()) else {
        return;
    };
    let td = inspected.id().trust_domain().clone();
    let Ok(bundle) = X509Bundle::new(td, vec![anchor.clone()]) else {
        return;
    };
    let bundles = BundleSet::new().with(bundle);
    // Inside the validity of every certificate of the chain, whenever it was minted.
    let at = inspected.not_before() + Duration::from_secs(1);
    for role in [PeerRole::Client, PeerRole::Server] {
        if let Ok(verified) = verify_peer_chain(presented, &bundles, role, &fx.provider, at) {
            assert_eq!(verified.id(), inspected.id());
            assert!(verified.not_after() >= at);
        }
    }
}

/// Cuts the input into at most `max` DER elements by their tag-length headers, so a
/// concatenation of certificates splits back into them. A header that does not parse
/// or overruns the input makes the rest one piece.
pub(crate) fn split_der(mut input: &[u8], max: usize) -> Vec<&[u8]> {
    let mut pieces = Vec::new();
    while !input.is_empty() {
        let len = if pieces.len() + 1 == max {
            input.len()
        } else {
            der_element_len(input).unwrap_or(input.len())
        };
        let (piece, rest) = input.split_at(len);
        pieces.push(piece);
        input = rest;
    }
    pieces
}

fn der_element_len(input: &[u8]) -> Option<usize> {
    let first = *input.get(1)?;
    let (header, body) = if first < 0x80 {
        (2, usize::from(first))
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 {
            return None;
        }
        let bytes = input.get(2..2 + n)?;
        let body = bytes
            .iter()
            .fold(0usize, |acc, b| acc << 8 | usize::from(*b));
        (2 + n, body)
    };
    let total = header + body;
    (total <= input.len()).then_some(total)
}

/// Edits a real SVID chain as `input` says (see [`apply_edits`]) and verifies it
/// against the real bundle.
///
/// - the unedited chain verifies at the fixture's time;
/// - an accepted chain's leaf parses, its to-be-signed bytes are exactly those of a
///   leaf the fixture CA signed, the verified ID is that leaf's ID, the chain passes
///   the SVID rules, and it has not expired at the verification time.
///
/// The first input byte picks the role and the time: now, before the leaf's
/// `notBefore`, or after its `notAfter`.
pub(crate) fn verify_edited(input: &[u8]) {
    let fx = fixture();
    let (mode, edits) = input.split_first().map_or((0, &[][..]), |(m, e)| (*m, e));
    let role = if mode & 1 == 0 {
        PeerRole::Client
    } else {
        PeerRole::Server
    };
    let at = match (mode >> 1) % 4 {
        0 | 1 => fx.now,
        2 => fx.now - Duration::from_secs(2 * 3600),
        _ => fx.now + Duration::from_secs(2 * 3600),
    };
    let mut chain: Vec<Vec<u8>> = fx.chain.iter().map(|c| c.to_vec()).collect();
    apply_edits(&mut chain, edits);
    let chain: Vec<CertificateDer<'static>> = chain.into_iter().map(CertificateDer::from).collect();

    let result = verify_peer_chain(&chain, &fx.bundles, role, &fx.provider, at);
    if chain == fx.chain && at == fx.now {
        assert!(result.is_ok(), "the unedited chain verifies: {result:?}");
    }
    let Ok(verified) = result else {
        return;
    };
    assert_signed_by_fixture(&chain, verified.id());
    assert!(
        verified.not_after() >= at,
        "an accepted chain has not expired"
    );
    let svid = X509Svid::from_der(chain.clone(), fx.key.clone_key())
        .expect("an accepted chain passes the SVID rules");
    assert_eq!(svid.id(), verified.id());
    let peer = PeerIdentity::from_chain(chain, role).unwrap();
    assert_eq!(peer.id(), verified.id());
}

/// The leaf of an accepted chain must carry exactly the to-be-signed bytes of a leaf
/// the fixture CA signed (anything else would be a forged signature), and the ID
/// verification reported must be that leaf's.
fn assert_signed_by_fixture(chain: &[CertificateDer<'_>], verified: &SpiffeId) {
    let fx = fixture();
    let tbs = leaf_tbs(&chain[0]).expect("an accepted leaf parses");
    let known = [(&fx.chain, &fx.id), (&fx.other_chain, &fx.other_id)];
    let signed = known
        .iter()
        .find(|(chain, _)| leaf_tbs(&chain[0]).as_deref() == Some(tbs.as_slice()));
    let Some((_, id)) = signed else {
        panic!("a leaf the CA never signed was accepted as {verified}");
    };
    assert_eq!(verified, *id);
}

fn leaf_tbs(der: &[u8]) -> Option<Vec<u8>> {
    match X509Certificate::from_der(der) {
        Ok(([], cert)) => Some(cert.tbs_certificate.as_ref().to_vec()),
        _ => None,
    }
}

/// Applies edits encoded five bytes each: operation, certificate, position (two
/// bytes, little endian), value. Byte edits follow what a mutating fuzzer does; the
/// rest reorder, duplicate, drop or substitute whole certificates, rewrite the SPIFFE
/// ID inside the leaf, or splice in bytes of another leaf signed by the same CA.
pub(crate) fn apply_edits(chain: &mut Vec<Vec<u8>>, edits: &[u8]) {
    let fx = fixture();
    for edit in edits.chunks_exact(5) {
        let [op, cert, lo, hi, value] = [edit[0], edit[1], edit[2], edit[3], edit[4]];
        let pos = usize::from(u16::from_le_bytes([lo, hi]));
        if chain.is_empty() {
            chain.push(fx.chain[0].to_vec());
        }
        let index = usize::from(cert) % chain.len();
        let room = chain.len() < MAX_CHAIN_LEN + 2;
        match op % 13 {
            6 if chain.len() > 1 => {
                chain.remove(index);
            }
            7 if room => chain.insert(index, chain[index].clone()),
            8 if index + 1 < chain.len() => chain.swap(index, index + 1),
            9 if room => chain.push(fx.root.to_vec()),
            10 => chain[index] = fx.root.to_vec(),
            op => edit_bytes(&mut chain[index], fx.other_chain.get(index), op, pos, value),
        }
    }
}

fn edit_bytes(
    der: &mut Vec<u8>,
    other: Option<&CertificateDer<'_>>,
    op: u8,
    pos: usize,
    value: u8,
) {
    let id = fixture().id.as_str().as_bytes();
    let at = if der.is_empty() { 0 } else { pos % der.len() };
    match op {
        0 if !der.is_empty() => der[at] = value,
        1 if !der.is_empty() => der[at] ^= value.max(1),
        2 => der.insert(at, value),
        3 if !der.is_empty() => {
            der.remove(at);
        }
        4 => der.truncate(at),
        5 if !der.is_empty() => {
            der[at] = der[at].wrapping_add(if value & 1 == 0 { 1 } else { 255 });
        }
        11 => {
            if let Some(start) = der.windows(id.len()).position(|w| w == id) {
                der[start + pos % id.len()] = value;
            }
        }
        12 => {
            if let Some(other) = other {
                let end = (at + usize::from(value)).min(der.len()).min(other.len());
                if at < end {
                    der[at..end].copy_from_slice(&other[at..end]);
                }
            }
        }
        _ => {}
    }
}

// === Bundles ===

/// Checks the SPIFFE bundle document parser.
///
/// - `from_pem_or_json` gives the same result when the input starts with `{`;
/// - an accepted bundle holds exactly the `x5c[0]` of the entries the format rules
///   select (computed here from the generic JSON value), at most
///   [`MAX_AUTHORITIES`], with the document's sequence and refresh hint;
/// - it converts to PEM and back, and to a document and back, unchanged.
pub(crate) fn bundle_json(input: &[u8]) {
    let td: TrustDomain = TRUST_DOMAIN.parse().unwrap();
    let result = X509Bundle::from_spiffe_json(td.clone(), input);
    if first_non_blank(input) == Some(b'{') {
        let detected = X509Bundle::from_pem_or_json(td.clone(), input);
        assert_eq!(authorities_of(&detected), authorities_of(&result));
    }
    let Ok(bundle) = result else {
        return;
    };
    assert_eq!(bundle.trust_domain(), &td);
    assert!(bundle.len() <= MAX_AUTHORITIES);
    round_trips(&bundle);
    let text = std::str::from_utf8(input).expect("an accepted document is UTF-8");
    serde_json::from_str::<serde::de::IgnoredAny>(text).expect("an accepted document is JSON");
    let Ok(doc) = serde_json::from_str::<serde_json::Value>(text) else {
        // Valid JSON that `Value` cannot hold (a number beyond f64, a lone surrogate
        // escape) can only sit in a member the parser skips; nothing to compare.
        return;
    };
    assert!(doc.is_object(), "an accepted document is a JSON object");
    let keys = doc["keys"]
        .as_array()
        .expect("an accepted document has a keys array");
    assert!(
        keys.iter().all(serde_json::Value::is_object),
        "every key is a JSON object"
    );
    let expected: Vec<Vec<u8>> = keys
        .iter()
        .filter(|key| {
            key["use"] == "x509-svid" && ["EC", "RSA", "OKP"].iter().any(|k| key["kty"] == *k)
        })
        .filter_map(|key| key["x5c"].get(0)?.as_str())
        .map(|b64| {
            base64::engine::general_purpose::STANDARD
                .decode(b64)
                .unwrap()
        })
        .collect();
    let got: Vec<Vec<u8>> = bundle.authorities().iter().map(|c| c.to_vec()).collect();
    assert_eq!(
        got, expected,
        "authorities differ from the selected x5c entries"
    );
    assert_eq!(bundle.sequence(), doc["spiffe_sequence"].as_u64());
    let hint = doc["spiffe_refresh_hint"]
        .as_i64()
        .and_then(|s| u64::try_from(s).ok());
    assert_eq!(bundle.refresh_hint(), hint.map(Duration::from_secs));
}

/// Checks the PEM bundle parser.
///
/// - `from_pem_or_json` gives the same result unless the input starts with `{`;
/// - an accepted bundle is not empty, holds at most [`MAX_AUTHORITIES`] CA
///   certificates, and converts to PEM and back, and to a document and back,
///   unchanged.
pub(crate) fn bundle_pem(input: &[u8]) {
    let td: TrustDomain = TRUST_DOMAIN.parse().unwrap();
    let result = X509Bundle::from_pem(td.clone(), input);
    if first_non_blank(input) != Some(b'{') {
        let detected = X509Bundle::from_pem_or_json(td, input);
        assert_eq!(authorities_of(&detected), authorities_of(&result));
    }
    let Ok(bundle) = result else {
        return;
    };
    assert!(!bundle.is_empty(), "an empty PEM bundle must be refused");
    assert!(bundle.len() <= MAX_AUTHORITIES);
    assert_eq!(bundle.sequence(), None);
    round_trips(&bundle);
}

fn round_trips(bundle: &X509Bundle) {
    let td = bundle.trust_domain().clone();
    let rebuilt = X509Bundle::new(td.clone(), bundle.authorities().to_vec()).unwrap();
    assert!(rebuilt.same_authorities(bundle));
    let json = encode_bundle_json(bundle.authorities());
    let from_json = X509Bundle::from_spiffe_json(td.clone(), json.as_bytes()).unwrap();
    assert!(from_json.same_authorities(bundle));
    if !bundle.is_empty() {
        let text: String = bundle
            .authorities()
            .iter()
            .map(|c| pem("CERTIFICATE", c))
            .collect();
        let from_pem = X509Bundle::from_pem(td, text.as_bytes()).unwrap();
        assert!(from_pem.same_authorities(bundle));
    }
}

fn authorities_of(
    result: &Result<X509Bundle, zt_core::BundleError>,
) -> Result<Vec<CertificateDer<'static>>, zt_core::BundleError> {
    result
        .as_ref()
        .map(|b| b.authorities().to_vec())
        .map_err(Clone::clone)
}

fn first_non_blank(input: &[u8]) -> Option<u8> {
    input.iter().copied().find(|b| !b.is_ascii_whitespace())
}

// === Encoders for seeds and round trips ===

/// A SPIFFE bundle document holding `authorities`.
pub(crate) fn encode_bundle_json(authorities: &[CertificateDer<'_>]) -> String {
    let keys: Vec<serde_json::Value> = authorities
        .iter()
        .map(|der| {
            serde_json::json!({
                "use": "x509-svid",
                "kty": "EC",
                "x5c": [base64::engine::general_purpose::STANDARD.encode(der)],
            })
        })
        .collect();
    serde_json::json!({ "keys": keys, "spiffe_sequence": 1 }).to_string()
}

/// One PEM block.
pub(crate) fn pem(label: &str, der: &[u8]) -> String {
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for line in b64.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(line).unwrap());
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}
