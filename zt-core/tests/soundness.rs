//! Identity generations mean one snapshot, and the verifier-to-peer handoff cannot
//! cross identities: tried as an attacker would, with two identities in one
//! process, a client that withholds its Finished, and concurrent publishers.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use std::collections::HashSet;
use std::sync::{Arc, Barrier};
use std::time::SystemTime;

use zt_core::dev::{DevCa, SvidParams};
use zt_core::rustls::{ClientConnection, ServerConnection};
use zt_core::{
    BundleSet, IdMatcher, IdentityPublisher, PeerIdentity, PeerRole, SpiffeId, X509Bundle, tls,
};

fn id(s: &str) -> SpiffeId {
    s.parse().unwrap()
}

fn new_ca() -> DevCa {
    DevCa::new("example.org".parse().unwrap()).unwrap()
}

/// Moves every TLS record `from` wants to write into `to`, except the last
/// `withhold` records, which are returned unsent.
fn pump_client(
    client: &mut ClientConnection,
    server: &mut ServerConnection,
    withhold: usize,
) -> Vec<u8> {
    let mut buf = Vec::new();
    while client.wants_write() {
        client.write_tls(&mut buf).unwrap();
    }
    // Split at record boundaries: 5-byte header, 2-byte length at offset 3.
    let mut records = Vec::new();
    let mut rest = buf.as_slice();
    while rest.len() >= 5 {
        let len = usize::from(u16::from_be_bytes([rest[3], rest[4]]));
        let (record, tail) = rest.split_at(5 + len);
        records.push(record.to_vec());
        rest = tail;
    }
    let keep = records.len().saturating_sub(withhold);
    for record in &records[..keep] {
        let mut slice = record.as_slice();
        while !slice.is_empty() {
            server.read_tls(&mut slice).unwrap();
            server.process_new_packets().unwrap();
        }
    }
    records[keep..].concat()
}

fn pump_server(server: &mut ServerConnection, client: &mut ClientConnection) {
    let mut buf = Vec::new();
    while server.wants_write() {
        server.write_tls(&mut buf).unwrap();
    }
    let mut slice = buf.as_slice();
    while !slice.is_empty() {
        client.read_tls(&mut slice).unwrap();
        client.process_new_packets().unwrap();
    }
}

fn complete(client: &mut ClientConnection, server: &mut ServerConnection) {
    for _ in 0..8 {
        if !client.is_handshaking() && !server.is_handshaking() {
            return;
        }
        pump_client(client, server, 0);
        pump_server(server, client);
    }
    panic!("handshake did not complete");
}

fn connections(
    server: &IdentityPublisher,
    client: &IdentityPublisher,
) -> (ClientConnection, ServerConnection) {
    let server_config = tls::ServerConfigBuilder::new(server.identity())
        .build()
        .unwrap();
    let client_config = tls::ClientConfigBuilder::new(client.identity(), IdMatcher::any())
        .tls13_only()
        .build()
        .unwrap();
    (
        ClientConnection::new(Arc::new(client_config), "localhost".try_into().unwrap()).unwrap(),
        ServerConnection::new(Arc::new(server_config)).unwrap(),
    )
}

#[test]
fn a_withheld_finished_cannot_carry_another_identitys_verification_into_a_peer() {
    // The client's SVID is from an old CA that both servers trust for now.
    let old_ca = new_ca();
    let ca = new_ca();
    let td = ca.trust_domain().clone();
    let both = BundleSet::new().with(
        X509Bundle::new(
            td.clone(),
            vec![old_ca.cert_der().clone(), ca.cert_der().clone()],
        )
        .unwrap(),
    );
    let only_new = BundleSet::new().with(ca.bundle());
    let server_svid = |path: &str| ca.mint_with(SvidParams::new(id(path))).unwrap();

    // Two identities in one process: an internal listener and a partner listener.
    let internal = IdentityPublisher::new().unwrap();
    internal
        .publish(server_svid("spiffe://example.org/internal"), both.clone())
        .unwrap();
    let partner = IdentityPublisher::new().unwrap();
    partner
        .publish(server_svid("spiffe://example.org/partner"), both.clone())
        .unwrap();
    // The internal identity has moved on by one publication, so its generation is
    // the one the partner's will reach when it withdraws the old CA.
    internal
        .publish(server_svid("spiffe://example.org/internal"), both.clone())
        .unwrap();
    assert_eq!(internal.identity().generation(), 2);
    let client = IdentityPublisher::new().unwrap();
    client
        .publish(
            old_ca.mint(&id("spiffe://example.org/client")).unwrap(),
            both.clone(),
        )
        .unwrap();

    // To the partner: everything up to the client's Finished, which is withheld.
    let (mut to_partner, mut partner_conn) = connections(&partner, &client);
    pump_client(&mut to_partner, &mut partner_conn, 0);
    pump_server(&mut partner_conn, &mut to_partner);
    let finished = pump_client(&mut to_partner, &mut partner_conn, 1);
    assert!(!finished.is_empty() && partner_conn.is_handshaking());

    // Meanwhile, a complete handshake with the internal identity, same chain.
    let (mut to_internal, mut internal_conn) = connections(&internal, &client);
    complete(&mut to_internal, &mut internal_conn);
    let internal_peer =
        PeerIdentity::from_connection(&internal_conn, PeerRole::Client, &internal.identity())
            .unwrap();

    // Now the Finished reaches the partner, and its connection gets a peer.
    let mut slice = finished.as_slice();
    while !slice.is_empty() {
        partner_conn.read_tls(&mut slice).unwrap();
        partner_conn.process_new_packets().unwrap();
    }
    assert!(!partner_conn.is_handshaking());
    let partner_peer =
        PeerIdentity::from_connection(&partner_conn, PeerRole::Client, &partner.identity())
            .unwrap();
    assert!(partner_peer.is_verified_under(&partner.identity().snapshot().unwrap()));
    assert!(!partner_peer.is_verified_under(&internal.identity().snapshot().unwrap()));

    // The partner withdraws the old CA: its generation becomes 2, the number the
    // internal identity verified the same chain under. The client is refused.
    partner
        .publish(server_svid("spiffe://example.org/partner"), only_new)
        .unwrap();
    assert_eq!(partner.identity().generation(), 2);
    let now = SystemTime::now();
    assert!(partner_peer.reverify(&partner.identity(), now).is_err());
    // Handing a peer to the wrong identity vouches for nothing either.
    assert!(internal_peer.reverify(&partner.identity(), now).is_err());
    assert_eq!(internal_peer.reverify(&internal.identity(), now), Ok(()));
}

#[test]
fn concurrent_publishers_never_give_two_snapshots_one_generation() {
    let ca = new_ca();
    let bundles = BundleSet::new().with(ca.bundle());
    let svids: Vec<_> = (0..8)
        .map(|i| ca.mint(&id(&format!("spiffe://example.org/w{i}"))).unwrap())
        .collect();
    for round in 0..10 {
        let publisher = Arc::new(IdentityPublisher::new().unwrap());
        let barrier = Arc::new(Barrier::new(svids.len()));
        let threads: Vec<_> = svids
            .iter()
            .cloned()
            .map(|svid| {
                let publisher = Arc::clone(&publisher);
                let barrier = Arc::clone(&barrier);
                let bundles = bundles.clone();
                std::thread::spawn(move || {
                    barrier.wait();
                    publisher.publish(svid, bundles).unwrap()
                })
            })
            .collect();
        let snapshots: Vec<_> = threads.into_iter().map(|t| t.join().unwrap()).collect();
        let generations: HashSet<u64> = snapshots.iter().map(|s| s.generation()).collect();
        assert_eq!(
            generations.len(),
            svids.len(),
            "round {round}: {generations:?}"
        );
        // The serving snapshot is the last one published.
        let serving = publisher.identity().snapshot().unwrap();
        assert_eq!(serving.generation(), svids.len() as u64, "round {round}");
        // A peer verified under one snapshot is not taken as verified under another.
        let peer = PeerIdentity::from_chain(
            ca.mint(&id("spiffe://example.org/peer"))
                .unwrap()
                .chain()
                .to_vec(),
            PeerRole::Client,
        )
        .unwrap();
        peer.reverify(&publisher.identity(), SystemTime::now())
            .unwrap();
        let verified_under: Vec<_> = snapshots
            .iter()
            .filter(|s| peer.is_verified_under(s))
            .collect();
        assert_eq!(verified_under.len(), 1, "round {round}");
        assert_eq!(verified_under[0].generation(), serving.generation());
    }
}

#[test]
fn a_peer_built_without_a_verifier_record_is_verified_on_first_use() {
    let ca = new_ca();
    let publisher = IdentityPublisher::new().unwrap();
    publisher
        .publish(
            ca.mint(&id("spiffe://example.org/server")).unwrap(),
            BundleSet::new().with(ca.bundle()),
        )
        .unwrap();
    let rogue = new_ca();
    let peer = PeerIdentity::from_chain(
        rogue
            .mint(&id("spiffe://example.org/client"))
            .unwrap()
            .chain()
            .to_vec(),
        PeerRole::Client,
    )
    .unwrap();
    assert!(
        peer.reverify(&publisher.identity(), SystemTime::now())
            .is_err()
    );
}
