//! The building blocks zt-tonic reuses: `Server::incoming` (authenticated
//! connections for another HTTP stack) and `Authorize::check` with `grpc_only`
//! (decisions without zt-tower's 403 answer).

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
    assert_eq!(accepted.peer.id().as_str(), CLIENT_ID);
    assert_eq!(
        accepted.stream.get_ref().1.alpn_protocol(),
        Some(&b"h2"[..])
    );
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
    assert_eq!(accepted.peer.id().as_str(), CLIENT_ID);
}

#[tokio::test]
async fn grpc_only_decides_by_path_whatever_the_content_type() {
    let ca = new_ca();
    let server = identity(&ca, SERVER_ID);
    let client = ca.mint(&id(CLIENT_ID)).unwrap();
    let peer = PeerIdentity::from_chain(client.chain().to_vec(), PeerRole::Client, 0).unwrap();
    let policy = || {
        Policy::parse(
            r#"{"rules": [
            {"name": "grpc-hello", "action": "allow", "from": {"any": true},
             "to": {"grpc": ["helloworld.Greeter/SayHello"]}},
            {"name": "http-all", "action": "allow", "from": {"any": true},
             "to": {"paths": ["/**"]}}]}"#,
            Format::Json,
        )
        .unwrap()
    };
    let inner = tower::service_fn(|_: Request<String>| async {
        Ok::<_, Infallible>(Response::new(String::new()))
    });
    let by_content_type = AuthorizeLayer::new(server.identity(), PolicyStore::new(policy()));
    let grpc_only = AuthorizeLayer::new(server.identity(), PolicyStore::new(policy())).grpc_only();
    let request = |path: &str| {
        let mut request = Request::post(path).body(String::new()).unwrap();
        request.extensions_mut().insert(peer.clone());
        request
    };

    // Without a gRPC content type, the HTTP rule allows any path...
    let mut service = by_content_type.layer(inner);
    assert_eq!(
        service.check(&mut request("/helloworld.Greeter/Purge")),
        Ok(())
    );
    // ...unless every request is a gRPC call, as on a tonic server.
    let mut service = grpc_only.layer(inner);
    assert_eq!(
        service.check(&mut request("/helloworld.Greeter/Purge")),
        Err(Denial::Policy)
    );
    assert_eq!(
        service.check(&mut request("/helloworld.Greeter/SayHello")),
        Ok(())
    );
    assert_eq!(
        service.check(&mut Request::new(String::new())),
        Err(Denial::NoIdentity)
    );
    let counts = grpc_only.metrics().counts();
    assert_eq!(
        (counts.allowed, counts.denied, counts.no_identity),
        (1, 1, 1)
    );
}
