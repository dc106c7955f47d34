//! Runs N requests through `zt_tower::Authorize` (re-verification, canonical
//! view, decision, metrics) for counting instructions under
//! `valgrind --tool=callgrind`, with or without a metrics recorder installed:
//!
//! ```text
//! cargo build --release -p zt-benches --example authorize_count
//! valgrind --tool=callgrind target/release/examples/authorize_count none 1000
//! valgrind --tool=callgrind target/release/examples/authorize_count none 11000
//! valgrind --tool=callgrind target/release/examples/authorize_count prometheus 1000
//! valgrind --tool=callgrind target/release/examples/authorize_count prometheus 11000
//! valgrind --tool=callgrind target/release/examples/authorize_count none 1000 10000
//! valgrind --tool=callgrind target/release/examples/authorize_count none 11000 10000
//! ```
//!
//! The difference of two totals of one mode divided by 10,000 is the cost of one
//! authorized request in that mode; `prometheus` minus `none` is what recording
//! the decision in a Prometheus registry adds.
//!
//! With a third argument RULES, the policy is the generated one of `compare`
//! (`zt_testkit::policy::policy_json(RULES)`) and the peer `svc-0` asks for
//! `GET /svc-0/items`: an exact-ID rule allows it, a deny rule on another path
//! and the any-peer rule are matched too. Without it, one rule allows the peer.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::convert::Infallible;
use std::hint::black_box;

use http::{Request, Response};
use tower::{Layer, ServiceExt};
use zt_core::dev::DevCa;
use zt_core::{
    BundleSet, Format, IdentitySource, PeerIdentity, PeerRole, Policy, PolicyStore, StaticSource,
};
use zt_testkit::policy::policy_json;
use zt_tower::AuthorizeLayer;

fn main() {
    let mut args = std::env::args().skip(1);
    let mode = args.next().unwrap_or_else(|| "none".to_owned());
    let count: usize = args.next().and_then(|n| n.parse().ok()).unwrap_or(1);
    let rules: Option<usize> = args.next().map(|n| n.parse().expect("RULES is a number"));
    let _handle = match mode.as_str() {
        "none" => None,
        "prometheus" => Some(
            metrics_exporter_prometheus::PrometheusBuilder::new()
                .install_recorder()
                .expect("recorder"),
        ),
        other => panic!("mode is none or prometheus, not {other}"),
    };

    let ca = DevCa::new("example.org".parse().unwrap()).unwrap();
    let server = ca
        .mint(&"spiffe://example.org/api".parse().unwrap())
        .unwrap();
    let identity = StaticSource::new(server, BundleSet::new().with(ca.bundle())).unwrap();
    let (client_id, document, path) = match rules {
        Some(rules) => (
            "spiffe://example.org/svc-0",
            policy_json(rules),
            "/svc-0/items",
        ),
        None => (
            "spiffe://example.org/web",
            r#"{"rules": [{"name": "web-reads", "action": "allow",
                "from": {"ids": ["spiffe://example.org/web"]}, "to": {"methods": ["GET"]}}]}"#
                .to_owned(),
            "/items/7",
        ),
    };
    let client = ca.mint(&client_id.parse().unwrap()).unwrap();
    let peer = PeerIdentity::from_chain(client.chain().to_vec(), PeerRole::Client).unwrap();
    let policy = Policy::parse(&document, Format::Json).unwrap();
    let service = AuthorizeLayer::new(identity.identity(), PolicyStore::new(policy)).layer(
        tower::service_fn(|_req: Request<String>| async {
            Ok::<_, Infallible>(Response::new(String::new()))
        }),
    );

    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let mut allowed = 0usize;
    runtime.block_on(async {
        for _ in 0..count {
            let mut request = Request::get(black_box(path)).body(String::new()).unwrap();
            request.extensions_mut().insert(peer.clone());
            let response = service.clone().oneshot(request).await.unwrap();
            allowed += usize::from(response.status().is_success());
        }
    });
    assert_eq!(allowed, count, "every request is allowed");
}
