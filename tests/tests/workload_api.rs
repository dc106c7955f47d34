//! `WorkloadApiSource` against a real gRPC SPIFFE Workload API endpoint on a Unix
//! socket (`zt_testkit::workload`, tonic's generated server for the spec's proto), with real rustls handshakes on 127.0.0.1 to show
//! what a peer sees.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::{TlsAcceptor, TlsConnector};
use tonic::Code;
use zt_core::dev::DevCa;
use zt_core::tls::{ClientConfigBuilder, ServerConfigBuilder};
use zt_core::{
    BundleSet, IdMatcher, Identity, IdentitySource, PeerIdentity, PeerRole, Snapshot, SpiffeId,
    StaticSource, Status, SvidPicker, WorkloadApiError, WorkloadApiSource, X509Svid,
};
use zt_testkit::workload::FakeWorkloadApi;
use zt_testkit::workload_proto::spiffe_workload_api_client::SpiffeWorkloadApiClient;
use zt_testkit::workload_proto::{X509svid, X509svidRequest, X509svidResponse};

/// Upper bound for every wait; a bug fails the test instead of hanging it.
const TIMEOUT: Duration = Duration::from_secs(20);

const API_ID: &str = "spiffe://example.org/api";
const CLIENT_ID: &str = "spiffe://example.org/client";
const PARTNER_ID: &str = "spiffe://partner.org/client";

// === helpers ===

fn id(s: &str) -> SpiffeId {
    s.parse().expect("SPIFFE ID")
}

fn new_ca(trust_domain: &str) -> DevCa {
    DevCa::new(trust_domain.parse().expect("trust domain")).expect("dev CA")
}

fn mint(ca: &DevCa, spiffe_id: &str) -> X509Svid {
    ca.mint(&id(spiffe_id)).expect("mint")
}

/// The Workload API's entry for `svid`, issued by `ca`.
fn entry(svid: &X509Svid, ca: &DevCa) -> X509svid {
    X509svid::from_parts(
        svid.id().as_str(),
        svid.chain(),
        svid.private_key().secret_der(),
        ca.bundle().authorities(),
    )
}

/// One SVID issued by `ca`, as the Workload API would stream it.
fn update(svid: &X509Svid, ca: &DevCa) -> X509svidResponse {
    X509svidResponse::with(vec![entry(svid, ca)])
}

/// Adds `ca`'s bundle to `update` as a federated bundle.
fn federate(update: X509svidResponse, ca: &DevCa) -> X509svidResponse {
    update.federate(ca.trust_domain().as_str(), ca.bundle().authorities())
}

/// A peer with an SVID of `ca` for `spiffe_id`, trusting `ca` and `also_trust`.
fn peer(ca: &DevCa, spiffe_id: &str, also_trust: &[&DevCa]) -> StaticSource {
    let mut bundles = BundleSet::new().with(ca.bundle());
    for other in also_trust {
        bundles.insert(other.bundle());
    }
    StaticSource::new(mint(ca, spiffe_id), bundles).expect("peer identity")
}

/// A source on `fake` with short backoff, so reconnections happen within a test.
fn start(fake: &FakeWorkloadApi) -> WorkloadApiSource {
    start_with(fake, SvidPicker::first())
}

fn start_with(fake: &FakeWorkloadApi, picker: SvidPicker) -> WorkloadApiSource {
    WorkloadApiSource::builder()
        .endpoint(fake.endpoint())
        .pick(picker)
        .backoff(Duration::from_millis(20), Duration::from_millis(200))
        .start()
        .expect("start the Workload API source")
}

async fn ready(identity: &Identity) -> Arc<Snapshot> {
    tokio::time::timeout(TIMEOUT, identity.ready())
        .await
        .unwrap_or_else(|_| panic!("identity not ready in time: {:?}", identity.status()))
}

/// Waits until the status satisfies `condition`, without sleeping: every publication,
/// rejection and withdrawal is a change.
async fn wait_status(
    identity: &Identity,
    what: &str,
    condition: impl Fn(&Status) -> bool,
) -> Status {
    let mut changes = identity.changes();
    let wait = async {
        loop {
            let status = identity.status();
            if condition(&status) {
                return status;
            }
            assert!(changes.changed().await, "publisher gone waiting for {what}");
        }
    };
    tokio::time::timeout(TIMEOUT, wait)
        .await
        .unwrap_or_else(|_| panic!("timed out waiting for {what}: {:?}", identity.status()))
}

/// What one mTLS handshake with a zt server serving `server` showed.
#[derive(Debug)]
struct Handshake {
    /// The leaf the server presented.
    presented_leaf: CertificateDer<'static>,
    /// The client's ID as the server verified it.
    client_id: SpiffeId,
}

/// A full mTLS handshake on 127.0.0.1 between a zt server built from `server` and a zt
/// client built from `client`. The server's error comes first: it says why a client
/// was refused.
async fn handshake(server: &Identity, client: &Identity) -> io::Result<Handshake> {
    let server_config = ServerConfigBuilder::new(server.clone())
        .build()
        .expect("server config");
    let acceptor = TlsAcceptor::from(Arc::new(server_config));
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr: SocketAddr = listener.local_addr()?;
    let server_identity = server.clone();
    let server_side = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await?;
        let mut tls = acceptor.accept(tcp).await?;
        let peer =
            PeerIdentity::from_connection(tls.get_ref().1, PeerRole::Client, &server_identity)
                .map_err(io::Error::other)?;
        tls.write_all(b"ok").await?;
        tls.shutdown().await?;
        Ok::<_, io::Error>(peer.id().clone())
    });

    let client_config = ClientConfigBuilder::new(client.clone(), IdMatcher::any())
        .build()
        .expect("client config");
    let connector = TlsConnector::from(Arc::new(client_config));
    let client_side = async {
        let tcp = TcpStream::connect(addr).await?;
        let name = ServerName::try_from("localhost").expect("server name");
        let mut tls = connector.connect(name, tcp).await?;
        let leaf = tls
            .get_ref()
            .1
            .peer_certificates()
            .and_then(|chain| chain.first())
            .cloned()
            .ok_or_else(|| io::Error::other("server presented no certificate"))?;
        // In TLS 1.3 the server judges the client after the client is done: wait for
        // its word.
        let mut reply = Vec::new();
        tls.read_to_end(&mut reply).await?;
        if reply != b"ok" {
            return Err(io::Error::other("server closed without confirming"));
        }
        Ok(leaf)
    };
    let (client_result, server_result) = tokio::time::timeout(TIMEOUT, async {
        let client_result = client_side.await;
        (client_result, server_side.await.expect("server task"))
    })
    .await
    .expect("handshake finishes in time");
    let client_id = server_result?;
    let presented_leaf = client_result?;
    Ok(Handshake {
        presented_leaf,
        client_id,
    })
}

/// The reason a zt peer gave for refusing a certificate.
fn rejection(err: &io::Error) -> String {
    zt_core::tls::Rejection::of(err).map_or_else(|| err.to_string(), |r| r.to_string())
}

// === streaming updates ===

#[tokio::test]
async fn rotated_svid_becomes_a_new_generation_and_is_presented_on_the_next_handshake() {
    let ca = new_ca("example.org");
    let first = mint(&ca, API_ID);
    let mut fake = FakeWorkloadApi::new(update(&first, &ca));
    fake.serve();
    let source = start(&fake);
    let identity = source.identity();
    let client = peer(&ca, CLIENT_ID, &[]);

    let snapshot = ready(&identity).await;
    assert_eq!(snapshot.id().as_str(), API_ID);
    let before = handshake(&identity, &client.identity())
        .await
        .expect("handshake with the first SVID");
    assert_eq!(before.presented_leaf, *first.leaf());
    assert_eq!(before.client_id.as_str(), CLIENT_ID);

    let second = mint(&ca, API_ID);
    assert_ne!(first.leaf(), second.leaf());
    fake.update(update(&second, &ca));
    let status = wait_status(&identity, "the rotated SVID", |s| {
        s.generation() > snapshot.generation()
    })
    .await;
    assert_eq!(status.generation(), snapshot.generation() + 1);
    assert!(status.is_ready());

    let after = handshake(&identity, &client.identity())
        .await
        .expect("handshake with the rotated SVID");
    assert_eq!(after.presented_leaf, *second.leaf());
}

#[tokio::test]
async fn federated_bundle_is_trusted_while_streamed_and_dropped_once_withdrawn() {
    let ca = new_ca("example.org");
    let partner_ca = new_ca("partner.org");
    let ours = mint(&ca, API_ID);
    let mut fake = FakeWorkloadApi::new(update(&ours, &ca));
    fake.serve();
    let source = start(&fake);
    let identity = source.identity();
    let partner = peer(&partner_ca, PARTNER_ID, &[&ca]);

    let first = ready(&identity).await;
    let refused = handshake(&identity, &partner.identity())
        .await
        .expect_err("no bundle for partner.org yet");
    assert_eq!(
        rejection(&refused),
        "no trust bundle for trust domain partner.org"
    );

    fake.update(federate(update(&ours, &ca), &partner_ca));
    wait_status(&identity, "the federated bundle", |s| {
        s.generation() > first.generation()
    })
    .await;
    let snapshot = identity.snapshot().expect("serving");
    assert!(snapshot.bundles().get(partner_ca.trust_domain()).is_some());
    let accepted = handshake(&identity, &partner.identity())
        .await
        .expect("partner.org is federated");
    assert_eq!(accepted.client_id.as_str(), PARTNER_ID);

    // Every update is the full state: a bundle left out is withdrawn.
    fake.update(update(&ours, &ca));
    wait_status(&identity, "the withdrawal of the federated bundle", |s| {
        s.generation() > snapshot.generation()
    })
    .await;
    let refused = handshake(&identity, &partner.identity())
        .await
        .expect_err("partner.org is no longer federated");
    assert_eq!(
        rejection(&refused),
        "no trust bundle for trust domain partner.org"
    );
}

// === withdrawal: fail closed ===

#[tokio::test]
async fn update_without_svids_is_discarded_and_the_last_good_keeps_serving() {
    // SPIFFE Workload API §5.2.1: `svids` MUST hold one or more SVIDs; §4.5: a
    // client receiving a message whose mandatory field is empty SHOULD report an
    // error and discard the message. (A server that grants nothing answers
    // PermissionDenied, which withdraws: see below.)
    let ca = new_ca("example.org");
    let svid = mint(&ca, API_ID);
    let mut fake = FakeWorkloadApi::new(update(&svid, &ca));
    fake.serve();
    let source = start(&fake);
    let identity = source.identity();
    let client = peer(&ca, CLIENT_ID, &[]);
    let snapshot = ready(&identity).await;

    fake.update(X509svidResponse::with(Vec::new()));
    let status = wait_status(&identity, "the rejection", |s| s.last_error().is_some()).await;
    let error = status.last_error().unwrap_or_default();
    assert!(
        error.contains("carries no X.509-SVID") && error.contains("5.2.1"),
        "unexpected error: {error}"
    );
    assert!(status.is_ready(), "the empty update withdrew the identity");
    assert_eq!(status.generation(), snapshot.generation());
    let served = handshake(&identity, &client.identity())
        .await
        .expect("the last good SVID keeps serving");
    assert_eq!(served.presented_leaf, *svid.leaf());

    let again = mint(&ca, API_ID);
    fake.update(update(&again, &ca));
    let status = wait_status(&identity, "the next good update", |s| {
        s.generation() > snapshot.generation()
    })
    .await;
    assert_eq!(status.last_error(), None);
    let served = handshake(&identity, &client.identity())
        .await
        .expect("handshake after the next update");
    assert_eq!(served.presented_leaf, *again.leaf());
}

#[tokio::test]
async fn permission_denied_at_start_keeps_the_identity_not_ready_with_the_reason() {
    let ca = new_ca("example.org");
    let mut fake = FakeWorkloadApi::new(update(&mint(&ca, API_ID), &ca));
    fake.refuse(Code::PermissionDenied, "no identity issued");
    fake.serve();
    let source = start(&fake);
    let identity = source.identity();

    let status = wait_status(&identity, "the denial", |s| {
        s.not_ready_reason()
            .is_some_and(|r| r.contains("PermissionDenied"))
    })
    .await;
    assert!(!status.is_ready());
    assert!(identity.snapshot().is_none());
    assert_eq!(fake.accepted_calls(), 0);
}

#[tokio::test]
async fn permission_denied_on_an_open_stream_withdraws_the_serving_identity() {
    let ca = new_ca("example.org");
    let mut fake = FakeWorkloadApi::new(update(&mint(&ca, API_ID), &ca));
    fake.serve();
    let source = start(&fake);
    let identity = source.identity();
    let client = peer(&ca, CLIENT_ID, &[]);
    ready(&identity).await;

    fake.refuse(Code::PermissionDenied, "workload entry deleted");
    let status = wait_status(&identity, "the withdrawal", |s| !s.is_ready()).await;
    let reason = status.not_ready_reason().expect("a reason");
    assert!(
        reason.contains("PermissionDenied") && reason.contains("workload entry deleted"),
        "unexpected reason: {reason}"
    );
    handshake(&identity, &client.identity())
        .await
        .expect_err("the identity was withdrawn");
}

#[tokio::test]
async fn picker_without_a_matching_svid_withdraws_the_identity() {
    let ca = new_ca("example.org");
    let wanted = mint(&ca, "spiffe://example.org/wanted");
    let mut fake = FakeWorkloadApi::new(update(&wanted, &ca));
    fake.serve();
    let source = start_with(
        &fake,
        SvidPicker::by_id(IdMatcher::exact(id("spiffe://example.org/wanted"))),
    );
    let identity = source.identity();
    ready(&identity).await;

    fake.update(update(&mint(&ca, "spiffe://example.org/other"), &ca));
    let status = wait_status(&identity, "the withdrawal", |s| !s.is_ready()).await;
    let reason = status.not_ready_reason().expect("a reason");
    assert!(
        reason.contains("no SVID matching the picker"),
        "unexpected reason: {reason}"
    );
    assert!(identity.snapshot().is_none());
}

// === connection loss ===

#[tokio::test]
async fn stream_dropped_by_the_server_is_reopened_and_later_updates_arrive() {
    let ca = new_ca("example.org");
    let first = mint(&ca, API_ID);
    let mut fake = FakeWorkloadApi::new(update(&first, &ca));
    fake.serve();
    let source = start(&fake);
    let identity = source.identity();
    let client = peer(&ca, CLIENT_ID, &[]);
    let snapshot = ready(&identity).await;
    assert_eq!(fake.accepted_calls(), 1);

    fake.drop_streams();
    fake.wait_accepted(2).await;
    // The same material on the new stream is no new generation.
    assert!(identity.status().is_ready());
    assert_eq!(identity.generation(), snapshot.generation());

    let second = mint(&ca, API_ID);
    fake.update(update(&second, &ca));
    wait_status(&identity, "the update on the new stream", |s| {
        s.generation() > snapshot.generation()
    })
    .await;
    let served = handshake(&identity, &client.identity())
        .await
        .expect("handshake after reconnecting");
    assert_eq!(served.presented_leaf, *second.leaf());
}

#[tokio::test]
async fn server_outage_reports_the_reason_while_the_last_good_snapshot_keeps_serving() {
    let ca = new_ca("example.org");
    let first = mint(&ca, API_ID);
    let mut fake = FakeWorkloadApi::new(update(&first, &ca));
    fake.serve();
    let source = start(&fake);
    let identity = source.identity();
    let client = peer(&ca, CLIENT_ID, &[]);
    let snapshot = ready(&identity).await;

    fake.stop().await;
    let status = wait_status(&identity, "the outage to be reported", |s| {
        s.last_error()
            .is_some_and(|e| e.contains("cannot reach the Workload API"))
    })
    .await;
    assert!(status.is_ready());
    assert_eq!(status.generation(), snapshot.generation());
    let served = handshake(&identity, &client.identity())
        .await
        .expect("the last good SVID keeps serving");
    assert_eq!(served.presented_leaf, *first.leaf());

    let second = mint(&ca, API_ID);
    fake.update(update(&second, &ca));
    fake.serve();
    let status = wait_status(&identity, "the update after the outage", |s| {
        s.generation() > snapshot.generation()
    })
    .await;
    assert_eq!(status.last_error(), None);
}

#[tokio::test]
async fn endpoint_absent_at_start_reports_why_and_becomes_ready_once_served() {
    let ca = new_ca("example.org");
    let mut fake = FakeWorkloadApi::new(update(&mint(&ca, API_ID), &ca));
    let source = start(&fake);
    let identity = source.identity();

    let status = wait_status(&identity, "the connection failure", |s| {
        s.last_error().is_some()
    })
    .await;
    assert!(!status.is_ready());
    let reason = status.not_ready_reason().expect("a reason");
    assert!(
        reason.contains("cannot reach the Workload API"),
        "unexpected reason: {reason}"
    );

    fake.serve();
    let snapshot = ready(&identity).await;
    assert_eq!(snapshot.id().as_str(), API_ID);
    assert_eq!(identity.status().last_error(), None);
}

// === picking among several SVIDs ===

#[tokio::test]
async fn picker_by_id_serves_the_matching_second_svid() {
    let ca = new_ca("example.org");
    let first = mint(&ca, "spiffe://example.org/first");
    let second = mint(&ca, "spiffe://example.org/second");
    let mut fake = FakeWorkloadApi::new(X509svidResponse::with(vec![
        entry(&first, &ca),
        entry(&second, &ca),
    ]));
    fake.serve();
    let source = start_with(
        &fake,
        SvidPicker::by_id(IdMatcher::exact(id("spiffe://example.org/second"))),
    );
    let identity = source.identity();
    let client = peer(&ca, CLIENT_ID, &[]);

    let snapshot = ready(&identity).await;
    assert_eq!(snapshot.id().as_str(), "spiffe://example.org/second");
    let served = handshake(&identity, &client.identity())
        .await
        .expect("handshake");
    assert_eq!(served.presented_leaf, *second.leaf());
}

#[tokio::test]
async fn picker_by_hint_serves_the_svid_with_that_hint() {
    let ca = new_ca("example.org");
    let internal = mint(&ca, "spiffe://example.org/internal");
    let external = mint(&ca, "spiffe://example.org/external");
    let mut fake = FakeWorkloadApi::new(X509svidResponse::with(vec![
        entry(&internal, &ca).with_hint("internal"),
        entry(&external, &ca).with_hint("external"),
    ]));
    fake.serve();
    let source = start_with(&fake, SvidPicker::by_hint("external"));

    let snapshot = ready(&source.identity()).await;
    assert_eq!(snapshot.svid().leaf(), external.leaf());
}

#[tokio::test]
async fn default_picker_serves_the_first_svid() {
    let ca = new_ca("example.org");
    let first = mint(&ca, "spiffe://example.org/first");
    let second = mint(&ca, "spiffe://example.org/second");
    let mut fake = FakeWorkloadApi::new(X509svidResponse::with(vec![
        entry(&first, &ca),
        entry(&second, &ca),
    ]));
    fake.serve();
    let source = start(&fake);

    let snapshot = ready(&source.identity()).await;
    assert_eq!(snapshot.svid().leaf(), first.leaf());
}

// === bad updates ===

#[tokio::test]
async fn update_with_a_malformed_certificate_is_rejected_and_the_last_good_keeps_serving() {
    let ca = new_ca("example.org");
    let first = mint(&ca, API_ID);
    let mut fake = FakeWorkloadApi::new(update(&first, &ca));
    fake.serve();
    let source = start(&fake);
    let identity = source.identity();
    let client = peer(&ca, CLIENT_ID, &[]);
    let snapshot = ready(&identity).await;

    let mut garbage = entry(&mint(&ca, API_ID), &ca);
    garbage.x509_svid = b"\x30\x03not a certificate".to_vec();
    fake.update(X509svidResponse::with(vec![garbage]));
    let status = wait_status(&identity, "the rejection", |s| s.last_error().is_some()).await;
    let error = status.last_error().expect("an error");
    assert!(
        error.contains("Workload API update rejected"),
        "unexpected error: {error}"
    );
    assert!(status.is_ready());
    assert_eq!(status.generation(), snapshot.generation());
    let served = handshake(&identity, &client.identity())
        .await
        .expect("the last good SVID keeps serving");
    assert_eq!(served.presented_leaf, *first.leaf());
}

#[tokio::test]
async fn update_whose_svid_does_not_chain_to_its_bundle_is_rejected_as_a_whole() {
    let ca = new_ca("example.org");
    let impostor_ca = new_ca("example.org");
    let first = mint(&ca, API_ID);
    let mut fake = FakeWorkloadApi::new(update(&first, &ca));
    fake.serve();
    let source = start(&fake);
    let identity = source.identity();
    let snapshot = ready(&identity).await;

    // Well-formed, but signed by a CA the streamed bundle does not hold.
    let mut foreign = entry(&mint(&impostor_ca, API_ID), &impostor_ca);
    foreign.bundle = entry(&first, &ca).bundle;
    fake.update(X509svidResponse::with(vec![foreign]));
    let status = wait_status(&identity, "the rejection", |s| s.last_error().is_some()).await;
    let error = status.last_error().expect("an error");
    assert!(
        error.contains("not signed by an authority of trust domain example.org"),
        "unexpected error: {error}"
    );
    assert_eq!(status.generation(), snapshot.generation());
    assert_eq!(
        identity.snapshot().expect("serving").svid().leaf(),
        first.leaf()
    );
}

// === the endpoint contract ===

#[tokio::test]
async fn call_without_the_security_header_is_refused_and_the_source_sends_it() {
    let ca = new_ca("example.org");
    let mut fake = FakeWorkloadApi::new(update(&mint(&ca, API_ID), &ca));
    fake.serve();

    let channel = tonic::transport::Endpoint::from_shared(fake.endpoint())
        .expect("endpoint")
        .connect()
        .await
        .expect("connect to the fake");
    let status = SpiffeWorkloadApiClient::new(channel)
        .fetch_x509svid(X509svidRequest {})
        .await
        .expect_err("a call without workload.spiffe.io must be refused");
    assert_eq!(status.code(), Code::InvalidArgument);
    assert_eq!(fake.refused_calls(), 1);
    assert_eq!(fake.accepted_calls(), 0);

    let source = start(&fake);
    ready(&source.identity()).await;
    assert_eq!(fake.refused_calls(), 1);
    assert_eq!(fake.accepted_calls(), 1);
}

#[tokio::test]
async fn invalid_argument_answer_stops_the_source_and_withdraws_the_identity() {
    let ca = new_ca("example.org");
    let mut fake = FakeWorkloadApi::new(update(&mint(&ca, API_ID), &ca));
    fake.refuse(Code::InvalidArgument, "malformed request");
    fake.serve();
    let source = start(&fake);
    let identity = source.identity();

    let status = wait_status(&identity, "the source to give up", |s| {
        s.not_ready_reason()
            .is_some_and(|r| r.contains("not retrying"))
    })
    .await;
    assert!(!status.is_ready());
    let stopped = tokio::time::timeout(TIMEOUT, async {
        while !source.is_stopped() {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await;
    assert!(stopped.is_ok(), "the source task did not stop");
}

#[tokio::test]
async fn dropping_the_source_withdraws_its_identity() {
    let ca = new_ca("example.org");
    let mut fake = FakeWorkloadApi::new(update(&mint(&ca, API_ID), &ca));
    fake.serve();
    let source = start(&fake);
    let identity = source.identity();
    ready(&identity).await;

    drop(source);
    let status = wait_status(&identity, "the withdrawal", |s| !s.is_ready()).await;
    let reason = status.not_ready_reason().expect("a reason");
    assert!(reason.contains("dropped"), "unexpected reason: {reason}");
    assert!(identity.snapshot().is_none());
}

// === configuration errors ===

#[tokio::test]
async fn malformed_endpoints_are_refused_with_a_clear_error() {
    for address in [
        "http://127.0.0.1:8081",
        "unix:relative/agent.sock",
        "unix://host/agent.sock",
        "tcp://localhost:8081",
        "tcp://127.0.0.1",
        "tcp://127.0.0.1:8081/path",
    ] {
        let err = WorkloadApiSource::builder()
            .endpoint(address)
            .start()
            .expect_err(address);
        match &err {
            WorkloadApiError::InvalidEndpoint { endpoint, reason } => {
                assert_eq!(endpoint, address);
                assert!(!reason.is_empty());
            }
            other => panic!("{address}: expected InvalidEndpoint, got {other:?}"),
        }
        assert!(
            err.to_string()
                .contains("expected unix:///absolute/path or tcp://IP:port"),
            "{err}"
        );
    }
}

/// Runs this test binary again with only `test` selected and `SPIFFE_ENDPOINT_SOCKET`
/// set to `value` (or removed), so the environment of the other tests stays intact.
async fn run_in_child(test: &str, value: Option<&str>) {
    let mut command = tokio::process::Command::new(std::env::current_exe().expect("test binary"));
    command
        .args(["--exact", test, "--test-threads=1"])
        .env("ZT_WAPI_ENV_CHILD", "1")
        .kill_on_drop(true);
    match value {
        Some(value) => command.env(zt_core::SPIFFE_ENDPOINT_SOCKET, value),
        None => command.env_remove(zt_core::SPIFFE_ENDPOINT_SOCKET),
    };
    let output = tokio::time::timeout(TIMEOUT, command.output())
        .await
        .expect("child test finishes in time")
        .expect("run the child test");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success() && stdout.contains("1 passed"),
        "child test failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

fn in_child() -> bool {
    std::env::var_os("ZT_WAPI_ENV_CHILD").is_some()
}

#[tokio::test]
async fn unset_endpoint_variable_is_a_clear_error() {
    if !in_child() {
        run_in_child("unset_endpoint_variable_is_a_clear_error", None).await;
        return;
    }
    let err = WorkloadApiSource::builder()
        .start()
        .expect_err("no endpoint anywhere");
    assert_eq!(err, WorkloadApiError::EndpointUnset);
    assert!(
        err.to_string()
            .contains("SPIFFE_ENDPOINT_SOCKET is not set")
    );
}

#[tokio::test]
async fn malformed_endpoint_variable_is_a_clear_error() {
    if !in_child() {
        run_in_child(
            "malformed_endpoint_variable_is_a_clear_error",
            Some("unix:agent.sock"),
        )
        .await;
        return;
    }
    let err = WorkloadApiSource::builder()
        .start()
        .expect_err("relative socket path");
    assert!(
        matches!(&err, WorkloadApiError::InvalidEndpoint { endpoint, .. } if endpoint == "unix:agent.sock"),
        "{err:?}"
    );
}

#[tokio::test]
async fn endpoint_variable_is_used_when_none_is_configured() {
    if !in_child() {
        let ca = new_ca("example.org");
        let mut fake = FakeWorkloadApi::new(update(&mint(&ca, API_ID), &ca));
        fake.serve();
        run_in_child(
            "endpoint_variable_is_used_when_none_is_configured",
            Some(&fake.endpoint()),
        )
        .await;
        assert_eq!(fake.accepted_calls(), 1);
        return;
    }
    let source = WorkloadApiSource::builder()
        .start()
        .expect("endpoint from SPIFFE_ENDPOINT_SOCKET");
    let snapshot = ready(&source.identity()).await;
    assert_eq!(snapshot.id().as_str(), API_ID);
}

#[tokio::test]
async fn federated_entry_for_our_own_trust_domain_is_refused_and_our_bundle_stays() {
    let ca = new_ca("example.org");
    // Another authority claiming our trust domain, offered as "federated" beside
    // ours, so that our own SVID would still verify against the merged bundle.
    let impostor_ca = new_ca("example.org");
    let ours = mint(&ca, API_ID);
    let mut fake = FakeWorkloadApi::new(update(&ours, &ca));
    fake.serve();
    let source = start(&fake);
    let identity = source.identity();
    let first = ready(&identity).await;

    let both: Vec<_> = [&impostor_ca, &ca]
        .iter()
        .flat_map(|ca| ca.bundle().authorities().to_vec())
        .collect();
    fake.update(update(&ours, &ca).federate(ca.trust_domain().as_str(), &both));
    let status = wait_status(&identity, "the refusal", |s| s.last_error().is_some()).await;
    let error = status.last_error().unwrap_or_default();
    assert!(
        error.contains("federated bundle for trust domain example.org") && error.contains("own"),
        "unexpected error: {error}"
    );
    assert_eq!(
        status.generation(),
        first.generation(),
        "nothing was published"
    );
    let serving = identity.snapshot().expect("still serving");
    let own = serving
        .bundles()
        .get(ca.trust_domain())
        .expect("own bundle");
    assert!(
        own.same_authorities(&ca.bundle()),
        "our own bundle was replaced"
    );

    // A client holding an SVID of the impostor authority is refused; ours is served.
    let both = zt_core::X509Bundle::new(
        ca.trust_domain().clone(),
        vec![impostor_ca.cert_der().clone(), ca.cert_der().clone()],
    )
    .unwrap();
    let impostor = StaticSource::new(mint(&impostor_ca, CLIENT_ID), BundleSet::new().with(both))
        .expect("impostor identity");
    let refused = handshake(&identity, &impostor.identity())
        .await
        .expect_err("a client of the impostor authority was accepted");
    assert_eq!(
        rejection(&refused),
        "certificate is not signed by a trusted authority of its trust domain"
    );
    let client = peer(&ca, CLIENT_ID, &[]);
    handshake(&identity, &client.identity())
        .await
        .expect("a client of our own authority is served");
}

// === edge cases: silent streams, bad neighbours, storms ===

#[tokio::test]
async fn stream_that_sends_nothing_is_reported_and_reopened_after_the_first_update_timeout() {
    let ca = new_ca("example.org");
    let svid = mint(&ca, API_ID);
    let mut fake = FakeWorkloadApi::silent();
    fake.serve();
    let source = WorkloadApiSource::builder()
        .endpoint(fake.endpoint())
        .backoff(Duration::from_millis(20), Duration::from_millis(200))
        .first_update_timeout(Duration::from_millis(300))
        .start()
        .expect("start");
    let identity = source.identity();

    let status = wait_status(&identity, "the first-update timeout", |s| {
        s.last_error().is_some()
    })
    .await;
    let error = status.last_error().unwrap_or_default();
    assert!(
        error.contains("sent no update within 300ms"),
        "unexpected error: {error}"
    );
    assert!(!status.is_ready());
    assert!(
        status
            .not_ready_reason()
            .is_some_and(|reason| reason.contains("sent no update")),
        "{status:?}"
    );
    // The silent stream was dropped and a new one opened.
    fake.wait_accepted(2).await;

    fake.update(update(&svid, &ca));
    let snapshot = ready(&identity).await;
    assert_eq!(snapshot.svid().leaf(), svid.leaf());
}

#[tokio::test]
async fn the_first_update_timeout_does_not_cut_a_healthy_stream_that_is_quiet() {
    let ca = new_ca("example.org");
    let mut fake = FakeWorkloadApi::new(update(&mint(&ca, API_ID), &ca));
    fake.serve();
    let source = WorkloadApiSource::builder()
        .endpoint(fake.endpoint())
        .backoff(Duration::from_millis(20), Duration::from_millis(200))
        .first_update_timeout(Duration::from_millis(100))
        .start()
        .expect("start");
    let snapshot = ready(&source.identity()).await;
    // Ten first-update deadlines pass with no update: the stream stays.
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(fake.accepted_calls(), 1, "the quiet stream was reopened");
    let status = source.identity().status();
    assert_eq!(status.last_error(), None);
    assert_eq!(status.generation(), snapshot.generation());
}

#[tokio::test]
async fn malformed_other_svid_is_ignored_and_reported_while_the_picked_one_serves() {
    let ca = new_ca("example.org");
    let partner_ca = new_ca("partner.org");
    let picked = mint(&ca, API_ID);
    let client = peer(&ca, CLIENT_ID, &[]);
    let mut broken = entry(&mint(&partner_ca, "spiffe://partner.org/api"), &partner_ca);
    broken.x509_svid_key = b"not a key".to_vec();
    let mut fake = FakeWorkloadApi::new(X509svidResponse::with(vec![entry(&picked, &ca), broken]));
    fake.serve();
    let source = start(&fake);
    let identity = source.identity();

    let snapshot = ready(&identity).await;
    assert_eq!(snapshot.svid().leaf(), picked.leaf());
    let status = identity.status();
    let notice = status.last_notice().unwrap_or_default();
    assert!(
        notice.contains("ignored 1 other SVID")
            && notice.contains("SVID 1 (\"spiffe://partner.org/api\")")
            && notice.contains("invalid X.509-SVID"),
        "unexpected notice: {notice}"
    );
    assert_eq!(status.last_error(), None);
    // The malformed entry's bundle is not trusted.
    assert!(snapshot.bundles().get(partner_ca.trust_domain()).is_none());
    let served = handshake(&identity, &client.identity())
        .await
        .expect("the picked SVID serves");
    assert_eq!(served.presented_leaf, *picked.leaf());

    // The next update without the broken entry clears the notice.
    fake.update(update(&picked, &ca));
    wait_status(&identity, "the notice to clear", |s| {
        s.last_notice().is_none()
    })
    .await;
}

#[tokio::test]
async fn picked_entry_whose_spiffe_id_is_not_its_svids_is_rejected() {
    let ca = new_ca("example.org");
    let first = mint(&ca, API_ID);
    let mut fake = FakeWorkloadApi::new(update(&first, &ca));
    fake.serve();
    let source = start_with(
        &fake,
        SvidPicker::by_id(IdMatcher::exact(id("spiffe://example.org/billing"))),
    );
    let identity = source.identity();
    let status = wait_status(&identity, "the picker's verdict", |s| {
        s.not_ready_reason().is_some_and(|r| r.contains("picker"))
    })
    .await;
    assert!(!status.is_ready());

    // An entry that says "billing" but carries another workload's SVID.
    let mut mislabelled = entry(&mint(&ca, "spiffe://example.org/other"), &ca);
    mislabelled.spiffe_id = "spiffe://example.org/billing".to_owned();
    fake.update(X509svidResponse::with(vec![mislabelled]));
    let status = wait_status(&identity, "the rejection", |s| s.last_error().is_some()).await;
    let error = status.last_error().unwrap_or_default();
    assert!(
        error.contains("names \"spiffe://example.org/billing\" but its X.509-SVID is spiffe://example.org/other"),
        "unexpected error: {error}"
    );
    assert!(identity.snapshot().is_none(), "the mislabelled SVID serves");
}

/// The gaps between consecutive call arrivals.
fn gaps(arrivals: &[std::time::Instant]) -> Vec<Duration> {
    arrivals.windows(2).map(|w| w[1] - w[0]).collect()
}

#[tokio::test]
async fn reconnect_storm_backs_off_to_the_cap_and_resets_after_a_healthy_stream() {
    const INITIAL: Duration = Duration::from_millis(20);
    const MAX: Duration = Duration::from_millis(640);
    let ca = new_ca("example.org");
    let svid = mint(&ca, API_ID);
    let mut fake = FakeWorkloadApi::new(update(&svid, &ca));
    // Every stream gets a good update and is dropped at once: an agent in a crash
    // loop. Each update is valid, yet no stream lives long enough to be healthy.
    fake.flap(update(&svid, &ca));
    fake.serve();
    let source = WorkloadApiSource::builder()
        .endpoint(fake.endpoint())
        .backoff(INITIAL, MAX)
        .start()
        .expect("start");
    ready(&source.identity()).await;
    fake.wait_accepted(9).await;
    let storm = gaps(&fake.arrivals());
    // The n-th retry waits within [d/2, d], d = min(INITIAL * 2^(n-1), MAX): sleeps
    // never end early, so the lower bounds hold on any machine.
    for (n, gap) in storm.iter().enumerate() {
        let ceiling = INITIAL.saturating_mul(1 << n.min(16)).min(MAX);
        assert!(
            *gap >= ceiling / 2,
            "retry {n} came after {gap:?}, before its backoff of at least {:?}: {storm:?}",
            ceiling / 2
        );
        // Bounded: never longer than the cap, give or take a loaded machine.
        assert!(
            *gap <= MAX + Duration::from_secs(2),
            "retry {n} waited {gap:?}, far beyond the cap {MAX:?}: {storm:?}"
        );
    }
    assert!(
        storm.iter().skip(6).all(|gap| *gap >= MAX / 2),
        "the delay did not reach the cap: {storm:?}"
    );
    assert!(source.identity().status().is_ready(), "valid updates serve");

    // A healthy stream: a valid update, then open for longer than the cap.
    let calls = fake.accepted_calls();
    fake.update(update(&svid, &ca));
    fake.wait_accepted(calls + 1).await;
    tokio::time::sleep(MAX + Duration::from_millis(300)).await;
    assert_eq!(
        fake.accepted_calls(),
        calls + 1,
        "the steady stream was dropped"
    );

    let dropped = std::time::Instant::now();
    fake.drop_streams();
    fake.wait_accepted(calls + 2).await;
    let after = fake
        .arrivals()
        .last()
        .copied()
        .expect("an arrival")
        .saturating_duration_since(dropped);
    // Without a reset the next delay would be at least MAX / 2 (320 ms); after it,
    // at most INITIAL (20 ms).
    assert!(
        after < MAX / 2,
        "the healthy stream did not reset the backoff: reconnected after {after:?}"
    );
}
