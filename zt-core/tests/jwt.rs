//! JWT-SVID validation against tokens and bundles minted by an independent
//! implementation (PyJWT and cryptography, `zt-testkit`'s `jwt_mint.py`): the
//! algorithms the JWT-SVID specification allows are accepted, and each way a
//! token can be wrong — or forged — is refused with its own error.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use std::time::{Duration, SystemTime};

use zt_core::BundleError;
use zt_core::jwt::{JwtBundle, JwtBundleSet, JwtBundles, JwtError, JwtValidator};
use zt_testkit::TempDir;
use zt_testkit::jwt::MintedJwts;

const AUDIENCE: &str = "orders-api";

fn bundles(minted: &MintedJwts) -> JwtBundles {
    let bundles = JwtBundles::default();
    bundles
        .load_files(&[
            (
                "example.org".parse().unwrap(),
                minted.bundle("example.org").to_owned(),
            ),
            (
                "partner.org".parse().unwrap(),
                minted.bundle("partner.org").to_owned(),
            ),
        ])
        .unwrap();
    bundles
}

fn validator(minted: &MintedJwts) -> JwtValidator {
    JwtValidator::new(bundles(minted), AUDIENCE).unwrap()
}

#[test]
fn tokens_signed_with_each_allowed_algorithm_are_accepted() {
    let minted = MintedJwts::mint(AUDIENCE);
    let validator = validator(&minted);
    for name in ["valid_es256", "valid_es384", "valid_rs256", "valid_ps256"] {
        let peer = validator
            .validate(minted.token(name))
            .unwrap_or_else(|err| panic!("{name}: {err}"));
        assert_eq!(
            peer.id().as_str(),
            "spiffe://example.org/frontend",
            "{name}"
        );
        assert_eq!(peer.audience(), [AUDIENCE.to_owned()], "{name}");
        let left = peer.expiry().duration_since(SystemTime::now()).unwrap();
        assert!(left > Duration::from_secs(500), "{name}: {left:?}");
    }
}

#[test]
fn audience_list_containing_ours_is_accepted() {
    let minted = MintedJwts::mint(AUDIENCE);
    let peer = validator(&minted)
        .validate(minted.token("valid_audience_list"))
        .unwrap();
    assert!(peer.audience().iter().any(|a| a == AUDIENCE));
    assert_eq!(peer.audience().len(), 2);
}

#[test]
fn federated_subject_is_checked_with_its_own_domains_bundle() {
    let minted = MintedJwts::mint(AUDIENCE);
    let peer = validator(&minted)
        .validate(minted.token("valid_partner"))
        .unwrap();
    assert_eq!(peer.id().as_str(), "spiffe://partner.org/app");
}

/// Each forged or broken token, and the error that names why.
#[test]
fn each_bad_token_is_refused_with_its_reason() {
    let minted = MintedJwts::mint(AUDIENCE);
    let validator = validator(&minted);
    type Expected = fn(&JwtError) -> bool;
    let cases: &[(&str, Expected)] = &[
        (
            "alg_none",
            |e| matches!(e, JwtError::UnsupportedAlgorithm(a) if a == "none"),
        ),
        (
            "hs256_with_public_key",
            |e| matches!(e, JwtError::UnsupportedAlgorithm(a) if a == "HS256"),
        ),
        ("rs256_header_on_ec_key", |e| {
            matches!(e, JwtError::AlgorithmMismatch { .. })
        }),
        ("wrong_audience", |e| matches!(e, JwtError::Audience(_))),
        ("expired", |e| matches!(e, JwtError::Expired)),
        ("not_yet_valid", |e| matches!(e, JwtError::NotYetValid)),
        ("missing_exp", |e| {
            matches!(e, JwtError::MissingClaim("exp"))
        }),
        ("missing_aud", |e| {
            matches!(e, JwtError::MissingClaim("aud"))
        }),
        ("sub_not_spiffe", |e| matches!(e, JwtError::Subject(_))),
        (
            "unknown_kid",
            |e| matches!(e, JwtError::UnknownKey { kid, .. } if kid == "nope"),
        ),
        ("missing_kid", |e| matches!(e, JwtError::MissingKeyId)),
        // partner.org's key exists, but not in example.org's bundle.
        ("kid_from_other_domain", |e| {
            matches!(e, JwtError::UnknownKey { trust_domain, kid }
                if trust_domain.as_str() == "example.org" && kid == "partner1")
        }),
        ("tampered_payload", |e| matches!(e, JwtError::BadSignature)),
        ("critical_header", |e| matches!(e, JwtError::CriticalHeader)),
        ("huge", |e| matches!(e, JwtError::TooLarge { .. })),
        ("malformed_base64", |e| matches!(e, JwtError::Malformed(_))),
        ("malformed_json", |e| matches!(e, JwtError::Malformed(_))),
        ("two_parts", |e| matches!(e, JwtError::Malformed(_))),
    ];
    for (name, expected) in cases {
        match validator.validate(minted.token(name)) {
            Ok(peer) => panic!("{name} was accepted as {peer:?}"),
            Err(err) => assert!(expected(&err), "{name}: unexpected error {err:?}"),
        }
    }
}

#[test]
fn errors_never_repeat_the_token() {
    let minted = MintedJwts::mint(AUDIENCE);
    let validator = validator(&minted);
    for (name, token) in &minted.tokens {
        if let Err(err) = validator.validate(token) {
            let text = err.to_string();
            for part in token.split('.').filter(|p| p.len() > 16) {
                assert!(
                    !text.contains(part),
                    "{name}: error {text:?} repeats the token"
                );
            }
        }
    }
}

/// JSON with a repeated member is read differently by different parsers; the
/// subject a policy decides on must not depend on which one.
#[test]
fn repeated_claims_are_refused() {
    use base64::Engine as _;
    let minted = MintedJwts::mint(AUDIENCE);
    let valid = minted.token("valid_es256");
    let parts: Vec<&str> = valid.split('.').collect();
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let claims = String::from_utf8(b64.decode(parts[1]).unwrap()).unwrap();
    let doubled = claims.replacen('{', r#"{"sub": "spiffe://example.org/admin", "#, 1);
    let token = format!("{}.{}.{}", parts[0], b64.encode(doubled), parts[2]);
    let err = validator(&minted).validate(&token).unwrap_err();
    assert!(matches!(err, JwtError::Malformed(_)), "{err:?}");
}

#[test]
fn withdrawn_bundle_refuses_tokens_that_validated_before() {
    let minted = MintedJwts::mint(AUDIENCE);
    let bundles = bundles(&minted);
    let validator = JwtValidator::new(bundles.clone(), AUDIENCE).unwrap();
    validator.validate(minted.token("valid_es256")).unwrap();

    // example.org withdrawn: only partner.org stays.
    let partner = bundles
        .load()
        .get(&"partner.org".parse().unwrap())
        .cloned()
        .unwrap();
    bundles.publish(JwtBundleSet::new().with(partner));
    let err = validator.validate(minted.token("valid_es256")).unwrap_err();
    assert!(matches!(err, JwtError::UnknownTrustDomain(_)), "{err:?}");

    // example.org back with no keys: the domain is known, the key is not.
    bundles.publish(JwtBundleSet::new().with(JwtBundle::empty("example.org".parse().unwrap())));
    let err = validator.validate(minted.token("valid_es256")).unwrap_err();
    assert!(matches!(err, JwtError::UnknownKey { .. }), "{err:?}");
}

#[test]
fn bundle_keys_outside_the_jwt_svid_algorithms_are_refused() {
    let td = || "example.org".parse().unwrap();
    let cases = [
        (
            r#"{"keys": [{"use": "jwt-svid", "kty": "EC", "crv": "P-256", "x": "AA", "y": "AA"}]}"#,
            "kid",
        ),
        (
            r#"{"keys": [{"use": "jwt-svid", "kty": "EC", "kid": "a", "crv": "secp256k1", "x": "AA", "y": "AA"}]}"#,
            "curve",
        ),
        (
            r#"{"keys": [{"use": "jwt-svid", "kty": "EC", "kid": "a", "crv": "P-256", "x": "AA", "y": "AA"}]}"#,
            "fit",
        ),
        (
            r#"{"keys": [{"use": "jwt-svid", "kty": "RSA", "kid": "a", "n": "AQAB", "e": "AQAB"}]}"#,
            "2048",
        ),
        (
            r#"{"keys": [{"use": "jwt-svid", "kty": "RSA", "kid": "a", "n": "AQAB"}]}"#,
            "n and e",
        ),
    ];
    for (json, words) in cases {
        let err = JwtBundle::from_spiffe_json(td(), json.as_bytes()).unwrap_err();
        assert!(
            matches!(&err, BundleError::JwtKey { reason, .. } if reason.contains(words)),
            "{json}: {err}"
        );
    }
}

#[test]
fn bundle_with_a_repeated_kid_is_refused() {
    let minted = MintedJwts::mint(AUDIENCE);
    let doc: serde_json::Value =
        serde_json::from_slice(&std::fs::read(minted.bundle("example.org")).unwrap()).unwrap();
    let first = doc["keys"][0].clone();
    let doubled = serde_json::json!({ "keys": [first.clone(), first] });
    let err = JwtBundle::from_spiffe_json(
        "example.org".parse().unwrap(),
        doubled.to_string().as_bytes(),
    )
    .unwrap_err();
    assert!(matches!(err, BundleError::JwtKey { index: 1, .. }), "{err}");
}

#[test]
fn x509_entries_and_unknown_key_types_are_ignored_by_the_jwt_bundle() {
    let json = r#"{"keys": [
        {"use": "x509-svid", "kty": "EC", "x5c": ["AAAA"]},
        {"use": "jwt-svid", "kty": "OKP", "kid": "ed", "crv": "Ed25519", "x": "AA"}
    ]}"#;
    let bundle =
        JwtBundle::from_spiffe_json("example.org".parse().unwrap(), json.as_bytes()).unwrap();
    assert!(bundle.is_empty());
}

#[tokio::test]
async fn watched_bundle_file_rotates_and_a_bad_file_keeps_the_last_good_bundle() {
    let minted = MintedJwts::mint(AUDIENCE);
    let dir = TempDir::new("jwt-watch");
    let path = dir.write(
        "example.org.json",
        std::fs::read(minted.bundle("example.org")).unwrap(),
    );
    let bundles = JwtBundles::default();
    let validator = JwtValidator::new(bundles.clone(), AUDIENCE).unwrap();
    let mut changes = bundles.changes();
    let _watch = bundles
        .watch_files(&[("example.org".parse().unwrap(), path.clone())])
        .unwrap();
    tokio::time::timeout(Duration::from_secs(10), async {
        while validator.validate(minted.token("valid_es256")).is_err() {
            changes.changed().await.unwrap();
        }
    })
    .await
    .expect("the bundle file is loaded");
    validator.validate(minted.token("valid_rs256")).unwrap();

    // Half-written: the bundle in force stays.
    std::fs::write(&path, b"{\"keys\": [").unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    validator.validate(minted.token("valid_es256")).unwrap();

    // Rotated to a bundle without example.org's keys (partner.org's key under
    // example.org's name): old tokens stop validating.
    std::fs::write(&path, std::fs::read(minted.bundle("partner.org")).unwrap()).unwrap();
    tokio::time::timeout(Duration::from_secs(10), async {
        while validator.validate(minted.token("valid_es256")).is_ok() {
            changes.changed().await.unwrap();
        }
    })
    .await
    .expect("the rotated bundle is loaded");
    let err = validator.validate(minted.token("valid_es256")).unwrap_err();
    assert!(matches!(err, JwtError::UnknownKey { .. }), "{err:?}");
}

/// A token seen before is answered from the bundle set's record of verified
/// tokens; the record keeps what the signature proved, never the verdict, so
/// the audience and the time are checked again on every validation.
#[test]
fn recorded_token_is_checked_again_for_audience_and_expiry() {
    let minted = MintedJwts::mint(AUDIENCE);
    let bundles = bundles(&minted);
    let orders = JwtValidator::new(bundles.clone(), AUDIENCE)
        .unwrap()
        .leeway(Duration::ZERO);
    let billing = JwtValidator::new(bundles, "billing-api").unwrap();
    let token = minted.token("short_lived");
    orders.validate(token).unwrap();
    orders.validate(token).unwrap();
    // Same bundles, so the same record: another audience is still refused.
    let err = billing.validate(token).unwrap_err();
    assert!(matches!(err, JwtError::Audience(_)), "{err:?}");

    std::thread::sleep(Duration::from_secs(8));
    let err = orders.validate(token).unwrap_err();
    assert!(matches!(err, JwtError::Expired), "{err:?}");
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(2000))]

    /// Tokens built from arbitrary headers and claims (each part base64url of
    /// arbitrary JSON-ish text) never validate without a signature by a
    /// trusted key, and reading them never panics.
    #[test]
    fn arbitrary_tokens_never_validate(
        header in r#"\{[ -~]{0,60}\}"#,
        claims in r#"\{[ -~]{0,120}\}"#,
        signature in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..96),
    ) {
        use base64::Engine as _;
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let token = format!("{}.{}.{}", b64.encode(&header), b64.encode(&claims), b64.encode(&signature));
        let bundle = JwtBundle::from_spiffe_json("example.org".parse().unwrap(), br#"{"keys": [{
            "use": "jwt-svid", "kty": "EC", "kid": "k1", "crv": "P-256",
            "x": "gI0GAILBdu7T53akrFmMyGcsF3n5dO7MmwNBHKW5SV0",
            "y": "SLW_xSffzlPWrHEVI30DHM_4egVwt3NQqeUD7nMFpps"}]}"#).unwrap();
        let validator = JwtValidator::new(JwtBundles::new(JwtBundleSet::new().with(bundle)), AUDIENCE).unwrap();
        proptest::prop_assert!(validator.validate(&token).is_err());
        let _ = zt_core::jwt::JwtSvid::parse(&token);
    }
}
