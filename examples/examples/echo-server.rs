//! An axum app behind zt: mTLS with a SPIFFE SVID, a policy decided on every
//! request, and every file hot-reloaded.
//!
//! ```text
//! cargo run --example echo-server -- --listen 127.0.0.1:8443 \
//!     (--cert svid.pem --key svid_key.pem --bundle svid_bundle.pem | --workload-api [unix:///run/spire/agent.sock]) \
//!     [--federated partner.org=partner.json ...] \
//!     (--policy policy.yaml | --allow 'spiffe://example.org/frontend/**' ...) \
//!     [--anonymous [--allow-anonymous /healthz ...]] \
//!     [--jwt-bundle example.org=jwt_bundle.json ... --audience orders-api] \
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
//! everyone else gets `403`. With `--jwt-bundle TD=FILE` (repeatable, SPIFFE
//! bundle JSON, re-read when it changes) and `--audience AUD`, the
//! `Authorization: Bearer` JWT-SVID of every request is validated before the
//! policy: an invalid one is `401`, a valid one's subject is decided by
//! `from: {jwt: ...}` rules with the mTLS peer and answered by `/whoami` as
//! `"jwt_spiffe_id"`. `GET /healthz` answers `ok`, under the policy like
//! every other route.
//!
//! With `--anonymous`, a client certificate is requested but not required: a
//! client without one is an anonymous peer, which reaches only the paths of
//! `--allow-anonymous PATH` (each adds a rule allowing anonymous peers `GET
//! PATH` to the `--allow` or `--policy` rules) and the policy file's own
//! `from: {unauthenticated: true}` rules; without them, nothing. A client with a
//! bad certificate is refused at the handshake as without `--anonymous`. This is
//! how a kubelet HTTP probe reaches `/healthz` (see docs/kubernetes.md). The SVID, key and bundles are re-read when their files
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
use axum::{Extension, Json, Router};
use clap::{CommandFactory, Parser};
use tokio::net::TcpListener;
use zt_core::jwt::JwtPeer;
use zt_examples::cli::{self, AdminArgs, AnonymousArgs, Credentials, JwtArgs, PolicyArgs};
use zt_tower::{AuthorizeLayer, Peer, Server};

/// An axum app behind zt: `GET /whoami` answers the peer's SPIFFE ID to peers the
/// policy allows, `GET /healthz` answers `ok` under the policy too. Every file is
/// re-read when it changes.
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
    anonymous: AnonymousArgs,
    #[command(flatten)]
    jwt: JwtArgs,
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
    let (policy, _policy_watch) = cli::policy_admitting(&cli.policy, &cli.anonymous)?;
    let admin = cli.admin.bind().await?;
    let source = cli::watched_source(&cli.credentials)?;
    // The admin listener answers while the identity is not ready yet: /ready
    // says why.
    if let Some(admin) = admin {
        admin.serve(source.identity(), policy.clone())?;
    }
    let (source, identity) = cli::ready(source).await?;

    let jwt = cli.jwt.load()?;
    let mut authorize = AuthorizeLayer::new(identity.clone(), policy);
    if let Some(jwt) = &jwt {
        authorize = authorize.jwt(jwt.validator.clone());
    }
    let app = Router::new()
        .route("/whoami", get(whoami))
        .route("/healthz", get(|| async { "ok" }))
        // `any`: HTTP/2 extended CONNECT arrives as CONNECT.
        .route("/ws", any(ws_echo))
        .layer(authorize);
    let listener = TcpListener::bind(listen)
        .await
        .map_err(|e| format!("cannot listen on {listen}: {e}"))?;
    println!("listening on {}", listener.local_addr()?);

    let mut server = cli.anonymous.server(Server::builder(identity));
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

async fn whoami(Peer(peer): Peer, jwt: Option<Extension<JwtPeer>>) -> Json<serde_json::Value> {
    let mut body = serde_json::Map::new();
    body.insert("spiffe_id".into(), peer.id().as_str().into());
    if let Some(Extension(jwt)) = jwt {
        body.insert("jwt_spiffe_id".into(), jwt.id().as_str().into());
    }
    Json(body.into())
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
