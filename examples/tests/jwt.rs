//! The echo-server and echo-client examples with JWT-SVIDs minted by an
//! independent implementation (PyJWT): one policy decides on the mTLS peer (the
//! "gateway", `spiffe://example.org/web`) and the token's subject together;
//! curl sends forged and expired tokens.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod common;

use zt_testkit::jwt::MintedJwts;

use common::*;

const AUDIENCE: &str = "orders-api";
const FRONTEND_ID: &str = "spiffe://example.org/frontend";

/// The web workload may call on behalf of the frontend only.
fn policy() -> String {
    format!(
        r#"{{"rules": [{{"name": "web-for-frontend", "action": "allow",
            "from": {{"ids": ["{CLIENT_ID}"], "jwt": {{"ids": ["{FRONTEND_ID}"]}}}}}}]}}"#
    )
}

async fn start(pki: &Pki, minted: &MintedJwts) -> EchoServer {
    let policy = pki.dir.write("policy.json", policy());
    let bundle = format!("example.org={}", s(minted.bundle("example.org")));
    EchoServer::start(
        pki,
        &[
            "--policy",
            s(&policy),
            "--jwt-bundle",
            &bundle,
            "--audience",
            AUDIENCE,
        ],
    )
    .await
}

#[tokio::test]
async fn echo_client_with_a_frontend_token_is_answered_with_both_identities() {
    let pki = Pki::new("jwt-echo-client");
    let minted = MintedJwts::mint(AUDIENCE);
    let server = start(&pki, &minted).await;
    let token = pki.dir.write(
        "jwt_svid.token",
        format!("{}\n", minted.token("valid_rs256")),
    );

    let mut args = vec!["--url".to_owned(), server.url("/whoami")];
    args.extend(
        file_args(&pki.client, &pki.bundle)
            .iter()
            .map(|a| (*a).to_owned()),
    );
    args.extend(["--server-id".to_owned(), SERVER_ID.to_owned()]);
    args.extend(["--jwt".to_owned(), s(&token).to_owned()]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let output = run(&example("echo-client"), &args).await;
    assert!(output.status.success(), "{}", describe(&output));
    let json: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(
        json,
        serde_json::json!({ "spiffe_id": CLIENT_ID, "jwt_spiffe_id": FRONTEND_ID })
    );
}

#[tokio::test]
async fn echo_client_with_a_batch_token_is_forbidden() {
    let pki = Pki::new("jwt-echo-client-batch");
    let minted = MintedJwts::mint(AUDIENCE);
    let server = start(&pki, &minted).await;
    let token = pki.dir.write("jwt_svid.token", minted.token("valid_batch"));

    let mut args = vec!["--url".to_owned(), server.url("/whoami")];
    args.extend(
        file_args(&pki.client, &pki.bundle)
            .iter()
            .map(|a| (*a).to_owned()),
    );
    args.extend(["--server-id".to_owned(), SERVER_ID.to_owned()]);
    args.extend(["--jwt".to_owned(), s(&token).to_owned()]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let output = run(&example("echo-client"), &args).await;
    assert_eq!(output.status.code(), Some(1), "{}", describe(&output));
    assert!(String::from_utf8_lossy(&output.stderr).contains("403"));
}

#[tokio::test]
async fn curl_with_a_forged_or_expired_token_gets_401_and_without_one_403() {
    let pki = Pki::new("jwt-curl");
    let minted = MintedJwts::mint(AUDIENCE);
    let server = start(&pki, &minted).await;
    for name in [
        "alg_none",
        "hs256_with_public_key",
        "expired",
        "wrong_audience",
        "tampered_payload",
    ] {
        let header = format!("Authorization: Bearer {}", minted.token(name));
        let outcome = curl(
            &server,
            &pki.client,
            &pki.bundle,
            "/whoami",
            &["-H", &header],
        )
        .await;
        assert_eq!(
            outcome.status,
            "401",
            "{name}: {}",
            describe(&outcome.output)
        );
    }
    let header = format!("Authorization: Bearer {}", minted.token("valid_es256"));
    let outcome = curl(
        &server,
        &pki.client,
        &pki.bundle,
        "/whoami",
        &["-H", &header],
    )
    .await;
    assert_eq!(outcome.status, "200", "{}", describe(&outcome.output));
    let outcome = curl(&server, &pki.client, &pki.bundle, "/whoami", &[]).await;
    assert_eq!(outcome.status, "403", "{}", describe(&outcome.output));
}

#[tokio::test]
async fn audience_without_jwt_bundle_exits_with_usage() {
    let pki = Pki::new("jwt-usage");
    let mut args = file_args(&pki.server, &pki.bundle).to_vec();
    args.extend([
        "--listen",
        "127.0.0.1:0",
        "--allow",
        CLIENT_ID,
        "--audience",
        AUDIENCE,
    ]);
    let output = run(&example("echo-server"), &args).await;
    assert_eq!(output.status.code(), Some(2), "{}", describe(&output));
}
