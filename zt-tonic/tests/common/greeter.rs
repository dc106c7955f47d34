//! The `helloworld.Greeter` service of gRPC's examples, with a second method,
//! written by hand: two prost messages and a tonic service, no code generation.
//!
//! `SayHello` answers `Hello NAME from PEER`, PEER being the caller's SPIFFE ID as
//! `zt_tonic::peer` reads it; `SayGoodbye` answers `Goodbye NAME`.

use std::convert::Infallible;
use std::task::{Context, Poll};

use http::uri::PathAndQuery;
use tonic::body::Body;
use tonic::codegen::{BoxFuture, Service, http};
use tonic::server::NamedService;
use tonic::transport::Channel;
use tonic::{Request, Response, Status};
use tonic_prost::ProstCodec;

pub const SAY_HELLO: &str = "/helloworld.Greeter/SayHello";
pub const SAY_GOODBYE: &str = "/helloworld.Greeter/SayGoodbye";

#[derive(Clone, PartialEq, prost::Message)]
pub struct HelloRequest {
    #[prost(string, tag = "1")]
    pub name: String,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct HelloReply {
    #[prost(string, tag = "1")]
    pub message: String,
}

/// The server side.
#[derive(Clone, Copy, Debug)]
pub struct GreeterServer;

impl NamedService for GreeterServer {
    const NAME: &'static str = "helloworld.Greeter";
}

impl Service<http::Request<Body>> for GreeterServer {
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        let method = match request.uri().path() {
            SAY_HELLO => Method::Hello,
            SAY_GOODBYE => Method::Goodbye,
            _ => {
                return Box::pin(async { Ok(Status::unimplemented("no such method").into_http()) });
            }
        };
        Box::pin(async move {
            let codec = ProstCodec::<HelloReply, HelloRequest>::default();
            Ok(tonic::server::Grpc::new(codec)
                .unary(Unary(method), request)
                .await)
        })
    }
}

#[derive(Clone, Copy)]
enum Method {
    Hello,
    Goodbye,
}

struct Unary(Method);

impl tonic::server::UnaryService<HelloRequest> for Unary {
    type Response = HelloReply;
    type Future = BoxFuture<Response<HelloReply>, Status>;

    fn call(&mut self, request: Request<HelloRequest>) -> Self::Future {
        let method = self.0;
        let peer = zt_tonic::peer(&request).map(|p| p.id().to_string());
        Box::pin(async move {
            let name = request.into_inner().name;
            let message = match method {
                Method::Hello => {
                    let peer = peer.ok_or_else(|| Status::internal("no peer identity"))?;
                    format!("Hello {name} from {peer}")
                }
                Method::Goodbye => format!("Goodbye {name}"),
            };
            Ok(Response::new(HelloReply { message }))
        })
    }
}

/// Calls `path` with `name` on `channel`.
pub async fn call(channel: &Channel, path: &'static str, name: &str) -> Result<String, Status> {
    let request = Request::new(HelloRequest {
        name: name.to_owned(),
    });
    call_with(channel, path, request).await
}

/// Calls `path` with `request`, metadata and all, on `channel`.
pub async fn call_with(
    channel: &Channel,
    path: &'static str,
    request: Request<HelloRequest>,
) -> Result<String, Status> {
    let mut grpc = tonic::client::Grpc::new(channel.clone());
    grpc.ready()
        .await
        .map_err(|e| Status::unavailable(format!("not ready: {e}")))?;
    let codec = ProstCodec::<HelloRequest, HelloReply>::default();
    let reply = grpc
        .unary(request, PathAndQuery::from_static(path), codec)
        .await?;
    Ok(reply.into_inner().message)
}

pub async fn say_hello(channel: &Channel, name: &str) -> Result<String, Status> {
    call(channel, SAY_HELLO, name).await
}

pub async fn say_goodbye(channel: &Channel, name: &str) -> Result<String, Status> {
    call(channel, SAY_GOODBYE, name).await
}
