#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]
//! Authorization policies through the public API: semantics, validation,
//! formats, the store, and a policy of 100,000 rules. One module per topic; the
//! helpers here are shared by all of them.

mod allow_patterns;
mod anonymous;
mod formats;
mod from;
mod index;
mod jwt;
mod logs;
mod outcomes;
mod scale;
mod store;
mod to;
mod upgrades;
mod validation;
mod when;

use zt_core::policy::Location;
use zt_core::{Format, PeerIdentity, PeerRole, Policy, PolicyError, Request, SpiffeId};

#[track_caller]
fn id(s: &str) -> SpiffeId {
    s.parse()
        .unwrap_or_else(|err| panic!("{s:?} should parse: {err}"))
}

#[track_caller]
fn yaml(text: &str) -> Policy {
    Policy::parse(text, Format::Yaml).unwrap_or_else(|err| panic!("policy should load: {err}"))
}

#[track_caller]
fn invalid(text: &str, format: Format) -> (String, Option<Location>) {
    match Policy::parse(text, format) {
        Err(PolicyError::Invalid {
            message, location, ..
        }) => (message, location),
        Err(other) => panic!("expected an invalid-policy error, got {other:?}"),
        Ok(policy) => panic!("expected an error, got {policy:?}"),
    }
}

/// The peer of one connection: `id`'s SVID, issued by a test CA of its trust
/// domain, as a server's handshake hands it on.
#[track_caller]
fn connection(id: &SpiffeId) -> PeerIdentity {
    let ca = zt_testkit::ca::TestCa::new(id.trust_domain().as_str());
    let svid = ca.valid(id.as_str());
    PeerIdentity::from_chain(svid.chain, PeerRole::Client)
        .unwrap_or_else(|err| panic!("{id} should make a peer: {err}"))
}

fn get(path: &str) -> Request<'_> {
    Request::new("GET", path)
}
