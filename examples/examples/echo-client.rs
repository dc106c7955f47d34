//! An mTLS HTTP client that authorizes the server by SPIFFE ID, not hostname.
//!
//! ```text
//! cargo run --example echo-client -- --url https://localhost:8443/whoami \
//!     (--cert svid.pem --key svid_key.pem --bundle svid_bundle.pem | --workload-api [unix:///run/spire/agent.sock]) \
//!     [--federated partner.org=partner.json ...] --server-id 'spiffe://example.org/api' \
//!     [--jwt jwt_svid.token]
//! ```
//!
//! With `--jwt FILE`, the JWT-SVID in FILE (as the SPIFFE helper writes it) is
//! sent as `Authorization: Bearer`, for a server behind which the original
//! caller must be known.
//!
//! With `--workload-api` instead of the files, the SVID and every bundle,
//! federated ones included, come from the SPIFFE Workload API (a SPIRE agent's
//! socket; without an address, `SPIFFE_ENDPOINT_SOCKET`) and rotate on its stream;
//! `--svid-hint` or `--svid-id` picks among several SVIDs.
//!
//! Prints the response body and exits 0 on a 2xx answer. Anything else — a server
//! whose SVID is invalid or has another ID, a failed handshake, a non-2xx answer —
//! prints one line starting with `error:` and exits 1 (2 for usage errors).

use std::error::Error;
use std::process::ExitCode;
use std::time::Duration;

use bytes::Bytes;
use clap::{CommandFactory, Parser};
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use tower::{Layer, ServiceExt};
use zt_core::IdMatcher;
use zt_core::jwt::{JwtSvidFile, JwtSvidSource};
use zt_examples::cli::{self, Credentials};
use zt_tower::bearer::BearerLayer;
use zt_tower::{ClientError, Connector};

/// An mTLS HTTP client that authorizes the server by SPIFFE ID, not hostname:
/// prints the response body of a 2xx answer.
#[derive(Parser)]
#[command(name = "echo-client", version)]
struct Cli {
    /// The https URL to GET.
    #[arg(long)]
    url: http::Uri,
    #[command(flatten)]
    credentials: Credentials,
    /// The SPIFFE ID (or `*`/`**` pattern) the server must present.
    #[arg(long, value_name = "PATTERN")]
    server_id: IdMatcher,
    /// Present the JWT-SVID in FILE as `Authorization: Bearer` (re-read when it
    /// changes, as the SPIFFE helper rewrites it).
    #[arg(long, value_name = "FILE")]
    jwt: Option<std::path::PathBuf>,
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    cli::exit(run(cli).await, &Cli::command().render_usage().to_string())
}

async fn run(cli: Cli) -> Result<(), Box<dyn Error>> {
    let url = cli.url;
    let server_id = cli.server_id;
    let (_source, identity) = cli::client_identity(&cli.credentials).await?;

    let connector = Connector::builder(identity, server_id)
        .connect_timeout(Duration::from_secs(10))
        .build()?;
    let client = Client::builder(TokioExecutor::new()).build::<_, Empty<Bytes>>(connector);
    let request = http::Request::get(url).body(Empty::new())?;
    let response = match &cli.jwt {
        None => client.request(request).await.map_err(ClientError::from)?,
        Some(file) => {
            let svid = JwtSvidFile::watch(file)?;
            if svid.current().is_none() {
                return Err(format!("{}: no JWT-SVID that has not expired", file.display()).into());
            }
            BearerLayer::new(svid)
                .layer(client)
                .oneshot(request)
                .await
                .map_err(
                    |err| match err.downcast::<hyper_util::client::legacy::Error>() {
                        Ok(err) => Box::new(ClientError::from(*err)) as Box<dyn Error>,
                        Err(err) => err,
                    },
                )?
        }
    };
    let status = response.status();
    let body = response
        .into_body()
        .collect()
        .await
        .map_err(|e| format!("reading the response failed: {e}"))?
        .to_bytes();
    if !status.is_success() {
        return Err(format!("server answered {status}").into());
    }
    print!("{}", String::from_utf8_lossy(&body));
    Ok(())
}
