//! What `Authorize` adds to each request: the peer taken from the extensions,
//! re-verified (one atomic load when the snapshot did not change), the policy
//! decision, the tracing callsites (disabled) and the counters. Compared with
//! calling the inner service directly, on a request that already carries the
//! peer (the server inserts it for every request in both cases).
//!
//! ```text
//! cargo bench -p zt-tower --bench authorize
//! ```

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::convert::Infallible;
use std::future::Future;
use std::hint::black_box;
use std::pin::pin;
use std::task::{Context, Poll, Waker};

use criterion::{Criterion, criterion_group, criterion_main};
use http::{Request, Response};
use tower::{Layer, Service};
use zt_core::dev::DevCa;
use zt_core::{BundleSet, IdentitySource, PeerIdentity, PeerRole, StaticSource};
use zt_tower::{AuthorizeLayer, Policy, PolicyStore};

/// Drives a future that is ready at once, as the services here are.
fn ready<F: Future>(future: F) -> F::Output {
    let mut future = pin!(future);
    match future
        .as_mut()
        .poll(&mut Context::from_waker(Waker::noop()))
    {
        Poll::Ready(output) => output,
        Poll::Pending => panic!("benchmark service was not ready"),
    }
}

fn request(peer: &PeerIdentity) -> Request<String> {
    let mut request = Request::get("/v1/items/42").body(String::new()).unwrap();
    request.extensions_mut().insert(peer.clone());
    request
}

fn bench(c: &mut Criterion) {
    let ca = DevCa::new("example.org".parse().unwrap()).unwrap();
    let bundles = BundleSet::new().with(ca.bundle());
    let server = StaticSource::new(
        ca.mint(&"spiffe://example.org/api".parse().unwrap())
            .unwrap(),
        bundles,
    )
    .unwrap();
    let client = ca
        .mint(&"spiffe://example.org/web".parse().unwrap())
        .unwrap();
    let peer = PeerIdentity::from_chain(client.chain().to_vec(), PeerRole::Client).unwrap();
    // First re-verification under this generation: the full chain check, once.
    peer.reverify(&server.identity(), std::time::SystemTime::now())
        .unwrap();

    let inner = tower::service_fn(|_req: Request<String>| async {
        Ok::<_, Infallible>(Response::new(String::from("ok")))
    });
    let mut group = c.benchmark_group("per_request");

    let mut plain = inner;
    group.bench_function("inner_service_only", |b| {
        b.iter(|| ready(plain.call(black_box(request(&peer)))).unwrap());
    });

    for (name, patterns) in [
        ("authorize_allow", vec!["spiffe://example.org/web"]),
        ("authorize_deny", vec!["spiffe://example.org/other"]),
    ] {
        let policy = PolicyStore::new(Policy::allow_patterns(patterns).unwrap());
        let mut service = AuthorizeLayer::new(server.identity(), policy).layer(inner);
        group.bench_function(name, |b| {
            b.iter(|| ready(service.call(black_box(request(&peer)))).unwrap());
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
