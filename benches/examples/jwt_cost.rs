//! The per-request cost of JWT-SVID validation beside the mTLS-only path,
//! measured in one run, each request through `zt_tower::Authorize` with the same
//! peer and an in-memory inner service:
//!
//! - `mtls`: the peer re-verified and the policy decided, no token;
//! - `jwt seen`: the same with a valid ES256 token the layer has validated
//!   before (answered from the bundle set's record: digest, audience, time);
//! - `jwt new`: a token never seen before on every request (signature verified);
//! - `validate new` / `validate seen`: `JwtValidator::validate` alone.
//!
//! ```text
//! cargo run --release -p zt-benches --example jwt_cost
//! ```
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::convert::Infallible;
use std::hint::black_box;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use http::{Request, Response};
use tower::{Layer, ServiceExt};
use zt_core::dev::DevCa;
use zt_core::jwt::{JwtBundle, JwtBundleSet, JwtBundles, JwtValidator};
use zt_core::{
    BundleSet, Format, IdentitySource, PeerIdentity, PeerRole, Policy, PolicyStore, StaticSource,
};
use zt_tower::AuthorizeLayer;

const AUDIENCE: &str = "orders-api";

fn main() {
    let ca = DevCa::new("example.org".parse().unwrap()).unwrap();
    let server = ca
        .mint(&"spiffe://example.org/api".parse().unwrap())
        .unwrap();
    let identity = StaticSource::new(server, BundleSet::new().with(ca.bundle())).unwrap();
    let gateway = ca
        .mint(&"spiffe://example.org/gateway".parse().unwrap())
        .unwrap();
    let peer = PeerIdentity::from_chain(gateway.chain().to_vec(), PeerRole::Client).unwrap();

    // The JWT authority: a P-256 key, as SPIRE signs JWT-SVIDs by default.
    let key = rcgen::KeyPair::generate().unwrap();
    let public = key.public_key_raw();
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let (x, y) = (b64.encode(&public[1..33]), b64.encode(&public[33..65]));
    let jwks = format!(
        r#"{{"keys": [{{"use": "jwt-svid", "kty": "EC", "kid": "k1", "crv": "P-256", "x": "{x}", "y": "{y}"}}]}}"#
    );
    let bundle =
        JwtBundle::from_spiffe_json("example.org".parse().unwrap(), jwks.as_bytes()).unwrap();
    let validator =
        JwtValidator::new(JwtBundles::new(JwtBundleSet::new().with(bundle)), AUDIENCE).unwrap();
    let signing = jsonwebtoken::EncodingKey::from_ec_der(&key.serialize_der());
    let exp = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 3600;
    let mint = |n: usize| {
        let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256);
        header.kid = Some("k1".to_owned());
        let claims = serde_json::json!({
            "sub": "spiffe://example.org/frontend", "aud": AUDIENCE, "exp": exp, "jti": n,
        });
        jsonwebtoken::encode(&header, &claims, &signing).unwrap()
    };

    let mtls_policy = Policy::parse(
        r#"{"rules": [{"name": "gateway", "action": "allow",
            "from": {"ids": ["spiffe://example.org/gateway"]}}]}"#,
        Format::Json,
    )
    .unwrap();
    let jwt_policy = Policy::parse(
        r#"{"rules": [{"name": "gateway-for-frontend", "action": "allow",
            "from": {"ids": ["spiffe://example.org/gateway"],
                     "jwt": {"ids": ["spiffe://example.org/frontend"]}}}]}"#,
        Format::Json,
    )
    .unwrap();
    let inner = tower::service_fn(|_req: Request<String>| async {
        Ok::<_, Infallible>(Response::new(String::new()))
    });
    let mtls = AuthorizeLayer::new(identity.identity(), PolicyStore::new(mtls_policy)).layer(inner);
    let jwt = AuthorizeLayer::new(identity.identity(), PolicyStore::new(jwt_policy))
        .jwt(validator.clone())
        .layer(inner);

    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let request = |token: Option<&str>| {
        let mut builder = Request::get(black_box("/orders/7"));
        if let Some(token) = token {
            builder = builder.header("authorization", format!("Bearer {token}"));
        }
        let mut request = builder.body(String::new()).unwrap();
        request.extensions_mut().insert(peer.clone());
        request
    };
    let time = |what: &str, n: usize, mut one: Box<dyn FnMut(usize) + '_>| {
        for i in 0..n / 10 {
            one(i); // warm-up
        }
        let start = Instant::now();
        for i in 0..n {
            one(i);
        }
        let each = start.elapsed() / u32::try_from(n).unwrap();
        println!(
            "{what:<14} {:>9.2} µs per request",
            each.as_secs_f64() * 1e6
        );
        each
    };

    let seen = mint(0);
    const N: usize = 20_000;
    const FRESH: usize = 2_000;
    let fresh: Vec<String> = (1..=FRESH * 11 / 10 + 1).map(mint).collect();
    let mut next = 0usize;

    let mtls_cost = time(
        "mtls",
        N,
        Box::new(|_| {
            let response = runtime
                .block_on(mtls.clone().oneshot(request(None)))
                .unwrap();
            assert!(response.status().is_success());
        }),
    );
    let seen_cost = time(
        "jwt seen",
        N,
        Box::new(|_| {
            let response = runtime
                .block_on(jwt.clone().oneshot(request(Some(&seen))))
                .unwrap();
            assert!(response.status().is_success());
        }),
    );
    let new_cost = time(
        "jwt new",
        FRESH,
        Box::new(|_| {
            let token = &fresh[next];
            next += 1;
            let response = runtime
                .block_on(jwt.clone().oneshot(request(Some(token))))
                .unwrap();
            assert!(response.status().is_success());
        }),
    );
    let mut fresh_validate: Vec<String> = (0..FRESH * 11 / 10 + 1)
        .map(|n| mint(1_000_000 + n))
        .collect();
    time(
        "validate new",
        FRESH,
        Box::new(|_| {
            let token = fresh_validate.pop().unwrap();
            black_box(validator.validate(&token).unwrap());
        }),
    );
    time(
        "validate seen",
        N,
        Box::new(|_| {
            black_box(validator.validate(&seen).unwrap());
        }),
    );
    let ratio = |a: Duration, b: Duration| a.as_secs_f64() / b.as_secs_f64();
    println!("jwt_seen_vs_mtls {:.3}", ratio(seen_cost, mtls_cost));
    println!("jwt_new_vs_mtls  {:.3}", ratio(new_cost, mtls_cost));
}
