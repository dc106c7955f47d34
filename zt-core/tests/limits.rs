#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]
//! Adversarial input at and over every documented limit: each is either accepted or
//! refused with the error that names the limit, never a panic, a stack overflow or an
//! unbounded amount of work.

use std::time::{Duration, SystemTime};

use base64::Engine as _;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use zt_core::dev::DevCa;
use zt_core::id::{MAX_ID_LEN, MAX_TRUST_DOMAIN_LEN};
use zt_core::{
    BundleError, BundleSet, IdError, IdMatcher, MAX_AUTHORITIES, MAX_BUNDLE_BYTES, MAX_CHAIN_LEN,
    MAX_SVID_PEM_BYTES, PatternError, PeerIdentity, PeerRole, SpiffeId, SvidError, TrustDomain,
    X509Bundle, X509Svid, verify_peer_chain,
};
use zt_testkit::ca::{CustomExtension, LeafSpec, TestCa, authorities, pem};

fn td(name: &str) -> TrustDomain {
    name.parse().unwrap()
}

fn id(s: &str) -> SpiffeId {
    s.parse().unwrap()
}

/// `spiffe://<trust domain>/<a…>` of exactly `len` bytes.
fn id_of_len(trust_domain: &str, len: usize) -> String {
    let prefix = format!("spiffe://{trust_domain}/");
    format!("{prefix}{}", "a".repeat(len - prefix.len()))
}

fn jwk(der: &[u8]) -> serde_json::Value {
    serde_json::json!({
        "use": "x509-svid",
        "kty": "EC",
        "x5c": [base64::engine::general_purpose::STANDARD.encode(der)],
    })
}

fn verify(
    chain: &[CertificateDer<'_>],
    bundles: &BundleSet,
) -> Result<zt_core::VerifiedPeer, SvidError> {
    let provider = zt_core::default_provider().unwrap();
    verify_peer_chain(
        chain,
        bundles,
        PeerRole::Client,
        &provider,
        SystemTime::now(),
    )
}

/// The bundle set holding `ca`'s root as example.org's authority.
fn bundle_of(ca: &TestCa) -> BundleSet {
    BundleSet::new().with(X509Bundle::new(td("example.org"), vec![ca.root_cert().clone()]).unwrap())
}

/// A leaf of `ca` with `uri` as its only URI SAN and `extensions` added.
fn leaf(
    ca: &TestCa,
    uri: &str,
    extensions: Vec<CustomExtension>,
) -> (CertificateDer<'static>, PrivateKeyDer<'static>) {
    let credential = ca.issue(&LeafSpec {
        custom_extensions: extensions,
        ..LeafSpec::valid(uri)
    });
    (credential.leaf().clone(), credential.key)
}

/// `count` self-signed CA certificates of example.org named by `name`.
fn filler_authorities(
    count: usize,
    name: impl Fn(usize) -> String,
) -> Vec<CertificateDer<'static>> {
    authorities("example.org", (0..count).map(name))
}

// === SPIFFE IDs ===

#[test]
fn id_of_max_len_with_trust_domain_of_max_len_is_accepted() {
    let name = "t".repeat(MAX_TRUST_DOMAIN_LEN);
    let s = id_of_len(&name, MAX_ID_LEN);
    let parsed = SpiffeId::new(&s).unwrap();
    assert_eq!(parsed.as_str().len(), MAX_ID_LEN);
    assert_eq!(parsed.trust_domain().as_str().len(), MAX_TRUST_DOMAIN_LEN);
    assert!(IdMatcher::pattern(&s).unwrap().matches(&parsed));
}

#[test]
fn id_one_byte_over_max_len_is_refused_as_too_long_by_every_entry_point() {
    let s = id_of_len("example.org", MAX_ID_LEN + 1);
    assert_eq!(SpiffeId::new(&s), Err(IdError::TooLong));
    assert_eq!(TrustDomain::from_id_or_name(&s), Err(IdError::TooLong));
    assert_eq!(
        IdMatcher::pattern(&s).unwrap_err(),
        PatternError::Id(IdError::TooLong)
    );
    let err = serde_json::from_value::<SpiffeId>(serde_json::json!(s)).unwrap_err();
    assert!(
        err.to_string().contains("cannot be longer than 2048 bytes"),
        "{err}"
    );
}

#[test]
fn over_long_garbage_is_refused_as_too_long_before_it_is_scanned() {
    let garbage = "%".repeat(MAX_ID_LEN + 1);
    assert_eq!(SpiffeId::new(&garbage), Err(IdError::TooLong));
    let megabyte = "/".repeat(1 << 20);
    assert_eq!(SpiffeId::new(&megabyte), Err(IdError::TooLong));
}

#[test]
fn pattern_of_max_len_is_accepted_and_one_byte_more_is_refused() {
    let prefix = "spiffe://example.org/";
    let literal = "a".repeat(MAX_ID_LEN - prefix.len() - "/**".len());
    let at_limit = format!("{prefix}{literal}/**");
    assert_eq!(at_limit.len(), MAX_ID_LEN);
    let matcher = IdMatcher::pattern(&at_limit).unwrap();
    assert!(matcher.matches(&id(&format!("{prefix}{literal}/b"))));
    let over = format!("{prefix}{literal}a/**");
    assert_eq!(
        IdMatcher::pattern(&over).unwrap_err(),
        PatternError::Id(IdError::TooLong)
    );
}

#[test]
fn from_parts_reaching_exactly_max_len_is_accepted() {
    let domain = td("example.org");
    let path = format!(
        "/{}",
        "p".repeat(MAX_ID_LEN - "spiffe://example.org/".len())
    );
    let built = SpiffeId::from_parts(&domain, &path).unwrap();
    assert_eq!(built.as_str().len(), MAX_ID_LEN);
    assert_eq!(
        SpiffeId::from_parts(&domain, &format!("{path}p")),
        Err(IdError::TooLong)
    );
}

#[test]
fn trust_domain_of_256_bytes_is_refused_by_every_entry_point() {
    let name = "t".repeat(MAX_TRUST_DOMAIN_LEN + 1);
    let as_id = format!("spiffe://{name}/a");
    assert_eq!(TrustDomain::new(&name), Err(IdError::TrustDomainTooLong));
    assert_eq!(
        TrustDomain::from_id_or_name(&name),
        Err(IdError::TrustDomainTooLong)
    );
    assert_eq!(
        TrustDomain::from_id_or_name(&as_id),
        Err(IdError::TrustDomainTooLong)
    );
    assert_eq!(SpiffeId::new(&as_id), Err(IdError::TrustDomainTooLong));
    assert_eq!(
        IdMatcher::pattern(&format!("spiffe://{name}/**")).unwrap_err(),
        PatternError::Id(IdError::TrustDomainTooLong)
    );
    let err = serde_json::from_value::<TrustDomain>(serde_json::json!(name)).unwrap_err();
    assert!(
        err.to_string().contains("cannot be longer than 255 bytes"),
        "{err}"
    );
}

#[test]
fn leaf_whose_uri_san_is_over_max_len_is_refused_with_the_id_error() {
    let ca = TestCa::new("example.org");
    let (leaf, key) = leaf(&ca, &id_of_len("example.org", MAX_ID_LEN + 1), Vec::new());
    let err = X509Svid::from_der(vec![leaf.clone()], key).unwrap_err();
    assert_eq!(err, SvidError::InvalidSpiffeId(IdError::TooLong));
    let err = verify(&[leaf], &bundle_of(&ca)).unwrap_err();
    assert_eq!(err, SvidError::InvalidSpiffeId(IdError::TooLong));
}

#[test]
fn leaf_whose_uri_san_is_exactly_max_len_verifies() {
    let ca = TestCa::new("example.org");
    let uri = id_of_len("example.org", MAX_ID_LEN);
    let (leaf, _) = leaf(&ca, &uri, Vec::new());
    let verified = verify(&[leaf], &bundle_of(&ca)).unwrap();
    assert_eq!(verified.id().as_str(), uri);
}

// === SVID PEM ===

fn dev_svid_pem() -> (String, String) {
    let ca = DevCa::new(td("example.org")).unwrap();
    ca.mint_pem(zt_core::dev::SvidParams::new(id(
        "spiffe://example.org/api",
    )))
    .unwrap()
}

/// `text` followed by newlines up to exactly `len` bytes.
fn padded(text: &str, len: usize) -> Vec<u8> {
    let mut bytes = text.as_bytes().to_vec();
    bytes.resize(len, b'\n');
    bytes
}

#[test]
fn svid_pem_of_exactly_max_bytes_is_read() {
    let (chain, key) = dev_svid_pem();
    let chain = padded(&chain, MAX_SVID_PEM_BYTES);
    let key = padded(&key, MAX_SVID_PEM_BYTES);
    let svid = X509Svid::from_pem(&chain, &key).unwrap();
    assert_eq!(svid.id().path(), "/api");
}

#[test]
fn svid_pem_one_byte_over_max_is_refused_for_chain_key_and_combined_file() {
    let (chain, key) = dev_svid_pem();
    let too_large = SvidError::TooLarge {
        size: MAX_SVID_PEM_BYTES + 1,
        limit: MAX_SVID_PEM_BYTES,
    };
    let big_chain = padded(&chain, MAX_SVID_PEM_BYTES + 1);
    let big_key = padded(&key, MAX_SVID_PEM_BYTES + 1);
    let big_combined = padded(&format!("{key}{chain}"), MAX_SVID_PEM_BYTES + 1);
    assert_eq!(
        X509Svid::from_pem(&big_chain, key.as_bytes()).unwrap_err(),
        too_large
    );
    assert_eq!(
        X509Svid::from_pem(chain.as_bytes(), &big_key).unwrap_err(),
        too_large
    );
    assert_eq!(
        X509Svid::from_combined_pem(&big_combined).unwrap_err(),
        too_large
    );
}

#[test]
fn chain_pem_of_thousands_of_empty_blocks_is_refused_as_too_long() {
    let (_, key) = dev_svid_pem();
    let block = "-----BEGIN CERTIFICATE-----\n-----END CERTIFICATE-----\n";
    let count = MAX_SVID_PEM_BYTES / block.len();
    let chain = block.repeat(count);
    let err = X509Svid::from_pem(chain.as_bytes(), key.as_bytes()).unwrap_err();
    assert_eq!(
        err,
        SvidError::ChainTooLong {
            len: count,
            limit: MAX_CHAIN_LEN
        }
    );
}

// === Chains ===

/// A DevCa `depth` intermediates below a root, and the root's bundle.
fn nested_ca(depth: usize) -> (DevCa, BundleSet) {
    let root = DevCa::new(td("example.org")).unwrap();
    let bundles = BundleSet::new().with(root.bundle());
    let mut ca = root;
    for _ in 0..depth {
        ca = ca.intermediate().unwrap();
    }
    (ca, bundles)
}

#[test]
fn chain_through_six_intermediates_verifies() {
    let (ca, bundles) = nested_ca(6);
    let svid = ca.mint(&id("spiffe://example.org/deep")).unwrap();
    assert_eq!(svid.chain().len(), 7);
    assert_eq!(verify(svid.chain(), &bundles).unwrap().id(), svid.id());
}

#[test]
fn chain_through_seven_intermediates_is_refused_by_path_depth_within_max_chain_len() {
    // webpki allows at most six intermediates, so a chain of MAX_CHAIN_LEN (eight)
    // passes zt's length check and is then refused by path building.
    let (ca, bundles) = nested_ca(7);
    let svid = ca.mint(&id("spiffe://example.org/deep")).unwrap();
    assert_eq!(svid.chain().len(), MAX_CHAIN_LEN);
    let err = verify(svid.chain(), &bundles).unwrap_err();
    assert_eq!(err, SvidError::Path("MaximumPathDepthExceeded".into()));
}

#[test]
fn chain_deeper_than_max_chain_len_is_refused_before_path_building() {
    let (ca, bundles) = nested_ca(MAX_CHAIN_LEN);
    let (chain_pem, _) = ca
        .mint_pem(zt_core::dev::SvidParams::new(id(
            "spiffe://example.org/deep",
        )))
        .unwrap();
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(chain_pem.as_bytes())
        .collect::<Result<_, _>>()
        .unwrap();
    let too_long = SvidError::ChainTooLong {
        len: MAX_CHAIN_LEN + 1,
        limit: MAX_CHAIN_LEN,
    };
    assert_eq!(chain.len(), MAX_CHAIN_LEN + 1);
    assert_eq!(verify(&chain, &bundles).unwrap_err(), too_long);
    let err = PeerIdentity::from_chain(chain, PeerRole::Client).unwrap_err();
    assert_eq!(err, too_long);
}

/// A leaf carrying `count` private, non-critical extensions of 4 KiB each.
fn leaf_with_extensions(
    ca: &TestCa,
    count: u64,
) -> (CertificateDer<'static>, PrivateKeyDer<'static>) {
    let extensions = (0..count)
        .map(|i| CustomExtension::from_oid_content(&[1, 3, 6, 1, 4, 1, 99999, i], vec![0x04; 4096]))
        .collect();
    leaf(ca, "spiffe://example.org/big", extensions)
}

#[test]
fn leaf_of_60_kib_of_extensions_loads_and_verifies() {
    let ca = TestCa::new("example.org");
    let (leaf, key) = leaf_with_extensions(&ca, 15);
    assert!(
        leaf.len() > 60 * 1024 && leaf.len() < 64 * 1024,
        "{}",
        leaf.len()
    );
    let chain_pem = pem("CERTIFICATE", &leaf);
    let key_pem = pem("PRIVATE KEY", key.secret_der());
    let svid = X509Svid::from_pem(chain_pem.as_bytes(), key_pem.as_bytes()).unwrap();
    assert_eq!(svid.id().path(), "/big");
    assert_eq!(verify(&[leaf], &bundle_of(&ca)).unwrap().id(), svid.id());
}

#[test]
fn leaf_over_64_kib_loads_but_is_refused_as_malformed_by_verification() {
    // webpki reads certificates of at most 65535 bytes (a two-byte DER length), as a
    // TLS handshake message could not carry more anyway.
    let ca = TestCa::new("example.org");
    let (leaf, key) = leaf_with_extensions(&ca, 16);
    assert!(leaf.len() > 64 * 1024, "{}", leaf.len());
    let svid = X509Svid::from_der(vec![leaf.clone()], key).unwrap();
    assert_eq!(svid.id().path(), "/big");
    let err = verify(&[leaf], &bundle_of(&ca)).unwrap_err();
    assert!(
        matches!(err, SvidError::Malformed { index: 0, .. }),
        "{err:?}"
    );
}

// === Bundles ===

#[test]
fn bundle_of_exactly_max_bytes_is_read_in_both_formats() {
    let ca = DevCa::new(td("example.org")).unwrap();
    let pem_bundle = padded(&ca.bundle_pem(), MAX_BUNDLE_BYTES);
    let json = serde_json::json!({ "keys": [jwk(ca.cert_der())] }).to_string();
    let json_bundle = padded(&json, MAX_BUNDLE_BYTES);
    for data in [pem_bundle, json_bundle] {
        let bundle = X509Bundle::from_pem_or_json(td("example.org"), &data).unwrap();
        assert_eq!(bundle.authorities(), [ca.cert_der().clone()]);
    }
}

#[test]
fn bundle_one_byte_over_max_is_refused_in_every_format() {
    let ca = DevCa::new(td("example.org")).unwrap();
    let too_large = BundleError::TooLarge {
        size: MAX_BUNDLE_BYTES + 1,
        limit: MAX_BUNDLE_BYTES,
    };
    let pem_bundle = padded(&ca.bundle_pem(), MAX_BUNDLE_BYTES + 1);
    let json = serde_json::json!({ "keys": [jwk(ca.cert_der())] }).to_string();
    let json_bundle = padded(&json, MAX_BUNDLE_BYTES + 1);
    let domain = td("example.org");
    assert_eq!(
        X509Bundle::from_pem(domain.clone(), &pem_bundle).unwrap_err(),
        too_large
    );
    assert_eq!(
        X509Bundle::from_spiffe_json(domain.clone(), &json_bundle).unwrap_err(),
        too_large
    );
    for data in [pem_bundle, json_bundle] {
        assert_eq!(
            X509Bundle::from_pem_or_json(domain.clone(), &data).unwrap_err(),
            too_large
        );
    }
}

#[test]
fn bundle_with_ten_thousand_authorities_loads_and_vouches_for_its_svids() {
    let ca = DevCa::new(td("example.org")).unwrap();
    let mut authorities = filler_authorities(10_000, |i| format!("filler CA {i}"));
    authorities.push(ca.cert_der().clone());
    let bundle = X509Bundle::new(td("example.org"), authorities).unwrap();
    assert_eq!(bundle.len(), 10_001);
    let bundles = BundleSet::new().with(bundle);
    let svid = ca.mint(&id("spiffe://example.org/api")).unwrap();
    assert_eq!(verify(svid.chain(), &bundles).unwrap().id(), svid.id());
    let stranger = DevCa::new(td("example.org")).unwrap();
    let foreign = stranger.mint(&id("spiffe://example.org/api")).unwrap();
    assert_eq!(
        verify(foreign.chain(), &bundles).unwrap_err(),
        SvidError::UnknownIssuer(td("example.org"))
    );
}

/// A bundle whose signing CA comes after `ahead` other authorities with its very name.
fn bundle_with_same_name_authorities_ahead(ahead: usize) -> (TestCa, BundleSet) {
    let ca = TestCa::named("example.org", "shared name");
    let mut authorities = filler_authorities(ahead, |_| "shared name".to_owned());
    authorities.push(ca.cert().clone());
    let bundle = X509Bundle::new(td("example.org"), authorities).unwrap();
    (ca, BundleSet::new().with(bundle))
}

#[test]
fn svid_verifies_behind_99_authorities_of_its_issuers_name() {
    let (ca, bundles) = bundle_with_same_name_authorities_ahead(99);
    let (leaf, _) = leaf(&ca, "spiffe://example.org/api", Vec::new());
    assert_eq!(verify(&[leaf], &bundles).unwrap().id().path(), "/api");
}

#[test]
fn svid_behind_100_authorities_of_its_issuers_name_exhausts_the_signature_budget() {
    // webpki matches issuers by name and tries at most 100 signatures per
    // verification; the 101st candidate is never tried. zt fails closed here.
    let (ca, bundles) = bundle_with_same_name_authorities_ahead(100);
    let (leaf, _) = leaf(&ca, "spiffe://example.org/api", Vec::new());
    assert_eq!(
        verify(&[leaf], &bundles).unwrap_err(),
        SvidError::Path("MaximumSignatureChecksExceeded".into())
    );
}

#[test]
fn bundle_over_max_authorities_is_refused_in_every_format() {
    let ca = DevCa::new(td("example.org")).unwrap();
    let too_many = BundleError::TooManyAuthorities {
        len: MAX_AUTHORITIES + 1,
        limit: MAX_AUTHORITIES,
    };
    let copies = vec![ca.cert_der().clone(); MAX_AUTHORITIES + 1];
    let domain = td("example.org");
    assert_eq!(
        X509Bundle::new(domain.clone(), copies).unwrap_err(),
        too_many
    );
    let pem_bundle = ca.bundle_pem().repeat(MAX_AUTHORITIES + 1);
    assert!(pem_bundle.len() <= MAX_BUNDLE_BYTES);
    assert_eq!(
        X509Bundle::from_pem(domain.clone(), pem_bundle.as_bytes()).unwrap_err(),
        too_many
    );
    let keys = vec![jwk(ca.cert_der()); MAX_AUTHORITIES + 1];
    let json = serde_json::json!({ "keys": keys }).to_string();
    assert!(json.len() <= MAX_BUNDLE_BYTES);
    assert_eq!(
        X509Bundle::from_spiffe_json(domain, json.as_bytes()).unwrap_err(),
        too_many
    );
}

#[test]
fn pem_bundle_of_empty_blocks_is_refused_by_count_before_parsing() {
    let block = "-----BEGIN CERTIFICATE-----\n-----END CERTIFICATE-----\n";
    let count = MAX_BUNDLE_BYTES / block.len();
    let data = block.repeat(count);
    let err = X509Bundle::from_pem(td("example.org"), data.as_bytes()).unwrap_err();
    assert_eq!(
        err,
        BundleError::TooManyAuthorities {
            len: count,
            limit: MAX_AUTHORITIES
        }
    );
}

#[test]
fn deeply_nested_keys_are_refused_as_json_without_recursing() {
    // The document's types nest three deep, so a deeper value is a type error long
    // before serde_json's recursion limit or the stack is reached.
    let depth = 1_000_000;
    let json = format!("{{\"keys\": {}{}}}", "[".repeat(depth), "]".repeat(depth));
    let err = X509Bundle::from_spiffe_json(td("example.org"), json.as_bytes()).unwrap_err();
    assert!(matches!(err, BundleError::Json(_)), "{err:?}");
}

#[test]
fn deeply_nested_unknown_member_is_skipped_without_recursion() {
    let depth = 1_000_000;
    let json = format!(
        "{{\"keys\": [], \"x\": {}{}}}",
        "[".repeat(depth),
        "]".repeat(depth)
    );
    let bundle = X509Bundle::from_spiffe_json(td("example.org"), json.as_bytes()).unwrap();
    assert!(bundle.is_empty());
}

// === verification cost: chains that would make path building costly ===

/// The mesh chain: a leaf and `count` self-signed CA certificates that all carry
/// the trusted root's name, so that each could issue the leaf and each other.
fn mesh_chain(root_name: &str, count: usize) -> Vec<CertificateDer<'static>> {
    let cas: Vec<TestCa> = (0..count)
        .map(|_| TestCa::named("example.org", root_name))
        .collect();
    let (leaf, _) = leaf(&cas[0], "spiffe://example.org/attacker", Vec::new());
    let mut chain = vec![leaf];
    chain.extend(cas.iter().map(|ca| ca.cert().clone()));
    chain
}

#[test]
fn mesh_of_same_named_authorities_is_refused_before_path_building() {
    let root = TestCa::named("example.org", "example root");
    let bundles = bundle_of(&root);
    let err = verify(&mesh_chain("example root", 7), &bundles).unwrap_err();
    assert!(
        matches!(err, SvidError::UnlinkedChain { index: 1, .. }),
        "{err:?}"
    );
}

#[test]
fn intermediates_out_of_issuance_order_are_refused() {
    let root = DevCa::new(td("example.org")).unwrap();
    let first = root.intermediate().unwrap();
    let second = first.intermediate().unwrap();
    let svid = second.mint(&id("spiffe://example.org/w")).unwrap();
    let bundles = BundleSet::new().with(root.bundle());
    let chain = svid.chain().to_vec();
    assert_eq!(chain.len(), 3);
    verify(&chain, &bundles).unwrap();
    let swapped = vec![chain[0].clone(), chain[2].clone(), chain[1].clone()];
    let err = verify(&swapped, &bundles).unwrap_err();
    assert!(
        matches!(err, SvidError::UnlinkedChain { index: 1, .. }),
        "{err:?}"
    );
}

#[test]
fn trailing_copy_of_the_root_is_accepted_and_checked_for_validity() {
    // Some servers send their root last. It must still be valid now.
    let hour = Duration::from_secs(3600);
    let now = SystemTime::now();
    let root = TestCa::named("example.org", "sent root");
    let expired_copy = root.reissued(now - 2 * hour, now - hour);
    let root_der = root.cert().clone();
    let bundles = bundle_of(&root);
    let (leaf, _) = leaf(&root, "spiffe://example.org/w", Vec::new());
    verify(&[leaf.clone(), root_der], &bundles).unwrap();
    assert_eq!(
        verify(&[leaf, expired_copy], &bundles).unwrap_err(),
        SvidError::Expired
    );
}

#[test]
fn chain_whose_last_issuer_no_anchor_is_named_is_refused_without_path_building() {
    let root = TestCa::named("example.org", "example root");
    let bundles = bundle_of(&root);
    let stranger = TestCa::named("example.org", "stranger root");
    let (leaf, _) = leaf(&stranger, "spiffe://example.org/w", Vec::new());
    assert_eq!(
        verify(&[leaf], &bundles).unwrap_err(),
        SvidError::UnknownIssuer(td("example.org"))
    );
}
