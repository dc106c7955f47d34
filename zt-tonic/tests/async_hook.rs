//! The asynchronous decision hook on a tonic server through zt-tonic, over real
//! sockets: allowed calls reach the handler with the decision that let them
//! through; a refusal, a hook that misses its deadline and a hook that panics
//! are `PERMISSION_DENIED` and never reach the handler.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::net::TcpListener;
use tonic::{Code, Request, Response, Status};
use zt_core::IdentitySource;
use zt_testkit::greeter::greeter_server::{Greeter, GreeterServer};
use zt_testkit::greeter::{HelloReply, HelloRequest};
use zt_tonic::{AuthorizeLayer, Connector, IdMatcher, Incoming, PolicyStore, Principal, Refusal};

use common::greeter::say_hello_with;
use common::*;

/// `SayHello` answers `Hello NAME by RULE`, RULE being the rule that let the
/// call through as `zt_tonic::decision` reads it. Calls are counted.
#[derive(Clone)]
struct DecisionGreeter(Arc<AtomicUsize>);

#[tonic::async_trait]
impl Greeter for DecisionGreeter {
    async fn say_hello(
        &self,
        request: Request<HelloRequest>,
    ) -> Result<Response<HelloReply>, Status> {
        self.0.fetch_add(1, Ordering::SeqCst);
        let rule = zt_tonic::decision(&request)
            .and_then(|decision| decision.rule().map(str::to_owned))
            .ok_or_else(|| Status::internal("no decision"))?;
        let name = request.into_inner().name;
        Ok(Response::new(HelloReply {
            message: format!("Hello {name} by {rule}"),
        }))
    }

    async fn say_goodbye(
        &self,
        _request: Request<HelloRequest>,
    ) -> Result<Response<HelloReply>, Status> {
        Err(Status::unimplemented("not in this test"))
    }
}

/// Decides by the `x-tenant` metadata: `acme` passes, `slow` never answers in
/// time, `boom` panics, anything else is refused.
async fn tenant_hook<B>(
    _peer: Principal,
    request: http::Request<B>,
) -> Result<http::Request<B>, Refusal> {
    let tenant = request
        .headers()
        .get("x-tenant")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    match tenant.as_str() {
        "acme" => Ok(request),
        "slow" => {
            tokio::time::sleep(Duration::from_secs(60)).await;
            Ok(request)
        }
        "boom" => panic!("tenant directory unreachable"),
        _ => Err(Refusal::new("unknown tenant")),
    }
}

struct Setup {
    channel: tonic::transport::Channel,
    served: Arc<AtomicUsize>,
    metrics: zt_tonic::AuthzMetrics,
    _task: tokio::task::JoinHandle<Result<(), tonic::transport::Error>>,
}

async fn setup() -> Setup {
    let ca = new_ca();
    let server = identity(&ca, SERVER_ID);
    let client = identity(&ca, CLIENT_ID);
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let incoming = Incoming::new(server.identity(), listener).unwrap();
    let layer = AuthorizeLayer::new(server.identity(), PolicyStore::new(hello_for_client()))
        .async_hook(tenant_hook, Duration::from_millis(200));
    let metrics = layer.metrics().clone();
    let served = Arc::new(AtomicUsize::new(0));
    let task = tokio::spawn(
        zt_tonic::server()
            .layer(layer)
            .add_service(GreeterServer::new(DecisionGreeter(Arc::clone(&served))))
            .serve_with_incoming(incoming),
    );
    let connector = Connector::new(client.identity(), IdMatcher::exact(id(SERVER_ID))).unwrap();
    let channel = within(
        "connect",
        connector.connect(format!("https://localhost:{port}")),
    )
    .await
    .unwrap();
    Setup {
        channel,
        served,
        metrics,
        _task: task,
    }
}

async fn hello_as(channel: &tonic::transport::Channel, tenant: &str) -> Result<String, Status> {
    let mut request = Request::new(HelloRequest {
        name: "Ada".to_owned(),
    });
    request
        .metadata_mut()
        .insert("x-tenant", tenant.parse().unwrap());
    within("call", say_hello_with(channel, request)).await
}

#[tokio::test]
async fn grpc_async_hook_allows_and_the_handler_reads_the_deciding_rule() {
    let s = setup().await;
    let reply = hello_as(&s.channel, "acme").await.unwrap();
    assert_eq!(reply, "Hello Ada by web-says-hello");
    assert_eq!(s.metrics.counts().allowed, 1);
}

#[tokio::test]
async fn grpc_async_hook_refusal_is_permission_denied_before_the_handler() {
    let s = setup().await;
    let status = hello_as(&s.channel, "globex").await.unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");
    assert_eq!(s.served.load(Ordering::SeqCst), 0);
    assert_eq!(s.metrics.counts().hook_denied, 1);
}

#[tokio::test]
async fn grpc_async_hook_past_its_deadline_is_permission_denied() {
    let s = setup().await;
    let status = hello_as(&s.channel, "slow").await.unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");
    assert_eq!(s.served.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn grpc_async_hook_that_panics_is_permission_denied_and_the_channel_serves_on() {
    let s = setup().await;
    let status = hello_as(&s.channel, "boom").await.unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");
    let reply = hello_as(&s.channel, "acme").await.unwrap();
    assert_eq!(reply, "Hello Ada by web-says-hello");
    assert_eq!(s.served.load(Ordering::SeqCst), 1);
}
