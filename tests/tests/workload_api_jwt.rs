//! The Workload API's JWT calls against the project's test Workload API server:
//! JWT bundles streamed, rotated and withdrawn, and our JWT-SVID fetched per
//! audience, with tokens and bundles minted by an independent implementation
//! (PyJWT).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use std::future::Future;
use std::time::Duration;

use zt_core::jwt::{JwtBundles, JwtError, JwtSvidSource, JwtValidator};
use zt_core::{WorkloadJwtBundles, WorkloadJwtSvid};
use zt_testkit::jwt::MintedJwts;
use zt_testkit::workload::FakeWorkloadApi;
use zt_testkit::workload_proto::X509svidResponse;

const AUDIENCE: &str = "orders-api";
const TIMEOUT: Duration = Duration::from_secs(20);

async fn eventually(what: &str, mut condition: impl FnMut() -> bool) {
    tokio::time::timeout(TIMEOUT, async {
        while !condition() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("timed out waiting until {what}"));
}

async fn within<F: Future>(what: &str, future: F) -> F::Output {
    tokio::time::timeout(TIMEOUT, future)
        .await
        .unwrap_or_else(|_| panic!("timed out: {what}"))
}

fn bundle_doc(minted: &MintedJwts, td: &str) -> Vec<u8> {
    std::fs::read(minted.bundle(td)).unwrap()
}

fn fake() -> FakeWorkloadApi {
    let mut api = FakeWorkloadApi::new(X509svidResponse::with(Vec::new()));
    api.serve();
    api
}

#[tokio::test]
async fn jwt_bundles_stream_in_rotate_and_are_withdrawn() {
    let minted = MintedJwts::mint(AUDIENCE);
    let api = fake();
    api.set_jwt_bundles(&[("spiffe://example.org", bundle_doc(&minted, "example.org"))]);
    let bundles = JwtBundles::default();
    let validator = JwtValidator::new(bundles.clone(), AUDIENCE).unwrap();
    let _stream = WorkloadJwtBundles::start(Some(api.endpoint()), bundles.clone()).unwrap();

    eventually("the bundle arrives", || {
        validator.validate(minted.token("valid_es256")).is_ok()
    })
    .await;
    assert!(matches!(
        validator.validate(minted.token("valid_partner")),
        Err(JwtError::UnknownTrustDomain(_))
    ));

    // Federation added in a later message: both domains now.
    api.set_jwt_bundles(&[
        ("spiffe://example.org", bundle_doc(&minted, "example.org")),
        ("spiffe://partner.org", bundle_doc(&minted, "partner.org")),
    ]);
    eventually("partner.org arrives", || {
        validator.validate(minted.token("valid_partner")).is_ok()
    })
    .await;

    // A message with a bundle that does not read is refused whole.
    api.set_jwt_bundles(&[
        ("spiffe://example.org", b"{\"keys\": [".to_vec()),
        ("spiffe://partner.org", bundle_doc(&minted, "partner.org")),
    ]);
    tokio::time::sleep(Duration::from_millis(300)).await;
    validator.validate(minted.token("valid_es256")).unwrap();

    // Each message is the whole state: example.org missing means withdrawn.
    api.set_jwt_bundles(&[("spiffe://partner.org", bundle_doc(&minted, "partner.org"))]);
    eventually("example.org is withdrawn", || {
        matches!(
            validator.validate(minted.token("valid_es256")),
            Err(JwtError::UnknownTrustDomain(_))
        )
    })
    .await;
    validator.validate(minted.token("valid_partner")).unwrap();
}

#[tokio::test]
async fn jwt_svid_is_fetched_for_its_audience_and_refreshed() {
    let minted = MintedJwts::mint(AUDIENCE);
    let api = fake();
    api.set_jwt_svids(
        AUDIENCE,
        &[("spiffe://example.org/frontend", minted.token("valid_es256"))],
    );
    let svid = WorkloadJwtSvid::start(Some(api.endpoint()), AUDIENCE).unwrap();
    let token = within("first token", svid.ready(TIMEOUT))
        .await
        .expect("a token");
    assert_eq!(token.token(), minted.token("valid_es256"));
    assert_eq!(token.id().as_str(), "spiffe://example.org/frontend");
    assert!(token.audience().iter().any(|a| a == AUDIENCE));
    assert!(api.jwt_svid_calls() >= 1);
}

#[tokio::test]
async fn short_lived_jwt_svid_is_fetched_again_before_it_expires() {
    let minted = MintedJwts::mint(AUDIENCE);
    let api = fake();
    // Lives six seconds: fetched again at the latest a second or so later.
    api.set_jwt_svids(
        AUDIENCE,
        &[("spiffe://example.org/frontend", minted.token("short_lived"))],
    );
    let svid = WorkloadJwtSvid::start(Some(api.endpoint()), AUDIENCE).unwrap();
    within("first token", svid.ready(TIMEOUT))
        .await
        .expect("a token");
    api.set_jwt_svids(
        AUDIENCE,
        &[("spiffe://example.org/frontend", minted.token("valid_es256"))],
    );
    eventually("the token is refreshed", || {
        svid.current()
            .is_some_and(|t| t.token() == minted.token("valid_es256"))
    })
    .await;
    assert!(api.jwt_svid_calls() >= 2);
}

#[tokio::test]
async fn jwt_svid_for_another_audience_is_not_taken() {
    let minted = MintedJwts::mint(AUDIENCE);
    let api = fake();
    // The agent answers with a token whose aud is not the one asked for.
    api.set_jwt_svids(
        "billing-api",
        &[("spiffe://example.org/frontend", minted.token("valid_es256"))],
    );
    let svid = WorkloadJwtSvid::start(Some(api.endpoint()), "billing-api").unwrap();
    assert!(svid.ready(Duration::from_millis(800)).await.is_none());
    assert!(svid.current().is_none());
}
