//! The building blocks zt-tonic reuses: `Server::incoming` (authenticated
//! connections for another HTTP stack) and `Authorize::check` (decisions
//! without zt-tower's 403 answer).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod common;

use std::convert::Infallible;
use std::time::Duration;

use http::{Request, Response};
use tokio::io::AsyncReadExt;
use tokio::net::{TcpListener, TcpStream};
use tower::Layer;
use zt_core::{BundleSet, Format, IdentitySource, PeerRole, X509Bundle};
use zt_tower::{AuthorizeLayer, Denial, PeerIdentity, Policy, PolicyStore, Server};

use common::*;

#[tokio::test]
async fn incoming_yields_connections_with_the_clients_identity() {
    let ca = new_ca();
    let server = identity(&ca, SERVER_ID);
    let client = identity(&ca, CLIENT_ID);
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let mut incoming = Server::builder(server.identity())
        .alpn_protocols(vec![b"h2".to_vec()])
        .build()
        .unwrap()
        .incoming(listener);

    let _client = tls_connect(addr, client_config(&client, SERVER_ID, &[b"h2"]))
        .await
        .unwrap();
    let accepted = within("accept", incoming.accept()).await.unwrap();
    assert_eq!(accepted.peer.verified().unwrap().id().as_str(), CLIENT_ID);
    assert_eq!(
        accepted.stream.get_ref().1.alpn_protocol(),
        Some(&b"h2"[..])
    );
}

#[tokio::test]
async fn incoming_yields_a_client_without_certificate_as_anonymous_when_allowed() {
    let ca = new_ca();
    let server = identity(&ca, SERVER_ID);
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let mut incoming = Server::builder(server.identity())
        .alpn_protocols(vec![b"h2".to_vec()])
        .allow_anonymous()
        .build()
        .unwrap()
        .incoming(listener);

    let _anonymous = tls_connect(addr, anonymous_client_config(&server, SERVER_ID, &[b"h2"]))
        .await
        .unwrap();
    let accepted = within("accept", incoming.accept()).await.unwrap();
    assert!(accepted.peer.is_anonymous());
    assert!(accepted.peer.verified().is_none());

    // A verified client on the same listener is still verified.
    let client = identity(&ca, CLIENT_ID);
    let _client = tls_connect(addr, client_config(&client, SERVER_ID, &[b"h2"]))
        .await
        .unwrap();
    let accepted = within("accept", incoming.accept()).await.unwrap();
    assert_eq!(accepted.peer.verified().unwrap().id().as_str(), CLIENT_ID);
}

#[tokio::test]
async fn incoming_skips_failed_handshakes_without_stalling() {
    let ca = new_ca();
    let rogue_ca = new_ca();
    let server = identity(&ca, SERVER_ID);
    let client = identity(&ca, CLIENT_ID);
    let both = X509Bundle::new(
        ca.trust_domain().clone(),
        vec![ca.cert_der().clone(), rogue_ca.cert_der().clone()],
    )
    .unwrap();
    let rogue = identity_with(
        &rogue_ca,
        zt_core::dev::SvidParams::new(id(CLIENT_ID)),
        BundleSet::new().with(both),
    );
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let mut incoming = Server::builder(server.identity())
        .handshake_timeout(Duration::from_secs(60))
        .build()
        .unwrap()
        .incoming(listener);

    // A silent client and a rogue one come first; neither holds up the next.
    let _silent = TcpStream::connect(addr).await.unwrap();
    let rogue_conn = tls_connect(addr, client_config(&rogue, SERVER_ID, &[b"h2"])).await;
    if let Ok(mut rogue_conn) = rogue_conn {
        // TLS 1.3: the refusal arrives as an alert on the first read.
        let mut byte = [0u8; 1];
        assert!(matches!(rogue_conn.read(&mut byte).await, Ok(0) | Err(_)));
    }
    let _client = tls_connect(addr, client_config(&client, SERVER_ID, &[b"h2"]))
        .await
        .unwrap();
    // Well before the silent client's handshake times out.
    let accepted = tokio::time::timeout(Duration::from_secs(10), incoming.accept())
        .await
        .expect("a silent client stalled the accepting")
        .unwrap();
    assert_eq!(accepted.peer.verified().unwrap().id().as_str(), CLIENT_ID);
}

#[tokio::test]
async fn check_decides_by_path_whatever_the_content_type_and_canonicalises_it() {
    let ca = new_ca();
    let server = identity(&ca, SERVER_ID);
    let client = ca.mint(&id(CLIENT_ID)).unwrap();
    let peer = PeerIdentity::from_chain(client.chain().to_vec(), PeerRole::Client).unwrap();
    let policy = Policy::parse(
        r#"{"rules": [
        {"name": "grpc-hello", "action": "allow", "from": {"any": true},
         "to": {"grpc": ["helloworld.Greeter/SayHello"]}},
        {"name": "http-all", "action": "allow", "from": {"any": true},
         "to": {"paths": ["/**"]}},
        {"name": "no-purge", "action": "deny", "from": {"any": true},
         "to": {"paths": ["/helloworld.Greeter/Purge"]}}]}"#,
        Format::Json,
    )
    .unwrap();
    let inner = tower::service_fn(|_: Request<String>| async {
        Ok::<_, Infallible>(Response::new(String::new()))
    });
    let layer = AuthorizeLayer::new(server.identity(), PolicyStore::new(policy));
    let request = |path: &str, content_type: Option<&str>| {
        let mut request = Request::post(path);
        if let Some(content_type) = content_type {
            request = request.header("content-type", content_type);
        }
        let mut request = request.body(String::new()).unwrap();
        request.extensions_mut().insert(peer.clone());
        request
    };

    let mut service = layer.layer(inner);
    for content_type in [
        None,
        Some("application/grpc"),
        Some("application/grpc+json"),
        Some("text/plain"),
    ] {
        // The HTTP deny rule holds for gRPC content types too.
        assert_eq!(
            service.check(&mut request("/helloworld.Greeter/Purge", content_type)),
            Err(Denial::Policy),
            "{content_type:?}"
        );
        assert_eq!(
            service.check(&mut request("/helloworld.Greeter/%50urge", content_type)),
            Err(Denial::Policy),
            "{content_type:?}"
        );
    }
    // An allowed request is passed on in the canonical form it was decided in.
    let mut allowed = request(
        "/helloworld.Greeter/%53ayHello?x=%41",
        Some("application/grpc"),
    );
    assert_eq!(service.check(&mut allowed), Ok(()));
    assert_eq!(allowed.uri().path(), "/helloworld.Greeter/SayHello");
    assert_eq!(allowed.uri().query(), Some("x=%41"));
    assert_eq!(
        service.check(&mut Request::new(String::new())),
        Err(Denial::NoIdentity)
    );
    let counts = layer.metrics().counts();
    assert_eq!(
        (counts.allowed, counts.denied, counts.no_identity),
        (1, 8, 1)
    );
}
