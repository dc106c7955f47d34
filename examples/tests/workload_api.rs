//! The examples on the SPIFFE Workload API (`--workload-api`), against two
//! endpoints: zt-testkit's (tonic's generated server for the spec's proto) and an
//! independent one in Python's grpcio, generated with grpcio-tools from the same
//! `.proto`. Real clients: curl, echo-client, greeter-client.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod common;

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};
use zt_core::X509Svid;
use zt_core::dev::{DevCa, SvidParams};
use zt_testkit::workload::FakeWorkloadApi;
use zt_testkit::workload_proto::{X509svid, X509svidResponse};

use common::*;

const PARTNER_CLIENT_ID: &str = "spiffe://partner.org/web";

// === identities as the Workload API streams them ===

fn new_ca(trust_domain: &str) -> DevCa {
    DevCa::new(trust_domain.parse().unwrap()).expect("dev CA")
}

/// A server SVID that also names `localhost`, so curl accepts it.
fn server_svid(ca: &DevCa) -> X509Svid {
    let mut params = SvidParams::new(id(SERVER_ID));
    params.dns_names = vec!["localhost".to_owned()];
    ca.mint_with(params).expect("mint")
}

fn entry(svid: &X509Svid, ca: &DevCa) -> X509svid {
    X509svid::from_parts(
        svid.id().as_str(),
        svid.chain(),
        svid.private_key().secret_der(),
        ca.bundle().authorities(),
    )
}

fn update(svid: &X509Svid, ca: &DevCa) -> X509svidResponse {
    X509svidResponse::with(vec![entry(svid, ca)])
}

fn federating(update: X509svidResponse, partner: &DevCa) -> X509svidResponse {
    update.federate(
        partner.trust_domain().as_str(),
        partner.bundle().authorities(),
    )
}

fn served(fake: &mut FakeWorkloadApi) -> String {
    fake.serve();
    fake.endpoint()
}

/// Our trust domain and a federated partner: the files of a client of each, and a
/// bundle file trusting ours.
struct Federation {
    _dir: TempDir,
    ca: DevCa,
    partner: DevCa,
    bundle: std::path::PathBuf,
    client: SvidFiles,
    partner_client: SvidFiles,
}

impl Federation {
    fn new(tag: &str) -> Self {
        let dir = TempDir::new(tag);
        let ca = new_ca("example.org");
        let partner = new_ca("partner.org");
        let bundle = dir.write_atomic("bundle.pem", ca.bundle_pem());
        let client = write_svid(&dir, "client", &ca, CLIENT_ID);
        let partner_client = write_svid(&dir, "partner", &partner, PARTNER_CLIENT_ID);
        Self {
            _dir: dir,
            ca,
            partner,
            bundle,
            client,
            partner_client,
        }
    }
}

/// echo-server on the Workload API at `endpoint`, allowing our client and the
/// partner's.
async fn echo_server_on(endpoint: &str) -> ExampleServer {
    ExampleServer::launch(
        "echo-server",
        &[
            "--workload-api",
            endpoint,
            "--allow",
            CLIENT_ID,
            "--allow",
            PARTNER_CLIENT_ID,
        ],
    )
    .await
}

// === curl, reading the certificate the server presented ===

/// `curl` GET `/whoami` on `server` with `client`'s SVID, trusting `bundle`.
async fn whoami(server: &ExampleServer, client: &SvidFiles, bundle: &Path) -> Curl {
    curl(server, client, bundle, "/whoami", &[]).await
}

/// Polls with curl until the server presents `leaf` or `within` passes.
async fn wait_presented(
    server: &ExampleServer,
    client: &SvidFiles,
    bundle: &Path,
    leaf: &[u8],
    within: Duration,
) -> Duration {
    let start = Instant::now();
    loop {
        let answer = whoami(server, client, bundle).await;
        if answer.leaf.as_deref() == Some(leaf) {
            return start.elapsed();
        }
        assert!(
            start.elapsed() < within,
            "the server did not present the new SVID within {within:?} (status {}, {})\n--- server ---\n{}",
            answer.status,
            answer.stderr,
            server.log.lock().unwrap()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Polls with curl until the server refuses `client` at the handshake (no HTTP
/// status) or `within` passes.
async fn wait_refused(server: &ExampleServer, client: &SvidFiles, bundle: &Path, within: Duration) {
    let start = Instant::now();
    loop {
        let answer = whoami(server, client, bundle).await;
        if answer.status == "000" {
            return;
        }
        assert!(
            start.elapsed() < within,
            "the withdrawn partner is still served: {} {}",
            answer.status,
            answer.body
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

// === echo-server on the Workload API ===

#[tokio::test]
async fn echo_server_on_the_workload_api_serves_rotates_follows_federation_and_keeps_the_last_good()
{
    let Federation {
        _dir,
        ca,
        partner,
        bundle,
        client,
        partner_client,
    } = Federation::new("wapi-echo");
    let first = server_svid(&ca);
    let mut fake = FakeWorkloadApi::new(federating(update(&first, &ca), &partner));
    let endpoint = served(&mut fake);
    // `unix:/path`, the short form, as well as the fake's `unix:///path`.
    let short = endpoint.replacen("unix://", "unix:", 1);
    let server = echo_server_on(&short).await;

    // curl gets its ID from a server presenting the Workload API's SVID.
    let answer = whoami(&server, &client, &bundle).await;
    assert_eq!(answer.status, "200", "{}", answer.stderr);
    assert!(answer.body.contains(CLIENT_ID), "{}", answer.body);
    assert_eq!(answer.leaf.as_deref(), Some(first.leaf().as_ref()));

    // A rotation on the stream is presented within a second.
    let second = server_svid(&ca);
    fake.update(federating(update(&second, &ca), &partner));
    let took = wait_presented(
        &server,
        &client,
        &bundle,
        second.leaf().as_ref(),
        Duration::from_secs(1),
    )
    .await;
    eprintln!("rotated SVID presented {took:?} after the update");

    // The federated partner is trusted while its bundle is streamed...
    let answer = whoami(&server, &partner_client, &bundle).await;
    assert_eq!(answer.status, "200", "{}", answer.stderr);
    // ...and refused at the handshake once the bundle is withdrawn.
    fake.update(update(&second, &ca));
    wait_refused(&server, &partner_client, &bundle, Duration::from_secs(10)).await;

    // An update whose key does not match its certificate is refused; the last good
    // SVID keeps serving.
    let third = server_svid(&ca);
    let mut mismatched = entry(&third, &ca);
    mismatched.x509_svid_key = first.private_key().secret_der().to_vec();
    fake.update(X509svidResponse::with(vec![mismatched]));
    let start = Instant::now();
    while !server
        .log
        .lock()
        .unwrap()
        .contains("private key does not match the leaf certificate")
    {
        assert!(
            start.elapsed() < TIMEOUT,
            "the mismatched update was not reported:\n{}",
            server.log.lock().unwrap()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        server
            .log
            .lock()
            .unwrap()
            .contains("identity candidate rejected; keeping the last good identity"),
        "{}",
        server.log.lock().unwrap()
    );
    let answer = whoami(&server, &client, &bundle).await;
    assert_eq!(answer.status, "200", "{}", answer.stderr);
    assert_eq!(answer.leaf.as_deref(), Some(second.leaf().as_ref()));
}

// === clients on the Workload API ===

#[tokio::test]
async fn echo_client_reaches_its_server_with_an_svid_from_the_workload_api() {
    let pki = Pki::new("wapi-echo-client");
    let server = EchoServer::start(&pki, &["--allow", CLIENT_ID]).await;
    let client_svid = pki.ca.mint(&id(CLIENT_ID)).unwrap();
    let mut agent = FakeWorkloadApi::new(update(&client_svid, &pki.ca));
    let endpoint = served(&mut agent);

    let output = run(
        &example("echo-client"),
        &[
            "--url",
            &server.url("/whoami"),
            "--workload-api",
            &endpoint,
            "--server-id",
            SERVER_ID,
        ],
    )
    .await;
    assert!(output.status.success(), "{}", describe(&output));
    assert!(
        String::from_utf8_lossy(&output.stdout).contains(CLIENT_ID),
        "{}",
        describe(&output)
    );
}

#[tokio::test]
async fn greeter_server_and_client_both_on_the_workload_api_with_hint_and_environment() {
    let ca = new_ca("example.org");
    let mut server_agent = FakeWorkloadApi::new(update(&server_svid(&ca), &ca));
    let server_endpoint = served(&mut server_agent);
    let server = ExampleServer::launch(
        "greeter-server",
        &["--workload-api", &server_endpoint, "--allow", CLIENT_ID],
    )
    .await;

    // The client's agent grants two SVIDs; the hint picks the second.
    let batch = ca.mint(&id(OTHER_CLIENT_ID)).unwrap();
    let web = ca.mint(&id(CLIENT_ID)).unwrap();
    let mut client_agent = FakeWorkloadApi::new(X509svidResponse::with(vec![
        entry(&batch, &ca).with_hint("batch"),
        entry(&web, &ca).with_hint("web"),
    ]));
    let client_endpoint = served(&mut client_agent);
    // `--workload-api` without a value: the address comes from SPIFFE_ENDPOINT_SOCKET.
    let output = Command::new(example("greeter-client"))
        .args([
            "--url",
            &server.url(""),
            "--workload-api",
            "--svid-hint",
            "web",
            "--server-id",
            SERVER_ID,
            "--name",
            "Ada",
        ])
        .env("SPIFFE_ENDPOINT_SOCKET", &client_endpoint)
        .stdin(Stdio::null())
        .output();
    let output = within("greeter-client", output).await.unwrap();
    assert!(output.status.success(), "{}", describe(&output));
    assert_eq!(
        String::from_utf8_lossy(&output.stdout).trim(),
        format!("Hello Ada, you are {CLIENT_ID}")
    );

    // The first SVID (batch) is not allowed.
    let output = run(
        &example("greeter-client"),
        &[
            "--url",
            &server.url(""),
            "--workload-api",
            &client_endpoint,
            "--server-id",
            SERVER_ID,
            "--name",
            "Bob",
        ],
    )
    .await;
    assert!(!output.status.success(), "{}", describe(&output));
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("PermissionDenied")
            || String::from_utf8_lossy(&output.stderr).contains("permission denied"),
        "{}",
        describe(&output)
    );
}

#[tokio::test]
async fn files_and_workload_api_together_or_neither_are_usage_errors() {
    let pki = Pki::new("wapi-usage");
    for (args, expected) in [
        (
            [
                &[
                    "--allow",
                    CLIENT_ID,
                    "--workload-api",
                    "unix:///tmp/agent.sock",
                ][..],
                &file_args(&pki.server, &pki.bundle),
            ]
            .concat(),
            "cannot be used with",
        ),
        (
            vec!["--allow", CLIENT_ID],
            "required arguments were not provided",
        ),
        (
            [
                &["--allow", CLIENT_ID, "--svid-hint", "web"][..],
                &file_args(&pki.server, &pki.bundle),
            ]
            .concat(),
            "use them with --workload-api",
        ),
        (
            vec!["--allow", CLIENT_ID, "--workload-api", "http://agent"],
            "--workload-api: invalid Workload API endpoint",
        ),
    ] {
        let mut all = vec!["--listen", "127.0.0.1:0"];
        all.extend(args.iter().copied());
        let output = run(&example("echo-server"), &all).await;
        assert_eq!(
            output.status.code(),
            Some(2),
            "{args:?}: {}",
            describe(&output)
        );
        assert!(
            String::from_utf8_lossy(&output.stderr).contains(expected),
            "{args:?}: {}",
            describe(&output)
        );
    }
}

// === an independent Workload API: Python's grpcio ===

/// `workload_api_server.py` running on a Unix socket.
struct PythonWorkloadApi {
    _dir: TempDir,
    socket: std::path::PathBuf,
    stdin: ChildStdin,
    stdout: Lines<BufReader<ChildStdout>>,
    applied: usize,
    _child: Child,
}

impl PythonWorkloadApi {
    async fn start() -> Self {
        let python = python_with_grpcio();
        // Unix socket paths are short: stay near the root of the temp dir.
        let dir = TempDir::new("pywapi");
        let socket = dir.path().join("agent.sock");
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/workload_api_server.py");
        let mut child = Command::new(&python)
            .arg(&script)
            .arg(&socket)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .expect("start the Python Workload API server");
        let stdin = child.stdin.take().unwrap();
        let mut stdout = BufReader::new(child.stdout.take().unwrap()).lines();
        let line = within("the Python server to listen", stdout.next_line())
            .await
            .unwrap();
        assert_eq!(line.as_deref(), Some("listening"));
        Self {
            _dir: dir,
            socket,
            stdin,
            stdout,
            applied: 0,
            _child: child,
        }
    }

    fn endpoint(&self) -> String {
        format!("unix://{}", self.socket.display())
    }

    /// Sends `update` as the full state and waits until the server took it.
    async fn send(&mut self, update: &X509svidResponse) {
        let svids: Vec<_> = update
            .svids
            .iter()
            .map(|svid| {
                serde_json::json!({
                    "spiffe_id": svid.spiffe_id,
                    "x509_svid": STANDARD.encode(&svid.x509_svid),
                    "x509_svid_key": STANDARD.encode(&svid.x509_svid_key),
                    "bundle": STANDARD.encode(&svid.bundle),
                    "hint": svid.hint,
                })
            })
            .collect();
        let federated: serde_json::Map<_, _> = update
            .federated_bundles
            .iter()
            .map(|(name, der)| (name.clone(), STANDARD.encode(der).into()))
            .collect();
        let line = serde_json::json!({"svids": svids, "federated_bundles": federated});
        self.stdin
            .write_all(format!("{line}\n").as_bytes())
            .await
            .unwrap();
        self.stdin.flush().await.unwrap();
        self.applied += 1;
        let ack = within("the Python server to apply", self.stdout.next_line())
            .await
            .unwrap();
        assert_eq!(ack, Some(format!("applied {}", self.applied)));
    }
}

#[tokio::test]
async fn echo_server_follows_rotation_and_withdrawal_from_a_python_grpcio_workload_api() {
    let Federation {
        _dir,
        ca,
        partner,
        bundle,
        client,
        partner_client,
    } = Federation::new("pywapi-echo");
    let mut agent = PythonWorkloadApi::start().await;
    let first = server_svid(&ca);
    agent.send(&federating(update(&first, &ca), &partner)).await;
    let server = echo_server_on(&agent.endpoint()).await;
    let answer = whoami(&server, &client, &bundle).await;
    assert_eq!(answer.status, "200", "{}", answer.stderr);
    assert_eq!(answer.leaf.as_deref(), Some(first.leaf().as_ref()));
    let answer = whoami(&server, &partner_client, &bundle).await;
    assert_eq!(answer.status, "200", "{}", answer.stderr);

    // Rotation.
    let second = server_svid(&ca);
    agent
        .send(&federating(update(&second, &ca), &partner))
        .await;
    wait_presented(
        &server,
        &client,
        &bundle,
        second.leaf().as_ref(),
        Duration::from_secs(5),
    )
    .await;

    // Withdrawal of the federated bundle.
    agent.send(&update(&second, &ca)).await;
    wait_refused(&server, &partner_client, &bundle, Duration::from_secs(10)).await;
    let answer = whoami(&server, &client, &bundle).await;
    assert_eq!(answer.status, "200", "{}", answer.stderr);
}
