//! Anonymous gRPC clients on an `Incoming` that allows them: the policy's
//! `unauthenticated` rules alone open methods to them, handlers can tell them
//! apart, and a server that does not allow them refuses them at the handshake.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod common;

use tonic::Code;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_client::HealthClient;
use zt_core::IdentitySource;
use zt_tonic::{Incoming, PolicyStore};

use common::greeter::{say_goodbye, say_hello};
use common::*;

/// Health checks and `SayHello` open to anonymous clients; nothing else.
fn anonymous_hello() -> PolicyStore {
    PolicyStore::new(policy(
        r#"{"rules": [
            {"name": "probes", "action": "allow", "from": {"unauthenticated": true},
             "to": {"grpc": ["grpc.health.v1.Health/Check", "helloworld.Greeter/SayHello"]}}
        ]}"#,
    ))
}

async fn anonymous_server(
    policy: PolicyStore,
) -> (Running, zt_core::StaticSource, zt_core::dev::DevCa) {
    let ca = new_ca();
    let server = identity(&ca, SERVER_ID);
    let running = Running::start_with(
        Incoming::builder(server.identity()).allow_anonymous(),
        server.identity(),
        policy,
    )
    .await;
    (running, server, ca)
}

#[tokio::test]
async fn anonymous_call_to_a_method_an_unauthenticated_rule_opens_is_served_as_anonymous() {
    let (running, server, _ca) = anonymous_server(anonymous_hello()).await;
    let channel = running.anonymous_channel(&server).await;
    let reply = within("call", say_hello(&channel, "probe")).await.unwrap();
    assert_eq!(reply, "Hello probe from anonymous");
    let mut health = HealthClient::new(channel.clone());
    let reply = within(
        "health",
        health.check(HealthCheckRequest {
            service: String::new(),
        }),
    )
    .await
    .unwrap();
    assert_eq!(reply.into_inner().status, 1);
    assert_eq!(running.layer.metrics().counts().allowed, 2);
}

#[tokio::test]
async fn anonymous_call_to_another_method_gets_permission_denied() {
    let (running, server, _ca) = anonymous_server(anonymous_hello()).await;
    let channel = running.anonymous_channel(&server).await;
    let status = within("call", say_goodbye(&channel, "probe"))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");
    assert_eq!(running.layer.metrics().counts().denied, 1);
}

#[tokio::test]
async fn anonymous_call_is_denied_by_a_policy_without_an_unauthenticated_rule() {
    let (running, server, ca) = anonymous_server(PolicyStore::new(policy(
        r#"{"rules": [{"name": "everyone", "action": "allow", "from": {"any": true}},
                      {"name": "greeter", "action": "allow", "to": {"grpc": ["helloworld.Greeter/*"]}}]}"#,
    )))
    .await;
    let channel = running.anonymous_channel(&server).await;
    let status = within("call", say_hello(&channel, "probe"))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");
    // A verified client is served by the same policy, as itself.
    let client = identity(&ca, CLIENT_ID);
    let channel = running.channel(&client).await;
    let reply = within("call", say_hello(&channel, "Ada")).await.unwrap();
    assert_eq!(reply, format!("Hello Ada from {CLIENT_ID}"));
}

#[tokio::test]
async fn anonymous_client_fails_to_connect_when_anonymous_is_off() {
    let ca = new_ca();
    let server = identity(&ca, SERVER_ID);
    let running = Running::start(server.identity(), anonymous_hello()).await;
    // The handshake fails (TLS 1.3: on the client's first read), so either the
    // connection or the first call does.
    let attempt = async {
        let channel = running.anonymous_channel_result(&server).await?;
        say_hello(&channel, "probe")
            .await
            .map_err(|status| Box::new(status) as Box<dyn std::error::Error + Send + Sync>)
    };
    let outcome = within("refused call", attempt).await;
    assert!(outcome.is_err(), "{outcome:?}");
    assert_eq!(running.connections(), 0);

    // The same client and policy, on a server that allows anonymous clients.
    let (allowing, server, _ca) = anonymous_server(anonymous_hello()).await;
    let channel = allowing.anonymous_channel_result(&server).await.unwrap();
    let reply = within("call", say_hello(&channel, "probe")).await.unwrap();
    assert_eq!(reply, "Hello probe from anonymous");
}
