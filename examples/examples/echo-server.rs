//! An axum app behind zt: mTLS with a SPIFFE SVID, a policy decided on every
//! request, and every file hot-reloaded.
//!
//! ```text
//! cargo run --example echo-server -- --listen 127.0.0.1:8443 \
//!     --cert svid.pem --key svid_key.pem --bundle svid_bundle.pem \
//!     [--federated partner.org=partner.json ...] \
//!     (--policy policy.yaml | --allow 'spiffe://example.org/frontend/**' ...)
//! ```
//!
//! `GET /whoami` answers `{"spiffe_id": "<peer id>"}` to peers the policy allows;
//! everyone else gets `403`. The SVID, key and bundles are re-read when their files
//! change (`--bundle` is our own trust domain's bundle, `--federated` adds another
//! trust domain's, PEM or SPIFFE bundle JSON), and so is the `--policy` file; a bad
//! file is logged and the last good state keeps serving. Prints `listening on ADDR`
//! once it accepts connections; stops gracefully on Ctrl-C or SIGTERM.

use std::error::Error;
use std::process::ExitCode;
use std::time::Duration;

use axum::routing::get;
use axum::{Json, Router};
use tokio::net::TcpListener;
use zt_core::{FileLayout, FileSource, IdentitySource};
use zt_examples::cli::{Args, UsageError};
use zt_tower::{AuthorizeLayer, Peer, Policy, PolicyStore, Server};

const USAGE: &str = "usage: echo-server --listen ADDR --cert FILE --key FILE --bundle FILE \
                     [--federated TD=FILE ...] (--policy FILE | --allow PATTERN ...)";

/// How long to wait for valid credentials before giving up.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(30);

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_max_level(tracing::Level::INFO)
        .with_writer(std::io::stderr)
        .init();
    match run().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) if err.is::<UsageError>() => {
            eprintln!("error: {err}\n{USAGE}");
            ExitCode::from(2)
        }
        Err(err) => {
            eprintln!("error: {err}");
            ExitCode::FAILURE
        }
    }
}

async fn run() -> Result<(), Box<dyn Error>> {
    let args = Args::parse(&[
        "--listen",
        "--cert",
        "--key",
        "--bundle",
        "--federated",
        "--policy",
        "--allow",
    ])?;
    let listen = args.one("--listen")?;

    let layout = FileLayout::explicit(
        args.one("--cert")?,
        args.one("--key")?,
        args.one("--bundle")?,
    );
    let mut source = FileSource::builder(layout);
    for (td, path) in args.federated()? {
        source = source.federated(td, path);
    }
    let source = source.start()?;
    let identity = source.identity();
    if tokio::time::timeout(STARTUP_TIMEOUT, identity.ready())
        .await
        .is_err()
    {
        let status = identity.status();
        let reason = status.not_ready_reason().unwrap_or_default();
        return Err(format!("no valid identity after {STARTUP_TIMEOUT:?}: {reason}").into());
    }

    let (policy, _policy_watch) = match (args.optional("--policy")?, args.all("--allow")) {
        (Some(path), []) => {
            let store = PolicyStore::new(Policy::load(path)?);
            let watch = store.watch_file(path)?;
            (store, Some(watch))
        }
        (None, patterns) if !patterns.is_empty() => {
            (PolicyStore::new(Policy::allow_patterns(patterns)?), None)
        }
        _ => return Err(UsageError("give either --policy or --allow".to_owned()).into()),
    };

    let app = Router::new()
        .route("/whoami", get(whoami))
        .layer(AuthorizeLayer::new(identity.clone(), policy));
    let listener = TcpListener::bind(listen)
        .await
        .map_err(|e| format!("cannot listen on {listen}: {e}"))?;
    println!("listening on {}", listener.local_addr()?);

    Server::builder(identity)
        .build()?
        .serve(listener, app)
        .with_graceful_shutdown(shutdown_signal())
        .await?;
    drop(source);
    Ok(())
}

async fn whoami(Peer(peer): Peer) -> Json<serde_json::Value> {
    Json(serde_json::json!({ "spiffe_id": peer.id().as_str() }))
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = terminate => {}
    }
    tracing::info!("shutting down");
}
