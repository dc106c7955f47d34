//! The servers' admin listener (`--admin`): readiness before the first identity,
//! while serving and after a withdrawal, `/status` without key material, and
//! `/metrics` scraped after real traffic (curl, greeter-client) and parsed with
//! Python's `prometheus_client`, the parser of the Prometheus ecosystem.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use tonic::Code;
use zt_core::X509Svid;
use zt_core::dev::{DevCa, SvidParams};
use zt_testkit::workload::FakeWorkloadApi;
use zt_testkit::workload_proto::{X509svid, X509svidResponse};

use common::*;

// === helpers ===

/// curl against the mTLS port of `server`, presenting `client`; the HTTP status
/// (`000` when the handshake failed).
async fn curl_whoami(pki_bundle: &Path, client: &SvidFiles, server: &ExampleServer) -> String {
    curl(server, client, pki_bundle, "/whoami", &[])
        .await
        .status
}

/// Polls `GET /ready` until it answers `status` or the timeout passes.
async fn wait_ready_status(admin: SocketAddr, status: &str, log: &std::sync::Mutex<String>) {
    let start = Instant::now();
    loop {
        let answer = admin_get(admin, "/ready").await;
        if answer.status == status {
            return;
        }
        assert!(
            start.elapsed() < TIMEOUT,
            "/ready still answers {} {:?}, not {status}\n--- server ---\n{}",
            answer.status,
            answer.body,
            log.lock().unwrap()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn status_json(admin: SocketAddr) -> (String, serde_json::Value) {
    let answer = admin_get(admin, "/status").await;
    assert_eq!(answer.status, "200", "{}", answer.body);
    let json = serde_json::from_str(&answer.body).expect("/status is JSON");
    (answer.body, json)
}

fn unix_seconds(time: SystemTime) -> i64 {
    i64::try_from(time.duration_since(UNIX_EPOCH).unwrap().as_secs()).unwrap()
}

/// `python3` with `prometheus_client`, failing the test with how to get it.
fn python_with_prometheus_client() -> PathBuf {
    let python = tool("python3");
    let check = std::process::Command::new(&python)
        .args(["-c", "import prometheus_client.parser"])
        .output()
        .expect("run python3");
    assert!(
        check.status.success(),
        "Python's prometheus_client is not installed; this test parses /metrics with it, \
         and scripts/test installs it (pip install prometheus-client): {}",
        String::from_utf8_lossy(&check.stderr)
    );
    python
}

/// One sample as `prometheus_client` parsed it.
#[derive(Debug)]
struct Sample {
    name: String,
    labels: serde_json::Map<String, serde_json::Value>,
    value: f64,
}

/// Scrapes `GET /metrics` and parses it with `prometheus_client`'s text parser.
async fn scrape(admin: SocketAddr, dir: &TempDir) -> Vec<Sample> {
    let answer = admin_get(admin, "/metrics").await;
    assert_eq!(answer.status, "200", "{}", answer.body);
    let file = dir.write("metrics.txt", &answer.body);
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/prometheus_parse.py");
    let output = run(&python_with_prometheus_client(), &[s(&script), s(&file)]).await;
    assert!(
        output.status.success(),
        "prometheus_client rejects /metrics: {}\n--- /metrics ---\n{}",
        describe(&output),
        answer.body
    );
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(|line| {
            let json: serde_json::Value = serde_json::from_str(line).unwrap();
            Sample {
                name: json["name"].as_str().unwrap().to_owned(),
                labels: json["labels"].as_object().unwrap().clone(),
                value: json["value"].as_f64().unwrap(),
            }
        })
        .collect()
}

/// The sum of the samples named `name` whose labels include every `(label, value)`.
fn sum(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> f64 {
    samples
        .iter()
        .filter(|sample| sample.name == name)
        .filter(|sample| {
            labels.iter().all(|(label, value)| {
                sample.labels.get(*label).and_then(|v| v.as_str()) == Some(value)
            })
        })
        .fold(0.0, |total, sample| total + sample.value)
}

fn show(samples: &[Sample]) -> String {
    samples
        .iter()
        .map(|s| format!("{} {:?} {}\n", s.name, s.labels, s.value))
        .collect()
}

/// A server SVID for `SERVER_ID` naming `localhost`, valid until `not_after`.
fn server_svid_pem(ca: &DevCa, not_after: SystemTime) -> (String, String) {
    let mut params = SvidParams::new(id(SERVER_ID));
    params.dns_names = vec!["localhost".to_owned()];
    params.not_after = not_after;
    ca.mint_pem(params).expect("mint PEM")
}

// === readiness ===

#[tokio::test]
async fn ready_is_503_until_the_workload_api_answers_200_while_serving_and_503_after_withdrawal() {
    let dir = TempDir::new("admin-wapi");
    let ca = DevCa::new("example.org".parse().unwrap()).unwrap();
    let bundle = dir.write("bundle.pem", ca.bundle_pem());
    let client = write_svid(&dir, "client", &ca, CLIENT_ID);
    let mut fake = FakeWorkloadApi::silent();
    fake.serve();
    let launching = Launching::with_admin(
        "echo-server",
        &["--workload-api", &fake.endpoint(), "--allow", CLIENT_ID],
    )
    .await;
    let admin = launching.admin();

    // The Workload API has not answered: alive, not ready, and says why.
    assert_eq!(admin_get(admin, "/live").await.status, "200");
    let answer = admin_get(admin, "/ready").await;
    assert_eq!(answer.status, "503", "{}", answer.body);
    assert!(answer.body.contains("no identity"), "{}", answer.body);
    let (_, status) = status_json(admin).await;
    assert_eq!(status["ready"], false);
    assert_eq!(status["identity"]["generation"], 0);

    // It answers: the server listens and is ready.
    let mut params = SvidParams::new(id(SERVER_ID));
    params.dns_names = vec!["localhost".to_owned()];
    let svid = ca.mint_with(params).unwrap();
    fake.update(X509svidResponse::with(vec![X509svid::from_parts(
        svid.id().as_str(),
        svid.chain(),
        svid.private_key().secret_der(),
        ca.bundle().authorities(),
    )]));
    let server = launching.listening().await;
    wait_ready_status(admin, "200", &server.log).await;
    assert_eq!(curl_whoami(&bundle, &client, &server).await, "200");

    // The Workload API withdraws our SVID: not ready again, with the reason.
    fake.refuse(Code::PermissionDenied, "no identity issued");
    wait_ready_status(admin, "503", &server.log).await;
    let answer = admin_get(admin, "/ready").await;
    assert!(answer.body.contains("withdrawn"), "{}", answer.body);
    assert_eq!(admin_get(admin, "/live").await.status, "200");
}

#[tokio::test]
async fn ready_is_503_while_the_credential_files_are_missing_and_200_once_written() {
    let pki = Pki::new("admin-files");
    let dir = TempDir::new("admin-files-late");
    let cert = dir.join("svid.pem");
    let key = dir.join("svid_key.pem");
    let launching = Launching::with_admin(
        "echo-server",
        &[
            "--cert",
            s(&cert),
            "--key",
            s(&key),
            "--bundle",
            s(&pki.bundle),
            "--allow",
            CLIENT_ID,
        ],
    )
    .await;
    let admin = launching.admin();
    let answer = admin_get(admin, "/ready").await;
    assert_eq!(answer.status, "503", "{}", answer.body);

    std::fs::copy(&pki.server.key, &key).unwrap();
    std::fs::copy(&pki.server.cert, &cert).unwrap();
    let server = launching.listening().await;
    wait_ready_status(admin, "200", &server.log).await;
}

// === status ===

#[tokio::test]
async fn status_shows_the_serving_svid_and_never_key_material() {
    let pki = Pki::new("admin-status");
    let server = ExampleServer::launch_with_admin(
        "echo-server",
        &[
            "--cert",
            s(&pki.server.cert),
            "--key",
            s(&pki.server.key),
            "--bundle",
            s(&pki.bundle),
            "--allow",
            CLIENT_ID,
        ],
    )
    .await;
    let (body, status) = status_json(server.admin()).await;

    let cert_pem = std::fs::read(&pki.server.cert).unwrap();
    let key_pem = std::fs::read_to_string(&pki.server.key).unwrap();
    let svid = X509Svid::from_pem(&cert_pem, key_pem.as_bytes()).unwrap();
    let identity = &status["identity"];
    assert_eq!(status["ready"], true);
    assert_eq!(identity["spiffe_id"], SERVER_ID);
    assert_eq!(identity["serial_number"], svid.serial_number());
    assert_eq!(identity["not_after_unix"], unix_seconds(svid.not_after()));
    assert_eq!(
        identity["trust_domains"],
        serde_json::json!([{"trust_domain": "example.org", "authorities": 1}])
    );
    assert_eq!(identity["generation"], 1);
    assert_eq!(status["policy"]["generation"], 1);
    assert_eq!(status["policy"]["rules"], 1);

    // The serial number is the one openssl reads from the certificate.
    let openssl = run(
        &tool("openssl"),
        &["x509", "-noout", "-serial", "-in", s(&pki.server.cert)],
    )
    .await;
    let serial = String::from_utf8_lossy(&openssl.stdout);
    assert_eq!(
        serial.trim().strip_prefix("serial="),
        identity["serial_number"].as_str()
    );

    // No key material: not the PEM label, not a chunk of the key's base64, not
    // the key's DER in base64 at any alignment.
    assert!(!body.contains("PRIVATE KEY"), "{body}");
    for line in key_pem.lines().filter(|line| !line.starts_with("-----")) {
        for chunk in line.as_bytes().chunks(16).filter(|c| c.len() == 16) {
            let chunk = std::str::from_utf8(chunk).unwrap();
            assert!(
                !body.contains(chunk),
                "/status holds key bytes {chunk}: {body}"
            );
        }
    }
    let der = svid.private_key().secret_der();
    for skip in 0..3 {
        let encoded = STANDARD.encode(&der[skip..]);
        for chunk in encoded
            .as_bytes()
            .chunks(16)
            .skip(1)
            .filter(|c| c.len() == 16)
        {
            let chunk = std::str::from_utf8(chunk).unwrap();
            assert!(
                !body.contains(chunk),
                "/status holds key bytes {chunk}: {body}"
            );
        }
    }
}

// === metrics ===

#[tokio::test]
async fn metrics_count_decisions_and_refused_handshakes_and_follow_rotation() {
    let pki = Pki::new("admin-metrics");
    let server = ExampleServer::launch_with_admin(
        "echo-server",
        &[
            "--cert",
            s(&pki.server.cert),
            "--key",
            s(&pki.server.key),
            "--bundle",
            s(&pki.bundle),
            "--allow",
            CLIENT_ID,
        ],
    )
    .await;
    let admin = server.admin();

    // Two allowed requests, one denied, one handshake with a client certificate
    // from another CA (of the same trust domain name).
    for _ in 0..2 {
        assert_eq!(curl_whoami(&pki.bundle, &pki.client, &server).await, "200");
    }
    assert_eq!(
        curl_whoami(&pki.bundle, &pki.other_client, &server).await,
        "403"
    );
    assert_eq!(
        curl_whoami(&pki.bundle, &pki.rogue_client, &server).await,
        "000"
    );

    // The SVID rotates (a later notAfter than the first), as a file writer does it.
    let not_after = SystemTime::now() + Duration::from_secs(3 * 3600);
    let (chain, key) = server_svid_pem(&pki.ca, not_after);
    let rotated = X509Svid::from_pem(chain.as_bytes(), key.as_bytes()).unwrap();
    pki.dir.write("server_key.pem", &key);
    pki.dir.write("server.pem", &chain);
    let start = Instant::now();
    loop {
        let (_, status) = status_json(admin).await;
        if status["identity"]["serial_number"] == rotated.serial_number() {
            break;
        }
        assert!(
            start.elapsed() < TIMEOUT,
            "the rotated SVID does not serve: {status}\n--- server ---\n{}",
            server.log.lock().unwrap()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let samples = scrape(admin, &pki.dir).await;
    let decisions = "zt_authz_decisions_total";
    assert_eq!(
        sum(&samples, decisions, &[("decision", "allow")]),
        2.0,
        "{}",
        show(&samples)
    );
    assert_eq!(
        sum(
            &samples,
            decisions,
            &[
                ("decision", "allow"),
                ("protocol", "http"),
                ("trust_domain", "example.org")
            ]
        ),
        2.0,
        "{}",
        show(&samples)
    );
    assert_eq!(
        sum(&samples, decisions, &[("decision", "deny")]),
        1.0,
        "{}",
        show(&samples)
    );
    assert_eq!(
        sum(
            &samples,
            "zt_tls_handshake_rejections_total",
            &[("side", "server"), ("reason", "unknown_ca")]
        ),
        1.0,
        "{}",
        show(&samples)
    );
    assert_eq!(
        sum(&samples, "zt_identity_svid_expiry_timestamp_seconds", &[]),
        unix_seconds(rotated.not_after()) as f64,
        "{}",
        show(&samples)
    );
    assert!(
        sum(&samples, "zt_identity_generation", &[]) >= 2.0,
        "{}",
        show(&samples)
    );
}

#[tokio::test]
async fn greeter_server_admin_is_ready_and_counts_grpc_decisions() {
    let pki = Pki::new("admin-greeter");
    let server = ExampleServer::launch_with_admin(
        "greeter-server",
        &[
            "--cert",
            s(&pki.server.cert),
            "--key",
            s(&pki.server.key),
            "--bundle",
            s(&pki.bundle),
            "--allow",
            CLIENT_ID,
        ],
    )
    .await;
    let admin = server.admin();
    assert_eq!(admin_get(admin, "/ready").await.status, "200");
    let (_, status) = status_json(admin).await;
    assert_eq!(status["identity"]["spiffe_id"], SERVER_ID);

    for (client, expect_success) in [(&pki.client, true), (&pki.other_client, false)] {
        let output = run(
            &example("greeter-client"),
            &[
                "--url",
                &server.url(""),
                "--cert",
                s(&client.cert),
                "--key",
                s(&client.key),
                "--bundle",
                s(&pki.bundle),
                "--server-id",
                SERVER_ID,
                "--name",
                "Ada",
            ],
        )
        .await;
        assert_eq!(
            output.status.success(),
            expect_success,
            "{}",
            describe(&output)
        );
    }

    let samples = scrape(admin, &pki.dir).await;
    let decisions = "zt_authz_decisions_total";
    assert_eq!(
        sum(
            &samples,
            decisions,
            &[("decision", "allow"), ("protocol", "grpc")]
        ),
        1.0,
        "{}",
        show(&samples)
    );
    assert_eq!(
        sum(
            &samples,
            decisions,
            &[("decision", "deny"), ("protocol", "grpc")]
        ),
        1.0,
        "{}",
        show(&samples)
    );
}
