//! The echo-server example with real clients: curl presenting client certificates,
//! and one keep-alive connection on which a changed policy file or bundle file
//! refuses the next request.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod common;

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Empty};
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use zt_core::dev::{DevCa, SvidParams};
use zt_core::rustls::pki_types::ServerName;
use zt_core::{BundleSet, IdMatcher, IdentitySource, StaticSource, X509Bundle, tls};

use common::*;

/// `curl` GET `path` with `client`'s certificate, trusting the PKI's bundle.
async fn curl_pki(pki: &Pki, client: &SvidFiles, server: &EchoServer, path: &str) -> Curl {
    curl(server, client, &pki.bundle, path, &[]).await
}

#[tokio::test]
async fn curl_with_allowed_svid_gets_its_spiffe_id() {
    let pki = Pki::new("curl-allowed");
    let server = EchoServer::start(&pki, &["--allow", CLIENT_ID]).await;

    let Curl {
        status: code,
        body,
        output,
        ..
    } = curl_pki(&pki, &pki.client, &server, "/whoami").await;
    assert_eq!(code, "200", "{}", describe(&output));
    let json: serde_json::Value = serde_json::from_str(&body).expect("JSON body");
    assert_eq!(json, serde_json::json!({ "spiffe_id": CLIENT_ID }));
}

#[tokio::test]
async fn curl_with_other_valid_svid_gets_403() {
    let pki = Pki::new("curl-other");
    let server = EchoServer::start(&pki, &["--allow", CLIENT_ID]).await;

    let Curl {
        status: code,
        body,
        output,
        ..
    } = curl_pki(&pki, &pki.other_client, &server, "/whoami").await;
    assert_eq!(code, "403", "{}", describe(&output));
    assert!(
        !body.contains(OTHER_CLIENT_ID),
        "the refusal leaks details: {body}"
    );
}

#[tokio::test]
async fn curl_with_svid_of_other_ca_is_refused_at_handshake() {
    let pki = Pki::new("curl-rogue");
    let server = EchoServer::start(&pki, &["--allow", CLIENT_ID]).await;

    let Curl {
        status: code,
        output,
        ..
    } = curl_pki(&pki, &pki.rogue_client, &server, "/whoami").await;
    assert!(!output.status.success(), "{}", describe(&output));
    assert_eq!(code, "000", "got an HTTP answer: {}", describe(&output));
    // With TLS 1.3 curl learns of the refusal after its own Finished, from the
    // server's alert; the server half-closes and drains, so no reset overtakes it.
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        matches!(output.status.code(), Some(35 | 56)),
        "expected a TLS-level failure: {}",
        describe(&output)
    );
    assert!(
        stderr.contains("alert"),
        "expected the server's TLS alert: {}",
        describe(&output)
    );
}

#[tokio::test]
async fn echo_server_without_policy_or_allow_exits_with_usage() {
    let pki = Pki::new("usage");
    let mut args = vec!["--listen", "127.0.0.1:0"];
    args.extend(file_args(&pki.server, &pki.bundle));
    let output = run(&example("echo-server"), &args).await;
    assert_eq!(output.status.code(), Some(2), "{}", describe(&output));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("required arguments were not provided")
            && stderr.contains("--policy <FILE>|--allow <PATTERN>"),
        "{stderr}"
    );
}

/// One HTTP/1.1 keep-alive connection to the echo-server as `client`.
struct OneConnection {
    sender: http1::SendRequest<Empty<Bytes>>,
}

impl OneConnection {
    async fn open(server: &EchoServer, client: &StaticSource) -> Self {
        let config =
            tls::ClientConfigBuilder::new(client.identity(), IdMatcher::exact(id(SERVER_ID)))
                .build()
                .unwrap();
        let tcp = TcpStream::connect(server.addr).await.unwrap();
        let tls = within(
            "TLS handshake",
            TlsConnector::from(Arc::new(config))
                .connect(ServerName::try_from("localhost").unwrap(), tcp),
        )
        .await
        .unwrap();
        let (sender, conn) = http1::handshake(TokioIo::new(tls)).await.unwrap();
        tokio::spawn(conn);
        Self { sender }
    }

    async fn whoami(&mut self) -> StatusCode {
        within("connection ready", self.sender.ready())
            .await
            .unwrap();
        let request = Request::get("/whoami")
            .header("host", "localhost")
            .body(Empty::new())
            .unwrap();
        let response = within("response", self.sender.send_request(request))
            .await
            .expect("request on the same connection");
        let status = response.status();
        response.into_body().collect().await.unwrap();
        status
    }

    /// Repeats the request on this connection until it is refused; every answer
    /// before that must be 200.
    async fn until_refused(&mut self) {
        within("refusal on the same connection", async {
            loop {
                match self.whoami().await {
                    StatusCode::FORBIDDEN => return,
                    StatusCode::OK => tokio::time::sleep(Duration::from_millis(50)).await,
                    other => panic!("unexpected status {other}"),
                }
            }
        })
        .await;
        assert!(
            !self.sender.is_closed(),
            "the refusal must come on the open connection"
        );
    }
}

#[tokio::test]
async fn curl_cannot_reshape_a_request_past_a_deny_rule() {
    let pki = Pki::new("curl-shapes");
    let policy = pki.dir.write_atomic(
        "policy.json",
        format!(
            r#"{{"rules": [
            {{"name": "web", "action": "allow", "from": {{"ids": ["{CLIENT_ID}"]}}}},
            {{"name": "no-whoami-reads", "action": "deny", "from": {{"any": true}},
              "to": {{"methods": ["GET"], "paths": ["/whoami"]}}}},
            {{"name": "no-admin-host", "action": "deny", "from": {{"any": true}},
              "to": {{"hosts": ["admin.internal"]}}}}]}}"#
        ),
    );
    let server = EchoServer::start(&pki, &["--policy", s(&policy)]).await;
    let cases: &[(&str, &[&str])] = &[
        ("/whoami", &[]),
        ("/whoami", &["--head"]),
        ("/whoami", &["--http2", "--head"]),
        ("/whoami", &["-H", "content-type: application/grpc"]),
        (
            "/whoami",
            &["--http2", "-H", "content-type: application/grpc+proto"],
        ),
        ("/%77hoami", &["--path-as-is"]),
        ("/who%61mi", &["--http2", "--path-as-is"]),
        ("/nothing", &["-H", "Host: ADMIN.INTERNAL."]),
        ("/nothing", &["-H", "Host: admin.internal:443"]),
        ("/nothing", &["--http2", "-H", "Host: Admin.Internal"]),
    ];
    for (path, extra) in cases {
        let Curl {
            status: code,
            output,
            ..
        } = curl(&server, &pki.client, &pki.bundle, path, extra).await;
        assert_eq!(code, "403", "{path} {extra:?}: {}", describe(&output));
    }
    // The same peer, where no deny rule applies: the router's own answer.
    let Curl {
        status: code,
        output,
        ..
    } = curl_pki(&pki, &pki.client, &server, "/nothing").await;
    assert_eq!(code, "404", "{}", describe(&output));
}

fn policy_allowing(id: &str) -> String {
    format!(
        r#"{{"rules": [{{"name": "allow-one", "action": "allow", "from": {{"ids": ["{id}"]}}}}]}}"#
    )
}

#[tokio::test]
async fn policy_file_change_denies_next_request_on_same_connection() {
    let pki = Pki::new("policy-reload");
    let policy = pki
        .dir
        .write_atomic("policy.json", policy_allowing(CLIENT_ID));
    let server = EchoServer::start(&pki, &["--policy", s(&policy)]).await;
    let client = StaticSource::new(
        pki.ca.mint(&id(CLIENT_ID)).unwrap(),
        BundleSet::new().with(pki.ca.bundle()),
    )
    .unwrap();

    let mut conn = OneConnection::open(&server, &client).await;
    assert_eq!(conn.whoami().await, StatusCode::OK);

    pki.dir
        .write_atomic("policy.json", policy_allowing(OTHER_CLIENT_ID));
    conn.until_refused().await;
}

#[tokio::test]
async fn bundle_file_change_refuses_peer_on_same_connection() {
    let pki = Pki::new("bundle-reload");
    // The trust domain rotates its CA: the bundle trusts both, the client's SVID is
    // from the retiring one.
    let retiring = DevCa::new("example.org".parse().unwrap()).unwrap();
    pki.dir
        .write_atomic("bundle.pem", bundle_pem(&[&pki.ca, &retiring]));
    let server = EchoServer::start(&pki, &["--allow", CLIENT_ID]).await;
    let both = X509Bundle::new(
        pki.ca.trust_domain().clone(),
        vec![pki.ca.cert_der().clone(), retiring.cert_der().clone()],
    )
    .unwrap();
    let client = StaticSource::new(
        retiring.mint(&id(CLIENT_ID)).unwrap(),
        BundleSet::new().with(both),
    )
    .unwrap();

    let mut conn = OneConnection::open(&server, &client).await;
    assert_eq!(conn.whoami().await, StatusCode::OK);

    pki.dir.write_atomic("bundle.pem", pki.ca.bundle_pem());
    conn.until_refused().await;
}

/// The echo-server for `CLIENT_ID`, with anonymous clients let in to `GET /healthz`.
const ANONYMOUS_HEALTHZ: &[&str] = &[
    "--allow",
    CLIENT_ID,
    "--anonymous",
    "--allow-anonymous",
    "/healthz",
];

#[tokio::test]
async fn curl_without_certificate_gets_ok_from_healthz_allowed_for_unauthenticated() {
    let pki = Pki::new("anonymous-healthz");
    let server = EchoServer::start(&pki, ANONYMOUS_HEALTHZ).await;
    for extra in [&[][..], &["--http2"][..], &["--head"][..]] {
        let Curl {
            status: code,
            body,
            output,
            ..
        } = curl_anonymous(&server, &pki.bundle, "/healthz", extra).await;
        assert_eq!(code, "200", "{extra:?}: {}", describe(&output));
        if extra.is_empty() {
            assert_eq!(body, "ok");
        }
    }
}

#[tokio::test]
async fn curl_without_certificate_gets_403_from_whoami() {
    let pki = Pki::new("anonymous-whoami");
    let server = EchoServer::start(&pki, ANONYMOUS_HEALTHZ).await;
    for (path, extra) in [
        ("/whoami", &[][..]),
        ("/whoami", &["--http2"][..]),
        ("/healthz/../whoami", &["--path-as-is"][..]),
        ("/healthz/%2e%2e/whoami", &["--http2", "--path-as-is"][..]),
        ("/healthz", &["-X", "POST"][..]),
        ("/nothing", &[][..]),
    ] {
        let Curl {
            status: code,
            body,
            output,
            ..
        } = curl_anonymous(&server, &pki.bundle, path, extra).await;
        assert_eq!(code, "403", "{path} {extra:?}: {}", describe(&output));
        assert!(!body.contains("spiffe"), "{body}");
    }
}

#[tokio::test]
async fn curl_without_certificate_gets_403_everywhere_without_allow_anonymous() {
    let pki = Pki::new("anonymous-nothing");
    let server = EchoServer::start(&pki, &["--allow", CLIENT_ID, "--anonymous"]).await;
    for (path, extra) in [
        ("/healthz", &[][..]),
        ("/healthz", &["--http2"][..]),
        ("/whoami", &[][..]),
    ] {
        let Curl {
            status: code,
            output,
            ..
        } = curl_anonymous(&server, &pki.bundle, path, extra).await;
        assert_eq!(code, "403", "{path} {extra:?}: {}", describe(&output));
    }
    // The verified client still reaches both routes.
    for path in ["/healthz", "/whoami"] {
        let Curl {
            status: code,
            output,
            ..
        } = curl_pki(&pki, &pki.client, &server, path).await;
        assert_eq!(code, "200", "{path}: {}", describe(&output));
    }
}

#[tokio::test]
async fn healthz_is_under_the_policy_for_verified_peers_too() {
    let pki = Pki::new("healthz-policy");
    let server = EchoServer::start(&pki, ANONYMOUS_HEALTHZ).await;
    let Curl {
        status: code,
        output,
        ..
    } = curl_pki(&pki, &pki.other_client, &server, "/healthz").await;
    // The rule for anonymous peers is no floor for a verified peer.
    assert_eq!(code, "403", "{}", describe(&output));
}

/// curl's answer from `server` presenting `client`: refused at the handshake, by
/// the server's alert.
#[track_caller]
fn assert_refused_at_handshake(outcome: &Curl, what: &str) {
    let Curl {
        status: code,
        output,
        stderr,
        ..
    } = outcome;
    assert_eq!(
        code,
        "000",
        "{what}: got an HTTP answer: {}",
        describe(output)
    );
    assert!(
        matches!(output.status.code(), Some(35 | 56)),
        "{what}: expected a TLS-level failure: {}",
        describe(output)
    );
    assert!(stderr.contains("alert"), "{what}: {}", describe(output));
}

#[tokio::test]
async fn curl_with_bad_certificate_is_refused_at_handshake_with_anonymous_on() {
    let pki = Pki::new("anonymous-bad-cert");
    let server = EchoServer::start(&pki, ANONYMOUS_HEALTHZ).await;
    let mut expired = SvidParams::new(id(CLIENT_ID));
    expired.not_before = SystemTime::now() - Duration::from_secs(3600);
    expired.not_after = SystemTime::now() - Duration::from_secs(60);
    let (chain, key) = pki.ca.mint_pem(expired).unwrap();
    let expired = SvidFiles {
        cert: pki.dir.write_atomic("expired.pem", &chain),
        key: pki.dir.write_atomic("expired_key.pem", &key),
    };
    let partner_ca = DevCa::new("partner.org".parse().unwrap()).unwrap();
    let partner = write_svid(&pki.dir, "partner", &partner_ca, "spiffe://partner.org/web");
    for (what, client) in [
        ("untrusted CA", &pki.rogue_client),
        ("expired", &expired),
        ("other trust domain", &partner),
    ] {
        for extra in [&[][..], &["--http2"][..]] {
            // A bad certificate never falls back to anonymous, even for /healthz.
            let outcome = curl(&server, client, &pki.bundle, "/healthz", extra).await;
            assert_refused_at_handshake(&outcome, &format!("{what} {extra:?}"));
        }
    }
}

#[tokio::test]
async fn curl_without_certificate_is_refused_at_handshake_without_anonymous() {
    let pki = Pki::new("anonymous-off");
    let server = EchoServer::start(&pki, &["--allow", CLIENT_ID]).await;
    let outcome = curl_anonymous(&server, &pki.bundle, "/healthz", &[]).await;
    assert_refused_at_handshake(&outcome, "no certificate");
}

#[tokio::test]
async fn policy_file_reload_keeps_the_allow_anonymous_rule() {
    let pki = Pki::new("anonymous-reload");
    let policy = pki
        .dir
        .write_atomic("policy.json", policy_allowing(CLIENT_ID));
    let server = EchoServer::start(
        &pki,
        &[
            "--policy",
            s(&policy),
            "--anonymous",
            "--allow-anonymous",
            "/healthz",
        ],
    )
    .await;
    let healthz = async || curl_anonymous(&server, &pki.bundle, "/healthz", &[]).await;
    assert_eq!(healthz().await.status, "200");

    pki.dir
        .write_atomic("policy.json", policy_allowing(OTHER_CLIENT_ID));
    within("the new policy file in force", async {
        while curl_pki(&pki, &pki.other_client, &server, "/whoami")
            .await
            .status
            != "200"
        {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await;
    let Curl {
        status: code,
        output,
        ..
    } = healthz().await;
    assert_eq!(code, "200", "{}", describe(&output));
}

#[tokio::test]
async fn allow_anonymous_without_anonymous_exits_with_usage() {
    let pki = Pki::new("anonymous-usage");
    let mut args = vec!["--listen", "127.0.0.1:0"];
    args.extend(file_args(&pki.server, &pki.bundle));
    args.extend(["--allow", CLIENT_ID, "--allow-anonymous", "/healthz"]);
    let output = run(&example("echo-server"), &args).await;
    assert_eq!(output.status.code(), Some(2), "{}", describe(&output));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("--anonymous"), "{stderr}");
}
