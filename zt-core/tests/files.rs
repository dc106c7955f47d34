#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]
#![cfg(unix)]
//! The watched-file identity source: every layout real issuers write, rotation
//! observed through real TLS handshakes on 127.0.0.1, and bad files that must never
//! replace the last good identity.

mod common;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use base64::Engine as _;
use common::{
    BOUND, Client, EchoServer, HelperDir, KubeDir, Minted, SERVER_ID, TRUST_DOMAIN, TempDir, id,
    make_unreadable, mint, mint_with, new_ca, td, wait_until, wait_until_served, write_in_place,
    write_renamed_over,
};
use zt_core::dev::{DevCa, SvidParams};
use zt_core::{
    BundleError, BundleSet, Error, FileError, FileErrorKind, FileLayout, FileSource, Identity,
    IdentitySource, MAX_SVID_PEM_BYTES, SvidError, X509Bundle,
};

/// A file source serving through a zt echo server, and a client of the same CA.
struct Running {
    source: FileSource,
    identity: Identity,
    server: EchoServer,
    client: Client,
}

impl Running {
    async fn start(layout: FileLayout, ca: &DevCa) -> Self {
        Self::start_with(FileSource::builder(layout).start().unwrap(), Client::of(ca)).await
    }

    async fn start_with(source: FileSource, client: Client) -> Self {
        let identity = source.identity();
        tokio::time::timeout(BOUND, identity.ready())
            .await
            .unwrap_or_else(|_| panic!("not ready: {:?}", identity.status()));
        let server = EchoServer::start(identity.clone()).await;
        Self {
            source,
            identity,
            server,
            client,
        }
    }

    async fn served(&self) -> zt_core::rustls::pki_types::CertificateDer<'static> {
        self.client.served_leaf(self.server.addr).await.unwrap()
    }
}

fn bundle_of(cas: &[&DevCa]) -> X509Bundle {
    X509Bundle::new(
        td(TRUST_DOMAIN),
        cas.iter().map(|ca| ca.cert_der().clone()).collect(),
    )
    .unwrap()
}

fn pem_of(cas: &[&DevCa]) -> String {
    cas.iter().map(|ca| ca.bundle_pem()).collect()
}

/// Leaves a partial state on disk for a while: the writer's delay between files,
/// during which the concurrent poller keeps handshaking.
async fn hold_while_polled() {
    tokio::time::sleep(Duration::from_millis(250)).await;
}

fn has_kind(err: &Option<FileError>, path: &Path, kind: impl Fn(&FileErrorKind) -> bool) -> bool {
    err.as_ref()
        .is_some_and(|e| e.path() == path && kind(e.kind()))
}

// === layouts ===

#[tokio::test]
async fn kubernetes_data_symlink_swap_serves_new_svid() {
    let ca = new_ca();
    let first = mint(&ca, SERVER_ID);
    let mut kube = KubeDir::new("kube-swap", &first, &ca.bundle_pem());
    let run = Running::start(FileLayout::kubernetes_tls(kube.path()), &ca).await;
    assert_eq!(run.served().await, first.leaf);

    let second = mint(&ca, SERVER_ID);
    kube.swap(&second, &ca.bundle_pem());

    wait_until_served(&run.client, run.server.addr, &second.leaf).await;
    assert_eq!(run.identity.generation(), 2, "one swap, one publication");
    assert!(run.source.last_error().is_none());
}

#[tokio::test]
async fn half_written_chain_keeps_old_svid_until_write_completes() {
    let ca = new_ca();
    let first = mint(&ca, SERVER_ID);
    let helper = HelperDir::new("half-written", &first, &ca.bundle_pem());
    let run = Running::start(FileLayout::spiffe_helper(helper.dir.path()), &ca).await;

    let second = mint(&ca, SERVER_ID);
    let (head, tail) = second.chain.split_at(second.chain.len() / 2);
    write_in_place(&helper.chain(), head);
    // Reported once the debounce has passed and the half file was read.
    wait_until("the half-written chain is reported", || {
        has_kind(&run.source.last_error(), &helper.chain(), |k| {
            matches!(k, FileErrorKind::Svid(SvidError::Pem(_)))
        })
    })
    .await;
    let status = run.identity.status();
    assert!(status.is_ready());
    assert!(
        status
            .last_error()
            .unwrap()
            .contains(&helper.chain().display().to_string()),
        "{status:?}"
    );
    assert_eq!(run.served().await, first.leaf, "the old SVID keeps serving");

    // The writer finishes the chain, then writes the key.
    {
        use std::io::Write as _;
        let mut file = std::fs::OpenOptions::new()
            .append(true)
            .open(helper.chain())
            .unwrap();
        file.write_all(tail.as_bytes()).unwrap();
    }
    write_in_place(&helper.key(), &second.key);

    wait_until_served(&run.client, run.server.addr, &second.leaf).await;
    assert_eq!(run.identity.generation(), 2);
    wait_until("the error is cleared", || {
        run.identity.status().last_error().is_none()
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn files_written_one_after_another_never_publish_a_mismatched_pair() {
    let old_ca = new_ca();
    let new_ca = common::new_ca();
    let first = mint(&old_ca, SERVER_ID);
    let helper = HelperDir::new("one-by-one", &first, &old_ca.bundle_pem());
    let client = Client::new(
        &old_ca,
        BundleSet::new().with(bundle_of(&[&old_ca, &new_ca])),
    );
    let source = FileSource::builder(FileLayout::spiffe_helper(helper.dir.path()))
        .start()
        .unwrap();
    let run = Running::start_with(source, client).await;
    let provider = run.identity.crypto_provider().clone();

    // Every snapshot that is ever published must hold a key that matches its leaf
    // and a chain that verifies against its own bundle.
    let stop = Arc::new(AtomicBool::new(false));
    let checker = {
        let identity = run.identity.clone();
        let stop = Arc::clone(&stop);
        tokio::spawn(async move {
            let mut changes = identity.changes();
            let mut seen = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                if tokio::time::timeout(Duration::from_millis(50), changes.changed())
                    .await
                    .is_err()
                {
                    continue;
                }
                let snapshot = identity.snapshot().expect("a snapshot keeps serving");
                assert!(snapshot.certified_key().keys_match().is_ok());
                snapshot
                    .svid()
                    .verify(snapshot.bundles(), &provider, SystemTime::now())
                    .expect("a published SVID verifies against its bundle");
                seen.push(snapshot.generation());
            }
            seen
        })
    };
    // And the server presents the old SVID or the new one, never fails, never goes back.
    let second = mint(&new_ca, SERVER_ID);
    let served_log = Arc::new(Mutex::new(Vec::new()));
    let poller = {
        let (client, addr, log, stop) = (
            Client::new(
                &old_ca,
                BundleSet::new().with(bundle_of(&[&old_ca, &new_ca])),
            ),
            run.server.addr,
            Arc::clone(&served_log),
            Arc::clone(&stop),
        );
        tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let leaf = client
                    .served_leaf(addr)
                    .await
                    .expect("every handshake succeeds");
                log.lock().unwrap().push(leaf);
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
    };

    // The new chain (signed by a new CA), then its key, then the bundle with the new CA.
    write_in_place(&helper.chain(), &second.chain);
    wait_until("the new chain with the old key is rejected", || {
        has_kind(&run.source.last_error(), &helper.key(), |k| {
            matches!(k, FileErrorKind::Svid(SvidError::KeyMismatch))
        })
    })
    .await;
    hold_while_polled().await;
    assert_eq!(run.served().await, first.leaf);

    write_in_place(&helper.key(), &second.key);
    wait_until("the new SVID without the new CA is rejected", || {
        has_kind(&run.source.last_error(), &helper.chain(), |k| {
            matches!(k, FileErrorKind::Svid(SvidError::UnknownIssuer(_)))
        })
    })
    .await;
    hold_while_polled().await;
    assert_eq!(run.served().await, first.leaf);

    write_in_place(&helper.bundle(), &pem_of(&[&old_ca, &new_ca]));
    wait_until_served(&run.client, run.server.addr, &second.leaf).await;

    stop.store(true, Ordering::Relaxed);
    poller.await.unwrap();
    let seen = checker.await.unwrap();
    assert_eq!(
        run.identity.generation(),
        2,
        "only the complete candidate was published"
    );
    assert!(
        seen.contains(&2),
        "the checker saw the publication: {seen:?}"
    );
    let served = served_log.lock().unwrap().clone();
    assert!(served.len() > 10, "the poller handshook meanwhile");
    let switch = served
        .iter()
        .position(|leaf| *leaf == second.leaf)
        .unwrap_or(served.len());
    assert!(served[..switch].iter().all(|leaf| *leaf == first.leaf));
    assert!(
        served[switch..].iter().all(|leaf| *leaf == second.leaf),
        "the old SVID came back after the new one was served"
    );
}

#[tokio::test]
async fn combined_file_renamed_over_serves_new_svid() {
    let ca = new_ca();
    let dir = TempDir::new("combined");
    let credential = dir.join("credential.pem");
    let bundle = dir.join("bundle.pem");
    let first = mint(&ca, SERVER_ID);
    write_in_place(&credential, &format!("{}{}", first.key, first.chain));
    write_in_place(&bundle, &ca.bundle_pem());
    let run = Running::start(FileLayout::combined(&credential, &bundle), &ca).await;
    assert_eq!(run.served().await, first.leaf);

    let second = mint(&ca, SERVER_ID);
    write_renamed_over(&credential, &format!("{}{}", second.chain, second.key));

    wait_until_served(&run.client, run.server.addr, &second.leaf).await;
    assert_eq!(run.identity.generation(), 2);
}

#[tokio::test]
async fn ca_rotation_trusts_both_cas_then_refuses_old_ca_peer() {
    let old_ca = new_ca();
    let new_ca = common::new_ca();
    let both = BundleSet::new().with(bundle_of(&[&old_ca, &new_ca]));
    let old_client = Client::new(&old_ca, both.clone());
    let new_client = Client::new(&new_ca, both);
    let first = mint(&old_ca, SERVER_ID);
    let helper = HelperDir::new("ca-rotation", &first, &old_ca.bundle_pem());
    let source = FileSource::builder(FileLayout::spiffe_helper(helper.dir.path()))
        .start()
        .unwrap();
    let run = Running::start_with(source, Client::of(&old_ca)).await;
    let addr = run.server.addr;
    assert!(old_client.served_leaf(addr).await.is_ok());
    assert!(
        new_client.served_leaf(addr).await.is_err(),
        "the new CA is not trusted yet"
    );

    // Only the bundle changes: the new CA joins the old one.
    write_in_place(&helper.bundle(), &pem_of(&[&old_ca, &new_ca]));
    let deadline = tokio::time::Instant::now() + BOUND;
    while new_client.served_leaf(addr).await.is_err() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the added CA is never trusted"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(old_client.served_leaf(addr).await.unwrap(), first.leaf);
    assert_eq!(run.identity.generation(), 2);

    // Our own SVID moves to the new CA, then the old CA leaves the bundle.
    let second = mint(&new_ca, SERVER_ID);
    write_in_place(&helper.chain(), &second.chain);
    write_in_place(&helper.key(), &second.key);
    wait_until_served(&new_client, addr, &second.leaf).await;
    write_in_place(&helper.bundle(), &new_ca.bundle_pem());
    wait_until("the bundle holds only the new CA", || {
        run.identity
            .snapshot()
            .is_some_and(|s| s.bundles().get(&td(TRUST_DOMAIN)).unwrap().len() == 1)
    })
    .await;

    let refused = old_client.served_leaf(addr).await;
    assert!(
        refused.is_err(),
        "a peer with an old-CA SVID is refused at the handshake"
    );
    assert_eq!(new_client.served_leaf(addr).await.unwrap(), second.leaf);
}

#[tokio::test]
async fn federated_bundle_file_trusts_partner_until_its_keys_are_withdrawn() {
    let ca = new_ca();
    let partner_ca = DevCa::new(td("partner.example")).unwrap();
    let dir = TempDir::new("federated");
    let first = mint(&ca, SERVER_ID);
    let helper = HelperDir::new("federated-own", &first, &ca.bundle_pem());
    let federated = dir.join("partner.json");
    let x5c = base64::engine::general_purpose::STANDARD.encode(partner_ca.cert_der());
    write_in_place(
        &federated,
        &format!(r#"{{"keys": [{{"kty": "EC", "use": "x509-svid", "x5c": ["{x5c}"]}}]}}"#),
    );
    let source = FileSource::builder(FileLayout::spiffe_helper(helper.dir.path()))
        .federated(td("partner.example"), &federated)
        .start()
        .unwrap();
    let run = Running::start_with(source, Client::of(&ca)).await;
    let partner = Client::with_svid(
        partner_ca
            .mint(&id("spiffe://partner.example/client"))
            .unwrap(),
        BundleSet::new().with(ca.bundle()).with(partner_ca.bundle()),
    );
    assert_eq!(
        partner.served_leaf(run.server.addr).await.unwrap(),
        first.leaf
    );

    // An empty SPIFFE bundle is a withdrawal of the whole partner domain.
    write_in_place(&federated, r#"{"keys": []}"#);
    wait_until("the partner bundle is withdrawn", || {
        run.identity.snapshot().is_some_and(|s| {
            s.bundles()
                .get(&td("partner.example"))
                .is_some_and(X509Bundle::is_empty)
        })
    })
    .await;
    assert!(partner.served_leaf(run.server.addr).await.is_err());
    assert_eq!(
        run.served().await,
        first.leaf,
        "our own domain is unaffected"
    );
}

#[tokio::test]
async fn deleted_and_recreated_directory_serves_new_svid() {
    let ca = new_ca();
    let parent = TempDir::new("recreated");
    let dir = parent.join("certs");
    std::fs::create_dir(&dir).unwrap();
    let first = mint(&ca, SERVER_ID);
    let write = |svid: &Minted| {
        write_in_place(&dir.join("tls.crt"), &svid.chain);
        write_in_place(&dir.join("tls.key"), &svid.key);
        write_in_place(&dir.join("ca.crt"), &ca.bundle_pem());
    };
    write(&first);
    let run = Running::start(FileLayout::kubernetes_tls(&dir), &ca).await;

    std::fs::remove_dir_all(&dir).unwrap();
    wait_until("the missing files are reported", || {
        run.source
            .last_error()
            .is_some_and(|e| matches!(e.kind(), FileErrorKind::NotFound))
    })
    .await;
    assert_eq!(run.served().await, first.leaf);

    std::fs::create_dir(&dir).unwrap();
    let second = mint(&ca, SERVER_ID);
    write(&second);
    wait_until_served(&run.client, run.server.addr, &second.leaf).await;
}

// === expiry ===

/// A tracing subscriber that records events as `LEVEL message field=value ...`.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<(tracing::Level, String, SystemTime)>>>);

impl Captured {
    fn find(&self, level: tracing::Level, needle: &str) -> Option<(String, SystemTime)> {
        self.0
            .lock()
            .unwrap()
            .iter()
            .find(|(l, text, _)| *l == level && text.contains(needle))
            .map(|(_, text, at)| (text.clone(), *at))
    }
}

struct Fields(String);

impl tracing::field::Visit for Fields {
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        self.0.push_str(&format!(" {}={value:?}", field.name()));
    }
}

impl tracing::Subscriber for Captured {
    fn enabled(&self, _: &tracing::Metadata<'_>) -> bool {
        true
    }
    fn new_span(&self, _: &tracing::span::Attributes<'_>) -> tracing::span::Id {
        tracing::span::Id::from_u64(1)
    }
    fn record(&self, _: &tracing::span::Id, _: &tracing::span::Record<'_>) {}
    fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}
    fn event(&self, event: &tracing::Event<'_>) {
        let mut fields = Fields(String::new());
        event.record(&mut fields);
        self.0
            .lock()
            .unwrap()
            .push((*event.metadata().level(), fields.0, SystemTime::now()));
    }
    fn enter(&self, _: &tracing::span::Id) {}
    fn exit(&self, _: &tracing::span::Id) {}
}

/// The file source task runs on this single-threaded runtime, so the thread's
/// subscriber sees its events.
#[tokio::test(flavor = "current_thread")]
async fn unchanged_short_lived_svid_warns_before_and_at_expiry() {
    let captured = Captured::default();
    let _guard = tracing::subscriber::set_default(captured.clone());
    let ca = new_ca();
    let now = SystemTime::now();
    let svid = mint_with(
        &ca,
        SvidParams {
            not_before: now - Duration::from_secs(1),
            not_after: now + Duration::from_secs(3),
            ..SvidParams::new(id(SERVER_ID))
        },
    );
    let helper = HelperDir::new("expiry", &svid, &ca.bundle_pem());
    let source = FileSource::builder(FileLayout::spiffe_helper(helper.dir.path()))
        .expiry_warning(0.5)
        .start()
        .unwrap();
    let identity = source.identity();
    tokio::time::timeout(BOUND, identity.ready()).await.unwrap();

    let status = identity.status();
    let (not_before, not_after) = (status.not_before().unwrap(), status.not_after().unwrap());
    let left = status.expires_in(SystemTime::now()).unwrap();
    assert!(
        left > Duration::ZERO && left <= Duration::from_secs(4),
        "{left:?}"
    );
    let warn_at = not_before + not_after.duration_since(not_before).unwrap() / 2;

    wait_until("the nearing expiry is warned about", || {
        captured
            .find(tracing::Level::WARN, "nears expiry")
            .is_some()
    })
    .await;
    let (warning, warned_at) = captured.find(tracing::Level::WARN, "nears expiry").unwrap();
    assert!(
        warned_at >= warn_at,
        "warned before half the lifetime had passed"
    );
    assert!(warning.contains("expires_in_secs="), "{warning}");
    assert!(warning.contains(SERVER_ID), "{warning}");
    assert!(
        captured
            .find(tracing::Level::ERROR, "has expired")
            .is_none(),
        "expiry reported early"
    );

    wait_until("the expiry is reported", || {
        captured
            .find(tracing::Level::ERROR, "has expired")
            .is_some()
    })
    .await;
    let (_, expired_at) = captured.find(tracing::Level::ERROR, "has expired").unwrap();
    assert!(expired_at >= not_after);
    assert_eq!(
        identity.status().expires_in(SystemTime::now()),
        Some(Duration::ZERO)
    );
    assert_eq!(
        identity.status().lifetime_elapsed(SystemTime::now()),
        Some(1.0)
    );
    let warnings = captured
        .0
        .lock()
        .unwrap()
        .iter()
        .filter(|(_, text, _)| text.contains("nears expiry"))
        .count();
    assert_eq!(warnings, 1, "warned once, not on every check");
}

// === bad input: each keeps the last good identity and names the file ===

/// Starts a spiffe-helper source on good files, applies `corrupt`, waits until the
/// error `kind` is reported for `file`, and checks that the old SVID still serves.
async fn assert_rejected_keeps_last_good(
    tag: &str,
    corrupt: impl FnOnce(&HelperDir, &DevCa),
    file: fn(&HelperDir) -> PathBuf,
    kind: impl Fn(&FileErrorKind) -> bool,
) -> FileError {
    let ca = new_ca();
    let first = mint(&ca, SERVER_ID);
    let helper = HelperDir::new(tag, &first, &ca.bundle_pem());
    let run = Running::start(FileLayout::spiffe_helper(helper.dir.path()), &ca).await;
    let mut changes = run.identity.changes();

    corrupt(&helper, &ca);
    let path = file(&helper);
    wait_until("the bad file is reported", || {
        has_kind(&run.source.last_error(), &path, &kind)
    })
    .await;

    let err = run.source.last_error().unwrap();
    let status = run.identity.status();
    assert!(status.is_ready(), "the last good identity keeps serving");
    assert_eq!(status.generation(), 1);
    assert_eq!(status.last_error(), Some(err.to_string().as_str()));
    assert!(
        err.to_string().contains(&path.display().to_string()),
        "{err}"
    );
    assert!(
        changes.changed().await,
        "subscribers are told about the rejection"
    );
    assert_eq!(run.served().await, first.leaf);
    err
}

#[tokio::test]
async fn empty_chain_file_is_rejected() {
    assert_rejected_keeps_last_good(
        "empty",
        |h, _| write_in_place(&h.chain(), ""),
        HelperDir::chain,
        |k| matches!(k, FileErrorKind::Svid(SvidError::NoCertificate)),
    )
    .await;
}

#[tokio::test]
async fn truncated_pem_is_rejected() {
    assert_rejected_keeps_last_good(
        "truncated",
        |h, ca| {
            let next = mint(ca, SERVER_ID);
            write_in_place(&h.chain(), &next.chain[..next.chain.len() - 40]);
        },
        HelperDir::chain,
        |k| matches!(k, FileErrorKind::Svid(SvidError::Pem(_))),
    )
    .await;
}

/// Deterministic bytes that are neither text nor PEM.
fn garbage(len: usize) -> Vec<u8> {
    let mut state: u32 = 0x9e37_79b9;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 17;
            state ^= state << 5;
            state.to_le_bytes()[0]
        })
        .collect()
}

#[tokio::test]
async fn garbage_bytes_are_rejected() {
    assert_rejected_keeps_last_good(
        "garbage",
        |h, _| std::fs::write(h.chain(), garbage(4096)).unwrap(),
        HelperDir::chain,
        |k| matches!(k, FileErrorKind::Svid(SvidError::NoCertificate)),
    )
    .await;
}

#[tokio::test]
async fn garbage_inside_pem_armor_is_rejected_as_malformed() {
    assert_rejected_keeps_last_good(
        "garbage-der",
        |h, _| {
            let b64 = base64::engine::general_purpose::STANDARD.encode(garbage(600));
            write_in_place(
                &h.chain(),
                &format!("-----BEGIN CERTIFICATE-----\n{b64}\n-----END CERTIFICATE-----\n"),
            );
        },
        HelperDir::chain,
        |k| {
            matches!(
                k,
                FileErrorKind::Svid(SvidError::Malformed { index: 0, .. })
            )
        },
    )
    .await;
}

#[tokio::test]
async fn unusable_private_key_is_rejected() {
    assert_rejected_keeps_last_good(
        "wrong-key",
        |h, _| {
            let b64 = base64::engine::general_purpose::STANDARD.encode(garbage(138));
            write_in_place(
                &h.key(),
                &format!("-----BEGIN PRIVATE KEY-----\n{b64}\n-----END PRIVATE KEY-----\n"),
            );
        },
        HelperDir::key,
        |k| matches!(k, FileErrorKind::Svid(SvidError::UnusableKey(_))),
    )
    .await;
}

#[tokio::test]
async fn key_of_another_certificate_is_rejected() {
    assert_rejected_keeps_last_good(
        "other-key",
        |h, ca| write_in_place(&h.key(), &mint(ca, SERVER_ID).key),
        HelperDir::key,
        |k| matches!(k, FileErrorKind::Svid(SvidError::KeyMismatch)),
    )
    .await;
}

#[tokio::test]
async fn ca_certificate_as_leaf_is_rejected() {
    assert_rejected_keeps_last_good(
        "ca-leaf",
        |h, _| {
            use zt_testkit::ca::{KeyUsagePurpose, LeafSpec, self_signed_leaf};
            let leaf = self_signed_leaf(&LeafSpec {
                is_ca: true,
                key_usages: vec![
                    KeyUsagePurpose::KeyCertSign,
                    KeyUsagePurpose::DigitalSignature,
                ],
                ..LeafSpec::valid(SERVER_ID)
            });
            write_in_place(&h.chain(), &leaf.chain_pem());
            write_in_place(&h.key(), &leaf.key_pem());
        },
        HelperDir::chain,
        |k| matches!(k, FileErrorKind::Svid(SvidError::LeafIsCa)),
    )
    .await;
}

#[tokio::test]
async fn expired_leaf_is_rejected() {
    assert_rejected_keeps_last_good(
        "expired",
        |h, ca| {
            let now = SystemTime::now();
            let expired = mint_with(
                ca,
                SvidParams {
                    not_before: now - Duration::from_secs(7200),
                    not_after: now - Duration::from_secs(3600),
                    ..SvidParams::new(id(SERVER_ID))
                },
            );
            write_in_place(&h.chain(), &expired.chain);
            write_in_place(&h.key(), &expired.key);
        },
        HelperDir::chain,
        |k| matches!(k, FileErrorKind::Svid(SvidError::Expired)),
    )
    .await;
}

#[tokio::test]
async fn file_over_size_limit_is_refused_unread() {
    const HUNDRED_MIB: u64 = 100 * 1024 * 1024;
    let err = assert_rejected_keeps_last_good(
        "too-large",
        |h, _| {
            // Sparse: the test writes no 100 MiB, and zt must not read them.
            let file = std::fs::File::create(h.chain()).unwrap();
            file.set_len(HUNDRED_MIB).unwrap();
        },
        HelperDir::chain,
        |k| matches!(k, FileErrorKind::TooLarge { .. }),
    )
    .await;
    let FileErrorKind::TooLarge { size, limit } = err.kind() else {
        unreachable!()
    };
    assert_eq!(*size, HUNDRED_MIB);
    assert_eq!(*limit, MAX_SVID_PEM_BYTES as u64);
}

#[tokio::test]
async fn directory_in_place_of_file_is_rejected() {
    assert_rejected_keeps_last_good(
        "directory",
        |h, _| {
            std::fs::remove_file(h.chain()).unwrap();
            std::fs::create_dir(h.chain()).unwrap();
        },
        HelperDir::chain,
        |k| matches!(k, FileErrorKind::IsDirectory),
    )
    .await;
}

#[tokio::test]
async fn missing_file_is_rejected() {
    assert_rejected_keeps_last_good(
        "missing",
        |h, _| std::fs::remove_file(h.key()).unwrap(),
        HelperDir::key,
        |k| matches!(k, FileErrorKind::NotFound),
    )
    .await;
}

#[tokio::test]
async fn empty_bundle_file_is_rejected_instead_of_distrusting_everyone() {
    assert_rejected_keeps_last_good(
        "empty-bundle",
        |h, _| write_in_place(&h.bundle(), ""),
        HelperDir::bundle,
        |k| matches!(k, FileErrorKind::Bundle(BundleError::NoCertificate)),
    )
    .await;
}

#[tokio::test]
async fn unreadable_file_is_rejected_as_permission_denied() {
    let how = Arc::new(Mutex::new(""));
    let how_set = Arc::clone(&how);
    assert_rejected_keeps_last_good(
        "unreadable",
        move |h, _| *how_set.lock().unwrap() = make_unreadable(&h.chain()),
        HelperDir::chain,
        |k| matches!(k, FileErrorKind::PermissionDenied),
    )
    .await;
    assert!(!how.lock().unwrap().is_empty());
}

#[tokio::test]
async fn federated_bundle_for_own_trust_domain_is_rejected() {
    let ca = new_ca();
    let first = mint(&ca, SERVER_ID);
    let helper = HelperDir::new("federates-own", &first, &ca.bundle_pem());
    let federated = helper.dir.join("own.pem");
    write_in_place(&federated, &ca.bundle_pem());
    let source = FileSource::builder(FileLayout::spiffe_helper(helper.dir.path()))
        .federated(td(TRUST_DOMAIN), &federated)
        .start()
        .unwrap();
    wait_until("the misconfiguration is reported", || {
        has_kind(
            &source.last_error(),
            &federated,
            |k| matches!(k, FileErrorKind::OwnTrustDomain(td) if td.as_str() == TRUST_DOMAIN),
        )
    })
    .await;
    assert!(!source.identity().status().is_ready());
}

// === before the first good candidate ===

#[tokio::test]
async fn bad_files_at_start_fail_closed_until_fixed() {
    let ca = new_ca();
    let good = mint(&ca, SERVER_ID);
    let other = mint(&ca, SERVER_ID);
    let helper = HelperDir::new(
        "bad-at-start",
        &Minted {
            key: other.key.clone(),
            ..good.clone()
        },
        &ca.bundle_pem(),
    );
    let source = FileSource::builder(FileLayout::spiffe_helper(helper.dir.path()))
        .start()
        .unwrap();
    let identity = source.identity();
    let server = EchoServer::start(identity.clone()).await;
    let client = Client::of(&ca);

    wait_until("the bad key is reported", || {
        identity.status().last_error().is_some()
    })
    .await;
    let status = identity.status();
    assert!(!status.is_ready());
    let reason = status.not_ready_reason().unwrap();
    assert!(
        reason.contains(&helper.key().display().to_string()),
        "{reason}"
    );
    assert!(reason.contains("does not match"), "{reason}");
    assert!(
        client.served_leaf(server.addr).await.is_err(),
        "no identity, no handshake"
    );

    write_in_place(&helper.key(), &good.key);
    tokio::time::timeout(BOUND, identity.ready())
        .await
        .expect("ready once the files are fixed");
    assert_eq!(client.served_leaf(server.addr).await.unwrap(), good.leaf);
    assert!(identity.status().last_error().is_none());
    assert!(source.last_error().is_none());
}

// === lifecycle and configuration ===

#[tokio::test]
async fn dropping_file_source_stops_watching() {
    let ca = new_ca();
    let first = mint(&ca, SERVER_ID);
    let helper = HelperDir::new("drop", &first, &ca.bundle_pem());
    let source = FileSource::builder(FileLayout::spiffe_helper(helper.dir.path()))
        .start()
        .unwrap();
    let identity = source.identity();
    tokio::time::timeout(BOUND, identity.ready()).await.unwrap();
    let mut changes = identity.changes();

    drop(source);
    let closed = tokio::time::timeout(BOUND, async { while changes.changed().await {} }).await;
    assert!(closed.is_ok(), "the watcher task still holds the publisher");
    helper.write_all(&mint(&ca, SERVER_ID), &ca.bundle_pem());
    assert_eq!(identity.generation(), 1, "nothing publishes any more");
    assert_eq!(identity.snapshot().unwrap().svid().leaf(), &first.leaf);
}

#[test]
fn start_outside_runtime_is_refused() {
    let err = FileSource::builder(FileLayout::spiffe_helper("/nonexistent"))
        .start()
        .unwrap_err();
    assert!(matches!(err, Error::NoRuntime), "{err}");
}

#[tokio::test]
async fn zero_poll_interval_is_refused() {
    let err = FileSource::builder(FileLayout::spiffe_helper("/nonexistent"))
        .poll_interval(Duration::ZERO)
        .start()
        .unwrap_err();
    assert!(matches!(err, Error::Config(_)), "{err}");
}

#[tokio::test]
async fn expiry_warning_outside_unit_interval_is_refused() {
    for fraction in [0.0, -0.5, 1.5, f64::NAN] {
        let err = FileSource::builder(FileLayout::spiffe_helper("/nonexistent"))
            .expiry_warning(fraction)
            .start()
            .unwrap_err();
        assert!(matches!(err, Error::Config(_)), "{fraction}: {err}");
    }
}

#[tokio::test]
async fn trust_domain_federated_twice_is_refused() {
    let err = FileSource::builder(FileLayout::spiffe_helper("/nonexistent"))
        .federated(td("partner.example"), "/a.json")
        .federated(td("partner.example"), "/b.json")
        .start()
        .unwrap_err();
    assert!(matches!(err, Error::Config(_)), "{err}");
}

#[test]
fn layouts_name_the_files_their_issuers_write() {
    let helper = FileLayout::spiffe_helper("/run/spiffe");
    assert_eq!(helper.chain_path(), Path::new("/run/spiffe/svid.pem"));
    assert_eq!(helper.key_path(), Path::new("/run/spiffe/svid_key.pem"));
    assert_eq!(
        helper.bundle_path(),
        Path::new("/run/spiffe/svid_bundle.pem")
    );
    let kube = FileLayout::kubernetes_tls("/var/run/secrets/svid");
    assert_eq!(
        kube.chain_path(),
        Path::new("/var/run/secrets/svid/tls.crt")
    );
    assert_eq!(kube.key_path(), Path::new("/var/run/secrets/svid/tls.key"));
    assert_eq!(
        kube.bundle_path(),
        Path::new("/var/run/secrets/svid/ca.crt")
    );
    let combined = FileLayout::combined("/pod/credential.pem", "/pod/ca.pem");
    assert!(combined.is_combined());
    assert_eq!(combined.key_path(), combined.chain_path());
}
