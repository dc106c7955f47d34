//! zt in one minute, with no files and no setup: a development trust domain in
//! memory, an mTLS HTTP server whose default-deny policy is checked on every
//! request, two clients, a certificate rotation and a policy change — while a
//! connection stays open.
//!
//! ```text
//! cargo run --example quickstart
//! ```
//!
//! Lines starting with `server:` are the server's own decisions: zt emits a
//! `tracing` event (target `zt::authz`) for every request it authorizes, and this
//! program prints those events. At the end it prints the decision counters zt
//! recorded through the `metrics` facade, as a Prometheus scrape would see them.

use std::error::Error;
use std::time::{Duration, SystemTime};

use axum::Router;
use axum::extract::Path;
use axum::routing::get;
use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use tokio::net::TcpListener;
use tracing_subscriber::Layer as _;
use tracing_subscriber::layer::SubscriberExt as _;
use zt_core::dev::{DevCa, SvidParams};
use zt_core::{BundleSet, Format, StaticSource};
use zt_tower::{AuthorizeLayer, Connector, IdMatcher, IdentitySource, Peer, PeerIdentity};
use zt_tower::{Policy, PolicyStore, Server};

/// Default deny: frontend workloads may read orders, nobody may do anything else.
const POLICY: &str = r#"
rules:
  - name: frontend-reads-orders
    action: allow
    from: { patterns: ["spiffe://example.org/frontend/**"] }
    to: { methods: [GET], paths: ["/orders/**"] }
"#;

/// The same, with one workload retired. Deny rules win over allow rules.
const STRICTER_POLICY: &str = r#"
rules:
  - name: frontend-reads-orders
    action: allow
    from: { patterns: ["spiffe://example.org/frontend/**"] }
    to: { methods: [GET], paths: ["/orders/**"] }
  - name: web-is-retired
    action: deny
    from: { ids: ["spiffe://example.org/frontend/web"] }
"#;

const HOUR: Duration = Duration::from_secs(3600);

#[tokio::main]
async fn main() -> Result<(), Box<dyn Error>> {
    let events = AuthzEvents.with_filter(tracing_subscriber::filter::filter_fn(|meta| {
        meta.target() == "zt::authz"
    }));
    tracing::subscriber::set_global_default(tracing_subscriber::registry().with(events))?;
    // Before anything records: the recorder keeps what zt counts, rendered at the end.
    let prometheus = metrics_exporter_prometheus::PrometheusBuilder::new().install_recorder()?;

    println!("zt quickstart: a server and its clients, all in this process, over mTLS.");
    println!("A development CA mints real X.509-SVIDs in memory (never use it in production).");

    let ca = DevCa::new("example.org".parse()?)?;
    let bundles = BundleSet::new().with(ca.bundle());
    let server_id: zt_core::SpiffeId = "spiffe://example.org/orders".parse()?;
    let server = StaticSource::new(
        ca.mint_with(SvidParams::new(server_id.clone()).ttl(HOUR))?,
        bundles.clone(),
    )?;

    let policy = PolicyStore::new(Policy::parse(POLICY, Format::Yaml)?);
    let authorize = AuthorizeLayer::new(server.identity(), policy.clone());
    let metrics = authorize.metrics().clone();
    let app = Router::new()
        .route("/orders/{id}", get(order))
        .layer(authorize);
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("https://{}/orders/42", listener.local_addr()?);
    let serve = Server::builder(server.identity())
        .build()?
        .serve(listener, app);
    tokio::spawn(serve.into_future());
    println!();
    println!("server  {server_id} at {url}");
    println!("policy  allow spiffe://example.org/frontend/** to GET /orders/**; deny the rest");

    println!("\n1. Two clients ask for an order");
    let web = Caller::new(
        &ca,
        &bundles,
        "spiffe://example.org/frontend/web",
        &server_id,
    )?;
    let batch = Caller::new(&ca, &bundles, "spiffe://example.org/batch", &server_id)?;
    let before = web.get(&url, "").await?;
    batch.get(&url, "").await?;

    println!("\n2. The server's SVID rotates (StaticSource::update: a new key and certificate)");
    server.update(
        ca.mint_with(SvidParams::new(server_id.clone()).ttl(2 * HOUR))?,
        bundles.clone(),
    )?;
    let open = web.get(&url, "open connection").await?;
    let fresh = Caller::new(
        &ca,
        &bundles,
        "spiffe://example.org/frontend/web",
        &server_id,
    )?;
    let after = fresh.get(&url, "new connection").await?;
    if open == before && after != before {
        println!("   the open connection kept its certificate; the new handshake got the new one");
    }

    println!("\n3. The policy changes (PolicyStore::store: a deny rule retires frontend/web)");
    policy.store(Policy::parse(STRICTER_POLICY, Format::Yaml)?);
    let same = web.get(&url, "open connection").await?;
    if same == before {
        println!("   the same connection, re-authorized on its next request");
    }

    let counts = metrics.counts();
    println!(
        "\nserver counted {} allowed and {} denied requests",
        counts.allowed, counts.denied
    );
    println!("\nmetrics recorded (Prometheus text, decisions by label):");
    for line in prometheus
        .render()
        .lines()
        .filter(|line| line.starts_with("zt_authz_decisions_total{"))
    {
        println!("   {line}");
    }
    Ok(())
}

async fn order(Peer(peer): Peer, Path(id): Path<String>) -> String {
    format!("order {id} for {}", peer.id())
}

/// A client workload: its own SVID, and an HTTP client that only talks to the
/// server's SPIFFE ID. The client pools connections, so its requests share one.
struct Caller {
    name: &'static str,
    client: Client<Connector, Empty<Bytes>>,
    _identity: StaticSource,
}

impl Caller {
    fn new(
        ca: &DevCa,
        bundles: &BundleSet,
        id: &'static str,
        server: &zt_core::SpiffeId,
    ) -> Result<Self, Box<dyn Error>> {
        let identity = StaticSource::new(ca.mint(&id.parse()?)?, bundles.clone())?;
        let connector = Connector::new(identity.identity(), IdMatcher::exact(server.clone()))?;
        Ok(Self {
            name: id.trim_start_matches("spiffe://example.org/"),
            client: Client::builder(TokioExecutor::new()).build(connector),
            _identity: identity,
        })
    }

    /// GETs `url` and prints the answer; returns the serial of the certificate
    /// the server presented on this connection.
    async fn get(&self, url: &str, note: &str) -> Result<String, Box<dyn Error>> {
        let response = self.client.get(url.parse()?).await?;
        let status = response.status();
        let server = response.extensions().get::<PeerIdentity>().cloned();
        let body = response.into_body().collect().await?.to_bytes();
        let (serial, expiry) = server.as_ref().map(certificate).unwrap_or_default();
        let who = match note {
            "" => self.name.to_owned(),
            note => format!("{}, {note}", self.name),
        };
        println!(
            "   client: {who}: {status} {:?} (server certificate serial {serial}, expires in {expiry})",
            String::from_utf8_lossy(&body).trim()
        );
        Ok(serial)
    }
}

/// The serial number (first bytes) and the remaining lifetime of a peer's
/// certificate.
fn certificate(peer: &PeerIdentity) -> (String, String) {
    use x509_parser::prelude::{FromDer, X509Certificate};

    let serial = peer
        .leaf()
        .and_then(|der| X509Certificate::from_der(der).ok())
        .map(|(_, cert)| {
            cert.raw_serial()
                .iter()
                .take(4)
                .map(|b| format!("{b:02x}"))
                .collect()
        })
        .unwrap_or_default();
    let left = peer
        .not_after()
        .duration_since(SystemTime::now())
        .unwrap_or_default();
    (serial, format!("{} min", (left.as_secs() + 30) / 60))
}

/// Prints zt's authorization events, one line each.
struct AuthzEvents;

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for AuthzEvents {
    fn on_event(&self, event: &tracing::Event<'_>, _: tracing_subscriber::layer::Context<'_, S>) {
        let mut f = Fields::default();
        event.record(&mut f);
        println!(
            "   server: {} {} {} -> {} ({})",
            f.peer, f.method, f.path, f.decision, f.reason
        );
    }
}

#[derive(Default)]
struct Fields {
    peer: String,
    method: String,
    path: String,
    decision: String,
    reason: String,
}

impl tracing::field::Visit for Fields {
    fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
        let slot = match field.name() {
            "peer" => &mut self.peer,
            "method" => &mut self.method,
            "path" => &mut self.path,
            "decision" => &mut self.decision,
            "reason" => &mut self.reason,
            _ => return,
        };
        *slot = value.to_owned();
    }

    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        self.record_str(field, &format!("{value:?}"));
    }
}
