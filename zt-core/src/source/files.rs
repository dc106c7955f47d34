//! An identity read from PEM files and reloaded when they change.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use rustls::crypto::CryptoProvider;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::bundle::{BundleSet, MAX_BUNDLE_BYTES, X509Bundle};
use crate::error::{Error, FileError, FileErrorKind, SvidError};
use crate::id::TrustDomain;
use crate::identity::{Identity, IdentityPublisher, IdentitySource};
use crate::svid::{MAX_SVID_PEM_BYTES, X509Svid};
use crate::svid::{certs_from_pem, key_from_pem};
use crate::watch::{self, FileWatcher, WatchOptions, read_bounded};

/// Where a [`FileSource`] finds our SVID, its key and our trust domain's bundle.
///
/// Bundle files may hold PEM certificates or a SPIFFE bundle document (JSON).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileLayout {
    chain: PathBuf,
    key: PathBuf,
    bundle: PathBuf,
    combined: bool,
}

// === impl FileLayout ===

impl FileLayout {
    /// The files spiffe-helper writes into `dir`: `svid.pem` (chain), `svid_key.pem`
    /// and `svid_bundle.pem`.
    pub fn spiffe_helper(dir: impl AsRef<Path>) -> Self {
        let dir = dir.as_ref();
        Self::explicit(
            dir.join("svid.pem"),
            dir.join("svid_key.pem"),
            dir.join("svid_bundle.pem"),
        )
    }

    /// A Kubernetes TLS Secret volume or a cert-manager csi-driver-spiffe volume
    /// mounted at `dir`: `tls.crt` (chain), `tls.key` and `ca.crt` (bundle).
    ///
    /// Mount the volume as a directory, not with `subPath`: `subPath` mounts never
    /// see an update (the expiry warning says so before it is too late).
    pub fn kubernetes_tls(dir: impl AsRef<Path>) -> Self {
        let dir = dir.as_ref();
        Self::explicit(dir.join("tls.crt"), dir.join("tls.key"), dir.join("ca.crt"))
    }

    /// One file holding the private key and the chain in any order (as Kubernetes
    /// Pod Certificates write `credentialBundlePath`), and a bundle file.
    pub fn combined(credential: impl Into<PathBuf>, bundle: impl Into<PathBuf>) -> Self {
        let credential = credential.into();
        Self {
            key: credential.clone(),
            chain: credential,
            bundle: bundle.into(),
            combined: true,
        }
    }

    /// Explicit paths of the chain (leaf first), the private key and the bundle.
    pub fn explicit(
        chain: impl Into<PathBuf>,
        key: impl Into<PathBuf>,
        bundle: impl Into<PathBuf>,
    ) -> Self {
        Self {
            chain: chain.into(),
            key: key.into(),
            bundle: bundle.into(),
            combined: false,
        }
    }

    /// The file holding the chain (the combined file for [`FileLayout::combined`]).
    pub fn chain_path(&self) -> &Path {
        &self.chain
    }

    /// The file holding the private key (the combined file for
    /// [`FileLayout::combined`]).
    pub fn key_path(&self) -> &Path {
        &self.key
    }

    /// The file holding our trust domain's bundle.
    pub fn bundle_path(&self) -> &Path {
        &self.bundle
    }

    /// `true` for [`FileLayout::combined`].
    pub fn is_combined(&self) -> bool {
        self.combined
    }

    fn absolute(&self) -> Result<Self, Error> {
        Ok(Self {
            chain: watch::absolute(&self.chain)?,
            key: watch::absolute(&self.key)?,
            bundle: watch::absolute(&self.bundle)?,
            combined: self.combined,
        })
    }

    fn paths(&self) -> Vec<PathBuf> {
        let mut paths = vec![self.chain.clone()];
        if !self.combined {
            paths.push(self.key.clone());
        }
        paths.push(self.bundle.clone());
        paths
    }
}

/// Configures and starts a [`FileSource`].
#[derive(Clone, Debug)]
#[must_use = "a builder does nothing until `start` is called"]
pub struct FileSourceBuilder {
    layout: FileLayout,
    federated: Vec<(TrustDomain, PathBuf)>,
    debounce: Duration,
    poll_interval: Duration,
    expiry_warning: f64,
    provider: Option<Arc<CryptoProvider>>,
}

// === impl FileSourceBuilder ===

impl FileSourceBuilder {
    /// The default quiet period after a change before the files are read: 50 ms.
    pub const DEFAULT_DEBOUNCE: Duration = watch::DEFAULT_DEBOUNCE;

    /// The default safety-net interval at which the files are re-read even without a
    /// change notification: 30 s.
    pub const DEFAULT_POLL_INTERVAL: Duration = watch::DEFAULT_POLL_INTERVAL;

    /// The default fraction of the SVID's lifetime after which an unchanged SVID is
    /// reported as nearing expiry: 0.8.
    pub const DEFAULT_EXPIRY_WARNING: f64 = 0.8;

    fn new(layout: FileLayout) -> Self {
        Self {
            layout,
            federated: Vec::new(),
            debounce: Self::DEFAULT_DEBOUNCE,
            poll_interval: Self::DEFAULT_POLL_INTERVAL,
            expiry_warning: Self::DEFAULT_EXPIRY_WARNING,
            provider: None,
        }
    }

    /// Also trusts SVIDs of `trust_domain`, vouched for by the bundle in `path` (PEM or
    /// a SPIFFE bundle document). A document with `"keys": []` distrusts every SVID of
    /// that domain; an empty or unreadable file is rejected like any bad file.
    pub fn federated(mut self, trust_domain: TrustDomain, path: impl Into<PathBuf>) -> Self {
        self.federated.push((trust_domain, path.into()));
        self
    }

    /// How long the files must be quiet after a change before they are read
    /// ([`DEFAULT_DEBOUNCE`](Self::DEFAULT_DEBOUNCE)). A longer period rides out
    /// slower writers with fewer rejected half-written candidates; a steady stream of
    /// changes still gets the files read after ten periods.
    pub fn debounce(mut self, quiet: Duration) -> Self {
        self.debounce = quiet;
        self
    }

    /// How often the files are re-read without a change notification
    /// ([`DEFAULT_POLL_INTERVAL`](Self::DEFAULT_POLL_INTERVAL)); inotify misses changes
    /// on some volumes. Must be greater than zero.
    pub fn poll_interval(mut self, interval: Duration) -> Self {
        self.poll_interval = interval;
        self
    }

    /// After which fraction of its lifetime an SVID whose files have not changed is
    /// reported with a warning ([`DEFAULT_EXPIRY_WARNING`](Self::DEFAULT_EXPIRY_WARNING));
    /// its expiry is reported again as an error. Must be greater than 0 and at most 1.
    pub fn expiry_warning(mut self, fraction_of_lifetime: f64) -> Self {
        self.expiry_warning = fraction_of_lifetime;
        self
    }

    /// Validates keys and chains with `provider` instead of
    /// [`default_provider`](crate::default_provider).
    pub fn crypto_provider(mut self, provider: Arc<CryptoProvider>) -> Self {
        self.provider = Some(provider);
        self
    }

    /// Starts watching and returns at once. The files are read in the background:
    /// the identity is not ready until they hold a valid candidate
    /// ([`Identity::ready`] waits for it), and until then every handshake fails
    /// closed.
    ///
    /// Must be called within a tokio runtime with time enabled; the watcher runs as a
    /// task on it, and reads files on its blocking pool.
    ///
    /// # Errors
    ///
    /// [`Error::NoRuntime`] outside a runtime; [`Error::Config`] for a zero poll
    /// interval, an expiry warning fraction outside `(0, 1]` or a trust domain
    /// federated twice; [`Error::NoCryptoProvider`]; [`Error::Io`] when the file
    /// watcher cannot be started (on Linux, typically the inotify instance limit).
    /// Missing or bad files are not errors here: they are reported in the identity's
    /// [`Status`](crate::Status) and retried.
    pub fn start(self) -> Result<FileSource, Error> {
        if self.poll_interval.is_zero() {
            return Err(Error::Config(
                "the file poll interval must be greater than zero".to_owned(),
            ));
        }
        if !(self.expiry_warning > 0.0 && self.expiry_warning <= 1.0) {
            return Err(Error::Config(format!(
                "the expiry warning fraction must be greater than 0 and at most 1, not {}",
                self.expiry_warning
            )));
        }
        let mut federated = Vec::with_capacity(self.federated.len());
        for (td, path) in &self.federated {
            if federated.iter().any(|(seen, _)| seen == td) {
                return Err(Error::Config(format!(
                    "trust domain {td} is federated from more than one file"
                )));
            }
            federated.push((td.clone(), watch::absolute(path)?));
        }
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| Error::NoRuntime)?;
        let provider = match self.provider {
            Some(provider) => provider,
            None => crate::default_provider()?,
        };
        let files = Files {
            layout: self.layout.absolute()?,
            federated,
        };
        let mut paths = files.layout.paths();
        paths.extend(files.federated.iter().map(|(_, path)| path.clone()));
        // Armed before the first read, so no change between the two goes unseen.
        let watcher = FileWatcher::new(
            &paths,
            WatchOptions {
                debounce: self.debounce,
                poll_interval: self.poll_interval,
            },
        )?;
        let inner = Arc::new(Inner {
            publisher: IdentityPublisher::with_provider(provider)
                .for_source(crate::metrics::UpdateSource::Files),
            files,
            last_error: Mutex::new(None),
            stopped: AtomicBool::new(false),
        });
        let task = runtime.spawn(run(Arc::clone(&inner), watcher, self.expiry_warning));
        Ok(FileSource { inner, task })
    }
}

/// An identity read from PEM files and reloaded whenever they change, with nothing
/// dropped: no restart, open connections untouched, new handshakes presenting the new
/// SVID from the moment it is published.
///
/// It watches the files' directories (so Kubernetes `..data` symlink swaps and
/// rename-over are seen), waits for a short quiet period, reads every file with a
/// size limit, and publishes the SVID and bundles only if they are valid **as a
/// whole**: the key matches the leaf, the SVID follows the X509-SVID rules, verifies
/// against our own bundle and is valid now. A candidate that fails (a half-written
/// file, a key that belongs to the previous certificate, a missing file) is logged
/// with the file at fault, recorded in the identity's [`Status`](crate::Status) and
/// [`FileSource::last_error`], and the last good identity keeps serving; the next
/// change, or the safety-net re-read, tries again.
///
/// When the files do not change while the SVID ages (a `subPath` mount, a stopped
/// issuer), a warning is logged once the configured fraction of its lifetime has
/// passed, and an error when it expires; [`Status::expires_in`](crate::Status::expires_in)
/// tells how long is left.
///
/// Dropping the `FileSource` stops the watcher. [`Identity`] handles keep the last
/// snapshot.
///
/// ```
/// # #[cfg(feature = "dev")] {
/// # use std::time::Duration;
/// use zt_core::{FileLayout, FileSource, IdentitySource, dev::{DevCa, SvidParams}};
///
/// # let dir = std::env::temp_dir().join(format!("zt-doc-files-{}", std::process::id()));
/// # std::fs::create_dir_all(&dir)?;
/// let ca = DevCa::new("example.org".parse()?)?;
/// let (chain, key) = ca.mint_pem(SvidParams::new("spiffe://example.org/api".parse()?))?;
/// std::fs::write(dir.join("svid.pem"), chain)?;
/// std::fs::write(dir.join("svid_key.pem"), key)?;
/// std::fs::write(dir.join("svid_bundle.pem"), ca.bundle_pem())?;
///
/// # let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
/// # runtime.block_on(async {
/// let source = FileSource::builder(FileLayout::spiffe_helper(&dir)).start()?;
/// let identity = source.identity();
/// # let ready = tokio::time::timeout(Duration::from_secs(10), identity.ready()).await?;
/// # assert_eq!(ready.id().path(), "/api");
/// assert!(identity.status().is_ready());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// # })?;
/// # std::fs::remove_dir_all(&dir)?;
/// # }
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct FileSource {
    inner: Arc<Inner>,
    task: JoinHandle<()>,
}

// === impl FileSource ===

impl FileSource {
    /// A builder for a source reading `layout`.
    pub fn builder(layout: FileLayout) -> FileSourceBuilder {
        FileSourceBuilder::new(layout)
    }

    /// The files read, made absolute.
    pub fn layout(&self) -> &FileLayout {
        &self.inner.files.layout
    }

    /// Why the last candidate was rejected, with the file at fault; cleared when a
    /// good candidate is read. [`Status::last_error`](crate::Status::last_error) holds
    /// the same as text.
    pub fn last_error(&self) -> Option<FileError> {
        self.inner
            .last_error
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

impl IdentitySource for FileSource {
    fn identity(&self) -> Identity {
        self.inner.publisher.identity()
    }
}

impl Drop for FileSource {
    fn drop(&mut self) {
        // A read already running on the blocking pool finishes, but publishes nothing.
        self.inner.stopped.store(true, Ordering::Release);
        self.task.abort();
    }
}

impl fmt::Debug for FileSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FileSource")
            .field("layout", &self.inner.files.layout)
            .field("federated", &self.inner.files.federated)
            .field("identity", &self.inner.publisher)
            .finish_non_exhaustive()
    }
}

/// What the watcher task and the blocking reads share.
struct Inner {
    publisher: IdentityPublisher,
    files: Files,
    last_error: Mutex<Option<FileError>>,
    stopped: AtomicBool,
}

impl Inner {
    /// Reads, validates and publishes one candidate, or reports why not. Blocking.
    fn reload(&self) {
        let candidate = self.files.load();
        if self.stopped.load(Ordering::Acquire) {
            return;
        }
        let outcome = candidate.and_then(|(svid, bundles)| {
            // Cleared before publishing, so whoever a publication wakes sees no stale error.
            self.set_last_error(None);
            self.publisher
                .publish_unreported(svid, bundles)
                .map_err(|err| self.files.attribute(err))
        });
        match outcome {
            Ok(snapshot) => {
                tracing::debug!(
                    id = %snapshot.id(),
                    generation = snapshot.generation(),
                    "identity files read"
                );
            }
            Err(err) => {
                self.publisher.log_rejection(Some(err.path()), err.kind());
                let message = err.to_string();
                self.set_last_error(Some(err));
                self.publisher.record_rejection(message);
            }
        }
    }

    fn set_last_error(&self, err: Option<FileError>) {
        *self
            .last_error
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = err;
    }
}

/// The files of one source, with absolute paths.
struct Files {
    layout: FileLayout,
    federated: Vec<(TrustDomain, PathBuf)>,
}

impl Files {
    /// Reads every file, then parses them into a candidate. Reading all before
    /// parsing any keeps the window for a torn read (old key, new chain) short; the
    /// publisher's key check catches the rest.
    fn load(&self) -> Result<(X509Svid, BundleSet), FileError> {
        let layout = &self.layout;
        let chain_pem = read_bounded(&layout.chain, MAX_SVID_PEM_BYTES)?;
        let key_pem = if layout.combined {
            None
        } else {
            Some(read_bounded(&layout.key, MAX_SVID_PEM_BYTES)?)
        };
        let bundle_data = read_bounded(&layout.bundle, MAX_BUNDLE_BYTES)?;
        let federated_data = self
            .federated
            .iter()
            .map(|(td, path)| Ok((td, path, read_bounded(path, MAX_BUNDLE_BYTES)?)))
            .collect::<Result<Vec<_>, FileError>>()?;

        let svid_error = |path: &Path| {
            let path = path.to_owned();
            move |err| FileError::new(path, FileErrorKind::Svid(err))
        };
        let svid = match &key_pem {
            None => X509Svid::from_combined_pem(&chain_pem).map_err(svid_error(&layout.chain))?,
            Some(key_pem) => {
                let chain = certs_from_pem(&chain_pem).map_err(svid_error(&layout.chain))?;
                let key = key_from_pem(key_pem).map_err(svid_error(&layout.key))?;
                X509Svid::from_der(chain, key).map_err(svid_error(&layout.chain))?
            }
        };

        let own = svid.id().trust_domain();
        let mut bundles = BundleSet::new();
        for (td, path, data) in federated_data {
            if td == own {
                return Err(FileError::new(
                    path,
                    FileErrorKind::OwnTrustDomain(own.clone()),
                ));
            }
            let bundle = X509Bundle::from_pem_or_json(td.clone(), &data)
                .map_err(|err| FileError::new(path, FileErrorKind::Bundle(err)))?;
            bundles.insert(bundle);
        }
        let bundle = X509Bundle::from_pem_or_json(own.clone(), &bundle_data)
            .map_err(|err| FileError::new(&layout.bundle, FileErrorKind::Bundle(err)))?;
        bundles.insert(bundle);
        Ok((svid, bundles))
    }

    /// Names the file to blame for a candidate the publisher rejected: the key file
    /// when the key does not fit the certificate, the chain file otherwise (it is
    /// the chain that does not verify, expired, or is not valid yet).
    fn attribute(&self, err: Error) -> FileError {
        let layout = &self.layout;
        match err {
            Error::File(err) => err,
            Error::Svid(err @ (SvidError::KeyMismatch | SvidError::UnusableKey(_))) => {
                FileError::new(&layout.key, FileErrorKind::Svid(err))
            }
            Error::Svid(err) => FileError::new(&layout.chain, FileErrorKind::Svid(err)),
            Error::Bundle(err) => FileError::new(&layout.bundle, FileErrorKind::Bundle(err)),
            Error::NoOwnBundle(td) => {
                FileError::new(&layout.bundle, FileErrorKind::Svid(SvidError::NoBundle(td)))
            }
            other => FileError::new(
                &layout.chain,
                FileErrorKind::Io(Arc::new(std::io::Error::other(other.to_string()))),
            ),
        }
    }
}

/// The watcher task: reads the files at start and on every tick, and warns while an
/// unchanged SVID ages.
async fn run(inner: Arc<Inner>, mut watcher: FileWatcher, expiry_warning: f64) {
    let identity = inner.publisher.identity();
    let mut expiry = ExpiryWatch::new(expiry_warning);
    let mut read_now = true;
    loop {
        if read_now {
            let reader = Arc::clone(&inner);
            if let Err(err) = tokio::task::spawn_blocking(move || reader.reload()).await {
                if err.is_cancelled() {
                    return; // the runtime is shutting down
                }
                tracing::error!(error = %err, "reading identity files failed unexpectedly");
            }
        }
        read_now = match expiry.check(&identity) {
            Some(deadline) => match tokio::time::timeout_at(deadline, watcher.changed()).await {
                Ok(trigger) => {
                    tracing::trace!(?trigger, "identity files may have changed");
                    true
                }
                Err(_) => false,
            },
            None => {
                let trigger = watcher.changed().await;
                tracing::trace!(?trigger, "identity files may have changed");
                true
            }
        };
    }
}

/// Reports, once per published snapshot, that its SVID nears expiry and that it
/// expired.
struct ExpiryWatch {
    fraction: f64,
    generation: u64,
    warned: bool,
    expired: bool,
}

impl ExpiryWatch {
    fn new(fraction: f64) -> Self {
        Self {
            fraction,
            generation: 0,
            warned: false,
            expired: false,
        }
    }

    /// Logs what is due and returns when to look again, `None` when nothing more
    /// is due for the serving snapshot.
    fn check(&mut self, identity: &Identity) -> Option<Instant> {
        let snapshot = identity.snapshot()?;
        if snapshot.generation() != self.generation {
            self.generation = snapshot.generation();
            self.warned = false;
            self.expired = false;
        }
        let svid = snapshot.svid();
        let (not_before, not_after) = (svid.not_before(), svid.not_after());
        let lifetime = not_after.duration_since(not_before).unwrap_or_default();
        let warn_after =
            Duration::try_from_secs_f64(lifetime.as_secs_f64() * self.fraction).unwrap_or(lifetime);
        let warn_at = not_before.checked_add(warn_after).unwrap_or(not_after);

        let now = SystemTime::now();
        if !self.expired && now >= not_after {
            self.expired = true;
            self.warned = true;
            tracing::error!(
                id = %svid.id(),
                generation = snapshot.generation(),
                "the SVID has expired and its files still hold it: peers refuse it; \
                 check the issuer and that the files are not mounted with subPath"
            );
        } else if !self.warned && now >= warn_at {
            self.warned = true;
            tracing::warn!(
                id = %svid.id(),
                generation = snapshot.generation(),
                expires_in_secs = svid.remaining(now).as_secs(),
                lifetime_elapsed_percent = (identity
                    .status()
                    .lifetime_elapsed(now)
                    .unwrap_or(1.0)
                    * 100.0)
                    .round(),
                "the SVID nears expiry and its files have not changed; \
                 check the issuer and that the files are not mounted with subPath"
            );
        }
        let next = if !self.warned {
            warn_at
        } else if !self.expired {
            not_after
        } else {
            return None;
        };
        let wait = next.duration_since(now).unwrap_or_default();
        // A wall-clock step makes this early or late; `check` runs again either way.
        Instant::now().checked_add(wait)
    }
}
