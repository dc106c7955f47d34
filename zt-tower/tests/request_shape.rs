//! The policy decides what the router runs: no request shape a peer chooses —
//! content type, percent-encoding, method, host spelling, header lists, tunnels —
//! gets a request past a deny rule to the handler it protects.
//!
//! Every test goes through the real stack: `zt_tower::Server` + `AuthorizeLayer`
//! in front of an axum router whose handlers record what they ran with. The
//! property test at the end is differential: for every request that reached a
//! handler, the policy is asked about the request *as the handler understood it*
//! (its route, decoded captures, method and host), and must allow it.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod common;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::{Path, State};
use axum::routing::{any, get};
use bytes::Bytes;
use http::{HeaderMap, Method, Request, StatusCode, Uri};
use http_body_util::Empty;
use proptest::prelude::*;
use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use zt_core::{Format, IdentitySource, StaticSource};
use zt_tower::{AuthorizeLayer, Policy, PolicyStore, Server};

use common::*;

const POLICY: &str = r#"
rules:
  - name: members
    action: allow
    from: { trust_domains: [example.org] }
  - name: no-admin
    action: deny
    from: { trust_domains: [example.org], not_ids: [spiffe://example.org/ops] }
    to: { paths: ["/admin/**"] }
  - name: no-admin-user
    action: deny
    from: { any: true }
    to: { paths: [/users/admin, "/files/secret/**"] }
  - name: no-delete
    action: deny
    from: { any: true }
    to: { methods: [DELETE] }
  - name: no-private-reads
    action: deny
    from: { any: true }
    to: { methods: [GET], paths: [/private] }
  - name: no-admin-host
    action: deny
    from: { any: true }
    to: { hosts: [admin.internal] }
  - name: no-debug
    action: deny
    from: { any: true }
    when: [{ header: x-debug, values: ["on"] }]
"#;

/// What a handler ran with.
#[derive(Clone, Debug)]
struct Hit {
    /// The route template, e.g. `/users/{name}`.
    route: &'static str,
    /// Decoded captures, in template order.
    captures: Vec<String>,
    method: Method,
    /// The `Host` header, else the URI's authority.
    host: Option<String>,
    x_debug: Vec<String>,
}

type Hits = Arc<Mutex<Vec<Hit>>>;

fn hit(
    hits: &Hits,
    route: &'static str,
    captures: Vec<String>,
    method: Method,
    uri: &Uri,
    headers: &HeaderMap,
) -> String {
    let host = headers
        .get(http::header::HOST)
        .and_then(|h| h.to_str().ok())
        .map(str::to_owned)
        .or_else(|| uri.authority().map(|a| a.as_str().to_owned()));
    let x_debug = headers
        .get_all("x-debug")
        .iter()
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
        .collect();
    let marker = format!("{route} {captures:?} {host:?}");
    hits.lock().unwrap().push(Hit {
        route,
        captures,
        method,
        host,
        x_debug,
    });
    marker
}

fn app(hits: Hits) -> Router {
    macro_rules! route0 {
        ($route:literal) => {
            any(
                |State(hits): State<Hits>, method: Method, uri: Uri, headers: HeaderMap| async move {
                    hit(&hits, $route, Vec::new(), method, &uri, &headers)
                },
            )
        };
    }
    macro_rules! route1 {
        ($route:literal) => {
            any(
                |State(hits): State<Hits>,
                 Path(capture): Path<String>,
                 method: Method,
                 uri: Uri,
                 headers: HeaderMap| async move {
                    hit(&hits, $route, vec![capture], method, &uri, &headers)
                },
            )
        };
    }
    Router::new()
        .route("/admin/users", route0!("/admin/users"))
        .route("/private", get(|State(hits): State<Hits>, method: Method, uri: Uri, headers: HeaderMap| async move {
            hit(&hits, "/private", Vec::new(), method, &uri, &headers)
        }))
        .route("/public", route0!("/public"))
        .route("/users/{name}", route1!("/users/{name}"))
        .route("/files/{*rest}", route1!("/files/{*rest}"))
        .route("/items/{id}", route1!("/items/{id}"))
        .route("/{service}/{method}/{*rest}", route0!("/{service}/{method}/{*rest}"))
        .with_state(hits)
}

struct Fixture {
    addr: SocketAddr,
    client: StaticSource,
    hits: Hits,
    policy: Policy,
    metrics: zt_tower::AuthzMetrics,
    _running: Running,
}

impl Fixture {
    async fn start() -> Self {
        let ca = new_ca();
        let server = identity(&ca, SERVER_ID);
        let client = identity(&ca, CLIENT_ID);
        let policy = Policy::parse(POLICY, Format::Yaml).unwrap();
        let hits = Hits::default();
        let layer = AuthorizeLayer::new(
            server.identity(),
            PolicyStore::new(Policy::parse(POLICY, Format::Yaml).unwrap()),
        );
        let metrics = layer.metrics().clone();
        let running = serve(
            Server::builder(server.identity()),
            app(hits.clone()).layer(layer),
        )
        .await;
        Self {
            addr: running.addr,
            client,
            hits,
            policy,
            metrics,
            _running: running,
        }
    }

    fn take_hits(&self) -> Vec<Hit> {
        std::mem::take(&mut *self.hits.lock().unwrap())
    }

    /// Sends raw HTTP/1.1 bytes on a fresh TLS connection: the status code, or
    /// `None` when the server closed without answering.
    async fn raw_http1(&self, head: &str) -> Option<u16> {
        let mut tls = within(
            "TLS handshake",
            tls_connect(
                self.addr,
                client_config(&self.client, SERVER_ID, &[b"http/1.1"]),
            ),
        )
        .await
        .unwrap();
        tls.write_all(head.as_bytes()).await.unwrap();
        let mut response = Vec::new();
        let _ = within("response", tls.read_to_end(&mut response)).await;
        let text = String::from_utf8_lossy(&response);
        text.strip_prefix("HTTP/1.1 ")?.get(..3)?.parse().ok()
    }

    /// Sends `request` over HTTP/2 on a fresh connection.
    async fn http2(&self, request: Request<Empty<Bytes>>) -> Option<u16> {
        let (mut conn, _closed) =
            OneConnection::open(self.addr, &self.client, Version::Http2).await;
        let OneConnection::H2(sender) = &mut conn else {
            unreachable!()
        };
        within("ready", sender.ready()).await.ok()?;
        let response = within("response", sender.send_request(request))
            .await
            .ok()?;
        Some(response.status().as_u16())
    }
}

fn h1(method: &str, target: &str, headers: &[(&str, &str)]) -> String {
    let mut head = format!("{method} {target} HTTP/1.1\r\n");
    if !headers.iter().any(|(n, _)| n.eq_ignore_ascii_case("host")) {
        head.push_str("host: localhost\r\n");
    }
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("connection: close\r\n\r\n");
    head
}

fn h2(
    method: &str,
    authority: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> Request<Empty<Bytes>> {
    let mut request = Request::builder()
        .method(method)
        .uri(format!("https://{authority}{path}"));
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    request.body(Empty::new()).unwrap()
}

/// Asserts that a refused request never reached a handler.
fn refused(fixture: &Fixture, status: Option<u16>, expected: u16, what: &str) {
    assert_eq!(status, Some(expected), "{what}");
    let hits = fixture.take_hits();
    assert!(hits.is_empty(), "{what} reached {hits:?}");
}

#[tokio::test]
async fn grpc_content_types_do_not_move_a_request_out_of_http_deny_rules() {
    let fx = Fixture::start().await;
    for content_type in [
        "application/grpc",
        "application/grpc+json",
        "application/grpc-web",
        "application/grpcx",
    ] {
        let headers = [("content-type", content_type)];
        let status = fx.raw_http1(&h1("GET", "/admin/users", &headers)).await;
        refused(
            &fx,
            status,
            403,
            &format!("HTTP/1.1 GET /admin/users as {content_type}"),
        );
        let status = fx.raw_http1(&h1("DELETE", "/items/7", &headers)).await;
        refused(
            &fx,
            status,
            403,
            &format!("HTTP/1.1 DELETE /items/7 as {content_type}"),
        );
        let status = fx
            .http2(h2("POST", "localhost", "/admin/users", &headers))
            .await;
        refused(
            &fx,
            status,
            403,
            &format!("HTTP/2 POST /admin/users as {content_type}"),
        );
        let status = fx
            .http2(h2("DELETE", "localhost", "/items/7", &headers))
            .await;
        refused(
            &fx,
            status,
            403,
            &format!("HTTP/2 DELETE /items/7 as {content_type}"),
        );
    }
    // The same peer is served where no deny rule applies.
    let status = fx
        .raw_http1(&h1(
            "GET",
            "/public",
            &[("content-type", "application/grpc")],
        ))
        .await;
    assert_eq!(status, Some(200));
    assert_eq!(fx.take_hits().len(), 1);
}

#[tokio::test]
async fn percent_encoded_letters_reach_no_denied_handler() {
    let fx = Fixture::start().await;
    for target in [
        "/users/%61dmin",
        "/users/%61%64%6D%69%6E",
        "/files/%73ecret/key",
        "/files/secre%74/key",
        "/%61dmin/users",
        "/admin/%75sers",
    ] {
        let status = fx.raw_http1(&h1("GET", target, &[])).await;
        refused(&fx, status, 403, &format!("HTTP/1.1 {target}"));
        let status = fx.http2(h2("GET", "localhost", target, &[])).await;
        refused(&fx, status, 403, &format!("HTTP/2 {target}"));
    }
    // An encoded separator or dot segment is ambiguous: deny rules on paths match.
    for target in [
        "/files/secret%2Fkey",
        "/files/x/%2e%2e/secret/key",
        "/users/x/../admin",
    ] {
        let status = fx.raw_http1(&h1("GET", target, &[])).await;
        refused(&fx, status, 403, &format!("HTTP/1.1 {target}"));
    }
}

#[tokio::test]
async fn allowed_requests_reach_the_router_in_canonical_form() {
    let fx = Fixture::start().await;
    let status = fx
        .raw_http1(&h1(
            "GET",
            "/users/%62%6f%62?q=%61",
            &[("host", "API.Example.ORG.:8443")],
        ))
        .await;
    assert_eq!(status, Some(200));
    let hits = fx.take_hits();
    assert_eq!(hits.len(), 1);
    assert_eq!(hits[0].captures, ["bob"]);
    assert_eq!(hits[0].host.as_deref(), Some("api.example.org:8443"));
    // `%25` is never decoded twice: the handler sees `%61dmin`, not `admin`.
    let status = fx.raw_http1(&h1("GET", "/users/%2561dmin", &[])).await;
    assert_eq!(status, Some(200));
    assert_eq!(fx.take_hits()[0].captures, ["%61dmin"]);
    // HTTP/2: the `:authority` is canonicalised as well.
    let status = fx
        .http2(h2("GET", "API.example.org", "/users/%62ob", &[]))
        .await;
    assert_eq!(status, Some(200));
    let hits = fx.take_hits();
    assert_eq!(hits[0].captures, ["bob"]);
    assert_eq!(hits[0].host.as_deref(), Some("api.example.org"));
}

#[tokio::test]
async fn host_spellings_and_http2_authority_meet_host_deny_rules() {
    let fx = Fixture::start().await;
    for host in [
        "admin.internal",
        "ADMIN.INTERNAL",
        "admin.internal.",
        "admin.internal:443",
        "Admin.Internal.:8443",
    ] {
        let status = fx.raw_http1(&h1("GET", "/public", &[("host", host)])).await;
        refused(&fx, status, 403, &format!("HTTP/1.1 Host {host}"));
        let status = fx.http2(h2("GET", host, "/public", &[])).await;
        refused(&fx, status, 403, &format!("HTTP/2 :authority {host}"));
        let target = format!("https://{host}/public");
        let status = fx.raw_http1(&h1("GET", &target, &[("host", host)])).await;
        refused(&fx, status, 403, &format!("absolute form {target}"));
    }
    // A Host that disagrees with the authority, or a repeated Host, is refused.
    let status = fx
        .raw_http1(&h1(
            "GET",
            "https://admin.internal/public",
            &[("host", "localhost")],
        ))
        .await;
    refused(&fx, status, 400, "absolute form disagreeing with Host");
    let status = fx
        .http2(h2(
            "GET",
            "admin.internal",
            "/public",
            &[("host", "localhost")],
        ))
        .await;
    refused(&fx, status, 400, "HTTP/2 :authority disagreeing with host");
    let head = "GET /public HTTP/1.1\r\nhost: localhost\r\nhost: admin.internal\r\nconnection: close\r\n\r\n";
    let status = fx.raw_http1(head).await;
    refused(&fx, status, 400, "repeated Host");
    let status = fx
        .raw_http1(&h1("GET", "/public", &[("host", "u@admin.internal")]))
        .await;
    refused(&fx, status, 400, "Host with user information");
    assert!(fx.metrics.counts().malformed >= 4);
}

#[tokio::test]
async fn head_meets_a_deny_rule_on_get() {
    let fx = Fixture::start().await;
    let status = fx.raw_http1(&h1("HEAD", "/private", &[])).await;
    refused(&fx, status, 403, "HTTP/1.1 HEAD /private");
    let status = fx.http2(h2("HEAD", "localhost", "/private", &[])).await;
    refused(&fx, status, 403, "HTTP/2 HEAD /private");
    let status = fx.raw_http1(&h1("GET", "/private", &[])).await;
    refused(&fx, status, 403, "GET /private");
}

#[tokio::test]
async fn header_lists_meet_deny_rules_on_their_members() {
    let fx = Fixture::start().await;
    for value in ["off, on", "off,on", "on, off"] {
        let status = fx
            .raw_http1(&h1("GET", "/public", &[("x-debug", value)]))
            .await;
        refused(&fx, status, 403, &format!("HTTP/1.1 x-debug: {value}"));
        let status = fx
            .http2(h2("GET", "localhost", "/public", &[("x-debug", value)]))
            .await;
        refused(&fx, status, 403, &format!("HTTP/2 x-debug: {value}"));
    }
    let status = fx
        .raw_http1(&h1(
            "GET",
            "/public",
            &[("x-debug", "off"), ("x-debug", "on")],
        ))
        .await;
    refused(&fx, status, 403, "repeated x-debug");
    let status = fx
        .raw_http1(&h1("GET", "/public", &[("x-debug", "off")]))
        .await;
    assert_eq!(status, Some(200));
    assert_eq!(fx.take_hits().len(), 1);
}

#[tokio::test]
async fn connect_and_upgrades_never_reach_a_handler() {
    let fx = Fixture::start().await;
    let connect = Request::builder()
        .method(Method::CONNECT)
        .uri("localhost:443")
        .body(Empty::new())
        .unwrap();
    let status = fx.http2(connect).await;
    refused(&fx, status, 501, "HTTP/2 CONNECT");
    let status = fx
        .raw_http1(
            "CONNECT localhost:443 HTTP/1.1\r\nhost: localhost:443\r\nconnection: close\r\n\r\n",
        )
        .await;
    assert_ne!(status, Some(200), "HTTP/1.1 CONNECT");
    assert!(fx.take_hits().is_empty());
    let upgrade = [("connection", "upgrade"), ("upgrade", "websocket")];
    let status = fx.raw_http1(&h1("GET", "/public", &upgrade)).await;
    refused(&fx, status, 501, "HTTP/1.1 Upgrade: websocket");
}

#[tokio::test]
async fn lower_case_methods_are_refused() {
    let fx = Fixture::start().await;
    let status = fx.raw_http1(&h1("delete", "/items/7", &[])).await;
    refused(&fx, status, 400, "delete /items/7");
}

// === the differential property ===

/// One way a peer might spell a request.
#[derive(Clone, Debug)]
struct Variant {
    method: &'static str,
    target: String,
    host: &'static str,
    content_type: Option<&'static str>,
    x_debug: Vec<&'static str>,
    absolute_form: bool,
    http2: bool,
}

/// Percent-encodes byte `b` with upper- or lower-case hex digits.
fn encode(b: u8, lower: bool) -> String {
    if lower {
        format!("%{b:02x}")
    } else {
        format!("%{b:02X}")
    }
}

fn spelled(path: &str, choices: &[u8]) -> String {
    let mut out = String::new();
    for (i, b) in path.bytes().enumerate() {
        let choice = choices.get(i).copied().unwrap_or(0);
        match choice % 48 {
            1 | 2 if b != b'/' => out.push_str(&encode(b, choice % 2 == 0)),
            3 if b == b'/' => out.push_str("//"),
            4 if b == b'/' => out.push_str("/./"),
            5 if b == b'/' => out.push_str("/x/../"),
            6 if b == b'/' => out.push_str("%2F"),
            7 if b == b'/' && i > 0 => out.push_str(";p=1/"),
            8 => {
                out.push_str(&encode(b'%', false));
                out.push(char::from(b));
            }
            _ => out.push(char::from(b)),
        }
    }
    out
}

fn variant() -> impl Strategy<Value = Variant> {
    let base = prop::sample::select(vec![
        "/admin/users",
        "/users/admin",
        "/files/secret/key",
        "/items/7",
        "/private",
        "/public",
        "/users/bob",
        "/pkg.Admin/Reset/x",
    ]);
    let suffix = prop::sample::select(vec!["", "/", "?a=../admin", "?x=%2F"]);
    (
        base,
        prop::collection::vec(proptest::arbitrary::any::<u8>(), 24),
        suffix,
        // Mostly requests no deny rule is about, so that many reach a handler
        // and the property is tested on them; the rest try every rule.
        prop_oneof![
            4 => Just("GET"),
            1 => prop::sample::select(vec!["HEAD", "POST", "DELETE", "OPTIONS", "PUT", "get"]),
        ],
        prop_oneof![
            4 => prop::sample::select(vec!["localhost", "api.example.org", "API.Example.org."]),
            1 => prop::sample::select(vec![
                "admin.internal",
                "ADMIN.INTERNAL",
                "admin.internal.",
                "admin.internal:443",
            ]),
        ],
        prop::option::of(prop::sample::select(vec![
            "application/grpc",
            "application/grpc+json",
            "application/grpc-web",
            "text/plain",
        ])),
        prop_oneof![
            4 => prop::sample::select(vec![Vec::<&'static str>::new(), vec!["off"]]),
            1 => prop::sample::select(vec![vec!["on"], vec!["off, on"], vec!["off", "on"], vec!["ON"]]),
        ],
        proptest::arbitrary::any::<bool>(),
        proptest::arbitrary::any::<bool>(),
    )
        .prop_map(
            |(base, choices, suffix, method, host, content_type, x_debug, absolute_form, http2)| {
                Variant {
                    method,
                    target: format!("{}{suffix}", spelled(base, &choices)),
                    host,
                    content_type,
                    x_debug,
                    absolute_form,
                    http2,
                }
            },
        )
}

/// The canonical path of a route with its decoded captures put back: the
/// request as the handler understood it.
fn understood_path(hit: &Hit) -> String {
    let encode_segment = |segment: &str| {
        segment
            .bytes()
            .map(|b| {
                if b.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=:@".contains(&b) {
                    char::from(b).to_string()
                } else {
                    encode(b, false)
                }
            })
            .collect::<String>()
    };
    match hit.route {
        "/users/{name}" => format!("/users/{}", encode_segment(&hit.captures[0])),
        "/items/{id}" => format!("/items/{}", encode_segment(&hit.captures[0])),
        "/files/{*rest}" => format!(
            "/files/{}",
            hit.captures[0]
                .split('/')
                .map(encode_segment)
                .collect::<Vec<_>>()
                .join("/")
        ),
        route => route.to_owned(),
    }
}

impl Fixture {
    async fn send(&self, v: &Variant) -> Option<u16> {
        let mut headers: Vec<(&str, &str)> = Vec::new();
        if let Some(content_type) = v.content_type {
            headers.push(("content-type", content_type));
        }
        for value in &v.x_debug {
            headers.push(("x-debug", value));
        }
        if v.http2 {
            let uri = format!("https://{}{}", v.host, v.target);
            let Ok(uri) = uri.parse::<Uri>() else {
                return None;
            };
            let Ok(method) = Method::from_bytes(v.method.as_bytes()) else {
                return None;
            };
            let mut request = Request::builder().method(method).uri(uri);
            for (name, value) in &headers {
                request = request.header(*name, *value);
            }
            self.http2(request.body(Empty::new()).unwrap()).await
        } else {
            headers.push(("host", v.host));
            let target = if v.absolute_form {
                format!("https://{}{}", v.host, v.target)
            } else {
                v.target.clone()
            };
            self.raw_http1(&h1(v.method, &target, &headers)).await
        }
    }
}

#[test]
fn no_request_variant_reaches_a_handler_the_policy_denies_it() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let fx = rt.block_on(Fixture::start());
    let peer = id(CLIENT_ID);
    let reached = std::cell::Cell::new(0_u32);
    // A fixed seed: the same 200 variants on every run, so CI is repeatable;
    // change the seed to explore others.
    let mut runner = TestRunner::new_with_rng(
        Config {
            cases: 200,
            failure_persistence: None,
            ..Config::default()
        },
        TestRng::from_seed(RngAlgorithm::ChaCha, &[7; 32]),
    );
    let result = runner.run(&variant(), |v| {
        let status = rt.block_on(fx.send(&v));
        if std::env::var_os("ZT_SHOW_VARIANTS").is_some() {
            println!("{status:?} {v:?}");
        }
        for hit in fx.take_hits() {
            reached.set(reached.get() + 1);
            let path = understood_path(&hit);
            let x_debug: Vec<(String, String)> = hit
                .x_debug
                .iter()
                .map(|value| ("x-debug".to_owned(), value.clone()))
                .collect();
            let mut request = zt_core::Request::new(hit.method.as_str(), &path).with_headers(&x_debug);
            if let Some(host) = &hit.host {
                request = request.with_host(host);
            }
            let decision = fx.policy.decide(&peer, &request);
            prop_assert!(
                decision.is_allowed(),
                "{v:?} (status {status:?}) reached {hit:?}, which the policy denies as {request:?}: {}",
                decision.reason()
            );
        }
        Ok(())
    });
    result.unwrap();
    // The property means something only if allowed variants do get through.
    let reached = reached.get();
    println!("{reached} of 200 variants reached a handler");
    assert!(reached >= 25, "only {reached} variants reached a handler");
}

#[tokio::test]
async fn the_server_itself_refuses_tunnels_without_an_authorize_layer() {
    let ca = new_ca();
    let server = identity(&ca, SERVER_ID);
    let client = identity(&ca, CLIENT_ID);
    let hits = Hits::default();
    // No AuthorizeLayer: only the server stands between the peer and the app.
    let running = serve(Server::builder(server.identity()), app(hits.clone())).await;
    let connect = Request::builder()
        .method(Method::CONNECT)
        .uri("localhost:443")
        .body(Empty::new())
        .unwrap();
    let (mut conn, _closed) = OneConnection::open(running.addr, &client, Version::Http2).await;
    let OneConnection::H2(sender) = &mut conn else {
        unreachable!()
    };
    within("ready", sender.ready()).await.unwrap();
    let response = within("response", sender.send_request(connect))
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::NOT_IMPLEMENTED);

    let mut tls = within(
        "TLS handshake",
        tls_connect(
            running.addr,
            client_config(&client, SERVER_ID, &[b"http/1.1"]),
        ),
    )
    .await
    .unwrap();
    let head = h1(
        "GET",
        "/public",
        &[("connection", "upgrade"), ("upgrade", "websocket")],
    );
    tls.write_all(head.as_bytes()).await.unwrap();
    let mut response = Vec::new();
    let _ = within("response", tls.read_to_end(&mut response)).await;
    assert!(
        String::from_utf8_lossy(&response).starts_with("HTTP/1.1 501"),
        "{}",
        String::from_utf8_lossy(&response)
    );
    assert!(hits.lock().unwrap().is_empty(), "a tunnel reached the app");
    // An ordinary request is served.
    let status = get_once(running.addr, &client, Version::Http1, "/public").await;
    assert_eq!(status.0, StatusCode::OK);
}
