//! The mTLS connector with hyper's client against a zt server: the right server ID
//! is reached and its identity exposed; any other ID is refused before a request
//! is sent.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod common;

use std::error::Error as _;

use bytes::Bytes;
use http::{StatusCode, Uri};
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use zt_core::IdentitySource;
use zt_tower::{
    ClientError, ClientErrorKind, ConnectError, Connector, IdMatcher, PeerIdentity, Policy,
    PolicyStore, Server,
};

use common::*;

fn client_for(connector: Connector) -> Client<Connector, Empty<Bytes>> {
    Client::builder(TokioExecutor::new()).build(connector)
}

fn url(running: &Running, path: &str) -> Uri {
    format!("https://localhost:{}{path}", running.addr.port())
        .parse()
        .unwrap()
}

async fn zt_server() -> (Running, zt_core::dev::DevCa) {
    let ca = new_ca();
    let server = identity(&ca, SERVER_ID);
    let policy = PolicyStore::new(Policy::allow_patterns([CLIENT_ID]).unwrap());
    let running = serve(
        Server::builder(server.identity()),
        authorized(whoami_router(), server.identity(), policy),
    )
    .await;
    (running, ca)
}

/// The connector's error inside a hyper client error.
fn connect_error(err: &hyper_util::client::legacy::Error) -> &ConnectError {
    let mut source = err.source();
    while let Some(err) = source {
        if let Some(connect) = err.downcast_ref::<ConnectError>() {
            return connect;
        }
        source = err.source();
    }
    panic!("no ConnectError in {err:?}")
}

#[tokio::test]
async fn connector_reaches_server_with_expected_id_and_exposes_its_identity() {
    let (running, ca) = zt_server().await;
    let client = identity(&ca, CLIENT_ID);
    let connector = Connector::new(client.identity(), IdMatcher::exact(id(SERVER_ID))).unwrap();

    let response = within(
        "response",
        client_for(connector).get(url(&running, "/whoami")),
    )
    .await
    .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        response.version(),
        http::Version::HTTP_2,
        "ALPN should pick h2"
    );
    let server = response
        .extensions()
        .get::<PeerIdentity>()
        .expect("server identity");
    assert_eq!(server.id().as_str(), SERVER_ID);
    let body = response.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(body, CLIENT_ID);
}

#[tokio::test]
async fn connector_refuses_server_with_another_id() {
    let (running, ca) = zt_server().await;
    let client = identity(&ca, CLIENT_ID);
    let connector = Connector::new(
        client.identity(),
        IdMatcher::exact(id("spiffe://example.org/billing")),
    )
    .unwrap();

    let err = within(
        "refusal",
        client_for(connector).get(url(&running, "/whoami")),
    )
    .await
    .expect_err("server with another ID was accepted");
    match connect_error(&err) {
        ConnectError::ServerRefused(zt_core::tls::Rejection::Unauthorized(unauthorized)) => {
            assert_eq!(unauthorized.id, id(SERVER_ID));
            let text = connect_error(&err).to_string();
            assert!(text.contains("not authorized"), "unclear reason: {text}");
        }
        other => panic!("expected ServerRefused, got {other:?}"),
    }
}

#[tokio::test]
async fn connector_refuses_plaintext_http_uri() {
    let (running, ca) = zt_server().await;
    let client = identity(&ca, CLIENT_ID);
    let connector = Connector::new(client.identity(), IdMatcher::exact(id(SERVER_ID))).unwrap();
    let uri: Uri = format!("http://localhost:{}/whoami", running.addr.port())
        .parse()
        .unwrap();

    let err = within("refusal", client_for(connector).get(uri))
        .await
        .expect_err("plaintext URI was dialed");
    assert!(
        matches!(connect_error(&err), ConnectError::Uri { .. }),
        "{err:?}"
    );
}

/// A server whose SVID is from `old_ca`, a client trusting `old_ca` and `new_ca`
/// with an SVID from `new_ca`, so the client can withdraw the server's CA and
/// keep its own. The server counts the requests that reach it.
async fn rotating_pair() -> (
    Running,
    zt_core::IdentityPublisher,
    zt_core::dev::DevCa,
    std::sync::Arc<std::sync::atomic::AtomicUsize>,
) {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use zt_core::{BundleSet, X509Bundle};

    let old_ca = new_ca();
    let new_ca = new_ca();
    let both = X509Bundle::new(
        old_ca.trust_domain().clone(),
        vec![old_ca.cert_der().clone(), new_ca.cert_der().clone()],
    )
    .unwrap();
    let server = identity_with(
        &old_ca,
        zt_core::dev::SvidParams::new(id(SERVER_ID)),
        BundleSet::new().with(both.clone()),
    );
    let hits = Arc::new(AtomicUsize::new(0));
    let counted = Arc::clone(&hits);
    let app = axum::Router::new().route(
        "/whoami",
        axum::routing::get(move || {
            counted.fetch_add(1, Ordering::SeqCst);
            async { "hello" }
        }),
    );
    let running = serve(Server::builder(server.identity()), app).await;
    let client = zt_core::IdentityPublisher::new().unwrap();
    client
        .publish(
            new_ca.mint(&id(CLIENT_ID)).unwrap(),
            BundleSet::new().with(both),
        )
        .unwrap();
    (running, client, new_ca, hits)
}

/// The typed reason inside a hyper client error, if any.
fn untrusted(err: &hyper_util::client::legacy::Error) -> Option<&zt_tower::ServerNoLongerTrusted> {
    let mut source = err.source();
    while let Some(err) = source {
        if let Some(found) = err.downcast_ref::<zt_tower::ServerNoLongerTrusted>() {
            return Some(found);
        }
        if let Some(io) = err.downcast_ref::<std::io::Error>()
            && let Some(found) = io
                .get_ref()
                .and_then(|inner| inner.downcast_ref::<zt_tower::ServerNoLongerTrusted>())
        {
            return Some(found);
        }
        source = err.source();
    }
    None
}

async fn pooled_connection_to_a_server_that_no_longer_verifies_sends_nothing(http2: bool) {
    use std::sync::atomic::Ordering;
    use zt_core::BundleSet;

    let (running, client, new_ca, hits) = rotating_pair().await;
    let mut builder = Connector::builder(client.identity(), IdMatcher::exact(id(SERVER_ID)));
    if !http2 {
        builder = builder.alpn_protocols(vec![b"http/1.1".to_vec()]);
    }
    let http = client_for(builder.build().unwrap());
    let response = within("response", http.get(url(&running, "/whoami")))
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    response.into_body().collect().await.unwrap();
    assert_eq!(hits.load(Ordering::SeqCst), 1);

    // The client's trust domain withdraws the server's CA.
    client
        .publish(
            new_ca.mint(&id(CLIENT_ID)).unwrap(),
            BundleSet::new().with(new_ca.bundle()),
        )
        .unwrap();
    let err = within("refusal", http.get(url(&running, "/whoami")))
        .await
        .expect_err("a server that no longer verifies must not be reached");
    // The pooled connection fails with the typed reason; a retry on a new
    // connection is refused at the handshake.
    let refused_at_handshake = {
        let mut source = err.source();
        let mut found = false;
        while let Some(inner) = source {
            found |= matches!(
                inner.downcast_ref::<ConnectError>(),
                Some(ConnectError::ServerRefused(_))
            );
            source = inner.source();
        }
        found
    };
    assert!(
        untrusted(&err).is_some() || refused_at_handshake,
        "expected ServerNoLongerTrusted or a refused handshake: {err:?}"
    );
    assert_eq!(
        hits.load(Ordering::SeqCst),
        1,
        "a request reached the untrusted server"
    );
}

#[tokio::test]
async fn pooled_http2_connection_to_a_server_that_no_longer_verifies_sends_nothing() {
    pooled_connection_to_a_server_that_no_longer_verifies_sends_nothing(true).await;
}

#[tokio::test]
async fn pooled_http1_connection_to_a_server_that_no_longer_verifies_sends_nothing() {
    pooled_connection_to_a_server_that_no_longer_verifies_sends_nothing(false).await;
}

#[tokio::test]
async fn the_stream_fails_with_the_typed_reason_once_the_server_no_longer_verifies() {
    use hyper::rt::Write as _;
    use std::future::poll_fn;
    use std::pin::Pin;
    use zt_core::BundleSet;

    let (running, client, new_ca, hits) = rotating_pair().await;
    let connector = Connector::new(client.identity(), IdMatcher::exact(id(SERVER_ID))).unwrap();
    let mut stream = within("connect", connector.connect(&url(&running, "/")))
        .await
        .unwrap();
    client
        .publish(
            new_ca.mint(&id(CLIENT_ID)).unwrap(),
            BundleSet::new().with(new_ca.bundle()),
        )
        .unwrap();
    let err = poll_fn(|cx| Pin::new(&mut stream).poll_write(cx, b"GET / HTTP/1.1\r\n\r\n"))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::PermissionDenied);
    let reason = err
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<zt_tower::ServerNoLongerTrusted>())
        .expect("typed reason");
    assert_eq!(reason.server, id(SERVER_ID));
    assert!(
        matches!(reason.reason, zt_core::SvidError::UnknownIssuer(_)),
        "{reason:?}"
    );
    assert_eq!(hits.load(std::sync::atomic::Ordering::SeqCst), 0);
}

// === ClientError: zt's reason in the error's Display ===

#[tokio::test]
async fn client_error_says_zt_refused_the_server_and_why() {
    let (running, ca) = zt_server().await;
    let client = identity(&ca, CLIENT_ID);
    let connector = Connector::new(
        client.identity(),
        IdMatcher::exact(id("spiffe://example.org/billing")),
    )
    .unwrap();
    let err = within(
        "refusal",
        client_for(connector).get(url(&running, "/whoami")),
    )
    .await
    .map_err(ClientError::from)
    .expect_err("server with another ID was accepted");
    assert_eq!(err.kind(), ClientErrorKind::ServerRefused);
    let text = err.to_string();
    assert!(
        text.starts_with("server certificate refused")
            && text.contains(SERVER_ID)
            && text.contains("not authorized"),
        "{text}"
    );
    // hyper-util's own words are not zt's reason.
    assert!(!text.contains("client error (Connect)"), "{text}");
}

#[tokio::test]
async fn client_error_says_the_server_refused_our_svid_and_what_its_alert_means() {
    let (running, server_ca) = zt_server().await;
    // An SVID of another authority claiming the same trust domain; this client
    // trusts the server's CA too, so only the server refuses.
    let rogue_ca = new_ca();
    let client = zt_core::StaticSource::new(
        rogue_ca.mint(&id(CLIENT_ID)).unwrap(),
        zt_core::BundleSet::new().with(
            zt_core::X509Bundle::new(
                server_ca.trust_domain().clone(),
                vec![server_ca.cert_der().clone(), rogue_ca.cert_der().clone()],
            )
            .unwrap(),
        ),
    )
    .unwrap();
    for alpn in [b"h2".to_vec(), b"http/1.1".to_vec()] {
        let connector = Connector::builder(client.identity(), IdMatcher::exact(id(SERVER_ID)))
            .alpn_protocols(vec![alpn.clone()])
            .build()
            .unwrap();
        let err = within(
            "refusal",
            client_for(connector).get(url(&running, "/whoami")),
        )
        .await
        .map_err(ClientError::from)
        .expect_err("the server accepted an SVID of an authority it does not trust");
        let text = err.to_string();
        assert!(
            text.contains("the peer refused our certificate (TLS alert unknown_ca)")
                && text.contains("does not trust the authority that issued our SVID"),
            "{}: {text}",
            String::from_utf8_lossy(&alpn)
        );
        // HTTP/1.1 hands the typed error through. h2 keeps only the kind and text
        // of an I/O error, so over HTTP/2 the Display carries the reason but the
        // kind is not known.
        if alpn == b"http/1.1" {
            assert_eq!(err.kind(), ClientErrorKind::RefusedByServer, "{err:?}");
            assert!(
                text.starts_with("the peer refused our certificate"),
                "{text}"
            );
        }
    }
}

#[tokio::test]
async fn client_error_says_a_pooled_server_no_longer_verifies() {
    use zt_core::BundleSet;

    let (running, client, new_ca, _hits) = rotating_pair().await;
    let http = client_for(
        Connector::builder(client.identity(), IdMatcher::exact(id(SERVER_ID)))
            .build()
            .unwrap(),
    );
    let response = within("response", http.get(url(&running, "/whoami")))
        .await
        .unwrap();
    response.into_body().collect().await.unwrap();
    client
        .publish(
            new_ca.mint(&id(CLIENT_ID)).unwrap(),
            BundleSet::new().with(new_ca.bundle()),
        )
        .unwrap();
    let err = within("refusal", http.get(url(&running, "/whoami")))
        .await
        .map_err(ClientError::from)
        .expect_err("a server that no longer verifies must not be reached");
    // The pooled connection fails with the typed reason, or a fresh connection is
    // refused at the handshake: both name zt's reason.
    match err.kind() {
        ClientErrorKind::ServerNoLongerTrusted => {
            assert!(err.to_string().contains("no longer verifies"), "{err}");
        }
        ClientErrorKind::ServerRefused => {
            assert!(
                err.to_string().starts_with("server certificate refused"),
                "{err}"
            );
        }
        other => panic!("unexpected kind {other:?}: {err}"),
    }
}

#[tokio::test]
async fn client_error_names_the_tcp_failure() {
    let ca = new_ca();
    let client = identity(&ca, CLIENT_ID);
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    let connector = Connector::new(client.identity(), IdMatcher::exact(id(SERVER_ID))).unwrap();
    let uri: Uri = format!("https://127.0.0.1:{port}/").parse().unwrap();
    let err = within("refusal", client_for(connector).get(uri))
        .await
        .map_err(ClientError::from)
        .expect_err("nothing listens");
    assert_eq!(err.kind(), ClientErrorKind::Connect);
    assert!(
        err.to_string().starts_with("TCP connection failed") && err.to_string().contains("refused"),
        "{err}"
    );
    assert!(
        err.source().is_some(),
        "the original error stays the source"
    );
}
