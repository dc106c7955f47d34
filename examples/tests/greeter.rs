//! The greeter examples with real clients: greeter-client against
//! greeter-server, Python's grpcio (a gRPC implementation in C, not Rust)
//! presenting client certificates, and one long-lived HTTP/2 connection on which
//! a changed policy file refuses the next call.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod common;

use std::path::Path;
use std::process::Output;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tonic::Code;
use tower::ServiceExt;
use zt_core::{IdMatcher, IdentitySource, StaticSource};
use zt_examples::greeter::{GreeterClient, HelloRequest};
use zt_tonic::Connector;

use common::*;

/// The greeter-server example, running.
type GreeterServer = ExampleServer;

/// Starts the greeter-server example with the PKI's server SVID and bundle and
/// `extra` arguments; returns once it prints `listening on ADDR`.
async fn start_greeter(pki: &Pki, extra: &[&str]) -> GreeterServer {
    let mut args = file_args(&pki.server, &pki.bundle).to_vec();
    args.extend_from_slice(extra);
    ExampleServer::launch("greeter-server", &args).await
}

/// Runs greeter-client against `server` with `client`'s SVID, expecting
/// `server_id`.
async fn greeter_client(
    pki: &Pki,
    client: &SvidFiles,
    server: &GreeterServer,
    server_id: &str,
) -> Output {
    greeter_client_trusting(&pki.bundle, client, server, server_id).await
}

/// As [`greeter_client`], trusting the bundle file `bundle`.
async fn greeter_client_trusting(
    bundle: &Path,
    client: &SvidFiles,
    server: &GreeterServer,
    server_id: &str,
) -> Output {
    let url = server.url("");
    let mut args = vec!["--url", &url];
    args.extend(file_args(client, bundle));
    args.extend(["--server-id", server_id, "--name", "Ada"]);
    run(&example("greeter-client"), &args).await
}

/// The single `error:` line of a failed run.
fn error_line(output: &Output) -> String {
    assert!(!output.status.success(), "{}", describe(output));
    let stderr = String::from_utf8_lossy(&output.stderr);
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "expected one line: {}", describe(output));
    assert!(lines[0].starts_with("error: "), "{}", describe(output));
    lines[0].to_owned()
}

#[tokio::test]
async fn greeter_client_with_allowed_svid_gets_reply_naming_it() {
    let pki = Pki::new("greeter-allowed");
    let server = start_greeter(&pki, &["--allow", CLIENT_ID]).await;

    let output = greeter_client(&pki, &pki.client, &server, SERVER_ID).await;
    assert!(output.status.success(), "{}", describe(&output));
    assert_eq!(
        String::from_utf8_lossy(&output.stdout).trim(),
        format!("Hello Ada, you are {CLIENT_ID}")
    );
}

#[tokio::test]
async fn greeter_client_with_other_svid_reports_permission_denied() {
    let pki = Pki::new("greeter-denied");
    let server = start_greeter(&pki, &["--allow", CLIENT_ID]).await;

    let output = greeter_client(&pki, &pki.other_client, &server, SERVER_ID).await;
    let line = error_line(&output);
    assert!(
        line.contains("PermissionDenied (gRPC status 7)"),
        "{line}\n{}",
        server.log.lock().unwrap()
    );
}

#[tokio::test]
async fn greeter_client_refuses_server_with_wrong_id() {
    let pki = Pki::new("greeter-wrong-id");
    let server = start_greeter(&pki, &["--allow", CLIENT_ID]).await;

    let output = greeter_client(&pki, &pki.client, &server, "spiffe://example.org/billing").await;
    let line = error_line(&output);
    assert!(
        line.contains("server certificate refused") && line.contains(SERVER_ID),
        "{line}"
    );
}

#[tokio::test]
async fn greeter_client_with_svid_of_other_ca_fails_at_handshake() {
    let pki = Pki::new("greeter-rogue");
    let server = start_greeter(&pki, &["--allow", CLIENT_ID]).await;

    // The client trusts both CAs, so it accepts the server; the server trusts
    // only its own and refuses the client's SVID.
    let both = pki
        .dir
        .write_atomic("both.pem", bundle_pem(&[&pki.ca, &pki.rogue_ca]));
    let output = greeter_client_trusting(&both, &pki.rogue_client, &server, SERVER_ID).await;
    let line = error_line(&output);
    assert!(line.contains("alert"), "expected a TLS alert: {line}");
}

fn policy_allowing(id: &str) -> String {
    format!(
        r#"{{"rules": [{{"name": "greeters", "action": "allow",
            "from": {{"ids": ["{id}"]}}, "to": {{"grpc": ["helloworld.Greeter/SayHello"]}}}}]}}"#
    )
}

#[tokio::test]
async fn policy_file_change_denies_next_call_on_same_connection() {
    let pki = Pki::new("greeter-policy");
    let policy = pki
        .dir
        .write_atomic("policy.json", policy_allowing(CLIENT_ID));
    let server = start_greeter(&pki, &["--policy", s(&policy)]).await;

    let (svid, bundles) = zt_examples::cli::load_material(&zt_examples::cli::Credentials {
        cert: Some(pki.client.cert.clone()),
        key: Some(pki.client.key.clone()),
        bundle: Some(pki.bundle.clone()),
        federated: Vec::new(),
        workload_api: None,
        svid_hint: None,
        svid_id: None,
    })
    .unwrap();
    let client = StaticSource::new(svid, bundles).unwrap();
    let connections = Arc::new(AtomicUsize::new(0));
    let counted = Arc::clone(&connections);
    let connector = Connector::new(client.identity(), IdMatcher::exact(id(SERVER_ID)))
        .unwrap()
        .map_response(move |stream| {
            counted.fetch_add(1, Ordering::SeqCst);
            stream
        });
    let channel = within(
        "connect",
        zt_tonic::endpoint(server.url(""))
            .unwrap()
            .connect_with_connector(connector),
    )
    .await
    .unwrap();
    let mut greeter = GreeterClient::new(channel);
    let hello = || HelloRequest {
        name: "Ada".to_owned(),
    };
    within("allowed call", greeter.say_hello(hello()))
        .await
        .unwrap();

    pki.dir
        .write_atomic("policy.json", policy_allowing(OTHER_CLIENT_ID));
    let status = within("the new policy to apply", async {
        loop {
            match greeter.say_hello(hello()).await {
                Ok(_) => tokio::time::sleep(Duration::from_millis(50)).await,
                Err(status) => return status,
            }
        }
    })
    .await;
    assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");
    assert_eq!(
        connections.load(Ordering::SeqCst),
        1,
        "one connection for every call"
    );
}

// === Python grpcio ===

/// Calls SayHello on `server` with grpcio, presenting `client`'s SVID. grpcio
/// checks the server certificate's DNS name: the test server SVIDs carry
/// `localhost`, which `grpc.ssl_target_name_override` names.
async fn grpcio_say_hello(pki: &Pki, client: &SvidFiles, server: &GreeterServer) -> Output {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/grpcio_client.py");
    let target = server.addr.to_string();
    run(
        &python_with_grpcio(),
        &[
            s(&script),
            &target,
            "localhost",
            s(&pki.bundle),
            s(&client.cert),
            s(&client.key),
            "Ada",
        ],
    )
    .await
}

#[tokio::test]
async fn grpcio_client_with_allowed_svid_gets_reply() {
    let pki = Pki::new("grpcio-allowed");
    let server = start_greeter(&pki, &["--allow", CLIENT_ID]).await;

    let output = grpcio_say_hello(&pki, &pki.client, &server).await;
    assert!(output.status.success(), "{}", describe(&output));
    assert_eq!(
        String::from_utf8_lossy(&output.stdout).trim(),
        format!("OK Hello Ada, you are {CLIENT_ID}")
    );
}

#[tokio::test]
async fn grpcio_client_with_other_valid_svid_gets_permission_denied() {
    let pki = Pki::new("grpcio-denied");
    let server = start_greeter(&pki, &["--allow", CLIENT_ID]).await;

    let output = grpcio_say_hello(&pki, &pki.other_client, &server).await;
    assert_eq!(
        String::from_utf8_lossy(&output.stdout).trim(),
        "STATUS PERMISSION_DENIED permission denied",
        "{}",
        describe(&output)
    );
}

#[tokio::test]
async fn grpcio_client_with_svid_of_other_ca_fails_handshake_unavailable() {
    let pki = Pki::new("grpcio-rogue");
    let server = start_greeter(&pki, &["--allow", CLIENT_ID]).await;

    let output = grpcio_say_hello(&pki, &pki.rogue_client, &server).await;
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        stdout.starts_with("STATUS UNAVAILABLE"),
        "{}\n--- server ---\n{}",
        describe(&output),
        server.log.lock().unwrap()
    );
    assert!(
        server
            .log
            .lock()
            .unwrap()
            .contains("client certificate refused"),
        "the server refused the handshake:\n{}",
        server.log.lock().unwrap()
    );
}
