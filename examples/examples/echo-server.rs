//! An axum app behind zt: mTLS with a SPIFFE SVID, a policy decided on every
//! request, and every file hot-reloaded.
//!
//! ```text
//! cargo run --example echo-server -- --listen 127.0.0.1:8443 \
//!     (--cert svid.pem --key svid_key.pem --bundle svid_bundle.pem | --workload-api [unix:///run/spire/agent.sock]) \
//!     [--federated partner.org=partner.json ...] \
//!     (--policy policy.yaml | --allow 'spiffe://example.org/frontend/**' ...) \
//!     [--admin 127.0.0.1:9090] [--websockets]
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
//! `GET /whoami` answers `{"spiffe_id": "<peer id>"}` to peers the policy allows;
//! everyone else gets `403`. The SVID, key and bundles are re-read when their files
//! change (`--bundle` is our own trust domain's bundle, `--federated` adds another
//! trust domain's, PEM or SPIFFE bundle JSON), and so is the `--policy` file; a bad
//! file is logged and the last good state keeps serving. Prints `listening on ADDR`
//! once it accepts connections; stops gracefully on Ctrl-C or SIGTERM.
//!
//! `GET /ws` is a WebSocket echo (every text message sent back unchanged), under
//! the policy like every other route. It needs `--websockets`, which serves
//! governed upgrades over HTTP/1.1 and HTTP/2 extended CONNECT, and a policy rule
//! that names the upgrade (`to: {paths: [/ws], upgrades: [websocket]}`; the
//! `--allow` shorthand admits none). An open socket is closed when the peer's
//! SVID expires, when its CA is withdrawn, or when the policy file changes to deny
//! it. Without `--websockets`, `/ws` answers `501`.

use std::error::Error;
use std::process::ExitCode;

use axum::extract::ws::{Message, WebSocketUpgrade};
use axum::response::Response;
use axum::routing::{any, get};
use axum::{Json, Router};
use clap::{CommandFactory, Parser};
use tokio::net::TcpListener;
use zt_examples::cli::{self, AdminArgs, Credentials, PolicyArgs};
use zt_tower::{AuthorizeLayer, Peer, Server};

/// An axum app behind zt: `GET /whoami` answers the peer's SPIFFE ID to peers the
/// policy allows. Every file is re-read when it changes.
#[derive(Parser)]
#[command(name = "echo-server", version)]
struct Cli {
    /// The address to listen on, such as 127.0.0.1:8443.
    #[arg(long, value_name = "ADDR")]
    listen: String,
    #[command(flatten)]
    credentials: Credentials,
    #[command(flatten)]
    policy: PolicyArgs,
    #[command(flatten)]
    admin: AdminArgs,
    /// Serve governed WebSocket upgrades (`GET /ws`, the echo).
    #[arg(long)]
    websockets: bool,
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

    let app = Router::new()
        .route("/whoami", get(whoami))
        // `any`: HTTP/2 extended CONNECT arrives as CONNECT.
        .route("/ws", any(ws_echo))
        .layer(AuthorizeLayer::new(identity.clone(), policy));
    let listener = TcpListener::bind(listen)
        .await
        .map_err(|e| format!("cannot listen on {listen}: {e}"))?;
    println!("listening on {}", listener.local_addr()?);

    let mut server = Server::builder(identity);
    if cli.websockets {
        server = server.websockets();
    }
    server
        .build()?
        .serve(listener, app)
        .with_graceful_shutdown(cli::shutdown_signal())
        .await?;
    drop(source);
    Ok(())
}

async fn whoami(Peer(peer): Peer) -> Json<serde_json::Value> {
    Json(serde_json::json!({ "spiffe_id": peer.id().as_str() }))
}

/// Sends every text message back unchanged.
async fn ws_echo(ws: WebSocketUpgrade) -> Response {
    ws.on_upgrade(|mut socket| async move {
        while let Some(Ok(message)) = socket.recv().await {
            if let Message::Text(_) = message
                && socket.send(message).await.is_err()
            {
                break;
            }
        }
    })
}
