//! The `helloworld.Greeter` service of gRPC's examples, for the greeter examples:
//!
//! ```proto
//! syntax = "proto3";
//! package helloworld;
//!
//! service Greeter {
//!   rpc SayHello (HelloRequest) returns (HelloReply) {}
//! }
//! message HelloRequest { string name = 1; }
//! message HelloReply { string message = 1; }
//! ```
//!
//! Written by hand — two prost messages, a server and a client over tonic's
//! `Grpc` — rather than generated: code generation needs `protoc` (a system
//! package) or a Rust protobuf compiler (protox with prost-build, dozens of
//! crates to build), and this service is two one-field messages and one method.
//! A real service would generate the same code with `tonic-prost-build`; the zt
//! parts do not change.
//!
//! ```
//! use zt_examples::greeter::{HelloRequest, SAY_HELLO};
//! use prost::Message;
//!
//! // What goes on the wire: field 1, length-delimited.
//! let bytes = HelloRequest { name: "Ada".to_owned() }.encode_to_vec();
//! assert_eq!(bytes, b"\x0a\x03Ada");
//! assert_eq!(SAY_HELLO, "/helloworld.Greeter/SayHello");
//! ```

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::uri::PathAndQuery;
use tonic::body::Body;
use tonic::codegen::{BoxFuture, Service};
use tonic::server::NamedService;
use tonic::transport::Channel;
use tonic::{Request, Response, Status};
use tonic_prost::ProstCodec;

/// The path of `SayHello`.
pub const SAY_HELLO: &str = "/helloworld.Greeter/SayHello";

/// `helloworld.HelloRequest`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct HelloRequest {
    /// Who to greet.
    #[prost(string, tag = "1")]
    pub name: String,
}

/// `helloworld.HelloReply`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct HelloReply {
    /// The greeting.
    #[prost(string, tag = "1")]
    pub message: String,
}

/// The application's side of the service.
pub trait Greeter: Send + Sync + 'static {
    /// Answers `SayHello`.
    fn say_hello(
        &self,
        request: Request<HelloRequest>,
    ) -> impl Future<Output = Result<Response<HelloReply>, Status>> + Send;
}

/// Serves a [`Greeter`] to tonic: `Server::builder().add_service(GreeterServer::new(..))`.
#[derive(Debug)]
pub struct GreeterServer<T> {
    inner: Arc<T>,
}

impl<T> GreeterServer<T> {
    /// Serves `greeter`.
    pub fn new(greeter: T) -> Self {
        Self {
            inner: Arc::new(greeter),
        }
    }
}

impl<T> Clone for GreeterServer<T> {
    fn clone(&self) -> Self {
        Self {
            inner: Arc::clone(&self.inner),
        }
    }
}

impl<T> NamedService for GreeterServer<T> {
    const NAME: &'static str = "helloworld.Greeter";
}

impl<T: Greeter> Service<http::Request<Body>> for GreeterServer<T> {
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        if request.uri().path() != SAY_HELLO {
            return Box::pin(async { Ok(Status::unimplemented("no such method").into_http()) });
        }
        let say_hello = SayHello(Arc::clone(&self.inner));
        Box::pin(async move {
            let codec = ProstCodec::<HelloReply, HelloRequest>::default();
            Ok(tonic::server::Grpc::new(codec)
                .unary(say_hello, request)
                .await)
        })
    }
}

struct SayHello<T>(Arc<T>);

impl<T: Greeter> tonic::server::UnaryService<HelloRequest> for SayHello<T> {
    type Response = HelloReply;
    type Future = BoxFuture<Response<HelloReply>, Status>;

    fn call(&mut self, request: Request<HelloRequest>) -> Self::Future {
        let greeter = Arc::clone(&self.0);
        Box::pin(async move { greeter.say_hello(request).await })
    }
}

/// Calls the service on a channel.
#[derive(Clone, Debug)]
pub struct GreeterClient {
    grpc: tonic::client::Grpc<Channel>,
}

impl GreeterClient {
    /// A client on `channel`.
    pub fn new(channel: Channel) -> Self {
        Self {
            grpc: tonic::client::Grpc::new(channel),
        }
    }

    /// Calls `SayHello`.
    ///
    /// # Errors
    ///
    /// The call's status: the server's answer, or `UNAVAILABLE` and friends when
    /// the connection failed.
    pub async fn say_hello(
        &mut self,
        request: impl tonic::IntoRequest<HelloRequest>,
    ) -> Result<Response<HelloReply>, Status> {
        self.grpc
            .ready()
            .await
            .map_err(|e| Status::unavailable(format!("service not ready: {e}")))?;
        let codec = ProstCodec::<HelloRequest, HelloReply>::default();
        self.grpc
            .unary(
                request.into_request(),
                PathAndQuery::from_static(SAY_HELLO),
                codec,
            )
            .await
    }
}
