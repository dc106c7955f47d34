#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]
//! Parsing of SVIDs and bundles, and validation of candidates before they are published.

use std::time::{Duration, SystemTime};

use base64::Engine as _;
use zt_core::dev::{DevCa, SvidParams};
use zt_core::{
    BundleError, BundleSet, Error, IdentityPublisher, PeerRole, SpiffeId, SvidError, TrustDomain,
    X509Bundle, X509Svid, verify_peer_chain,
};

fn td(name: &str) -> TrustDomain {
    name.parse().unwrap()
}

fn id(s: &str) -> SpiffeId {
    s.parse().unwrap()
}

fn new_ca() -> DevCa {
    DevCa::new(td("example.org")).unwrap()
}

fn pem(ca: &DevCa, s: &str) -> (String, String) {
    ca.mint_pem(SvidParams::new(id(s))).unwrap()
}

// === SVID parsing ===

#[test]
fn svid_from_pem_reads_chain_and_key() {
    let ca = new_ca();
    let (chain, key) = pem(&ca, "spiffe://example.org/api");
    let svid = X509Svid::from_pem(chain.as_bytes(), key.as_bytes()).unwrap();
    assert_eq!(svid.id(), &id("spiffe://example.org/api"));
    assert_eq!(svid.chain().len(), 1);
    assert!(svid.not_after() > SystemTime::now());
}

#[test]
fn svid_from_combined_pem_reads_key_before_chain() {
    let ca = new_ca();
    let (chain, key) = pem(&ca, "spiffe://example.org/api");
    let combined = format!("{key}{chain}");
    let svid = X509Svid::from_combined_pem(combined.as_bytes()).unwrap();
    assert_eq!(svid.id().path(), "/api");
}

#[test]
fn empty_chain_file_is_rejected() {
    let ca = new_ca();
    let (_, key) = pem(&ca, "spiffe://example.org/api");
    let err = X509Svid::from_pem(b"", key.as_bytes()).unwrap_err();
    assert_eq!(err, SvidError::NoCertificate);
}

#[test]
fn empty_key_file_is_rejected() {
    let ca = new_ca();
    let (chain, _) = pem(&ca, "spiffe://example.org/api");
    let err = X509Svid::from_pem(chain.as_bytes(), b"").unwrap_err();
    assert_eq!(err, SvidError::NoPrivateKey);
}

#[test]
fn truncated_chain_pem_is_rejected() {
    let ca = new_ca();
    let (chain, key) = pem(&ca, "spiffe://example.org/api");
    let half = &chain.as_bytes()[..chain.len() / 2];
    let err = X509Svid::from_pem(half, key.as_bytes()).unwrap_err();
    assert!(matches!(err, SvidError::Pem(_)), "{err:?}");
}

#[test]
fn garbage_bytes_are_rejected() {
    let garbage: Vec<u8> = (0..4096u32).map(|i| (i * 7919 % 251) as u8).collect();
    let err = X509Svid::from_pem(&garbage, &garbage).unwrap_err();
    assert!(
        matches!(err, SvidError::NoCertificate | SvidError::Pem(_)),
        "{err:?}"
    );
}

#[test]
fn certificate_with_corrupted_der_is_rejected() {
    let ca = new_ca();
    let svid = ca.mint(&id("spiffe://example.org/api")).unwrap();
    let mut der = svid.leaf().to_vec();
    der.truncate(der.len() - 10);
    let err = X509Svid::from_der(vec![der.into()], svid.private_key().clone_key()).unwrap_err();
    assert!(
        matches!(err, SvidError::Malformed { index: 0, .. }),
        "{err:?}"
    );
}

#[test]
fn oversized_pem_is_refused_before_parsing() {
    let big = vec![b'A'; zt_core::MAX_SVID_PEM_BYTES + 1];
    let err = X509Svid::from_pem(&big, b"").unwrap_err();
    assert!(matches!(err, SvidError::TooLarge { .. }), "{err:?}");
}

#[test]
fn two_private_keys_in_one_file_are_rejected() {
    let ca = new_ca();
    let (chain, key) = pem(&ca, "spiffe://example.org/api");
    let (_, other_key) = pem(&ca, "spiffe://example.org/api");
    let combined = format!("{key}{other_key}{chain}");
    let err = X509Svid::from_combined_pem(combined.as_bytes()).unwrap_err();
    assert_eq!(err, SvidError::MultiplePrivateKeys);
}

#[test]
fn key_of_another_certificate_does_not_match() {
    let ca = new_ca();
    let (chain, _) = pem(&ca, "spiffe://example.org/api");
    let (_, other_key) = pem(&ca, "spiffe://example.org/api");
    let svid = X509Svid::from_pem(chain.as_bytes(), other_key.as_bytes()).unwrap();
    let provider = zt_core::default_provider().unwrap();
    let err = svid.certified_key(&provider).unwrap_err();
    assert_eq!(err, SvidError::KeyMismatch);
}

#[test]
fn debug_output_redacts_the_private_key() {
    let ca = new_ca();
    let svid = ca.mint(&id("spiffe://example.org/api")).unwrap();
    let printed = format!("{svid:?} {ca:?}");
    assert!(printed.contains("redacted"));
    let key_b64 = base64::engine::general_purpose::STANDARD.encode(svid.private_key().secret_der());
    assert!(!printed.contains(&key_b64[..16]));
    assert!(!printed.contains("PRIVATE KEY"));
}

#[test]
fn chain_through_intermediate_verifies_against_root_bundle() {
    let root = new_ca();
    let intermediate = root.intermediate().unwrap();
    let svid = intermediate.mint(&id("spiffe://example.org/api")).unwrap();
    assert_eq!(svid.chain().len(), 2);
    let bundles = BundleSet::new().with(root.bundle());
    let provider = zt_core::default_provider().unwrap();
    let verified = verify_peer_chain(
        svid.chain(),
        &bundles,
        PeerRole::Client,
        &provider,
        SystemTime::now(),
    )
    .unwrap();
    assert_eq!(verified.id().path(), "/api");
}

#[test]
fn chain_longer_than_the_limit_is_rejected() {
    let ca = new_ca();
    let svid = ca.mint(&id("spiffe://example.org/api")).unwrap();
    let mut chain = svid.chain().to_vec();
    while chain.len() <= zt_core::MAX_CHAIN_LEN {
        chain.push(ca.cert_der().clone());
    }
    let err = X509Svid::from_der(chain, svid.private_key().clone_key()).unwrap_err();
    assert!(matches!(err, SvidError::ChainTooLong { .. }), "{err:?}");
}

#[test]
fn verification_after_expiry_fails_with_expired() {
    let ca = new_ca();
    let svid = ca
        .mint_with(SvidParams::new(id("spiffe://example.org/api")).ttl(Duration::from_secs(60)))
        .unwrap();
    let bundles = BundleSet::new().with(ca.bundle());
    let provider = zt_core::default_provider().unwrap();
    let later = SystemTime::now() + Duration::from_secs(120);
    let err =
        verify_peer_chain(svid.chain(), &bundles, PeerRole::Server, &provider, later).unwrap_err();
    assert_eq!(err, SvidError::Expired);
}

#[test]
fn peer_of_a_domain_without_bundle_is_rejected() {
    let partner = DevCa::new(td("partner.org")).unwrap();
    let svid = partner.mint(&id("spiffe://partner.org/api")).unwrap();
    let bundles = BundleSet::new().with(new_ca().bundle());
    let provider = zt_core::default_provider().unwrap();
    let err = verify_peer_chain(
        svid.chain(),
        &bundles,
        PeerRole::Client,
        &provider,
        SystemTime::now(),
    )
    .unwrap_err();
    assert_eq!(err, SvidError::NoBundle(td("partner.org")));
}

#[test]
fn peer_of_a_revoked_domain_is_rejected() {
    let ca = new_ca();
    let svid = ca.mint(&id("spiffe://example.org/api")).unwrap();
    let bundles = BundleSet::new().with(X509Bundle::empty(td("example.org")));
    let provider = zt_core::default_provider().unwrap();
    let err = verify_peer_chain(
        svid.chain(),
        &bundles,
        PeerRole::Client,
        &provider,
        SystemTime::now(),
    )
    .unwrap_err();
    assert_eq!(err, SvidError::EmptyBundle(td("example.org")));
}

// === bundles ===

fn jwk(der: &[u8]) -> serde_json::Value {
    serde_json::json!({
        "use": "x509-svid",
        "kty": "EC",
        "crv": "P-256",
        "x5c": [base64::engine::general_purpose::STANDARD.encode(der)],
    })
}

#[test]
fn spiffe_bundle_json_reads_x509_entries() {
    let ca = new_ca();
    let doc = serde_json::json!({
        "keys": [jwk(ca.cert_der())],
        "spiffe_sequence": 42,
        "spiffe_refresh_hint": 300,
    });
    let bundle =
        X509Bundle::from_spiffe_json(td("example.org"), doc.to_string().as_bytes()).unwrap();
    assert_eq!(bundle.len(), 1);
    assert_eq!(bundle.authorities()[0], *ca.cert_der());
    assert_eq!(bundle.sequence(), Some(42));
    assert_eq!(bundle.refresh_hint(), Some(Duration::from_secs(300)));
}

#[test]
fn spiffe_bundle_json_ignores_jwt_and_unknown_entries() {
    let ca = new_ca();
    let der = base64::engine::general_purpose::STANDARD.encode(ca.cert_der());
    let doc = serde_json::json!({
        "keys": [
            {"use": "jwt-svid", "kty": "EC", "kid": "k1", "crv": "P-256", "x": "AA", "y": "AA"},
            {"use": "x509-svid", "kty": "oct", "x5c": [der]},
            {"kty": "EC", "x5c": [der]},
            {"use": "x509-svid", "kty": "EC"},
            {"use": "x509-svid", "kty": "EC", "x5c": []},
        ],
    });
    let bundle =
        X509Bundle::from_spiffe_json(td("example.org"), doc.to_string().as_bytes()).unwrap();
    assert!(bundle.is_empty());
}

#[test]
fn spiffe_bundle_json_uses_only_the_first_x5c_certificate() {
    let ca = new_ca();
    let other = DevCa::new(td("example.org")).unwrap();
    let b64 = |der: &[u8]| base64::engine::general_purpose::STANDARD.encode(der);
    let doc = serde_json::json!({
        "keys": [{"use": "x509-svid", "kty": "EC", "x5c": [b64(ca.cert_der()), b64(other.cert_der())]}],
    });
    let bundle =
        X509Bundle::from_spiffe_json(td("example.org"), doc.to_string().as_bytes()).unwrap();
    assert_eq!(bundle.authorities(), &[ca.cert_der().clone()]);
}

#[test]
fn spiffe_bundle_json_without_keys_is_rejected() {
    let err =
        X509Bundle::from_spiffe_json(td("example.org"), br#"{"spiffe_sequence": 1}"#).unwrap_err();
    assert!(matches!(err, BundleError::Json(_)), "{err:?}");
}

#[test]
fn spiffe_bundle_json_with_bad_base64_is_rejected() {
    let doc = br#"{"keys": [{"use": "x509-svid", "kty": "EC", "x5c": ["%%%"]}]}"#;
    let err = X509Bundle::from_spiffe_json(td("example.org"), doc).unwrap_err();
    assert_eq!(err, BundleError::Base64 { index: 0 });
}

#[test]
fn bundle_with_a_leaf_certificate_is_rejected() {
    let ca = new_ca();
    let svid = ca.mint(&id("spiffe://example.org/api")).unwrap();
    let err = X509Bundle::new(td("example.org"), vec![svid.leaf().clone()]).unwrap_err();
    assert_eq!(err, BundleError::NotCa { index: 0 });
}

#[test]
fn empty_pem_bundle_is_rejected() {
    let err = X509Bundle::from_pem(td("example.org"), b"\n").unwrap_err();
    assert_eq!(err, BundleError::NoCertificate);
}

#[test]
fn pem_or_json_detects_the_format() {
    let ca = new_ca();
    let from_pem =
        X509Bundle::from_pem_or_json(td("example.org"), ca.bundle_pem().as_bytes()).unwrap();
    let json = serde_json::json!({ "keys": [jwk(ca.cert_der())] }).to_string();
    let from_json = X509Bundle::from_pem_or_json(td("example.org"), json.as_bytes()).unwrap();
    assert!(from_pem.same_authorities(&from_json));
}

#[test]
fn bundle_set_replaces_never_merges_a_domain() {
    let a = new_ca();
    let b = new_ca();
    let mut set = BundleSet::new().with(a.bundle());
    let replaced = set.insert(b.bundle()).unwrap();
    assert!(replaced.same_authorities(&a.bundle()));
    assert_eq!(set.len(), 1);
    assert!(
        set.get(&td("example.org"))
            .unwrap()
            .same_authorities(&b.bundle())
    );
}

// === publication ===

#[test]
fn publisher_rejects_key_of_another_certificate_and_keeps_serving() {
    let ca = new_ca();
    let publisher = IdentityPublisher::new().unwrap();
    let bundles = BundleSet::new().with(ca.bundle());
    let good = ca.mint(&id("spiffe://example.org/api")).unwrap();
    publisher.publish(good.clone(), bundles.clone()).unwrap();

    let (chain, _) = pem(&ca, "spiffe://example.org/api");
    let (_, wrong_key) = pem(&ca, "spiffe://example.org/api");
    let bad = X509Svid::from_pem(chain.as_bytes(), wrong_key.as_bytes()).unwrap();
    let err = publisher.publish(bad, bundles).unwrap_err();
    assert!(
        matches!(err, Error::Svid(SvidError::KeyMismatch)),
        "{err:?}"
    );

    let identity = publisher.identity();
    let serving = identity.snapshot().unwrap();
    assert_eq!(serving.generation(), 1);
    assert_eq!(serving.svid().leaf(), good.leaf());
    let status = identity.status();
    assert!(status.is_ready());
    assert!(status.last_error().unwrap().contains("does not match"));
}

#[test]
fn publisher_rejects_svid_without_its_own_bundle() {
    let ca = new_ca();
    let partner = DevCa::new(td("partner.org")).unwrap();
    let publisher = IdentityPublisher::new().unwrap();
    let svid = ca.mint(&id("spiffe://example.org/api")).unwrap();
    let err = publisher
        .publish(svid, BundleSet::new().with(partner.bundle()))
        .unwrap_err();
    assert!(matches!(err, Error::NoOwnBundle(_)), "{err:?}");
    let status = publisher.identity().status();
    assert!(!status.is_ready());
    assert!(status.not_ready_reason().unwrap().contains("example.org"));
}

#[test]
fn publisher_rejects_svid_not_signed_by_its_bundle() {
    let ca = new_ca();
    let other = new_ca();
    let publisher = IdentityPublisher::new().unwrap();
    let svid = ca.mint(&id("spiffe://example.org/api")).unwrap();
    let err = publisher
        .publish(svid, BundleSet::new().with(other.bundle()))
        .unwrap_err();
    assert!(
        matches!(err, Error::Svid(SvidError::UnknownIssuer(_))),
        "{err:?}"
    );
    assert!(publisher.identity().snapshot().is_none());
}

#[test]
fn publisher_rejects_expired_svid() {
    let ca = new_ca();
    let publisher = IdentityPublisher::new().unwrap();
    let now = SystemTime::now();
    let params = SvidParams {
        not_before: now - Duration::from_secs(7200),
        not_after: now - Duration::from_secs(3600),
        ..SvidParams::new(id("spiffe://example.org/api"))
    };
    let svid = ca.mint_with(params).unwrap();
    let err = publisher
        .publish(svid, BundleSet::new().with(ca.bundle()))
        .unwrap_err();
    assert!(matches!(err, Error::Svid(SvidError::Expired)), "{err:?}");
}

#[test]
fn republishing_the_same_material_keeps_the_generation() {
    let ca = new_ca();
    let publisher = IdentityPublisher::new().unwrap();
    let svid = ca.mint(&id("spiffe://example.org/api")).unwrap();
    let bundles = BundleSet::new().with(ca.bundle());
    publisher.publish(svid.clone(), bundles.clone()).unwrap();
    let again = publisher.publish(svid, bundles).unwrap();
    assert_eq!(again.generation(), 1);
}

#[test]
fn bundle_only_change_is_a_new_generation() {
    let ca = new_ca();
    let partner = DevCa::new(td("partner.org")).unwrap();
    let publisher = IdentityPublisher::new().unwrap();
    let svid = ca.mint(&id("spiffe://example.org/api")).unwrap();
    publisher
        .publish(svid.clone(), BundleSet::new().with(ca.bundle()))
        .unwrap();
    let next = publisher
        .publish(
            svid,
            BundleSet::new().with(ca.bundle()).with(partner.bundle()),
        )
        .unwrap();
    assert_eq!(next.generation(), 2);
    assert_eq!(next.bundles().len(), 2);
}

#[test]
fn withdrawal_fails_closed_until_the_next_publication() {
    let ca = new_ca();
    let publisher = IdentityPublisher::new().unwrap();
    let identity = publisher.identity();
    let svid = ca.mint(&id("spiffe://example.org/api")).unwrap();
    let bundles = BundleSet::new().with(ca.bundle());
    publisher.publish(svid.clone(), bundles.clone()).unwrap();
    publisher.withdraw("svid removed by the agent");
    assert!(identity.snapshot().is_none());
    assert!(
        identity
            .status()
            .not_ready_reason()
            .unwrap()
            .contains("removed by the agent")
    );
    let back = publisher.publish(svid, bundles).unwrap();
    assert_eq!(back.generation(), 2);
    assert!(identity.status().is_ready());
}

#[tokio::test]
async fn subscribers_see_publications() {
    let ca = new_ca();
    let publisher = IdentityPublisher::new().unwrap();
    let identity = publisher.identity();
    let mut changes = identity.changes();
    let waiter = tokio::spawn(async move { identity.ready().await.generation() });
    publisher
        .publish(
            ca.mint(&id("spiffe://example.org/api")).unwrap(),
            BundleSet::new().with(ca.bundle()),
        )
        .unwrap();
    assert!(changes.changed().await);
    assert_eq!(changes.status().generation(), 1);
    assert_eq!(waiter.await.unwrap(), 1);
}

#[test]
fn serving_svid_that_expired_makes_the_identity_not_ready() {
    let ca = new_ca();
    let publisher = IdentityPublisher::new().unwrap();
    let svid = ca
        .mint_with(SvidParams::new(id("spiffe://example.org/api")).ttl(Duration::from_secs(60)))
        .unwrap();
    publisher
        .publish(svid, BundleSet::new().with(ca.bundle()))
        .unwrap();
    let status = publisher.identity().status();
    assert!(status.is_ready());
    let later = SystemTime::now() + Duration::from_secs(120);
    assert!(!status.is_ready_at(later));
}

/// Drives a handshake between two in-memory connections on this thread.
fn handshake_in_memory(
    client: &mut zt_core::rustls::ClientConnection,
    server: &mut zt_core::rustls::ServerConnection,
) {
    for _ in 0..16 {
        if !client.is_handshaking() && !server.is_handshaking() {
            return;
        }
        let mut buf = Vec::new();
        while client.wants_write() {
            client.write_tls(&mut buf).unwrap();
        }
        let mut slice = buf.as_slice();
        while !slice.is_empty() {
            server.read_tls(&mut slice).unwrap();
            server.process_new_packets().unwrap();
        }
        let mut buf = Vec::new();
        while server.wants_write() {
            server.write_tls(&mut buf).unwrap();
        }
        let mut slice = buf.as_slice();
        while !slice.is_empty() {
            client.read_tls(&mut slice).unwrap();
            client.process_new_packets().unwrap();
        }
    }
    panic!("handshake did not complete");
}

#[test]
fn peer_identity_takes_what_the_verifier_established_for_exactly_that_chain() {
    use std::sync::Arc;
    use zt_core::{IdMatcher, PeerIdentity, tls};

    let ca = new_ca();
    let bundles = BundleSet::new().with(ca.bundle());
    let server = IdentityPublisher::new().unwrap();
    server
        .publish(
            ca.mint(&id("spiffe://example.org/server")).unwrap(),
            bundles.clone(),
        )
        .unwrap();
    let client = IdentityPublisher::new().unwrap();
    let client_svid = ca.mint(&id("spiffe://example.org/client")).unwrap();
    client.publish(client_svid.clone(), bundles).unwrap();
    let server_config = tls::ServerConfigBuilder::new(server.identity())
        .build()
        .unwrap();
    let client_config = tls::ClientConfigBuilder::new(client.identity(), IdMatcher::any())
        .build()
        .unwrap();
    let mut c = zt_core::rustls::ClientConnection::new(
        Arc::new(client_config),
        "localhost".try_into().unwrap(),
    )
    .unwrap();
    let mut s = zt_core::rustls::ServerConnection::new(Arc::new(server_config)).unwrap();
    handshake_in_memory(&mut c, &mut s);

    // The verifier of the server identity accepted this chain under its serving
    // snapshot: its record, and nothing the caller passes, vouches for it.
    let serving = server.identity().snapshot().unwrap();
    let peer = PeerIdentity::from_connection(&s, PeerRole::Client, &server.identity()).unwrap();
    assert_eq!(peer.id(), client_svid.id());
    assert!(peer.is_verified_under(&serving));
    assert_eq!(peer.not_after(), client_svid.not_after());

    // The record was taken; the same chain in another role, through another
    // identity, or a chain the verifier did not accept vouches for nothing: it is
    // parsed and left to re-verification.
    let again = PeerIdentity::from_connection(&s, PeerRole::Client, &server.identity()).unwrap();
    assert!(!again.is_verified_under(&serving));
    let as_server =
        PeerIdentity::from_connection(&s, PeerRole::Server, &server.identity()).unwrap();
    assert!(!as_server.is_verified_under(&serving));
    let through_client =
        PeerIdentity::from_connection(&s, PeerRole::Client, &client.identity()).unwrap();
    assert!(!through_client.is_verified_under(&serving));
    let other = ca.mint(&id("spiffe://example.org/client")).unwrap();
    let unverified = PeerIdentity::from_chain(other.chain().to_vec(), PeerRole::Client).unwrap();
    assert!(!unverified.is_verified_under(&serving));
}

#[test]
fn a_json_file_of_secrets_given_as_a_bundle_is_refused_without_echoing_it() {
    let td: zt_core::TrustDomain = "example.org".parse().unwrap();
    let secrets = br#"{"keys": "AKIA-secret-do-not-log", "password": "hunter2"}"#;
    let err = X509Bundle::from_spiffe_json(td, secrets)
        .unwrap_err()
        .to_string();
    assert!(!err.contains("AKIA") && !err.contains("hunter2"), "{err}");
    assert!(err.contains("line 1 column"), "{err}");
}

#[test]
fn a_dev_ca_saved_as_pem_issues_svids_that_verify_against_its_first_bundle() {
    let ca = new_ca();
    let kept = DevCa::from_pem(ca.trust_domain().clone(), &ca.cert_pem(), &ca.key_pem()).unwrap();
    let provider = zt_core::default_provider().unwrap();
    let svid = kept.mint(&id("spiffe://example.org/later")).unwrap();
    svid.verify(
        &BundleSet::new().with(ca.bundle()),
        &provider,
        SystemTime::now(),
    )
    .unwrap();
    // A key that is not the certificate's is refused.
    let other = new_ca();
    assert!(DevCa::from_pem(ca.trust_domain().clone(), &ca.cert_pem(), &other.key_pem()).is_err());
}
