//! Runs N in-memory mTLS handshakes with zt or plain rustls configs, for counting
//! instructions under `valgrind --tool=callgrind` (repeatable on a busy machine):
//!
//! ```text
//! cargo build --release -p zt-benches --example handshake_count
//! valgrind --tool=callgrind target/release/examples/handshake_count zt 1
//! valgrind --tool=callgrind target/release/examples/handshake_count zt 21
//! ```
//!
//! The difference of the two totals divided by 20 is the cost of one handshake.
//! `ztpeer` also builds the server side's `PeerIdentity` from the finished
//! connection, as zt-tower's server does (the verifier's record taken, no second
//! parse of the chain).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use rustls::pki_types::ServerName;
use rustls::{ClientConnection, ServerConnection};
use zt_benches::{handshake_in_memory, plain_pair, zt_pair};
use zt_core::dev::{DevCa, SvidParams};
use zt_core::{PeerIdentity, PeerRole};

fn main() {
    let mut args = std::env::args().skip(1);
    let kind = args.next().unwrap_or_else(|| "zt".to_owned());
    let count: usize = args.next().and_then(|n| n.parse().ok()).unwrap_or(1);
    let ca = DevCa::new("example.org".parse().unwrap()).unwrap();
    let mut params = SvidParams::new("spiffe://example.org/server".parse().unwrap());
    params.dns_names.push("localhost".to_owned());
    let server = ca.mint_with(params).unwrap();
    let client = ca
        .mint(&"spiffe://example.org/client".parse().unwrap())
        .unwrap();
    let pair = match kind.as_str() {
        "plain" => plain_pair(&ca, &server, &client),
        _ => zt_pair(&ca, &server, &client),
    };
    let name = ServerName::try_from("localhost").unwrap();
    for _ in 0..count {
        let mut c = ClientConnection::new(pair.client.clone(), name.clone()).unwrap();
        let mut s = ServerConnection::new(pair.server.clone()).unwrap();
        handshake_in_memory(&mut c, &mut s).unwrap();
        if kind == "ztpeer" {
            let client_peer =
                PeerIdentity::from_connection(&s, PeerRole::Client, &pair.publishers[0].identity())
                    .unwrap();
            std::hint::black_box(client_peer);
        }
    }
    println!("{count} {kind} handshakes");
}
