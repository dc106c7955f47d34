//! The asynchronous decision hook and the decision in the handler, through
//! zt-tower's server and an axum router: the hook runs only after the policy
//! allowed, fails closed on refusal, timeout and panic, cannot move a request to
//! a target the policy did not decide on, and the handler sees which rule let
//! the request through.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::routing::get;
use http::{Request, StatusCode, Uri};
use tower::ServiceExt;
use zt_core::{Format, IdentitySource, Principal, Verdict};
use zt_tower::{AuthorizeLayer, Authorized, Policy, PolicyStore, Refusal, Server};

use common::*;

const DEADLINE: Duration = Duration::from_millis(200);

/// What the hook found, handed to the handler in the request's extensions.
#[derive(Clone)]
struct Tenant(String);

/// `/tenants/{name}` answers `tenant NAME by RULE`; `/admin` answers `admin`.
/// Every handler call is counted.
fn tenant_router(served: Arc<AtomicUsize>) -> Router {
    let admin_served = Arc::clone(&served);
    Router::new()
        .route(
            "/tenants/{name}",
            get(
                move |Authorized(decision): Authorized, request: Request<Body>| {
                    served.fetch_add(1, Ordering::SeqCst);
                    async move {
                        let tenant = request
                            .extensions()
                            .get::<Tenant>()
                            .map_or("none", |t| t.0.as_str())
                            .to_owned();
                        format!("tenant {tenant} by {}", decision.rule().unwrap_or("-"))
                    }
                },
            ),
        )
        .route(
            "/admin",
            get(move || {
                admin_served.fetch_add(1, Ordering::SeqCst);
                async { "admin" }
            }),
        )
}

/// Allows the client on `/tenants/**` and `/admin` (rule `web-tenants`).
fn tenants_policy() -> PolicyStore {
    PolicyStore::new(
        Policy::parse(
            &format!(
                r#"{{"rules": [{{"name": "web-tenants", "action": "allow",
                    "from": {{"ids": ["{CLIENT_ID}"]}},
                    "to": {{"paths": ["/tenants/**", "/admin"]}}}}]}}"#
            ),
            Format::Json,
        )
        .unwrap(),
    )
}

/// The tenant named in the path: `acme` passes and is handed to the handler;
/// `slow` never answers in time; `boom` panics; `moved` comes back as `/admin`;
/// anything else is refused.
async fn tenant_hook(
    _peer: Principal,
    mut request: Request<Body>,
) -> Result<Request<Body>, Refusal> {
    let tenant = request
        .uri()
        .path()
        .trim_start_matches("/tenants/")
        .to_owned();
    match tenant.as_str() {
        "acme" => {
            request.extensions_mut().insert(Tenant(tenant));
            Ok(request)
        }
        "slow" => {
            tokio::time::sleep(Duration::from_secs(60)).await;
            Ok(request)
        }
        "boom" => panic!("tenant directory unreachable"),
        "moved" => {
            *request.uri_mut() = Uri::from_static("/admin");
            Ok(request)
        }
        _ => Err(Refusal::new("unknown tenant")),
    }
}

struct Setup {
    running: Running,
    client: zt_core::StaticSource,
    served: Arc<AtomicUsize>,
    hooked: Arc<AtomicUsize>,
    layer_metrics: zt_tower::AuthzMetrics,
}

async fn setup(policy: PolicyStore) -> Setup {
    let ca = new_ca();
    let server = identity(&ca, SERVER_ID);
    let client = identity(&ca, CLIENT_ID);
    let served = Arc::new(AtomicUsize::new(0));
    let hooked = Arc::new(AtomicUsize::new(0));
    let counted = Arc::clone(&hooked);
    let layer = AuthorizeLayer::new(server.identity(), policy).async_hook(
        move |peer: Principal, request: Request<Body>| {
            counted.fetch_add(1, Ordering::SeqCst);
            tenant_hook(peer, request)
        },
        DEADLINE,
    );
    let layer_metrics = layer.metrics().clone();
    let running = serve(
        Server::builder(server.identity()),
        tenant_router(Arc::clone(&served)).layer(layer),
    )
    .await;
    Setup {
        running,
        client,
        served,
        hooked,
        layer_metrics,
    }
}

async fn hook_allows_and_the_handler_sees_its_extension_and_the_rule(version: Version) {
    let s = setup(tenants_policy()).await;
    let (status, body) = get_once(s.running.addr, &s.client, version, "/tenants/acme").await;
    assert_eq!(
        (status, body.as_str()),
        (StatusCode::OK, "tenant acme by web-tenants")
    );
    assert_eq!(s.layer_metrics.counts().allowed, 1);
}

#[tokio::test]
async fn async_hook_allows_and_the_handler_sees_its_extension_and_the_rule_over_http1() {
    hook_allows_and_the_handler_sees_its_extension_and_the_rule(Version::Http1).await;
}

#[tokio::test]
async fn async_hook_allows_and_the_handler_sees_its_extension_and_the_rule_over_http2() {
    hook_allows_and_the_handler_sees_its_extension_and_the_rule(Version::Http2).await;
}

#[tokio::test]
async fn async_hook_refusal_is_forbidden_and_never_reaches_the_handler() {
    let s = setup(tenants_policy()).await;
    let (status, body) =
        get_once(s.running.addr, &s.client, Version::Http1, "/tenants/globex").await;
    assert_eq!(
        (status, body.as_str()),
        (StatusCode::FORBIDDEN, "forbidden\n")
    );
    assert_eq!(s.served.load(Ordering::SeqCst), 0);
    let counts = s.layer_metrics.counts();
    assert_eq!((counts.hook_denied, counts.allowed), (1, 0));
}

#[tokio::test]
async fn async_hook_that_misses_its_deadline_refuses_the_request() {
    let s = setup(tenants_policy()).await;
    let started = tokio::time::Instant::now();
    let (status, _) = get_once(s.running.addr, &s.client, Version::Http2, "/tenants/slow").await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    // The hook would sleep for a minute; the deadline answers long before.
    assert!(started.elapsed() < Duration::from_secs(30));
    assert_eq!(s.served.load(Ordering::SeqCst), 0);
    assert_eq!(s.layer_metrics.counts().hook_denied, 1);
}

#[tokio::test]
async fn async_hook_that_panics_refuses_the_request_and_the_connection_serves_on() {
    let s = setup(tenants_policy()).await;
    let (mut conn, _closed) = OneConnection::open(s.running.addr, &s.client, Version::Http1).await;
    let (status, _) = conn.get("/tenants/boom").await.unwrap();
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, body) = conn.get("/tenants/acme").await.unwrap();
    assert_eq!(
        (status, body.as_str()),
        (StatusCode::OK, "tenant acme by web-tenants")
    );
    assert_eq!(s.served.load(Ordering::SeqCst), 1);
}

/// The policy decided `/tenants/moved`; a hook that hands back `/admin` instead
/// would have the router run a handler the policy never saw.
#[tokio::test]
async fn async_hook_that_changes_the_target_is_refused_and_the_new_target_never_runs() {
    let s = setup(tenants_policy()).await;
    let (status, _) = get_once(s.running.addr, &s.client, Version::Http1, "/tenants/moved").await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(s.served.load(Ordering::SeqCst), 0, "/admin must not run");
    assert_eq!(s.layer_metrics.counts().hook_denied, 1);
}

#[tokio::test]
async fn async_hook_never_runs_for_a_request_the_policy_denied() {
    let s = setup(PolicyStore::new(Policy::deny_all())).await;
    let (status, _) = get_once(s.running.addr, &s.client, Version::Http1, "/tenants/acme").await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(s.hooked.load(Ordering::SeqCst), 0);
    assert_eq!(s.served.load(Ordering::SeqCst), 0);
    let counts = s.layer_metrics.counts();
    assert_eq!((counts.denied, counts.hook_denied), (1, 0));
}

/// The handler can tell a dry-run pass from an allow: a resource-level check
/// that trusts only enforced rules must be able to.
#[tokio::test]
async fn handler_sees_a_dry_run_pass_as_a_would_be_denial() {
    let ca = new_ca();
    let server = identity(&ca, SERVER_ID);
    let client = identity(&ca, CLIENT_ID);
    let policy = PolicyStore::new(
        Policy::parse(r#"{"mode": "dry-run", "rules": []}"#, Format::Json).unwrap(),
    );
    let app = Router::new()
        .route(
            "/whoami",
            get(|Authorized(decision): Authorized| async move {
                format!(
                    "{} dry_run={} rule={:?}",
                    decision.verdict(),
                    decision.dry_run(),
                    decision.rule()
                )
            }),
        )
        .layer(AuthorizeLayer::new(server.identity(), policy));
    let running = serve(Server::builder(server.identity()), app).await;
    let (status, body) = get_once(running.addr, &client, Version::Http1, "/whoami").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, format!("{} dry_run=true rule=None", Verdict::Deny));
}

#[tokio::test]
async fn authorized_extractor_without_the_layer_is_a_setup_error() {
    let app: Router = Router::new().route(
        "/whoami",
        get(|Authorized(_): Authorized| async { "unreachable" }),
    );
    let response = app
        .oneshot(Request::get("/whoami").body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
    let body = axum::body::to_bytes(response.into_body(), 1024)
        .await
        .unwrap();
    assert!(
        String::from_utf8_lossy(&body).contains("zt_tower::AuthorizeLayer"),
        "the rejection must say how to fix the setup"
    );
}
