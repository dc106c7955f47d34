//! JWT-SVIDs on gRPC calls through zt-tonic, with tokens minted by an
//! independent implementation (PyJWT): a tonic client presents its token with
//! `bearer_interceptor`, the server decides on the mTLS peer and the token's
//! subject together, and an invalid token is `UNAUTHENTICATED`.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod common;

use tokio::net::TcpListener;
use tonic::transport::Channel;
use tonic::{Code, Request, Status};
use zt_core::IdentitySource;
use zt_core::jwt::{JwtBundles, JwtSvid, JwtValidator};
use zt_testkit::greeter::HelloRequest;
use zt_testkit::greeter::greeter_client::GreeterClient;
use zt_testkit::jwt::MintedJwts;
use zt_tonic::{AuthorizeLayer, Connector, IdMatcher, Incoming, PolicyStore};

use common::*;

const AUDIENCE: &str = "orders-api";
const GATEWAY_ID: &str = "spiffe://example.org/gateway";

struct Setup {
    minted: MintedJwts,
    channel: Channel,
    _task: tokio::task::JoinHandle<Result<(), tonic::transport::Error>>,
}

/// A server that lets the gateway say hello on behalf of the frontend only.
async fn setup() -> Setup {
    let minted = MintedJwts::mint(AUDIENCE);
    let ca = new_ca();
    let server = identity(&ca, SERVER_ID);
    let gateway = identity(&ca, GATEWAY_ID);
    let bundles = JwtBundles::default();
    bundles
        .load_files(&[(
            "example.org".parse().unwrap(),
            minted.bundle("example.org").to_owned(),
        )])
        .unwrap();
    let validator = JwtValidator::new(bundles, AUDIENCE).unwrap();
    let policy = policy(
        r#"{"rules": [{"name": "gateway-for-frontend", "action": "allow",
            "from": {"ids": ["spiffe://example.org/gateway"],
                     "jwt": {"ids": ["spiffe://example.org/frontend"]}},
            "to": {"grpc": ["helloworld.Greeter/SayHello"]}}]}"#,
    );
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let incoming = Incoming::new(server.identity(), listener).unwrap();
    let layer = AuthorizeLayer::new(server.identity(), PolicyStore::new(policy)).jwt(validator);
    let task = tokio::spawn(
        zt_tonic::server()
            .layer(layer)
            .add_service(greeter::server())
            .serve_with_incoming(incoming),
    );
    let connector = Connector::new(gateway.identity(), IdMatcher::exact(id(SERVER_ID))).unwrap();
    let channel = within(
        "connect",
        connector.connect(format!("https://localhost:{port}")),
    )
    .await
    .unwrap();
    Setup {
        minted,
        channel,
        _task: task,
    }
}

fn hello() -> HelloRequest {
    HelloRequest {
        name: "Ada".to_owned(),
    }
}

async fn hello_with_token(s: &Setup, name: &str) -> Result<String, Status> {
    let svid = JwtSvid::parse(s.minted.token(name)).unwrap();
    let mut client =
        GreeterClient::with_interceptor(s.channel.clone(), zt_tonic::bearer_interceptor(svid));
    let reply = within("call", client.say_hello(hello())).await?;
    Ok(reply.into_inner().message)
}

#[tokio::test]
async fn gateway_with_a_frontend_token_is_served() {
    let s = setup().await;
    let reply = hello_with_token(&s, "valid_ps256").await.unwrap();
    assert_eq!(reply, format!("Hello Ada from {GATEWAY_ID}"));
}

#[tokio::test]
async fn gateway_with_a_batch_token_is_permission_denied() {
    let s = setup().await;
    let status = hello_with_token(&s, "valid_batch").await.unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");
}

#[tokio::test]
async fn gateway_without_a_token_is_permission_denied() {
    let s = setup().await;
    let mut client = GreeterClient::new(s.channel.clone());
    let status = within("call", client.say_hello(hello())).await.unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");
}

#[tokio::test]
async fn forged_tokens_are_unauthenticated() {
    let s = setup().await;
    for name in [
        "alg_none",
        "tampered_payload",
        "wrong_audience",
        "kid_from_other_domain",
    ] {
        let mut request = Request::new(hello());
        request.metadata_mut().insert(
            "authorization",
            format!("Bearer {}", s.minted.token(name)).parse().unwrap(),
        );
        let mut client = GreeterClient::new(s.channel.clone());
        let status = within("call", client.say_hello(request)).await.unwrap_err();
        assert_eq!(status.code(), Code::Unauthenticated, "{name}: {status:?}");
        assert_eq!(status.message(), "invalid token", "{name}");
    }
}

#[tokio::test]
async fn bearer_interceptor_with_an_expired_token_does_not_send_the_call() {
    let s = setup().await;
    let status = hello_with_token(&s, "expired").await.unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");
    assert_eq!(status.message(), "no JWT-SVID to present");
}
