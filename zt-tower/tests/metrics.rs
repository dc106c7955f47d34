//! What zt-tower records through the `metrics` facade, read back from a
//! `DebuggingRecorder` installed for the test's thread: every test runs on a
//! current-thread runtime, so the server, its connections and the client all
//! record into that one recorder.

#![cfg(feature = "metrics")]
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod common;

use std::cell::RefCell;
use std::collections::{BTreeMap, HashSet};
use std::convert::Infallible;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use http::{Request, Response, StatusCode, Uri};
use metrics::{Key, KeyName, Metadata, Recorder, SharedString, Unit};
use metrics_util::debugging::{DebugValue, DebuggingRecorder, Snapshotter};
use tower::{Layer, ServiceExt};
use zt_core::{
    BundleSet, Format, IdMatcher, IdentitySource, PeerIdentity, PeerRole, Policy, X509Bundle,
};
use zt_tower::metrics::{
    AUTHZ_DECISIONS_TOTAL, AUTHZ_REFUSALS_TOTAL, SERVER_CONNECTIONS_OPEN,
    SERVER_HANDSHAKE_DURATION_SECONDS, TLS_HANDSHAKE_REJECTIONS_TOTAL,
};
use zt_tower::{AuthorizeLayer, Connector, PolicyStore, Server};

use common::*;

/// What the recorder saw, summed over its snapshots: a `DebuggingRecorder`
/// snapshot resets what it reads, so every read goes through [`Recorded::series`].
/// Sums are right for counters, histograms and the server's gauges, which only
/// go up and down.
struct Recorded {
    snapshotter: Snapshotter,
    totals: RefCell<BTreeMap<(String, Labels), Value>>,
}

type Labels = Vec<(String, String)>;

#[derive(Clone, Debug, PartialEq)]
enum Value {
    Counter(u64),
    Gauge(f64),
    Histogram(Vec<f64>),
}

impl Recorded {
    fn new(recorder: &DebuggingRecorder) -> Self {
        Self {
            snapshotter: recorder.snapshotter(),
            totals: RefCell::default(),
        }
    }

    /// Every series of `name`: its labels, sorted, and its value.
    fn series(&self, name: &str) -> Vec<(Labels, Value)> {
        let mut totals = self.totals.borrow_mut();
        for (key, _, _, value) in self.snapshotter.snapshot().into_vec() {
            let mut labels: Labels = key
                .key()
                .labels()
                .map(|l| (l.key().to_owned(), l.value().to_owned()))
                .collect();
            labels.sort();
            let entry = totals.entry((key.key().name().to_owned(), labels));
            match (entry.or_insert_with(|| empty(&value)), value) {
                (Value::Counter(total), DebugValue::Counter(n)) => *total += n,
                (Value::Gauge(total), DebugValue::Gauge(v)) => *total += v.0,
                (Value::Histogram(total), DebugValue::Histogram(h)) => {
                    total.extend(h.into_iter().map(|v| v.0));
                }
                (total, value) => panic!("{total:?} then {value:?}"),
            }
        }
        totals
            .iter()
            .filter(|((n, _), _)| n == name)
            .map(|((_, labels), value)| (labels.clone(), value.clone()))
            .collect()
    }

    /// The value of the counter `name` with exactly `labels`, 0 when absent.
    fn counter(&self, name: &str, labels: &[(&str, &str)]) -> u64 {
        let mut want: Labels = labels
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        want.sort();
        self.series(name)
            .into_iter()
            .find(|(labels, _)| *labels == want)
            .map_or(0, |(_, value)| match value {
                Value::Counter(n) => n,
                other => panic!("{name} is not a counter: {other:?}"),
            })
    }

    /// Waits until the counter `name` with `labels` is at least 1.
    async fn counted(&self, name: &str, labels: &[(&str, &str)]) {
        within(name, async {
            while self.counter(name, labels) == 0 {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
        .await;
    }
}

fn empty(value: &DebugValue) -> Value {
    match value {
        DebugValue::Counter(_) => Value::Counter(0),
        DebugValue::Gauge(_) => Value::Gauge(0.0),
        DebugValue::Histogram(_) => Value::Histogram(Vec::new()),
    }
}

fn decisions(recorded: &Recorded, decision: &str, rule: &str) -> u64 {
    recorded.counter(
        AUTHZ_DECISIONS_TOTAL,
        &[
            ("decision", decision),
            ("rule", rule),
            ("protocol", "http"),
            ("trust_domain", "example.org"),
        ],
    )
}

const BATCH_ID: &str = "spiffe://example.org/batch";
const STRANGER_ID: &str = "spiffe://example.org/stranger";

fn named_policy() -> PolicyStore {
    let policy = Policy::parse(
        &format!(
            r#"{{"rules": [
                {{"name": "web-reads", "action": "allow", "from": {{"ids": ["{CLIENT_ID}"]}}}},
                {{"name": "no-batch", "action": "deny", "from": {{"ids": ["{BATCH_ID}"]}}}},
                {{"name": "watch-web", "action": "audit", "from": {{"ids": ["{CLIENT_ID}"]}}}}
            ]}}"#
        ),
        Format::Json,
    )
    .unwrap();
    PolicyStore::new(policy)
}

#[tokio::test]
async fn decisions_are_counted_by_decision_rule_protocol_and_trust_domain() {
    let recorder = DebuggingRecorder::new();
    let recorded = Recorded::new(&recorder);
    let _local = metrics::set_default_local_recorder(&recorder);
    let ca = new_ca();
    let server = identity(&ca, SERVER_ID);
    let running = serve(
        Server::builder(server.identity()),
        authorized(whoami_router(), server.identity(), named_policy()),
    )
    .await;

    for (peer, version, status) in [
        (CLIENT_ID, Version::Http1, StatusCode::OK),
        (BATCH_ID, Version::Http2, StatusCode::FORBIDDEN),
        (STRANGER_ID, Version::Http1, StatusCode::FORBIDDEN),
    ] {
        let client = identity(&ca, peer);
        let (got, _) = get_once(running.addr, &client, version, "/whoami").await;
        assert_eq!(got, status, "{peer}");
    }

    assert_eq!(decisions(&recorded, "allow", "web-reads"), 1);
    assert_eq!(decisions(&recorded, "audit", "watch-web"), 1);
    assert_eq!(decisions(&recorded, "deny", "no-batch"), 1);
    assert_eq!(decisions(&recorded, "deny", "none"), 1);
    let all = recorded.series(AUTHZ_DECISIONS_TOTAL);
    assert_eq!(all.len(), 4, "{all:?}");
    for (labels, _) in &all {
        for (_, value) in labels {
            assert!(
                !value.contains("spiffe://"),
                "a label carries an ID: {labels:?}"
            );
        }
    }
    assert!(recorded.series(AUTHZ_REFUSALS_TOTAL).is_empty());
}

#[tokio::test]
async fn grpc_requests_are_counted_as_grpc() {
    let recorder = DebuggingRecorder::new();
    let recorded = Recorded::new(&recorder);
    let _local = metrics::set_default_local_recorder(&recorder);
    let (ca, peer, server) = peer_of(CLIENT_ID);
    let service = AuthorizeLayer::new(server.identity(), named_policy()).layer(ok_service());
    let mut request = request(&peer);
    request.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/grpc+proto"),
    );
    service.oneshot(request).await.unwrap();
    drop(ca);

    let labels = [
        ("decision", "allow"),
        ("rule", "web-reads"),
        ("protocol", "grpc"),
        ("trust_domain", "example.org"),
    ];
    assert_eq!(recorded.counter(AUTHZ_DECISIONS_TOTAL, &labels), 1);
}

/// The layer keeps the handles it registered; requests decided alike, audit
/// matches included, are still each counted, and a layer that counted into one
/// recorder counts into the next one set.
#[tokio::test]
async fn repeated_decisions_are_each_counted_and_follow_the_recorder() {
    let first = DebuggingRecorder::new();
    let second = DebuggingRecorder::new();
    let (in_first, in_second) = (Recorded::new(&first), Recorded::new(&second));
    let (ca, peer, server) = peer_of(CLIENT_ID);
    let service = AuthorizeLayer::new(server.identity(), named_policy()).layer(ok_service());
    {
        let _local = metrics::set_default_local_recorder(&first);
        for _ in 0..3 {
            service.clone().oneshot(request(&peer)).await.unwrap();
        }
    }
    {
        let _local = metrics::set_default_local_recorder(&second);
        for _ in 0..2 {
            service.clone().oneshot(request(&peer)).await.unwrap();
        }
    }
    drop(ca);

    assert_eq!(decisions(&in_first, "allow", "web-reads"), 3);
    assert_eq!(decisions(&in_first, "audit", "watch-web"), 3);
    assert_eq!(decisions(&in_second, "allow", "web-reads"), 2);
    assert_eq!(decisions(&in_second, "audit", "watch-web"), 2);
}

/// Every connection's peer carries its own copy of its trust domain's name; the
/// layer still registers one counter per series, not one per connection.
#[tokio::test]
async fn decisions_on_many_connections_of_one_trust_domain_register_each_series_once() {
    let recorder = Registrations::default();
    let recorded = Recorded::new(&recorder.inner);
    let _local = metrics::set_default_local_recorder(&recorder);
    let (ca, peer, server) = peer_of(CLIENT_ID);
    let service = AuthorizeLayer::new(server.identity(), named_policy()).layer(ok_service());
    for _ in 0..20 {
        // A new connection from the same client: the same chain, a new peer.
        let connection = PeerIdentity::from_chain(peer.chain().to_vec(), PeerRole::Client).unwrap();
        service.clone().oneshot(request(&connection)).await.unwrap();
    }
    drop(ca);

    assert_eq!(decisions(&recorded, "allow", "web-reads"), 20);
    assert_eq!(decisions(&recorded, "audit", "watch-web"), 20);
    // `allow` by web-reads and `audit` by watch-web, once each.
    assert_eq!(recorder.decision_counters.load(Ordering::Relaxed), 2);
}

/// A `DebuggingRecorder` that counts the `zt_authz_decisions_total` counters
/// registered with it.
#[derive(Default)]
struct Registrations {
    inner: DebuggingRecorder,
    decision_counters: AtomicUsize,
}

impl Recorder for Registrations {
    fn describe_counter(&self, key: KeyName, unit: Option<Unit>, description: SharedString) {
        self.inner.describe_counter(key, unit, description);
    }

    fn describe_gauge(&self, key: KeyName, unit: Option<Unit>, description: SharedString) {
        self.inner.describe_gauge(key, unit, description);
    }

    fn describe_histogram(&self, key: KeyName, unit: Option<Unit>, description: SharedString) {
        self.inner.describe_histogram(key, unit, description);
    }

    fn register_counter(&self, key: &Key, metadata: &Metadata<'_>) -> metrics::Counter {
        if key.name() == AUTHZ_DECISIONS_TOTAL {
            self.decision_counters.fetch_add(1, Ordering::Relaxed);
        }
        self.inner.register_counter(key, metadata)
    }

    fn register_gauge(&self, key: &Key, metadata: &Metadata<'_>) -> metrics::Gauge {
        self.inner.register_gauge(key, metadata)
    }

    fn register_histogram(&self, key: &Key, metadata: &Metadata<'_>) -> metrics::Histogram {
        self.inner.register_histogram(key, metadata)
    }
}

#[tokio::test]
async fn a_request_without_a_peer_is_counted_as_a_refusal() {
    let recorder = DebuggingRecorder::new();
    let recorded = Recorded::new(&recorder);
    let _local = metrics::set_default_local_recorder(&recorder);
    let ca = new_ca();
    let server = identity(&ca, SERVER_ID);
    let service = AuthorizeLayer::new(server.identity(), named_policy()).layer(ok_service());
    let response = service.oneshot(Request::new(String::new())).await.unwrap();
    assert_eq!(response.status(), StatusCode::FORBIDDEN);

    let no_identity = [("reason", "no_identity")];
    assert_eq!(recorded.counter(AUTHZ_REFUSALS_TOTAL, &no_identity), 1);
    assert!(recorded.series(AUTHZ_DECISIONS_TOTAL).is_empty());
}

#[tokio::test]
async fn a_client_of_an_unknown_ca_is_counted_as_a_server_handshake_rejection() {
    let recorder = DebuggingRecorder::new();
    let recorded = Recorded::new(&recorder);
    let _local = metrics::set_default_local_recorder(&recorder);
    let ca = new_ca();
    let server = identity(&ca, SERVER_ID);
    let running = serve(
        Server::builder(server.identity()),
        authorized(whoami_router(), server.identity(), named_policy()),
    )
    .await;
    // Same trust domain, another CA the server does not trust; the client trusts both.
    let rogue = new_ca();
    let authorities = [ca.bundle(), rogue.bundle()]
        .iter()
        .flat_map(|b| b.authorities().to_vec())
        .collect();
    let both = X509Bundle::new("example.org".parse().unwrap(), authorities).unwrap();
    let client = identity_with(
        &rogue,
        zt_core::dev::SvidParams::new(id(CLIENT_ID)),
        BundleSet::new().with(both),
    );

    let connector = Connector::new(client.identity(), IdMatcher::exact(id(SERVER_ID))).unwrap();
    let uri: Uri = format!("https://localhost:{}/", running.addr.port())
        .parse()
        .unwrap();
    // With TLS 1.3 the client finishes first and learns the refusal on its first read.
    if let Ok(stream) = within("connect", connector.connect(&uri)).await {
        let mut stream = stream.into_inner();
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let _ = stream.write_all(b"GET / HTTP/1.1\r\n\r\n").await;
        let _ = within("read", stream.read(&mut [0; 64])).await;
    }
    recorded
        .counted(
            TLS_HANDSHAKE_REJECTIONS_TOTAL,
            &[("side", "server"), ("reason", "unknown_ca")],
        )
        .await;
    assert!(recorded.series(AUTHZ_DECISIONS_TOTAL).is_empty());
}

#[tokio::test]
async fn a_server_of_an_unknown_ca_is_counted_as_a_client_handshake_rejection() {
    let recorder = DebuggingRecorder::new();
    let recorded = Recorded::new(&recorder);
    let _local = metrics::set_default_local_recorder(&recorder);
    let ca = new_ca();
    let server = identity(&ca, SERVER_ID);
    let running = serve(
        Server::builder(server.identity()),
        authorized(whoami_router(), server.identity(), named_policy()),
    )
    .await;
    let client = identity(&new_ca(), CLIENT_ID);

    let connector = Connector::new(client.identity(), IdMatcher::exact(id(SERVER_ID))).unwrap();
    let uri: Uri = format!("https://localhost:{}/", running.addr.port())
        .parse()
        .unwrap();
    assert!(within("connect", connector.connect(&uri)).await.is_err());

    let labels = [("side", "client"), ("reason", "unknown_ca")];
    assert_eq!(recorded.counter(TLS_HANDSHAKE_REJECTIONS_TOTAL, &labels), 1);
}

#[tokio::test]
async fn a_served_connection_is_timed_and_counted_open_then_closed() {
    let recorder = DebuggingRecorder::new();
    let recorded = Recorded::new(&recorder);
    let _local = metrics::set_default_local_recorder(&recorder);
    let ca = new_ca();
    let server = identity(&ca, SERVER_ID);
    let running = serve(
        Server::builder(server.identity()),
        authorized(whoami_router(), server.identity(), named_policy()),
    )
    .await;

    let client = identity(&ca, CLIENT_ID);
    let (mut conn, closed) = OneConnection::open(running.addr, &client, Version::Http1).await;
    assert_eq!(conn.get("/whoami").await.unwrap().0, StatusCode::OK);
    let timed = recorded.series(SERVER_HANDSHAKE_DURATION_SECONDS);
    assert!(
        matches!(&timed[..], [(_, Value::Histogram(h))] if h.len() == 1),
        "{timed:?}"
    );
    let open = recorded.series(SERVER_CONNECTIONS_OPEN);
    assert!(
        matches!(&open[..], [(_, Value::Gauge(v))] if *v == 1.0),
        "{open:?}"
    );
    drop(conn);
    within("the connection to close", closed).await.unwrap();

    let closed_by_peer = [("reason", "peer_closed")];
    recorded
        .counted(
            zt_tower::metrics::SERVER_CONNECTIONS_CLOSED_TOTAL,
            &closed_by_peer,
        )
        .await;
    let open = recorded.series(SERVER_CONNECTIONS_OPEN);
    assert!(
        matches!(&open[..], [(_, Value::Gauge(v))] if *v == 0.0),
        "{open:?}"
    );
}

/// 10,000 peers, each with its own ID, decided by the authorization core: the
/// series stay bounded by rules × decisions × protocols × trust domains.
#[tokio::test]
async fn ten_thousand_peer_ids_make_a_bounded_number_of_decision_series() {
    const PEERS: usize = 10_000;
    let recorder = DebuggingRecorder::new();
    let recorded = Recorded::new(&recorder);
    let _local = metrics::set_default_local_recorder(&recorder);
    let ca = new_ca();
    let server = identity(&ca, SERVER_ID);
    let policy = Policy::parse(
        r#"{"rules": [
            {"name": "even", "action": "allow", "from": {"patterns": ["spiffe://example.org/even/*"]}},
            {"name": "odd", "action": "deny", "from": {"patterns": ["spiffe://example.org/odd/*"]}},
            {"name": "all", "action": "audit", "from": {"patterns": ["spiffe://example.org/**"]}}
        ]}"#,
        Format::Json,
    )
    .unwrap();
    let service =
        AuthorizeLayer::new(server.identity(), PolicyStore::new(policy)).layer(ok_service());

    // Each peer has an SVID of its own; the authorization core decides them
    // directly, without a handshake each.
    for i in 0..PEERS {
        let path = match i % 3 {
            0 => "even",
            1 => "odd",
            _ => "elsewhere",
        };
        let svid = ca
            .mint(&id(&format!("spiffe://example.org/{path}/{i}")))
            .unwrap();
        let peer = PeerIdentity::from_chain(svid.chain().to_vec(), PeerRole::Client).unwrap();
        let mut request = request(&peer);
        if i % 2 == 0 {
            request.headers_mut().insert(
                http::header::CONTENT_TYPE,
                http::HeaderValue::from_static("application/grpc"),
            );
        }
        service.clone().oneshot(request).await.unwrap();
    }

    let all = recorded.series(AUTHZ_DECISIONS_TOTAL);
    // Rules (3 and the default deny's `none`) × decisions (4) × protocols (2) × trust domains (1).
    assert!(all.len() <= 4 * 4 * 2, "{} series", all.len());
    let total: u64 = all
        .iter()
        .filter(|(labels, _)| !labels.contains(&("decision".to_owned(), "audit".to_owned())))
        .map(|(_, value)| match value {
            Value::Counter(n) => *n,
            _ => 0,
        })
        .sum();
    assert_eq!(total, PEERS as u64);
    let values: HashSet<_> = all
        .iter()
        .flat_map(|(labels, _)| labels.iter().map(|(_, v)| v.clone()))
        .collect();
    assert!(
        values.iter().all(|v| !v.contains("spiffe://")),
        "{values:?}"
    );
}

fn ok_service() -> impl tower::Service<
    Request<String>,
    Response = Response<String>,
    Error = Infallible,
    Future = impl Send,
> + Clone {
    tower::service_fn(|_req: Request<String>| async {
        Ok::<_, Infallible>(Response::new(String::from("ok")))
    })
}

fn request(peer: &PeerIdentity) -> Request<String> {
    let mut request = Request::get("/whoami").body(String::new()).unwrap();
    request.extensions_mut().insert(peer.clone());
    request
}

fn peer_of(peer_id: &str) -> (zt_core::dev::DevCa, PeerIdentity, zt_core::StaticSource) {
    let ca = new_ca();
    let server = identity(&ca, SERVER_ID);
    let svid = ca.mint(&id(peer_id)).unwrap();
    let peer = PeerIdentity::from_chain(svid.chain().to_vec(), PeerRole::Client).unwrap();
    (ca, peer, server)
}

#[tokio::test]
async fn anonymous_decisions_are_counted_under_one_fixed_trust_domain_label() {
    let recorder = DebuggingRecorder::new();
    let recorded = Recorded::new(&recorder);
    let _local = metrics::set_default_local_recorder(&recorder);
    let ca = new_ca();
    let server = identity(&ca, SERVER_ID);
    let policy = Policy::parse(
        r#"{"rules": [{"name": "probes", "action": "allow",
            "from": {"unauthenticated": true}, "to": {"paths": ["/healthz"]}}]}"#,
        Format::Json,
    )
    .unwrap();
    let service =
        AuthorizeLayer::new(server.identity(), PolicyStore::new(policy)).layer(ok_service());
    for path in ["/healthz", "/healthz", "/whoami"] {
        let mut request = Request::get(path).body(String::new()).unwrap();
        request
            .extensions_mut()
            .insert(zt_core::AnonymousPeer::new());
        service.clone().oneshot(request).await.unwrap();
    }

    let counted = |decision: &str, rule: &str| {
        recorded.counter(
            AUTHZ_DECISIONS_TOTAL,
            &[
                ("decision", decision),
                ("rule", rule),
                ("protocol", "http"),
                ("trust_domain", "(anonymous)"),
            ],
        )
    };
    assert_eq!(counted("allow", "probes"), 2);
    assert_eq!(counted("deny", "none"), 1);
    assert_eq!(recorded.series(AUTHZ_DECISIONS_TOTAL).len(), 2);
    assert!(recorded.series(AUTHZ_REFUSALS_TOTAL).is_empty());
}
