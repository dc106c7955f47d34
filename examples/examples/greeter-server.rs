//! A tonic gRPC server behind zt: mTLS with a SPIFFE SVID, every call decided by
//! a policy on its service and method, and every file hot-reloaded.
//!
//! ```text
//! cargo run --example greeter-server -- --listen 127.0.0.1:50051 \
//!     (--cert svid.pem --key svid_key.pem --bundle svid_bundle.pem | --workload-api [unix:///run/spire/agent.sock]) \
//!     [--federated partner.org=partner.json ...] \
//!     (--policy policy.yaml | --allow 'spiffe://example.org/frontend/**' ...) \
//!     [--admin 127.0.0.1:9090]
//! ```
//!
//! With `--workload-api` instead of the files, the SVID and every bundle,
//! federated ones included, come from the SPIFFE Workload API (a SPIRE agent's
//! socket; without an address, `SPIFFE_ENDPOINT_SOCKET`) and rotate on its stream;
//! `--svid-hint` or `--svid-id` picks among several SVIDs.
//!
//! With `--admin ADDR`, plain HTTP on ADDR (localhost or a port of its own, never
//! the mTLS port) answers `GET /live`, `/ready` (503 with the reason until an
//! identity serves), `/status` (JSON, no key material) and `/metrics` (Prometheus
//! text from `metrics-exporter-prometheus`, installed as the `metrics` recorder);
//! it prints `admin on ADDR` before it waits for the identity.
//!
//! Serves `helloworld.Greeter` (generated from `proto/helloworld.proto`):
//! `SayHello` answers `Hello NAME, you are SPIFFE-ID` and `SayGoodbye` answers
//! `Goodbye NAME` to callers the policy allows, and gRPC health checking
//! (`grpc.health.v1.Health`), which the policy governs like any method. Others
//! get `PERMISSION_DENIED`. The SVID, key and bundles are re-read when their files
//! change, and so is the `--policy` file; a bad file is logged and the last good
//! state keeps serving. Prints `listening on ADDR` once it accepts connections;
//! stops gracefully on Ctrl-C or SIGTERM.

use std::error::Error;
use std::process::ExitCode;

use clap::{CommandFactory, Parser};
use tokio::net::TcpListener;
use tonic::{Request, Response, Status};
use zt_examples::cli::{self, AdminArgs, Credentials, PolicyArgs};
use zt_examples::greeter::{Greeter, GreeterServer, HelloReply, HelloRequest};
use zt_tonic::{AuthorizeLayer, Incoming};

/// A tonic Greeter and gRPC health behind zt, with every call authorized by the
/// policy. Every file is re-read when it changes.
#[derive(Parser)]
#[command(name = "greeter-server", version)]
struct Cli {
    /// The address to listen on, such as 127.0.0.1:50051.
    #[arg(long, value_name = "ADDR")]
    listen: String,
    #[command(flatten)]
    credentials: Credentials,
    #[command(flatten)]
    policy: PolicyArgs,
    #[command(flatten)]
    admin: AdminArgs,
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    cli::init_logging();
    cli::exit(run(cli).await, &Cli::command().render_usage().to_string())
}

async fn run(cli: Cli) -> Result<(), Box<dyn Error>> {
    let listen = cli.listen.as_str();
    let (policy, _policy_watch) = cli::policy(&cli.policy)?;
    let admin = cli.admin.bind().await?;
    let source = cli::watched_source(&cli.credentials)?;
    // The admin listener answers while the identity is not ready yet: /ready
    // says why.
    if let Some(admin) = admin {
        admin.serve(source.identity(), policy.clone())?;
    }
    let (source, identity) = cli::ready(source).await?;

    let (health, health_service) = tonic_health::server::health_reporter();
    health.set_serving::<GreeterServer<Hello>>().await;

    let listener = TcpListener::bind(listen)
        .await
        .map_err(|e| format!("cannot listen on {listen}: {e}"))?;
    let incoming = Incoming::new(identity.clone(), listener)?;
    if let Some(addr) = incoming.local_addr() {
        println!("listening on {addr}");
    }

    // tonic's server with zt-tower's HTTP/2 bounds (streams, headers, pings).
    zt_tonic::server()
        .layer(AuthorizeLayer::new(identity, policy))
        .add_service(health_service)
        .add_service(GreeterServer::new(Hello))
        .serve_with_incoming_shutdown(incoming, cli::shutdown_signal())
        .await?;
    drop(source);
    Ok(())
}

/// Greets the caller by name and SPIFFE ID.
struct Hello;

#[tonic::async_trait]
impl Greeter for Hello {
    async fn say_hello(
        &self,
        request: Request<HelloRequest>,
    ) -> Result<Response<HelloReply>, Status> {
        // `AuthorizeLayer` let the call through, so the caller has an identity.
        let caller = zt_tonic::peer(&request)
            .map(|peer| peer.id().to_string())
            .ok_or_else(|| Status::unauthenticated("no verified peer identity"))?;
        let name = request.into_inner().name;
        Ok(Response::new(HelloReply {
            message: format!("Hello {name}, you are {caller}"),
        }))
    }

    async fn say_goodbye(
        &self,
        request: Request<HelloRequest>,
    ) -> Result<Response<HelloReply>, Status> {
        let name = request.into_inner().name;
        Ok(Response::new(HelloReply {
            message: format!("Goodbye {name}"),
        }))
    }
}
