#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]
#![cfg(unix)]
//! Rotation under load: keep-alive connections and a stream of new connections run
//! against zt echo servers while their credential files rotate, in every layout.
//! Its own test binary, so no other test competes for the CPU while it runs.

mod common;

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{
    Client, EchoServer, HelperDir, KubeDir, Minted, SERVER_ID, TempDir, echo, mint, new_ca,
    write_in_place, write_renamed_over,
};
use tokio::io::BufReader;
use tokio::time::Instant;
use zt_core::rustls::pki_types::CertificateDer;
use zt_core::{FileLayout, FileSource, IdentitySource};

const ROTATIONS: usize = 20;
/// Rotations alternate between the layouts, so each server rotates every
/// `LAYOUTS * ROTATION_PERIOD`, leaving time to check the pickup in between.
const ROTATION_PERIOD: Duration = Duration::from_millis(600);
const LAYOUTS: usize = 3;
/// A handshake that starts this long after a rotation completed must see it.
const PICKUP: Duration = Duration::from_secs(1);
const KEEP_ALIVE_CLIENTS: usize = 2;

/// One credential directory in one of the layouts issuers write.
enum Files {
    /// Kubernetes `..data` symlink swap.
    Kube(KubeDir),
    /// spiffe-helper: three files rewritten in place, one after another.
    Helper(HelperDir),
    /// One combined file renamed over the old one.
    Combined {
        _dir: TempDir,
        credential: PathBuf,
        bundle: PathBuf,
    },
}

impl Files {
    fn new(index: usize, svid: &Minted, bundle_pem: &str) -> Self {
        match index % LAYOUTS {
            0 => Self::Kube(KubeDir::new("rotation-kube", svid, bundle_pem)),
            1 => Self::Helper(HelperDir::new("rotation-helper", svid, bundle_pem)),
            _ => {
                let dir = TempDir::new("rotation-combined");
                let credential = dir.join("credential.pem");
                let bundle = dir.join("ca.pem");
                write_in_place(&credential, &format!("{}{}", svid.key, svid.chain));
                write_in_place(&bundle, bundle_pem);
                Self::Combined {
                    _dir: dir,
                    credential,
                    bundle,
                }
            }
        }
    }

    fn layout(&self) -> FileLayout {
        match self {
            Self::Kube(kube) => FileLayout::kubernetes_tls(kube.path()),
            Self::Helper(helper) => FileLayout::spiffe_helper(helper.dir.path()),
            Self::Combined {
                credential, bundle, ..
            } => FileLayout::combined(credential, bundle),
        }
    }

    fn rotate(&mut self, svid: &Minted, bundle_pem: &str) {
        match self {
            Self::Kube(kube) => kube.swap(svid, bundle_pem),
            Self::Helper(helper) => helper.write_all(svid, bundle_pem),
            Self::Combined { credential, .. } => {
                write_renamed_over(credential, &format!("{}{}", svid.chain, svid.key));
            }
        }
    }
}

struct Rotation {
    server: usize,
    completed: Instant,
    leaf: CertificateDer<'static>,
}

struct Handshake {
    server: usize,
    started: Instant,
    leaf: CertificateDer<'static>,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotations_across_layouts_drop_nothing_and_serve_new_svid_within_a_second() {
    let ca = new_ca();
    let bundle_pem = ca.bundle_pem();
    let mut files = Vec::new();
    let mut sources = Vec::new();
    let mut servers = Vec::new();
    for index in 0..LAYOUTS {
        let svid = mint(&ca, SERVER_ID);
        let layout_files = Files::new(index, &svid, &bundle_pem);
        let source = FileSource::builder(layout_files.layout()).start().unwrap();
        tokio::time::timeout(common::BOUND, source.identity().ready())
            .await
            .unwrap();
        servers.push(EchoServer::start(source.identity()).await);
        sources.push(source);
        files.push(layout_files);
    }
    let client = Arc::new(Client::of(&ca));
    let stop = Arc::new(AtomicBool::new(false));
    let failures = Arc::new(Mutex::new(Vec::<String>::new()));

    // Keep-alive clients: request/echo round trips on one long-lived connection each.
    let mut keep_alive = Vec::new();
    for (server, echo_server) in servers.iter().enumerate() {
        for k in 0..KEEP_ALIVE_CLIENTS {
            let (client, stop, failures, addr) = (
                Arc::clone(&client),
                Arc::clone(&stop),
                Arc::clone(&failures),
                echo_server.addr,
            );
            keep_alive.push(tokio::spawn(async move {
                let mut tls = BufReader::new(client.connect(addr).await.unwrap());
                let mut round_trips = 0_u64;
                while !stop.load(Ordering::Relaxed) {
                    let message = format!("server {server} client {k} request {round_trips}");
                    let result =
                        tokio::time::timeout(common::BOUND, echo(&mut tls, &message)).await;
                    if !matches!(result, Ok(Ok(()))) {
                        failures
                            .lock()
                            .unwrap()
                            .push(format!("keep-alive {message}: {result:?}"));
                        break;
                    }
                    round_trips += 1;
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                round_trips
            }));
        }
    }

    // A stream of new connections per server, each recording the leaf it was shown.
    let handshakes = Arc::new(Mutex::new(Vec::<Handshake>::new()));
    let mut streams = Vec::new();
    for (server, echo_server) in servers.iter().enumerate() {
        let (client, stop, failures, handshakes, addr) = (
            Arc::clone(&client),
            Arc::clone(&stop),
            Arc::clone(&failures),
            Arc::clone(&handshakes),
            echo_server.addr,
        );
        streams.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let started = Instant::now();
                match client.served_leaf(addr).await {
                    Ok(leaf) => handshakes.lock().unwrap().push(Handshake {
                        server,
                        started,
                        leaf,
                    }),
                    Err(err) => failures
                        .lock()
                        .unwrap()
                        .push(format!("new connection to server {server}: {err}")),
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }));
    }

    let mut rotations = Vec::new();
    for i in 0..ROTATIONS {
        tokio::time::sleep(ROTATION_PERIOD).await;
        let server = i % LAYOUTS;
        let svid = mint(&ca, SERVER_ID);
        files[server].rotate(&svid, &bundle_pem);
        rotations.push(Rotation {
            server,
            completed: Instant::now(),
            leaf: svid.leaf,
        });
    }
    // Room for the last rotation to be picked up and checked.
    tokio::time::sleep(PICKUP + Duration::from_millis(500)).await;
    stop.store(true, Ordering::Relaxed);

    for task in keep_alive {
        let round_trips = task.await.unwrap();
        assert!(
            round_trips > 100,
            "a keep-alive client made only {round_trips} round trips"
        );
    }
    for task in streams {
        task.await.unwrap();
    }
    let failures = failures.lock().unwrap();
    assert!(failures.is_empty(), "failed requests: {failures:#?}");

    let handshakes = handshakes.lock().unwrap();
    let mut confirmed = vec![0_usize; rotations.len()];
    for handshake in handshakes.iter() {
        // The latest rotation of this server completed at least PICKUP before.
        let Some(due) = rotations.iter().rposition(|r| {
            r.server == handshake.server && r.completed + PICKUP <= handshake.started
        }) else {
            continue;
        };
        let allowed = rotations[due..]
            .iter()
            .filter(|r| r.server == handshake.server);
        assert!(
            allowed.clone().any(|r| r.leaf == handshake.leaf),
            "server {} presented an old SVID {:?} after rotation {due} completed",
            handshake.server,
            handshake.started - rotations[due].completed,
        );
        if rotations[due].leaf == handshake.leaf {
            confirmed[due] += 1;
        }
    }
    assert!(
        confirmed.iter().all(|&n| n > 0),
        "every rotation is seen by a checked handshake: {confirmed:?}"
    );
    for (server, source) in sources.iter().enumerate() {
        let rotated = rotations.iter().filter(|r| r.server == server).count();
        assert_eq!(
            source.identity().generation(),
            1 + rotated as u64,
            "server {server}: one publication per rotation, none for partial states"
        );
    }
}
