#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]
//! Property tests of the parsers: the checks the fuzz targets in `fuzz/` run, on
//! inputs generated from the grammars and by mutating real material, bounded so they
//! run on every `cargo test`.

mod checks;

use proptest::prelude::*;
use proptest::sample::select;

fn config(cases: u32) -> ProptestConfig {
    ProptestConfig {
        cases,
        ..ProptestConfig::default()
    }
}

// === Generators ===

const TRUST_DOMAIN_CHARS: &[char] = &[
    'a', 'b', 'k', 'z', '0', '9', '.', '-', '_', 'e', 'x', 'm', 'p', 'l', 'o', 'r', 'g',
];
const PATH_CHARS: &[char] = &[
    'a', 'z', 'A', 'Z', '0', '9', '.', '-', '_', 's', 'v', 'c', 'N', 'S',
];
/// Characters that break or nearly break a rule, for near-miss mutations.
const TRICKY_CHARS: &[char] = &[
    '/', '.', '*', '%', ':', '@', '?', '#', '[', ']', 'A', ' ', '\\', '\0', 'é', '\u{202e}',
];

fn chars_from(
    alphabet: &'static [char],
    len: std::ops::RangeInclusive<usize>,
) -> BoxedStrategy<String> {
    prop::collection::vec(select(alphabet), len)
        .prop_map(|chars| chars.into_iter().collect())
        .boxed()
}

/// Trust domain names of the grammar: mostly short, sometimes at the length limit.
fn trust_domain() -> BoxedStrategy<String> {
    prop_oneof![
        8 => chars_from(TRUST_DOMAIN_CHARS, 1..=16),
        1 => chars_from(TRUST_DOMAIN_CHARS, 250..=255),
    ]
    .boxed()
}

/// Path segments of the grammar, never `.` or `..`.
fn segment() -> BoxedStrategy<String> {
    chars_from(PATH_CHARS, 1..=8)
        .prop_map(|s| if s == "." || s == ".." { s + "x" } else { s })
        .boxed()
}

/// SPIFFE IDs of the grammar, root IDs included.
fn valid_id() -> BoxedStrategy<String> {
    (trust_domain(), prop::collection::vec(segment(), 0..6))
        .prop_map(|(td, segments)| {
            let path: String = segments.iter().map(|s| format!("/{s}")).collect();
            format!("spiffe://{td}{path}")
        })
        .boxed()
}

/// A valid ID with one character inserted, replaced or removed: mostly invalid, and
/// each invalid one a step away from valid.
fn near_miss_id() -> BoxedStrategy<String> {
    (
        valid_id(),
        any::<prop::sample::Index>(),
        select(TRICKY_CHARS),
        0..3u8,
    )
        .prop_map(|(id, index, c, op)| {
            let mut chars: Vec<char> = id.chars().collect();
            let at = index.index(chars.len());
            match op {
                0 => chars.insert(at, c),
                1 => chars[at] = c,
                _ => {
                    chars.remove(at);
                }
            }
            chars.into_iter().collect()
        })
        .boxed()
}

/// Anything: arbitrary Unicode, with or without the scheme in front.
fn any_string() -> BoxedStrategy<String> {
    prop_oneof![
        any::<String>(),
        any::<String>().prop_map(|s| format!("spiffe://{s}")),
        chars_from(TRICKY_CHARS, 0..=12).prop_map(|s| format!("spiffe://td/{s}")),
    ]
    .boxed()
}

/// Patterns over a tiny alphabet, so that generated IDs often match them.
fn small_pattern() -> BoxedStrategy<String> {
    (
        select(&["td", "example.org"][..]),
        prop::collection::vec(select(&["a", "b", "*"][..]), 0..4),
        any::<bool>(),
    )
        .prop_map(|(td, segments, rest)| {
            let mut path: String = segments.iter().map(|s| format!("/{s}")).collect();
            if rest {
                path.push_str("/**");
            }
            format!("spiffe://{td}{path}")
        })
        .boxed()
}

/// IDs over the same tiny alphabet.
fn small_id() -> BoxedStrategy<String> {
    (
        select(&["td", "example.org", "td.evil"][..]),
        prop::collection::vec(select(&["a", "b", "c"][..]), 0..5),
    )
        .prop_map(|(td, segments)| {
            let path: String = segments.iter().map(|s| format!("/{s}")).collect();
            format!("spiffe://{td}{path}")
        })
        .boxed()
}

/// Up to `max` byte edits of `base`: set, insert, remove, truncate.
fn mutated(base: Vec<u8>, max: usize) -> BoxedStrategy<Vec<u8>> {
    prop::collection::vec((0..4u8, any::<prop::sample::Index>(), any::<u8>()), 0..=max)
        .prop_map(move |edits| {
            let mut bytes = base.clone();
            for (op, index, value) in edits {
                if bytes.is_empty() {
                    bytes.push(value);
                    continue;
                }
                let at = index.index(bytes.len());
                match op {
                    0 => bytes[at] = value,
                    1 => bytes.insert(at, value),
                    2 => {
                        bytes.remove(at);
                    }
                    _ => bytes.truncate(at),
                }
            }
            bytes
        })
        .boxed()
}

/// SPIFFE bundle documents built entry by entry, valid and invalid entries mixed.
fn bundle_document() -> BoxedStrategy<Vec<u8>> {
    let fx = checks::fixture();
    let b64 = |der: &[u8]| {
        use base64::Engine as _;
        base64::engine::general_purpose::STANDARD.encode(der)
    };
    let x5c_values = vec![
        serde_json::json!([b64(&fx.root)]),
        serde_json::json!([b64(&fx.root), b64(&fx.chain[1])]),
        serde_json::json!([b64(&fx.chain[1])]),
        serde_json::json!([b64(&fx.chain[0])]),
        serde_json::json!([]),
        serde_json::json!(["not base64!"]),
        serde_json::json!([b64(b"not a certificate")]),
        serde_json::json!([1]),
        serde_json::json!(null),
    ];
    let entry = (
        select(vec![
            serde_json::json!("x509-svid"),
            serde_json::json!("jwt-svid"),
            serde_json::json!(null),
            serde_json::json!(7),
        ]),
        select(vec![
            serde_json::json!("EC"),
            serde_json::json!("RSA"),
            serde_json::json!("OKP"),
            serde_json::json!("oct"),
            serde_json::json!(null),
        ]),
        select(x5c_values),
    )
        .prop_flat_map(|(use_, kty, x5c)| {
            // Mostly JWK objects; sometimes the same fields as an array, which no JWK is.
            prop_oneof![
                4 => Just(serde_json::json!({"use": use_, "kty": kty, "x5c": x5c})),
                1 => Just(serde_json::json!([kty, use_, x5c])),
            ]
        });
    let number = prop_oneof![
        Just(serde_json::json!(null)),
        any::<i64>().prop_map(|n| serde_json::json!(n)),
        any::<u64>().prop_map(|n| serde_json::json!(n)),
        Just(serde_json::json!(1.5)),
        Just(serde_json::json!("7")),
    ];
    (prop::collection::vec(entry, 0..4), number.clone(), number)
        .prop_flat_map(|(keys, sequence, hint)| {
            let as_object = serde_json::json!({
                "keys": keys,
                "spiffe_sequence": sequence,
                "spiffe_refresh_hint": hint,
            });
            let as_array = serde_json::json!([keys, sequence, hint]);
            prop_oneof![4 => Just(as_object), 1 => Just(as_array)]
        })
        .prop_map(|doc| doc.to_string().into_bytes())
        .boxed()
}

// === Properties ===

proptest! {
    #![proptest_config(config(4096))]

    #[test]
    fn valid_ids_round_trip_and_match_patterns_made_from_them(id in valid_id()) {
        checks::spiffe_id(&id);
        prop_assert!(zt_core::SpiffeId::new(&id).is_ok(), "{id:?} is in the grammar");
    }

    #[test]
    fn near_miss_ids_get_one_verdict_from_every_entry_point(id in near_miss_id()) {
        checks::spiffe_id(&id);
    }

    #[test]
    fn arbitrary_strings_get_one_verdict_from_every_entry_point(s in any_string()) {
        checks::spiffe_id(&s);
    }

    #[test]
    fn patterns_match_what_the_reference_matcher_matches(
        pattern in small_pattern(),
        id in small_id(),
    ) {
        checks::spiffe_id(&pattern);
        checks::pattern_against_id(&pattern, &id);
    }

    #[test]
    fn grammar_patterns_match_what_the_reference_matcher_matches(
        pattern in near_miss_id(),
        id in valid_id(),
    ) {
        checks::pattern_against_id(&pattern, &id);
    }
}

proptest! {
    #![proptest_config(config(512))]

    #[test]
    fn mutated_svid_pem_is_refused_or_accepted_consistently(
        input in prop_oneof![
            mutated(svid_pem_input(false), 4),
            mutated(svid_pem_input(true), 4),
        ],
    ) {
        checks::svid_pem(&input);
    }

    #[test]
    fn arbitrary_bytes_are_refused_as_svid_pem(input in prop::collection::vec(any::<u8>(), 0..512)) {
        checks::svid_pem(&input);
        prop_assert!(zt_core::X509Svid::from_combined_pem(&input).is_err());
    }

    #[test]
    fn mutated_der_chains_get_one_verdict_from_every_entry_point(
        input in mutated(der_chain_input(), 3),
    ) {
        checks::svid_der_chain(&input);
    }

    #[test]
    fn edited_chains_verify_only_with_a_leaf_the_ca_signed(
        input in prop::collection::vec(any::<u8>(), 0..=41),
    ) {
        checks::verify_edited(&input);
    }

    #[test]
    fn mutated_bundle_documents_are_refused_or_read_as_the_format_says(
        input in mutated(checks::fixture().bundle_json.clone().into_bytes(), 4),
    ) {
        checks::bundle_json(&input);
    }

    #[test]
    fn generated_bundle_documents_hold_exactly_the_selected_entries(input in bundle_document()) {
        checks::bundle_json(&input);
    }

    #[test]
    fn mutated_pem_bundles_are_refused_or_read_whole(
        input in mutated(checks::fixture().bundle_pem.clone().into_bytes(), 4),
    ) {
        checks::bundle_pem(&input);
    }
}

fn svid_pem_input(combined: bool) -> Vec<u8> {
    let fx = checks::fixture();
    if combined {
        format!("{}{}", fx.key_pem, fx.chain_pem).into_bytes()
    } else {
        format!("{}\0{}", fx.chain_pem, fx.key_pem).into_bytes()
    }
}

fn der_chain_input() -> Vec<u8> {
    let fx = checks::fixture();
    let mut bytes = Vec::new();
    for der in fx.chain.iter().chain([&fx.root]) {
        bytes.extend_from_slice(der);
    }
    bytes
}

// === Regressions of the checks themselves ===

#[test]
fn unedited_fixture_chain_verifies() {
    checks::verify_edited(&[]);
}

#[test]
fn unmutated_fixture_material_is_accepted_by_every_parser() {
    let fx = checks::fixture();
    checks::svid_pem(&svid_pem_input(false));
    checks::svid_der_chain(&der_chain_input());
    checks::bundle_json(fx.bundle_json.as_bytes());
    checks::bundle_pem(fx.bundle_pem.as_bytes());
    let svid = zt_core::X509Svid::from_combined_pem(&svid_pem_input(true)).unwrap();
    assert_eq!(svid.id(), &fx.id);
}

#[test]
fn der_splitter_cuts_a_chain_into_its_certificates() {
    let fx = checks::fixture();
    let input = der_chain_input();
    let pieces = checks::split_der(&input, 10);
    assert_eq!(pieces, [&fx.chain[0][..], &fx.chain[1][..], &fx.root[..]]);
    assert_eq!(checks::split_der(b"\x30\x05ab", 10), [&b"\x30\x05ab"[..]]);
}

#[test]
fn rewriting_the_id_inside_a_signed_leaf_is_rejected() {
    // Edit 11 changes one byte of the SPIFFE ID inside the leaf: `/api` → `/apx`.
    let fx = checks::fixture();
    let last = u16::try_from(fx.id.as_str().len() - 1)
        .unwrap()
        .to_le_bytes();
    let input = [0, 11, 0, last[0], last[1], b'x'];
    checks::verify_edited(&input);
    let mut chain: Vec<Vec<u8>> = fx.chain.iter().map(|c| c.to_vec()).collect();
    checks::apply_edits(&mut chain, &input[1..]);
    let edited: Vec<_> = chain
        .into_iter()
        .map(rustls_pki_types::CertificateDer::from)
        .collect();
    assert_ne!(edited, fx.chain);
    let err = zt_core::verify_peer_chain(
        &edited,
        &fx.bundles,
        zt_core::PeerRole::Client,
        &fx.provider,
        fx.now,
    )
    .unwrap_err();
    assert!(
        matches!(
            err,
            zt_core::SvidError::Path(_) | zt_core::SvidError::UnknownIssuer(_)
        ),
        "{err:?}"
    );
}

// === Fuzz findings ===

#[test]
fn spiffe_bundle_document_that_is_a_json_array_is_rejected() {
    // Derived serde also reads a struct from an array of its field values, which made
    // `[[]]` an empty bundle: a garbled document revoking a whole trust domain.
    let td: zt_core::TrustDomain = checks::TRUST_DOMAIN.parse().unwrap();
    for doc in [&b"[[]]"[..], b"[[], 7, 300]"] {
        let err = zt_core::X509Bundle::from_spiffe_json(td.clone(), doc).unwrap_err();
        assert!(matches!(err, zt_core::BundleError::Json(_)), "{err:?}");
    }
}

#[test]
fn spiffe_bundle_key_written_as_a_json_array_is_rejected() {
    use base64::Engine as _;
    let fx = checks::fixture();
    let x5c = base64::engine::general_purpose::STANDARD.encode(&fx.root);
    let doc = serde_json::json!({ "keys": [["EC", "x509-svid", [x5c]]] }).to_string();
    let td: zt_core::TrustDomain = checks::TRUST_DOMAIN.parse().unwrap();
    let err = zt_core::X509Bundle::from_spiffe_json(td, doc.as_bytes()).unwrap_err();
    assert!(matches!(err, zt_core::BundleError::Json(_)), "{err:?}");
}

#[test]
fn spiffe_bundle_document_with_invalid_utf8_in_an_unknown_member_is_rejected() {
    // serde_json does not validate the UTF-8 of strings it skips.
    let td: zt_core::TrustDomain = checks::TRUST_DOMAIN.parse().unwrap();
    let doc = b"{\"keys\": [], \"note\": \"\xc9G\"}";
    let err = zt_core::X509Bundle::from_spiffe_json(td, doc).unwrap_err();
    assert!(matches!(err, zt_core::BundleError::Json(_)), "{err:?}");
}

/// A CA certificate valid from `not_before` to `not_after`, never used by any path.
fn unused_ca(not_before: std::time::SystemTime, not_after: std::time::SystemTime) -> Vec<u8> {
    zt_testkit::ca::TestCa::new(checks::TRUST_DOMAIN)
        .reissued(not_before, not_after)
        .to_vec()
}

fn verify_with_extra(extra: Vec<u8>) -> Result<zt_core::VerifiedPeer, zt_core::SvidError> {
    let fx = checks::fixture();
    let mut chain = fx.chain.clone();
    chain.push(extra.into());
    zt_core::verify_peer_chain(
        &chain,
        &fx.bundles,
        zt_core::PeerRole::Client,
        &fx.provider,
        std::time::SystemTime::now(),
    )
}

/// Every presented certificate must be on the path; one that no path can use is
/// refused before path building, whatever its validity (an expired one was once
/// accepted with a `not_after` already in the past).
fn assert_unlinked(err: zt_core::SvidError) {
    assert!(
        matches!(err, zt_core::SvidError::UnlinkedChain { .. }),
        "expected UnlinkedChain, got {err:?}"
    );
}

#[test]
fn chain_with_an_unused_expired_certificate_is_refused() {
    let hour = std::time::Duration::from_secs(3600);
    let now = std::time::SystemTime::now();
    assert_unlinked(verify_with_extra(unused_ca(now - 2 * hour, now - hour)).unwrap_err());
}

#[test]
fn chain_with_an_unused_not_yet_valid_certificate_is_refused() {
    let hour = std::time::Duration::from_secs(3600);
    let now = std::time::SystemTime::now();
    assert_unlinked(verify_with_extra(unused_ca(now + hour, now + 2 * hour)).unwrap_err());
}

#[test]
fn chain_with_an_unused_valid_certificate_is_refused() {
    let hour = std::time::Duration::from_secs(3600);
    let now = std::time::SystemTime::now();
    assert_unlinked(verify_with_extra(unused_ca(now - hour, now + hour)).unwrap_err());
}
