#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]
#![cfg(unix)]
//! Faults injected while credentials and policies reload: permissions revoked
//! mid-run, directories deleted and recreated, files renamed over in a tight loop
//! while they are read, and a full disk that leaves a writer's file half-written.
//! Each must keep the last good identity or policy serving, report a specific
//! error, and pick up the next good state.

mod common;

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use common::{
    BOUND, Client, EchoServer, HelperDir, KubeDir, Minted, SERVER_ID, TRUST_DOMAIN, TempDir,
    make_unreadable, mint, new_ca, td, wait_until, wait_until_served, write_in_place,
    write_renamed_over,
};
use zt_core::dev::DevCa;
use zt_core::rustls::pki_types::CertificateDer;
use zt_core::{
    BundleError, FileErrorKind, FileLayout, FileSource, Identity, IdentitySource, Policy,
    PolicyStore, Request, SpiffeId, SvidError,
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
        let source = FileSource::builder(layout).start().unwrap();
        let identity = source.identity();
        tokio::time::timeout(BOUND, identity.ready())
            .await
            .unwrap_or_else(|_| panic!("not ready: {:?}", identity.status()));
        let server = EchoServer::start(identity.clone()).await;
        Self {
            source,
            identity,
            server,
            client: Client::of(ca),
        }
    }

    async fn served(&self) -> CertificateDer<'static> {
        self.client.served_leaf(self.server.addr).await.unwrap()
    }

    fn error_kind(&self, path: &Path, kind: impl Fn(&FileErrorKind) -> bool) -> bool {
        self.source
            .last_error()
            .is_some_and(|e| e.path() == path && kind(e.kind()))
    }
}

// === permissions ===

#[tokio::test]
async fn key_made_unreadable_mid_run_keeps_last_good_and_recovers_once_readable() {
    let ca = new_ca();
    let first = mint(&ca, SERVER_ID);
    let helper = HelperDir::new("faults-unreadable", &first, &ca.bundle_pem());
    let run = Running::start(FileLayout::spiffe_helper(helper.dir.path()), &ca).await;

    // As root, mode 000 does not deny reads; `make_unreadable` then points the file
    // at a write-only sysfs attribute, so the kernel refuses the open with EACCES.
    let how = make_unreadable(&helper.key());
    wait_until("the unreadable key is reported", || {
        run.error_kind(&helper.key(), |k| {
            matches!(k, FileErrorKind::PermissionDenied)
        })
    })
    .await;
    let status = run.identity.status();
    assert!(status.is_ready(), "{how}: the last good identity serves");
    assert_eq!(status.generation(), 1);
    assert!(
        status.last_error().unwrap().contains("permission denied"),
        "{status:?}"
    );
    assert_eq!(run.served().await, first.leaf);

    // Access comes back with a rotated SVID: it is picked up.
    let second = mint(&ca, SERVER_ID);
    std::fs::remove_file(helper.key()).unwrap();
    write_in_place(&helper.chain(), &second.chain);
    write_in_place(&helper.key(), &second.key);
    wait_until_served(&run.client, run.server.addr, &second.leaf).await;
    wait_until("the error is cleared", || run.source.last_error().is_none()).await;
}

// === directories ===

#[tokio::test]
async fn directory_deleted_and_recreated_with_a_half_written_chain_keeps_last_good() {
    let ca = new_ca();
    let parent = TempDir::new("faults-recreated");
    let dir = parent.join("certs");
    std::fs::create_dir(&dir).unwrap();
    let helper_files = |svid: &Minted, chain: &str| {
        write_in_place(&dir.join("svid.pem"), chain);
        write_in_place(&dir.join("svid_key.pem"), &svid.key);
        write_in_place(&dir.join("svid_bundle.pem"), &ca.bundle_pem());
    };
    let first = mint(&ca, SERVER_ID);
    helper_files(&first, &first.chain);
    let run = Running::start(FileLayout::spiffe_helper(&dir), &ca).await;
    let chain = dir.join("svid.pem");

    for round in 0..3 {
        std::fs::remove_dir_all(&dir).unwrap();
        wait_until("the missing directory is reported", || {
            run.error_kind(&chain, |k| matches!(k, FileErrorKind::NotFound))
        })
        .await;
        assert_eq!(run.served().await, first.leaf, "round {round}");

        // The directory comes back with the writer still half-way through the chain.
        std::fs::create_dir(&dir).unwrap();
        let next = mint(&ca, SERVER_ID);
        helper_files(&next, &next.chain[..next.chain.len() / 2]);
        wait_until("the half-written chain is reported", || {
            run.error_kind(&chain, |k| {
                matches!(k, FileErrorKind::Svid(SvidError::Pem(_)))
            })
        })
        .await;
        assert_eq!(run.served().await, first.leaf, "round {round}");
        assert_eq!(run.identity.generation(), 1);
    }

    std::fs::remove_dir_all(&dir).unwrap();
    std::fs::create_dir(&dir).unwrap();
    let last = mint(&ca, SERVER_ID);
    helper_files(&last, &last.chain);
    wait_until_served(&run.client, run.server.addr, &last.leaf).await;
    assert_eq!(run.identity.generation(), 2);
}

// === renames during reads ===

/// What a rename loop did and what the reader made of it.
#[derive(Debug)]
struct LoopReport {
    rotations: u64,
    publications: u64,
    handshakes: u64,
}

/// Runs `rotate` in a thread of its own, as fast as it goes, for `duration`,
/// while a checker verifies every snapshot the source publishes and a client
/// handshakes in a loop. Every handshake must succeed and present one of the
/// minted SVIDs; every snapshot must hold a key that matches its leaf and a chain
/// that verifies against its bundle. When the loop stops, the last SVID written
/// must be served.
async fn assert_consistent_under_rename_loop(
    run: &Running,
    svids: Vec<Minted>,
    duration: Duration,
    mut rotate: impl FnMut(&Minted) + Send + 'static,
) -> LoopReport {
    let stop = Arc::new(AtomicBool::new(false));
    let rotations = Arc::new(AtomicU64::new(0));
    let leaves: Vec<_> = svids.iter().map(|s| s.leaf.clone()).collect();
    let writer = {
        let (stop, rotations) = (Arc::clone(&stop), Arc::clone(&rotations));
        std::thread::spawn(move || {
            let mut last = None;
            for svid in svids.iter().cycle() {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                rotate(svid);
                rotations.fetch_add(1, Ordering::Relaxed);
                last = Some(svid.leaf.clone());
            }
            last.unwrap()
        })
    };

    let checker = {
        let (identity, stop) = (run.identity.clone(), Arc::clone(&stop));
        let provider = identity.crypto_provider().clone();
        tokio::spawn(async move {
            let mut checked = 0;
            while !stop.load(Ordering::Relaxed) {
                let snapshot = identity.snapshot().expect("a snapshot keeps serving");
                if snapshot.generation() != checked {
                    checked = snapshot.generation();
                    snapshot
                        .certified_key()
                        .keys_match()
                        .expect("a published key matches its leaf");
                    snapshot
                        .svid()
                        .verify(snapshot.bundles(), &provider, SystemTime::now())
                        .expect("a published SVID verifies against its bundle");
                }
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        })
    };

    let mut handshakes = 0_u64;
    let first = run.served().await;
    let deadline = tokio::time::Instant::now() + duration;
    while tokio::time::Instant::now() < deadline {
        let leaf = run
            .client
            .served_leaf(run.server.addr)
            .await
            .unwrap_or_else(|err| panic!("handshake {handshakes} failed during renames: {err}"));
        assert!(
            leaf == first || leaves.contains(&leaf),
            "the server presented an SVID that was never written"
        );
        handshakes += 1;
    }
    stop.store(true, Ordering::Relaxed);
    let last = tokio::task::spawn_blocking(move || writer.join().unwrap())
        .await
        .unwrap();
    checker.await.unwrap();
    wait_until_served(&run.client, run.server.addr, &last).await;
    LoopReport {
        rotations: rotations.load(Ordering::Relaxed),
        publications: run.identity.generation(),
        handshakes,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn files_renamed_over_in_a_loop_only_ever_publish_consistent_snapshots() {
    let ca = new_ca();
    let first = mint(&ca, SERVER_ID);
    let helper = HelperDir::new("faults-rename-loop", &first, &ca.bundle_pem());
    let run = Running::start(FileLayout::spiffe_helper(helper.dir.path()), &ca).await;
    let svids: Vec<_> = (0..4).map(|_| mint(&ca, SERVER_ID)).collect();
    let (chain, key) = (helper.chain(), helper.key());

    // An atomic writer replaces one file at a time: between the two renames the
    // directory holds the new chain with the old key.
    let report =
        assert_consistent_under_rename_loop(&run, svids, Duration::from_secs(3), move |svid| {
            write_renamed_over(&chain, &svid.chain);
            write_renamed_over(&key, &svid.key);
        })
        .await;
    eprintln!("renames over files: {report:?}");
    assert!(report.rotations > 10, "{report:?}");
    assert!(report.handshakes > 10, "{report:?}");
    assert!(report.publications > 1, "{report:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubernetes_data_swaps_in_a_loop_only_ever_publish_consistent_snapshots() {
    let ca = new_ca();
    let first = mint(&ca, SERVER_ID);
    let kube = KubeDir::new("faults-swap-loop", &first, &ca.bundle_pem());
    let layout = FileLayout::kubernetes_tls(kube.path());
    // Shared with the writer thread so that the directory outlives it.
    let kube = Arc::new(Mutex::new(kube));
    let run = Running::start(layout, &ca).await;
    let svids: Vec<_> = (0..4).map(|_| mint(&ca, SERVER_ID)).collect();
    let bundle_pem = ca.bundle_pem();

    // Each swap deletes the previous data directory: a read that resolved `..data`
    // just before finds its files gone.
    let writer_kube = Arc::clone(&kube);
    let report =
        assert_consistent_under_rename_loop(&run, svids, Duration::from_secs(3), move |svid| {
            writer_kube.lock().unwrap().swap(svid, &bundle_pem);
        })
        .await;
    eprintln!("..data swaps: {report:?}");
    assert!(report.rotations > 10, "{report:?}");
    assert!(report.handshakes > 10, "{report:?}");
    assert!(report.publications > 1, "{report:?}");
}

// === full disk ===

/// A tmpfs of `size` mounted for one test, unmounted when dropped.
struct SmallTmpfs {
    path: PathBuf,
}

impl SmallTmpfs {
    /// Mounts a tmpfs of `size` (such as `64k`) on `path`, or says why it cannot.
    fn mount(path: &Path, size: &str) -> Result<Self, String> {
        std::fs::create_dir_all(path).unwrap();
        let output = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(path)
            .output()
            .map_err(|err| format!("cannot run mount: {err}"))?;
        if !output.status.success() {
            return Err(String::from_utf8_lossy(&output.stderr).trim().to_owned());
        }
        Ok(Self {
            path: path.to_owned(),
        })
    }
}

impl Drop for SmallTmpfs {
    fn drop(&mut self) {
        let unmounted = std::process::Command::new("umount")
            .arg(&self.path)
            .status()
            .is_ok_and(|s| s.success());
        if !unmounted {
            // Busy (a watch not yet dropped): detach it now, the kernel frees it later.
            let _ = std::process::Command::new("umount")
                .arg("-l")
                .arg(&self.path)
                .status();
        }
    }
}

/// Where a full-disk test writes: a 64 KiB tmpfs when this process may mount one,
/// otherwise a plain directory where the failed write's outcome is simulated.
struct Disk {
    dir: PathBuf,
    tmpfs: Option<SmallTmpfs>,
    // Dropped after the mount.
    _parent: TempDir,
}

impl Disk {
    fn new(tag: &str) -> Self {
        let parent = TempDir::new(tag);
        let dir = parent.join("disk");
        let tmpfs = match SmallTmpfs::mount(&dir, "64k") {
            Ok(tmpfs) => Some(tmpfs),
            Err(why) => {
                eprintln!("no tmpfs ({why}); simulating the half-written file instead");
                None
            }
        };
        Self {
            dir,
            tmpfs,
            _parent: parent,
        }
    }

    fn join(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// Takes every free block of the tmpfs.
    fn fill(&self) {
        if self.tmpfs.is_none() {
            return;
        }
        let mut filler = std::fs::File::create(self.join("filler")).unwrap();
        let block = [0_u8; 4096];
        loop {
            match filler.write(&block) {
                Ok(0) => break,
                Ok(_) => {}
                Err(err) if err.kind() == std::io::ErrorKind::StorageFull => break,
                Err(err) => panic!("filling the tmpfs: {err}"),
            }
        }
    }

    fn free(&self) {
        let _ = std::fs::remove_file(self.join("filler"));
    }

    /// Rewrites `path` in place with `contents` on the full disk: the write fails
    /// with "no space left" part-way, leaving the beginning of `contents`. Returns
    /// how many bytes the file holds.
    fn write_in_place_while_full(&self, path: &Path, contents: &str) -> usize {
        assert!(
            contents.len() > 4096,
            "the write must need more than a block"
        );
        if self.tmpfs.is_some() {
            let err = std::fs::write(path, contents).expect_err("the disk is full");
            assert_eq!(err.kind(), std::io::ErrorKind::StorageFull, "{err}");
        } else {
            // What the failed write leaves: the first block.
            std::fs::write(path, &contents.as_bytes()[..4096]).unwrap();
        }
        let len = usize::try_from(std::fs::metadata(path).unwrap().len()).unwrap();
        assert!(len < contents.len(), "the file was written in full");
        len
    }
}

#[tokio::test]
async fn full_disk_half_written_bundle_keeps_last_good_until_space_is_freed() {
    let ca = new_ca();
    let disk = Disk::new("faults-full-disk");
    let (chain, key, bundle) = (
        disk.join("svid.pem"),
        disk.join("svid_key.pem"),
        disk.join("svid_bundle.pem"),
    );
    let first = mint(&ca, SERVER_ID);
    write_in_place(&chain, &first.chain);
    write_in_place(&key, &first.key);
    write_in_place(&bundle, &ca.bundle_pem());
    let run = Running::start(FileLayout::spiffe_helper(&disk.dir), &ca).await;

    // A CA rotation announces more authorities: the new bundle is larger than the
    // space left.
    let others: Vec<_> = (0..11).map(|_| new_ca()).collect();
    let grown: String = std::iter::once(&ca)
        .chain(&others)
        .map(DevCa::bundle_pem)
        .collect();
    disk.fill();
    let written = disk.write_in_place_while_full(&bundle, &grown);
    wait_until("the half-written bundle is reported", || {
        run.error_kind(&bundle, |k| {
            matches!(k, FileErrorKind::Bundle(BundleError::Pem(_)))
        })
    })
    .await;
    eprintln!(
        "full disk ({}): bundle holds {written} of {} bytes; {}",
        if disk.tmpfs.is_some() {
            "64 KiB tmpfs"
        } else {
            "simulated"
        },
        grown.len(),
        run.source.last_error().unwrap()
    );
    let status = run.identity.status();
    assert!(status.is_ready());
    assert_eq!(status.generation(), 1);
    assert_eq!(run.served().await, first.leaf);
    let trusted = |identity: &Identity| {
        identity
            .snapshot()
            .unwrap()
            .bundles()
            .get(&td(TRUST_DOMAIN))
            .unwrap()
            .len()
    };
    assert_eq!(trusted(&run.identity), 1, "the old bundle still serves");

    disk.free();
    write_in_place(&bundle, &grown);
    wait_until("the grown bundle is published", || {
        run.identity.generation() == 2
    })
    .await;
    assert_eq!(trusted(&run.identity), 12);
    assert!(run.source.last_error().is_none());
    assert_eq!(run.served().await, first.leaf);
}

// === the policy file ===

const ALICE: &str = "spiffe://example.org/alice";
const BOB: &str = "spiffe://example.org/bob";

/// A policy that allows `who` to `GET /data`, padded with `padding` rules for other
/// peers so that reading and parsing it takes a while.
fn policy_allowing(who: &str, padding: usize) -> String {
    let mut rules = vec![format!(
        r#"{{"name": "data-reader", "action": "allow", "from": {{"ids": ["{who}"]}}, "to": {{"methods": ["GET"], "paths": ["/data"]}}}}"#
    )];
    rules.extend((0..padding).map(|i| {
        format!(
            r#"{{"name": "pad-{i}", "action": "allow", "from": {{"ids": ["spiffe://example.org/pad/{i}"]}}, "to": {{"paths": ["/pad/{i}"]}}}}"#
        )
    }));
    format!("{{\"rules\": [\n{}\n]}}\n", rules.join(",\n"))
}

/// Which of alice and bob the policy in force lets read `/data`. Both are asked
/// of one policy: a reload between two loads would mix two policies' answers.
fn reader(store: &PolicyStore) -> Option<&'static str> {
    let policy = store.load();
    let allowed = |who: &str| {
        let id: SpiffeId = who.parse().unwrap();
        policy
            .decide(&id, &Request::new("GET", "/data"))
            .is_allowed()
    };
    match (allowed(ALICE), allowed(BOB)) {
        (true, false) => Some(ALICE),
        (false, true) => Some(BOB),
        (false, false) => None,
        (true, true) => panic!("no policy of this test allows both"),
    }
}

fn watched_store(path: &Path) -> (PolicyStore, zt_core::PolicyWatch) {
    let store = PolicyStore::new(Policy::load(path).unwrap());
    let watch = store.watch_file(path).unwrap();
    (store, watch)
}

async fn wait_for_policy_error(store: &PolicyStore, needle: &str) {
    wait_until(&format!("the policy error mentions {needle:?}"), || {
        store
            .status()
            .last_error()
            .is_some_and(|err| err.contains(needle))
    })
    .await;
}

#[tokio::test]
async fn policy_made_unreadable_mid_run_keeps_policy_and_recovers_once_readable() {
    let dir = TempDir::new("faults-policy-unreadable");
    let path = dir.join("policy.json");
    write_in_place(&path, &policy_allowing(ALICE, 0));
    let (store, _watch) = watched_store(&path);

    let how = make_unreadable(&path);
    wait_for_policy_error(&store, "permission denied").await;
    let status = store.status();
    assert!(
        status
            .last_error()
            .unwrap()
            .contains(&path.display().to_string()),
        "{how}: {status:?}"
    );
    assert_eq!(status.generation(), 1);
    assert_eq!(reader(&store), Some(ALICE), "the policy in force stays");

    std::fs::remove_file(&path).unwrap();
    write_in_place(&path, &policy_allowing(BOB, 0));
    wait_until("the readable policy is loaded", || {
        reader(&store) == Some(BOB)
    })
    .await;
    assert!(store.status().last_error().is_none());
}

#[tokio::test]
async fn policy_directory_deleted_and_recreated_keeps_policy_then_loads_the_new_file() {
    let parent = TempDir::new("faults-policy-dir");
    let dir = parent.join("config");
    std::fs::create_dir(&dir).unwrap();
    let path = dir.join("policy.json");
    write_in_place(&path, &policy_allowing(ALICE, 0));
    let (store, _watch) = watched_store(&path);

    std::fs::remove_dir_all(&dir).unwrap();
    wait_for_policy_error(&store, "file not found").await;
    assert_eq!(reader(&store), Some(ALICE));

    std::fs::create_dir(&dir).unwrap();
    // Half a document first, as an in-place writer leaves it for a moment.
    let next = policy_allowing(BOB, 0);
    write_in_place(&path, &next[..next.len() / 2]);
    wait_for_policy_error(&store, "invalid JSON policy").await;
    assert_eq!(reader(&store), Some(ALICE));
    assert_eq!(store.status().generation(), 1);

    write_in_place(&path, &next);
    wait_until("the recreated policy is loaded", || {
        reader(&store) == Some(BOB)
    })
    .await;
    assert_eq!(store.status().generation(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn policy_renamed_over_in_a_loop_ends_serving_the_final_file() {
    let dir = TempDir::new("faults-policy-rename-loop");
    let path = dir.join("policy.json");
    // Large documents keep each reload busy reading while the file is renamed over.
    let (alice, bob) = (dir.join("alice.json"), dir.join("bob.json"));
    write_in_place(&alice, &policy_allowing(ALICE, 20000));
    write_in_place(&bob, &policy_allowing(BOB, 20000));
    std::fs::copy(&alice, &path).unwrap();
    let (store, _watch) = watched_store(&path);
    let staged = dir.join("policy.json.next");

    let renames = Arc::new(AtomicU64::new(0));
    for burst in 0..12 {
        // Renames as fast as they go for a while, longer than the debounce cap, so
        // reloads run during the burst; it ends on whichever file it renamed last.
        let stop = Arc::new(AtomicBool::new(false));
        let writer = {
            let (stop, renames) = (Arc::clone(&stop), Arc::clone(&renames));
            let (alice, bob, path, staged) =
                (alice.clone(), bob.clone(), path.clone(), staged.clone());
            std::thread::spawn(move || {
                for n in 0_usize.. {
                    let to_alice = (n + burst) % 2 == 0;
                    std::fs::hard_link(if to_alice { &alice } else { &bob }, &staged).unwrap();
                    std::fs::rename(&staged, &path).unwrap();
                    // Renaming a link over another link to the same file does nothing.
                    let _ = std::fs::remove_file(&staged);
                    renames.fetch_add(1, Ordering::Relaxed);
                    if stop.load(Ordering::Relaxed) {
                        return if to_alice { ALICE } else { BOB };
                    }
                }
                unreachable!()
            })
        };
        tokio::time::sleep(Duration::from_millis(700)).await;
        stop.store(true, Ordering::Relaxed);
        let last = tokio::task::spawn_blocking(move || writer.join().unwrap())
            .await
            .unwrap();
        let deadline = tokio::time::Instant::now() + BOUND;
        while reader(&store) != Some(last) {
            assert!(
                tokio::time::Instant::now() < deadline,
                "burst {burst}: the file allows {last} but the policy in force \
                 allows {:?}, {BOUND:?} after the last rename ({:?})",
                reader(&store),
                store.status()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
    eprintln!(
        "policy renames: {}, reloads: {}",
        renames.load(Ordering::Relaxed),
        store.status().generation() - 1
    );
}

#[tokio::test]
async fn full_disk_half_written_policy_keeps_policy_until_space_is_freed() {
    let disk = Disk::new("faults-policy-full-disk");
    let path = disk.join("policy.json");
    write_in_place(&path, &policy_allowing(ALICE, 0));
    let (store, _watch) = watched_store(&path);

    let next = policy_allowing(BOB, 100);
    disk.fill();
    let written = disk.write_in_place_while_full(&path, &next);
    wait_for_policy_error(&store, "invalid JSON policy").await;
    eprintln!(
        "full disk: policy holds {written} of {} bytes; {}",
        next.len(),
        store.status().last_error().unwrap()
    );
    assert_eq!(reader(&store), Some(ALICE), "the policy in force stays");
    assert_eq!(store.status().generation(), 1);

    disk.free();
    write_in_place(&path, &next);
    wait_until("the complete policy is loaded", || {
        reader(&store) == Some(BOB)
    })
    .await;
    assert!(store.status().last_error().is_none());
}

#[cfg(unix)]
fn mkfifo(path: &std::path::Path) {
    let status = std::process::Command::new("mkfifo")
        .arg(path)
        .status()
        .unwrap();
    assert!(status.success(), "mkfifo {}", path.display());
}

#[cfg(unix)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifo_at_the_policy_path_is_refused_and_the_watch_keeps_working() {
    let dir = TempDir::new("faults-policy-fifo");
    let path = dir.join("policy.json");
    write_in_place(&path, &policy_allowing(ALICE, 0));
    let (store, _watch) = watched_store(&path);

    // A FIFO appears where the policy was: no writer will ever open it.
    std::fs::remove_file(&path).unwrap();
    mkfifo(&path);
    wait_for_policy_error(&store, "not a regular file").await;
    assert_eq!(reader(&store), Some(ALICE), "the policy in force stays");

    // The watch did not hang on it: the next policy is applied.
    std::fs::remove_file(&path).unwrap();
    write_in_place(&path, &policy_allowing(BOB, 0));
    wait_until("the policy after the FIFO is loaded", || {
        reader(&store) == Some(BOB)
    })
    .await;
}

#[cfg(unix)]
#[test]
fn loading_a_policy_from_a_fifo_fails_at_once() {
    let dir = TempDir::new("faults-policy-load-fifo");
    let path = dir.join("policy.json");
    mkfifo(&path);
    let (done, result) = std::sync::mpsc::channel();
    let load = path.clone();
    std::thread::spawn(move || {
        let _ = done.send(zt_core::Policy::load(&load).map(|_| ()));
    });
    let result = result
        .recv_timeout(std::time::Duration::from_secs(10))
        .expect("Policy::load blocked on a FIFO");
    let err = result.unwrap_err();
    assert!(err.to_string().contains("not a regular file"), "{err}");
}

/// The `probes` rule the extended watches add: anonymous peers may `GET /healthz`.
fn probes_rule() -> Result<Policy, zt_core::PolicyError> {
    Policy::parse(
        r#"{"rules": [{"name": "probes", "action": "allow",
            "from": {"unauthenticated": true}, "to": {"methods": ["GET"], "paths": ["/healthz"]}}]}"#,
        zt_core::Format::Json,
    )
}

fn probes_open(store: &PolicyStore) -> bool {
    store
        .load()
        .decide_anonymous(&Request::new("GET", "/healthz"))
        .is_allowed()
}

#[tokio::test]
async fn extended_policy_watch_keeps_the_added_rules_across_reloads() {
    let dir = TempDir::new("faults-policy-extended");
    let path = dir.join("policy.json");
    write_in_place(&path, &policy_allowing(ALICE, 0));
    let store = PolicyStore::new(
        Policy::load(&path)
            .unwrap()
            .extend(probes_rule().unwrap())
            .unwrap(),
    );
    let _watch = store.watch_file_extended(&path, probes_rule).unwrap();
    assert!(probes_open(&store));

    write_in_place(&path, &policy_allowing(BOB, 0));
    wait_until("the new file is loaded", || reader(&store) == Some(BOB)).await;
    assert!(probes_open(&store), "the added rule survives the reload");
    assert_eq!(store.load().rule_count(), 2);
}

#[tokio::test]
async fn extended_policy_watch_rejects_a_file_that_reuses_an_added_rule_name() {
    let dir = TempDir::new("faults-policy-extended-clash");
    let path = dir.join("policy.json");
    write_in_place(&path, &policy_allowing(ALICE, 0));
    let store = PolicyStore::new(
        Policy::load(&path)
            .unwrap()
            .extend(probes_rule().unwrap())
            .unwrap(),
    );
    let _watch = store.watch_file_extended(&path, probes_rule).unwrap();

    // A file whose own `probes` rule would replace the added one is refused.
    write_in_place(
        &path,
        r#"{"rules": [{"name": "probes", "action": "allow", "from": {"unauthenticated": true}}]}"#,
    );
    wait_for_policy_error(&store, "rule \"probes\" is in both policies").await;
    assert_eq!(reader(&store), Some(ALICE), "the policy in force stays");
    assert!(probes_open(&store));
    assert!(
        !store
            .load()
            .decide_anonymous(&Request::new("GET", "/data"))
            .is_allowed()
    );
}
