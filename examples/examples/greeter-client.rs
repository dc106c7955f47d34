//! A tonic gRPC client over mTLS that authorizes the server by SPIFFE ID, not
//! hostname.
//!
//! ```text
//! cargo run --example greeter-client -- --url https://localhost:50051 \
//!     (--cert svid.pem --key svid_key.pem --bundle svid_bundle.pem | --workload-api [unix:///run/spire/agent.sock]) \
//!     [--federated partner.org=partner.json ...] \
//!     --server-id 'spiffe://example.org/api' --name Ada
//! ```
//!
//! With `--workload-api` instead of the files, the SVID and every bundle,
//! federated ones included, come from the SPIFFE Workload API (a SPIRE agent's
//! socket; without an address, `SPIFFE_ENDPOINT_SOCKET`) and rotate on its stream;
//! `--svid-hint` or `--svid-id` picks among several SVIDs.
//!
//! Calls `helloworld.Greeter/SayHello` and prints the reply's message. Exits 0 on
//! `OK`; otherwise prints one line starting with `error:` — the gRPC status code
//! and message, or why the connection failed (a server with an invalid SVID or
//! another ID, a refused handshake) — and exits 1 (2 for usage errors).

use std::error::Error;
use std::process::ExitCode;
use std::time::Duration;

use clap::{CommandFactory, Parser};
use tonic::Status;
use zt_core::IdMatcher;
use zt_examples::cli::{self, Credentials, UsageError};
use zt_examples::greeter::{GreeterClient, HelloRequest};
use zt_tonic::{ClientError, Connector};

/// A tonic client that authorizes the server by SPIFFE ID and says hello: prints
/// the greeting.
#[derive(Parser)]
#[command(name = "greeter-client", version)]
struct Cli {
    /// The https URL of the server.
    #[arg(long)]
    url: String,
    #[command(flatten)]
    credentials: Credentials,
    /// The SPIFFE ID (or `*`/`**` pattern) the server must present.
    #[arg(long, value_name = "PATTERN")]
    server_id: IdMatcher,
    /// Whom to greet.
    #[arg(long)]
    name: String,
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    cli::exit(run(cli).await, &Cli::command().render_usage().to_string())
}

async fn run(cli: Cli) -> Result<(), Box<dyn Error>> {
    let url = cli.url.as_str();
    let server_id = cli.server_id;
    let name = cli.name.as_str();
    let (_source, identity) = cli::client_identity(&cli.credentials).await?;

    let connector = Connector::builder(identity, server_id)
        .connect_timeout(Duration::from_secs(10))
        .build()?;
    let endpoint = zt_tonic::endpoint(url)
        .map_err(|e| UsageError(format!("--url: {e}")))?
        .timeout(Duration::from_secs(10));
    let channel = endpoint
        .connect_with_connector(connector)
        .await
        .map_err(ClientError::new)?;
    let reply = GreeterClient::new(channel)
        .say_hello(HelloRequest {
            name: name.to_owned(),
        })
        .await
        .map_err(describe_status)?;
    println!("{}", reply.into_inner().message);
    Ok(())
}

/// One line for a failed call: the status, and for transport failures zt's reason.
fn describe_status(status: Status) -> Box<dyn Error> {
    let code = status.code();
    let cause = if std::error::Error::source(&status).is_some() {
        ClientError::new(status).to_string()
    } else {
        status.message().to_owned()
    };
    format!("{code:?} (gRPC status {}): {cause}", code as i32).into()
}
