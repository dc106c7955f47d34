//! A status and admin endpoint for a plain-HTTP listener of its own.
//!
//! [`Admin`] is a tower service answering
//!
//! | route | answer |
//! |---|---|
//! | `GET /live` | `200 ok`, always: the process answers |
//! | `GET /ready` | `200 ready` when an identity serves (published, not withdrawn, not expired) and, if a [`PolicyStore`] was given, a policy is in force; else `503` with the reason |
//! | `GET /status` | JSON: our SPIFFE ID, the SVID's serial number and `notAfter` (Unix seconds and RFC 3339), the trust domains with their authority counts, the snapshot generation, the last rejected candidate and notice; the policy's generation, rule count, mode and last load error |
//! | `GET /metrics` | what the closure given to [`Admin::with_metrics`] renders (a Prometheus exporter, for instance); `404` without one |
//!
//! Any other path is `404`, any other method `405`. The service reads nothing of a
//! request but its method and path, and `/status` holds no key material: public
//! facts of the certificates only.
//!
//! **Listen on localhost or on a port of its own, never on the mTLS port.** The
//! endpoint is plain HTTP without authentication, because the kubelet, a load
//! balancer's health check and a Prometheus scraper hold no SVID. Served behind
//! the mTLS server it would either be unreachable to them or, if let through
//! the policy, give every peer that can reach the port a readiness oracle and the
//! service's identity details without a rule saying so. A separate listener also
//! keeps answering `/live` and `/ready` with a `503` reason when no identity serves,
//! exactly when the mTLS port refuses every handshake.
//!
//! ```
//! # use zt_core::{BundleSet, StaticSource, dev::DevCa};
//! use http_body_util::{BodyExt, Empty};
//! use hyper_util::{client::legacy::Client, rt::TokioExecutor};
//! use zt_tower::admin::Admin;
//! use zt_tower::{IdentitySource, Policy, PolicyStore};
//!
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! # let ca = DevCa::new("example.org".parse()?)?;
//! # let api = StaticSource::new(ca.mint(&"spiffe://example.org/api".parse()?)?, BundleSet::new().with(ca.bundle()))?;
//! let policy = PolicyStore::new(Policy::allow_patterns(["spiffe://example.org/web"])?);
//! let admin = Admin::new(api.identity())
//!     .with_policy(policy)
//!     .with_metrics(|| "# no metrics yet\n".to_owned());
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
//! let addr = listener.local_addr()?;
//! tokio::spawn(admin.serve(listener));
//!
//! let client = Client::builder(TokioExecutor::new()).build_http::<Empty<bytes::Bytes>>();
//! let response = client.get(format!("http://{addr}/ready").parse()?).await?;
//! assert_eq!(response.status(), 200);
//! let response = client.get(format!("http://{addr}/status").parse()?).await?;
//! let status: serde_json::Value = serde_json::from_slice(&response.into_body().collect().await?.to_bytes())?;
//! assert_eq!(status["identity"]["spiffe_id"], "spiffe://example.org/api");
//! # Ok(()) }
//! # tokio::runtime::Runtime::new()?.block_on(demo())?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::convert::Infallible;
use std::fmt;
use std::future::{Ready, ready};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::header::{ALLOW, CACHE_CONTROL, CONTENT_TYPE, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use http_body_util::Full;
use tokio::net::TcpListener;
use tower_service::Service;
use zt_core::{Identity, PolicyStore};

/// How long a client of the admin listener may take to send its request head.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// The content type of the Prometheus text exposition format.
const PROMETHEUS_TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";

type Render = Arc<dyn Fn() -> String + Send + Sync>;

/// The admin service: liveness, readiness, status and metrics of one identity
/// and, optionally, one policy. Cheap to clone. See the [module docs](self).
#[derive(Clone)]
pub struct Admin {
    identity: Identity,
    policy: Option<PolicyStore>,
    metrics: Option<Render>,
}

// === impl Admin ===

impl Admin {
    /// An admin service for `identity`, without a policy or metrics.
    pub fn new(identity: Identity) -> Self {
        Self {
            identity,
            policy: None,
            metrics: None,
        }
    }

    /// Reports `policy` in `/status` and requires a policy in force for `/ready`.
    #[must_use]
    pub fn with_policy(mut self, policy: PolicyStore) -> Self {
        self.policy = Some(policy);
        self
    }

    /// Answers `GET /metrics` with what `render` returns, as Prometheus text; the
    /// exporter is the application's choice (`metrics-exporter-prometheus`'s
    /// `PrometheusHandle::render`, a `prometheus` registry's encoder, …).
    #[must_use]
    pub fn with_metrics(mut self, render: impl Fn() -> String + Send + Sync + 'static) -> Self {
        self.metrics = Some(Arc::new(render));
        self
    }

    /// The answer to `method` on `path`: what the service answers a request with.
    pub fn respond(&self, method: &Method, path: &str) -> Response<Full<Bytes>> {
        let known = matches!(path, "/live" | "/ready" | "/status" | "/metrics");
        if !known || (path == "/metrics" && self.metrics.is_none()) {
            return text(StatusCode::NOT_FOUND, "not found\n".to_owned());
        }
        if method != Method::GET {
            let mut response = text(
                StatusCode::METHOD_NOT_ALLOWED,
                "method not allowed\n".to_owned(),
            );
            response
                .headers_mut()
                .insert(ALLOW, HeaderValue::from_static("GET"));
            return response;
        }
        match path {
            "/live" => text(StatusCode::OK, "ok\n".to_owned()),
            "/ready" => match self.not_ready_reason() {
                None => text(StatusCode::OK, "ready\n".to_owned()),
                Some(reason) => text(
                    StatusCode::SERVICE_UNAVAILABLE,
                    format!("not ready: {reason}\n"),
                ),
            },
            "/status" => self.status(),
            _ => self.metrics(),
        }
    }

    /// Why `/ready` answers `503`, or `None` when it answers `200`.
    pub fn not_ready_reason(&self) -> Option<String> {
        if let Some(reason) = self.identity.status().not_ready_reason() {
            return Some(reason);
        }
        match &self.policy {
            Some(policy) if policy.status().generation() == 0 => {
                Some("no policy in force".to_owned())
            }
            _ => None,
        }
    }

    /// Serves the admin service over plain HTTP/1.1 on `listener` until the
    /// future is dropped (a task's abort, the end of `main`). Errors on one
    /// connection end that connection only.
    ///
    /// # Errors
    ///
    /// When accepting fails for a reason other than one connection's.
    pub async fn serve(self, listener: TcpListener) -> std::io::Result<()> {
        use hyper_util::rt::{TokioIo, TokioTimer};

        loop {
            let (stream, _) = match listener.accept().await {
                Ok(accepted) => accepted,
                Err(err) if is_per_connection(&err) => continue,
                Err(err) => return Err(err),
            };
            let admin = self.clone();
            let service = hyper::service::service_fn(move |request: Request<_>| {
                ready(Ok::<_, Infallible>(
                    admin.respond(request.method(), request.uri().path()),
                ))
            });
            tokio::spawn(async move {
                let mut http = hyper::server::conn::http1::Builder::new();
                http.timer(TokioTimer::new())
                    .header_read_timeout(HEADER_READ_TIMEOUT);
                if let Err(err) = http.serve_connection(TokioIo::new(stream), service).await {
                    tracing::debug!(error = %err, "admin connection ended with an error");
                }
            });
        }
    }

    fn status(&self) -> Response<Full<Bytes>> {
        let status = self.identity.status();
        let snapshot = self.identity.snapshot();
        let identity = serde_json::json!({
            "ready": status.is_ready(),
            "not_ready_reason": status.not_ready_reason(),
            "generation": status.generation(),
            "spiffe_id": snapshot.as_ref().map(|s| s.id().as_str()),
            "serial_number": snapshot.as_ref().map(|s| s.svid().serial_number()),
            "not_after_unix": snapshot.as_ref().map(|s| unix_seconds(s.svid().not_after())),
            "not_after": snapshot.as_ref().map(|s| rfc3339(s.svid().not_after())),
            "trust_domains": snapshot.as_ref().map(|s| {
                s.bundles()
                    .iter()
                    .map(|bundle| serde_json::json!({
                        "trust_domain": bundle.trust_domain().as_str(),
                        "authorities": bundle.len(),
                    }))
                    .collect::<Vec<_>>()
            }),
            "last_error": status.last_error(),
            "last_notice": status.last_notice(),
        });
        let policy = self.policy.as_ref().map(|policy| {
            let status = policy.status();
            serde_json::json!({
                "generation": status.generation(),
                "rules": status.rule_count(),
                "mode": status.mode().as_str(),
                "last_error": status.last_error(),
            })
        });
        let body = serde_json::json!({
            "ready": self.not_ready_reason().is_none(),
            "identity": identity,
            "policy": policy,
        });
        let mut response = Response::new(Full::new(Bytes::from(body.to_string())));
        set_headers(&mut response, "application/json");
        response
    }

    fn metrics(&self) -> Response<Full<Bytes>> {
        let body = self
            .metrics
            .as_ref()
            .map(|render| render())
            .unwrap_or_default();
        let mut response = Response::new(Full::new(Bytes::from(body)));
        set_headers(&mut response, PROMETHEUS_TEXT);
        response
    }
}

impl fmt::Debug for Admin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Admin")
            .field("identity", &self.identity)
            .field("policy", &self.policy)
            .field("metrics", &self.metrics.is_some())
            .finish_non_exhaustive()
    }
}

impl<B> Service<Request<B>> for Admin {
    type Response = Response<Full<Bytes>>;
    type Error = Infallible;
    type Future = Ready<Result<Self::Response, Infallible>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        ready(Ok(self.respond(request.method(), request.uri().path())))
    }
}

fn text(status: StatusCode, body: String) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    set_headers(&mut response, "text/plain; charset=utf-8");
    response
}

fn set_headers(response: &mut Response<Full<Bytes>>, content_type: &'static str) {
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    // Readiness and status change from one moment to the next.
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
}

/// Errors of `accept` that concern one connection, after which the listener
/// goes on.
fn is_per_connection(err: &std::io::Error) -> bool {
    use std::io::ErrorKind::{ConnectionAborted, ConnectionReset, Interrupted};
    matches!(
        err.kind(),
        ConnectionAborted | ConnectionReset | Interrupted
    )
}

fn unix_seconds(time: SystemTime) -> i64 {
    match time.duration_since(UNIX_EPOCH) {
        Ok(after) => i64::try_from(after.as_secs()).unwrap_or(i64::MAX),
        Err(before) => i64::try_from(before.duration().as_secs()).map_or(i64::MIN, |s| -s),
    }
}

/// `time` as an RFC 3339 UTC timestamp to the second, such as `2026-12-05T15:11:32Z`.
fn rfc3339(time: SystemTime) -> String {
    let secs = unix_seconds(time);
    let (days, of_day) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let (year, month, day) = civil_from_days(days);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        of_day / 3600,
        of_day % 3600 / 60,
        of_day % 60
    )
}

/// The proleptic Gregorian date of `days` since 1970-01-01 (Howard Hinnant's
/// `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;

    use http_body_util::{BodyExt, Empty};
    use hyper_util::client::legacy::Client;
    use hyper_util::rt::TokioExecutor;
    use zt_core::dev::DevCa;
    use zt_core::{BundleSet, IdentityPublisher, Policy, X509Svid};

    use super::*;

    struct Answer {
        status: StatusCode,
        headers: http::HeaderMap,
        body: String,
    }

    async fn serve(admin: Admin) -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(admin.serve(listener));
        addr
    }

    async fn request(addr: SocketAddr, method: Method, path: &str) -> Answer {
        let client = Client::builder(TokioExecutor::new()).build_http::<Empty<Bytes>>();
        let request = Request::builder()
            .method(method)
            .uri(format!("http://{addr}{path}"))
            .body(Empty::new())
            .unwrap();
        let response = client.request(request).await.unwrap();
        let status = response.status();
        let headers = response.headers().clone();
        let body = response.into_body().collect().await.unwrap().to_bytes();
        Answer {
            status,
            headers,
            body: String::from_utf8(body.to_vec()).unwrap(),
        }
    }

    async fn get(addr: SocketAddr, path: &str) -> Answer {
        request(addr, Method::GET, path).await
    }

    struct Fixture {
        ca: DevCa,
        publisher: IdentityPublisher,
        svid: X509Svid,
    }

    fn fixture() -> Fixture {
        let ca = DevCa::new("example.org".parse().unwrap()).unwrap();
        let svid = ca
            .mint(&"spiffe://example.org/api".parse().unwrap())
            .unwrap();
        Fixture {
            ca,
            publisher: IdentityPublisher::new().unwrap(),
            svid,
        }
    }

    impl Fixture {
        fn publish(&self) {
            let partner = DevCa::new("partner.org".parse().unwrap()).unwrap();
            let bundles = BundleSet::new()
                .with(self.ca.bundle())
                .with(partner.bundle());
            self.publisher.publish(self.svid.clone(), bundles).unwrap();
        }
    }

    #[tokio::test]
    async fn live_answers_200_even_without_an_identity() {
        let fixture = fixture();
        let addr = serve(Admin::new(fixture.publisher.identity())).await;
        let answer = get(addr, "/live").await;
        assert_eq!(answer.status, StatusCode::OK);
        assert_eq!(answer.body, "ok\n");
    }

    #[tokio::test]
    async fn ready_is_503_with_the_reason_until_an_identity_serves_then_200() {
        let fixture = fixture();
        let admin = Admin::new(fixture.publisher.identity())
            .with_policy(PolicyStore::new(Policy::deny_all()));
        let addr = serve(admin).await;

        let answer = get(addr, "/ready").await;
        assert_eq!(answer.status, StatusCode::SERVICE_UNAVAILABLE);
        assert!(
            answer.body.contains("no identity published yet"),
            "{}",
            answer.body
        );

        fixture.publish();
        let answer = get(addr, "/ready").await;
        assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
        assert_eq!(answer.headers[CACHE_CONTROL], "no-store");
    }

    #[tokio::test]
    async fn status_reports_identity_bundles_and_policy_without_key_material() {
        let fixture = fixture();
        fixture.publish();
        let policy = PolicyStore::new(
            Policy::allow_patterns(["spiffe://example.org/web", "spiffe://example.org/batch"])
                .unwrap(),
        );
        let admin = Admin::new(fixture.publisher.identity()).with_policy(policy);
        let addr = serve(admin).await;

        let answer = get(addr, "/status").await;
        assert_eq!(answer.status, StatusCode::OK);
        assert_eq!(answer.headers[CONTENT_TYPE], "application/json");
        let status: serde_json::Value = serde_json::from_str(&answer.body).unwrap();
        let identity = &status["identity"];
        assert_eq!(status["ready"], true);
        assert_eq!(identity["spiffe_id"], "spiffe://example.org/api");
        assert_eq!(identity["generation"], 1);
        assert_eq!(identity["serial_number"], fixture.svid.serial_number());
        assert!(!fixture.svid.serial_number().is_empty());
        let not_after = fixture.svid.not_after();
        assert_eq!(identity["not_after_unix"], unix_seconds(not_after));
        assert_eq!(identity["not_after"], rfc3339(not_after));
        let mut domains = identity["trust_domains"].as_array().unwrap().clone();
        domains.sort_by_key(|d| d["trust_domain"].as_str().unwrap().to_owned());
        assert_eq!(
            serde_json::Value::Array(domains),
            serde_json::json!([
                {"trust_domain": "example.org", "authorities": 1},
                {"trust_domain": "partner.org", "authorities": 1},
            ])
        );
        assert_eq!(status["policy"]["generation"], 1);
        assert_eq!(status["policy"]["mode"], "enforce");
        assert!(status["policy"]["rules"].as_u64().unwrap() >= 1);
        assert_eq!(status["policy"]["last_error"], serde_json::Value::Null);

        let key = fixture.svid.private_key().secret_der();
        assert!(!answer.body.contains("PRIVATE KEY"));
        for window in key.windows(16) {
            let hex: String = window.iter().map(|b| format!("{b:02x}")).collect();
            assert!(!answer.body.to_lowercase().contains(&hex));
        }
    }

    #[tokio::test]
    async fn metrics_answers_what_the_closure_renders_and_404_without_one() {
        let fixture = fixture();
        let addr = serve(Admin::new(fixture.publisher.identity())).await;
        assert_eq!(get(addr, "/metrics").await.status, StatusCode::NOT_FOUND);

        let admin =
            Admin::new(fixture.publisher.identity()).with_metrics(|| "zt_up 1\n".to_owned());
        let addr = serve(admin).await;
        let answer = get(addr, "/metrics").await;
        assert_eq!(answer.status, StatusCode::OK);
        assert_eq!(answer.body, "zt_up 1\n");
        assert_eq!(answer.headers[CONTENT_TYPE], PROMETHEUS_TEXT);
    }

    #[tokio::test]
    async fn unknown_paths_are_404_and_other_methods_405() {
        let fixture = fixture();
        fixture.publish();
        let addr = serve(Admin::new(fixture.publisher.identity())).await;
        for path in ["/", "/readyz", "/status/", "/live?x", "/../live"] {
            let answer = get(addr, path).await;
            let expected = if path == "/live?x" {
                StatusCode::OK
            } else {
                StatusCode::NOT_FOUND
            };
            assert_eq!(answer.status, expected, "{path}");
        }
        let answer = request(addr, Method::POST, "/ready").await;
        assert_eq!(answer.status, StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!(answer.headers[ALLOW], "GET");
        let answer = request(addr, Method::DELETE, "/status").await;
        assert_eq!(answer.status, StatusCode::METHOD_NOT_ALLOWED);
    }

    #[test]
    fn rfc3339_formats_known_instants() {
        let at = |secs: u64| rfc3339(UNIX_EPOCH + Duration::from_secs(secs));
        assert_eq!(at(0), "1970-01-01T00:00:00Z");
        assert_eq!(at(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(at(1_796_483_492), "2026-12-05T15:11:32Z");
        assert_eq!(at(4_102_444_799), "2099-12-31T23:59:59Z");
    }
}
