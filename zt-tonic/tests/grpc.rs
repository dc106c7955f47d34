//! tonic clients and servers through zt-tonic over real sockets: per-method
//! authorization with gRPC statuses, health checks under the policy, and
//! re-verification on a long-lived HTTP/2 connection.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod common;

use std::time::Duration;

use tonic::Code;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Server;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use zt_core::dev::SvidParams;
use zt_core::{BundleSet, IdMatcher, IdentityPublisher, IdentitySource, X509Bundle};
use zt_tonic::{AuthorizeLayer, Connector, Incoming, PeerIdentity, Policy, PolicyStore};

use common::greeter::{self, say_goodbye, say_hello};
use common::*;

#[tokio::test]
async fn allowed_method_is_served_with_the_callers_identity() {
    let ca = new_ca();
    let server = identity(&ca, SERVER_ID);
    let client = identity(&ca, CLIENT_ID);
    let running = Running::start(server.identity(), PolicyStore::new(hello_for_client())).await;

    let channel = running.channel(&client).await;
    let reply = within("call", say_hello(&channel, "Ada")).await.unwrap();
    assert_eq!(reply, format!("Hello Ada from {CLIENT_ID}"));
    assert_eq!(running.layer.metrics().counts().allowed, 1);
}

#[tokio::test]
async fn method_the_policy_does_not_allow_gets_permission_denied() {
    let ca = new_ca();
    let server = identity(&ca, SERVER_ID);
    let client = identity(&ca, CLIENT_ID);
    let running = Running::start(server.identity(), PolicyStore::new(hello_for_client())).await;

    let channel = running.channel(&client).await;
    let status = within("call", say_goodbye(&channel, "Ada"))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");
    assert_eq!(status.message(), "permission denied");
    assert_eq!(running.layer.metrics().counts().denied, 1);
}

#[tokio::test]
async fn other_valid_client_gets_permission_denied() {
    let ca = new_ca();
    let server = identity(&ca, SERVER_ID);
    let other = identity(&ca, OTHER_CLIENT_ID);
    let running = Running::start(server.identity(), PolicyStore::new(hello_for_client())).await;

    let channel = running.channel(&other).await;
    let status = within("call", say_hello(&channel, "Ada"))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");
}

#[tokio::test]
async fn http_deny_rule_on_a_methods_path_refuses_the_call() {
    let ca = new_ca();
    let server = identity(&ca, SERVER_ID);
    let client = identity(&ca, CLIENT_ID);
    // The content type decides nothing: a `paths` deny rule on the method's
    // path holds for the gRPC call to it.
    let policy = policy(
        r#"{"rules": [{"name": "greeter", "action": "allow",
            "from": {"ids": ["spiffe://example.org/web"]},
            "to": {"grpc": ["helloworld.Greeter/*"]}},
            {"name": "no-hello", "action": "deny", "from": {"any": true},
            "to": {"paths": ["/helloworld.Greeter/SayHello"]}}]}"#,
    );
    let running = Running::start(server.identity(), PolicyStore::new(policy)).await;

    let channel = running.channel(&client).await;
    let status = within("call", say_hello(&channel, "Ada"))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");
    let reply = within("call", say_goodbye(&channel, "Ada")).await.unwrap();
    assert!(reply.contains("Ada"), "{reply}");
}

#[tokio::test]
async fn http_allow_rule_on_a_methods_path_serves_the_call() {
    let ca = new_ca();
    let server = identity(&ca, SERVER_ID);
    let client = identity(&ca, CLIENT_ID);
    let policy = policy(
        r#"{"rules": [{"name": "hello-path", "action": "allow",
            "from": {"ids": ["spiffe://example.org/web"]},
            "to": {"methods": ["POST"], "paths": ["/helloworld.Greeter/SayHello"]}}]}"#,
    );
    let running = Running::start(server.identity(), PolicyStore::new(policy)).await;

    let channel = running.channel(&client).await;
    let reply = within("call", say_hello(&channel, "Ada")).await.unwrap();
    assert_eq!(reply, format!("Hello Ada from {CLIENT_ID}"));
    let status = within("call", say_goodbye(&channel, "Ada"))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");
}

#[tokio::test]
async fn call_without_zt_identity_gets_unauthenticated() {
    let ca = new_ca();
    let server = identity(&ca, SERVER_ID);
    // A misconfigured server: zt's layer over plaintext tonic connections.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let layer = AuthorizeLayer::new(server.identity(), PolicyStore::new(hello_for_client()));
    let counts = layer.clone();
    let serving = tokio::spawn(
        Server::builder()
            .layer(layer)
            .add_service(greeter::server())
            .serve_with_incoming(tonic::transport::server::TcpIncoming::from(listener)),
    );

    let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let status = within("call", say_hello(&channel, "Ada"))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");
    assert_eq!(status.message(), "no verified peer identity");
    assert_eq!(counts.metrics().counts().no_identity, 1);
    serving.abort();
}

#[tokio::test]
async fn health_check_allowed_by_policy_is_served() {
    let ca = new_ca();
    let server = identity(&ca, SERVER_ID);
    let client = identity(&ca, OTHER_CLIENT_ID);
    let policy = policy(
        r#"{"rules": [{"name": "health-probes", "action": "allow",
            "from": {"trust_domains": ["example.org"]},
            "to": {"grpc": ["grpc.health.v1.Health/*"]}}]}"#,
    );
    let running = Running::start(server.identity(), PolicyStore::new(policy)).await;
    running
        .health
        .set_service_status("helloworld.Greeter", tonic_health::ServingStatus::Serving)
        .await;

    let mut health = HealthClient::new(running.channel(&client).await);
    let reply = within(
        "health check",
        health.check(HealthCheckRequest {
            service: "helloworld.Greeter".to_owned(),
        }),
    )
    .await
    .unwrap();
    assert_eq!(reply.into_inner().status(), ServingStatus::Serving);
    // The rule opens health checks only.
    let channel = running.channel(&client).await;
    let status = within("call", say_hello(&channel, "Ada"))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");
}

#[tokio::test]
async fn health_check_not_in_policy_gets_permission_denied() {
    let ca = new_ca();
    let server = identity(&ca, SERVER_ID);
    let client = identity(&ca, CLIENT_ID);
    let running = Running::start(server.identity(), PolicyStore::new(hello_for_client())).await;

    let mut health = HealthClient::new(running.channel(&client).await);
    let status = within(
        "health check",
        health.check(HealthCheckRequest {
            service: String::new(),
        }),
    )
    .await
    .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");
}

#[tokio::test]
async fn policy_change_denies_next_call_on_same_connection() {
    let ca = new_ca();
    let server = identity(&ca, SERVER_ID);
    let client = identity(&ca, CLIENT_ID);
    let store = PolicyStore::new(hello_for_client());
    let running = Running::start(server.identity(), store.clone()).await;

    let channel = running.channel(&client).await;
    for _ in 0..3 {
        within("call", say_hello(&channel, "Ada")).await.unwrap();
    }
    store.store(Policy::deny_all());
    let status = within("call", say_hello(&channel, "Ada"))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");
    assert_eq!(
        running.connections(),
        1,
        "every call went over one connection"
    );
}

#[tokio::test]
async fn ca_removed_from_bundle_refuses_next_call_on_same_connection() {
    let ca = new_ca();
    let client_ca = new_ca();
    let td = ca.trust_domain().clone();
    let both = X509Bundle::new(
        td.clone(),
        vec![ca.cert_der().clone(), client_ca.cert_der().clone()],
    )
    .unwrap();
    let server_svid = || ca.mint(&id(SERVER_ID)).unwrap();
    let publisher = IdentityPublisher::new().unwrap();
    publisher
        .publish(server_svid(), BundleSet::new().with(both.clone()))
        .unwrap();
    let client = identity_with(
        &client_ca,
        SvidParams::new(id(CLIENT_ID)),
        BundleSet::new().with(both),
    );
    let running = Running::start(publisher.identity(), PolicyStore::new(hello_for_client())).await;

    let channel = running.channel(&client).await;
    within("call", say_hello(&channel, "Ada")).await.unwrap();

    // The client's CA is withdrawn from the server's bundle.
    publisher
        .publish(server_svid(), BundleSet::new().with(ca.bundle()))
        .unwrap();
    let status = within("call", say_hello(&channel, "Ada"))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");
    assert_eq!(status.message(), "peer identity no longer valid");
    assert_eq!(
        running.connections(),
        1,
        "both calls went over one connection"
    );
    assert_eq!(running.layer.metrics().counts().untrusted_peer, 1);
}

#[tokio::test]
async fn connection_is_closed_when_client_svid_expires() {
    let ca = new_ca();
    let server = identity(&ca, SERVER_ID);
    let client = identity_with(
        &ca,
        SvidParams::new(id(CLIENT_ID)).ttl(Duration::from_secs(3)),
        BundleSet::new().with(ca.bundle()),
    );
    let running = Running::start(server.identity(), PolicyStore::new(hello_for_client())).await;

    let channel = running.channel(&client).await;
    within("call", say_hello(&channel, "Ada")).await.unwrap();

    // On the open connection a call after expiry would be UNAUTHENTICATED. Once
    // the server closed it, the channel has to reconnect, and the server refuses
    // the expired SVID at the handshake.
    // A call racing the close may fail with a broken pipe first; the test waits
    // for the reconnection's refusal, and fails if it never comes.
    let mut seen = Vec::new();
    let status = within("the reconnection to be refused", async {
        loop {
            match say_hello(&channel, "Ada").await {
                Ok(_) => {}
                Err(status) if status.code() == Code::Unauthenticated => {}
                // The client reads the server's alert and says it in zt's words;
                // over HTTP/2 it reaches the call as the text of an I/O error.
                Err(status)
                    if format!("{status:?}").contains("(TLS alert certificate_expired)") =>
                {
                    return status;
                }
                Err(status) => seen.push(status.code()),
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await;
    assert_eq!(status.code(), Code::Unknown, "{status:?}");
    assert!(
        seen.len() <= 3,
        "transient errors before the refusal: {seen:?}"
    );
}

#[tokio::test]
async fn channel_refuses_server_with_other_id() {
    let ca = new_ca();
    let server = identity(&ca, "spiffe://example.org/billing");
    let client = identity(&ca, CLIENT_ID);
    let running = Running::start(server.identity(), PolicyStore::new(hello_for_client())).await;

    let connector = Connector::new(client.identity(), IdMatcher::exact(id(SERVER_ID))).unwrap();
    let err = within("connect", connector.connect(running.url()))
        .await
        .unwrap_err();
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(&err);
    let mut refused = None;
    while let Some(cause) = source {
        if let Some(zt_tonic::ConnectError::ServerRefused(reason)) = cause.downcast_ref() {
            refused = Some(reason.clone());
        }
        source = cause.source();
    }
    let reason = refused.unwrap_or_else(|| panic!("no ServerRefused in {err:?}"));
    let zt_core::tls::Rejection::Unauthorized(unauthorized) = &reason else {
        panic!("expected an unauthorized server: {reason:?}");
    };
    assert_eq!(unauthorized.id.as_str(), "spiffe://example.org/billing");
    assert_eq!(running.connections(), 0);
}

#[tokio::test]
async fn lazy_channel_connects_on_first_call() {
    let ca = new_ca();
    let server = identity(&ca, SERVER_ID);
    let client = identity(&ca, CLIENT_ID);
    let running = Running::start(server.identity(), PolicyStore::new(hello_for_client())).await;

    let connector = Connector::new(client.identity(), IdMatcher::exact(id(SERVER_ID))).unwrap();
    let channel = connector.connect_lazy(running.url()).unwrap();
    assert_eq!(running.connections(), 0);
    let reply = within("call", say_hello(&channel, "Ada")).await.unwrap();
    assert!(reply.starts_with("Hello Ada"), "{reply}");
    assert_eq!(running.connections(), 1);
}

#[tokio::test]
async fn interceptor_refuses_call_its_check_rejects_for_this_peer() {
    let ca = new_ca();
    let server = identity(&ca, SERVER_ID);
    let client = identity(&ca, CLIENT_ID);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let incoming = Incoming::new(server.identity(), listener).unwrap();
    let url = format!(
        "https://localhost:{}",
        incoming.local_addr().unwrap().port()
    );
    // The caller may only name itself in `x-tenant`.
    let own_tenant = zt_tonic::interceptor(|peer: &PeerIdentity, request: &tonic::Request<()>| {
        let tenant = request
            .metadata()
            .get("x-tenant")
            .and_then(|v| v.to_str().ok());
        match tenant {
            Some(t) if peer.id().path() == format!("/{t}") => Ok(()),
            _ => Err(tonic::Status::permission_denied("not your tenant")),
        }
    });
    let serving = tokio::spawn(
        Server::builder()
            .layer(AuthorizeLayer::new(
                server.identity(),
                PolicyStore::new(hello_for_client()),
            ))
            .add_service(InterceptedService::new(greeter::server(), own_tenant))
            .serve_with_incoming(incoming),
    );
    let connector = Connector::new(client.identity(), IdMatcher::exact(id(SERVER_ID))).unwrap();
    let channel = within("connect", connector.connect(url)).await.unwrap();
    let call = |tenant: &str| {
        let mut request = tonic::Request::new(greeter::HelloRequest {
            name: "Ada".to_owned(),
        });
        request
            .metadata_mut()
            .insert("x-tenant", tenant.parse().unwrap());
        greeter::say_hello_with(&channel, request)
    };

    within("own tenant", call("web")).await.unwrap();
    let status = within("other tenant", call("batch")).await.unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");
    assert_eq!(status.message(), "not your tenant");
    serving.abort();
}

#[tokio::test]
async fn channel_to_a_server_that_no_longer_verifies_sends_no_call() {
    // The server's SVID is from an old CA the client stops trusting; the client's
    // own SVID is from the new one.
    let old_ca = new_ca();
    let new_ca = new_ca();
    let both = X509Bundle::new(
        old_ca.trust_domain().clone(),
        vec![old_ca.cert_der().clone(), new_ca.cert_der().clone()],
    )
    .unwrap();
    let server = identity_with(
        &old_ca,
        SvidParams::new(id(SERVER_ID)),
        BundleSet::new().with(both.clone()),
    );
    let client = identity_with(
        &new_ca,
        SvidParams::new(id(CLIENT_ID)),
        BundleSet::new().with(both),
    );
    let running = Running::start(server.identity(), PolicyStore::new(hello_for_client())).await;
    let channel = running.channel(&client).await;
    within("call", say_hello(&channel, "Ada")).await.unwrap();
    assert_eq!(running.layer.metrics().counts().allowed, 1);

    client
        .update(
            new_ca.mint(&id(CLIENT_ID)).unwrap(),
            BundleSet::new().with(new_ca.bundle()),
        )
        .unwrap();
    // The open connection fails before the call is sent (hyper reports it as
    // closed; the typed reason is in the client's log); the next call dials anew
    // and refuses the server at the handshake.
    let status = within("call", say_hello(&channel, "Ada"))
        .await
        .unwrap_err();
    assert!(
        matches!(status.code(), Code::Cancelled | Code::Unavailable),
        "{status:?}"
    );
    let status = within("call", say_hello(&channel, "Ada"))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");
    assert!(
        format!("{status:?}").contains("server certificate refused"),
        "{status:?}"
    );
    let counts = running.layer.metrics().counts();
    assert_eq!(
        (counts.allowed, counts.denied, counts.untrusted_peer),
        (1, 0, 0),
        "a call reached the server that no longer verifies"
    );
    assert_eq!(
        running.connections(),
        1,
        "the channel must not reconnect to it"
    );
}
