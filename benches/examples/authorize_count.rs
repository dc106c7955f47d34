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
//! ```
//!
//! The difference of two totals of one mode divided by 10,000 is the cost of one
//! authorized request in that mode; `prometheus` minus `none` is what recording
//! the decision in a Prometheus registry adds.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::convert::Infallible;
use std::hint::black_box;

use http::{Request, Response};
use tower::{Layer, ServiceExt};
use zt_core::dev::DevCa;
use zt_core::{
    BundleSet, Format, IdentitySource, PeerIdentity, PeerRole, Policy, PolicyStore, StaticSource,
};
use zt_tower::AuthorizeLayer;

fn main() {
    let mut args = std::env::args().skip(1);
    let mode = args.next().unwrap_or_else(|| "none".to_owned());
    let count: usize = args.next().and_then(|n| n.parse().ok()).unwrap_or(1);
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
    let client = ca
        .mint(&"spiffe://example.org/web".parse().unwrap())
        .unwrap();
    let peer = PeerIdentity::from_chain(client.chain().to_vec(), PeerRole::Client).unwrap();
    let policy = Policy::parse(
        r#"{"rules": [{"name": "web-reads", "action": "allow",
            "from": {"ids": ["spiffe://example.org/web"]}, "to": {"methods": ["GET"]}}]}"#,
        Format::Json,
    )
    .unwrap();
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
            let mut request = Request::get(black_box("/items/7"))
                .body(String::new())
                .unwrap();
            request.extensions_mut().insert(peer.clone());
            let response = service.clone().oneshot(request).await.unwrap();
            allowed += usize::from(response.status().is_success());
        }
    });
    assert_eq!(allowed, count, "every request is allowed");
}
