//! Keeping [`JwtBundles`] in step with JWT bundle files, and a [`JwtSvidFile`] with
//! its token file (feature `files`), with the
//! watcher [`FileSource`](crate::FileSource) and [`PolicyStore`](crate::PolicyStore)
//! use: directory watches that see Kubernetes `..data` swaps and rename-over writes,
//! debounced, with a safety-net re-read.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use arc_swap::ArcSwapOption;
use tokio::task::JoinHandle;

use super::bundle::{JwtBundle, JwtBundleSet, JwtBundles};
use super::svid::{JwtSvid, JwtSvidSource};
use super::validate::{JwtError, MAX_JWT_BYTES};
use crate::bundle::MAX_BUNDLE_BYTES;
use crate::error::{BundleError, Error, FileError};
use crate::id::TrustDomain;
use crate::watch::{self, FileWatcher, WatchOptions};

/// A running watch of JWT bundle files; dropping it stops the watch. The bundles
/// keep the last set published.
pub struct JwtBundleWatch {
    files: Vec<(TrustDomain, PathBuf)>,
    task: JoinHandle<()>,
}

// === impl JwtBundleWatch ===

impl JwtBundleWatch {
    /// The watched files, made absolute, with their trust domains.
    pub fn files(&self) -> &[(TrustDomain, PathBuf)] {
        &self.files
    }
}

impl Drop for JwtBundleWatch {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl fmt::Debug for JwtBundleWatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JwtBundleWatch")
            .field("files", &self.files)
            .finish_non_exhaustive()
    }
}

/// Why a JWT bundle file was not loaded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum JwtBundleFileError {
    /// The file could not be read.
    #[error(transparent)]
    File(#[from] FileError),
    /// The file is not a SPIFFE bundle with usable JWT authorities.
    #[error("{path}: {source}")]
    Bundle {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        source: BundleError,
    },
}

impl JwtBundles {
    /// Loads the JWT bundle of each trust domain from its file (a SPIFFE bundle
    /// document) and publishes them as one set.
    ///
    /// # Errors
    ///
    /// The first file that cannot be read or is not a bundle; nothing is published
    /// then.
    pub fn load_files(&self, files: &[(TrustDomain, PathBuf)]) -> Result<(), JwtBundleFileError> {
        let mut set = JwtBundleSet::new();
        for (trust_domain, path) in files {
            set.insert(read(trust_domain, path)?);
        }
        self.publish(set);
        Ok(())
    }

    /// Re-reads each file whenever its directory changes, and publishes the set
    /// again when a bundle changed, until the returned [`JwtBundleWatch`] is dropped.
    ///
    /// A file that does not load (half-written, invalid, too large, gone) is
    /// logged, and the last good bundle of its trust domain stays in force: a bad
    /// file never replaces a good bundle, and never holds back the others.
    ///
    /// # Errors
    ///
    /// [`Error::NoRuntime`] outside a tokio runtime (with time enabled);
    /// [`Error::Io`] when the file watcher cannot be started.
    pub fn watch_files(&self, files: &[(TrustDomain, PathBuf)]) -> Result<JwtBundleWatch, Error> {
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| Error::NoRuntime)?;
        let files = files
            .iter()
            .map(|(td, path)| Ok((td.clone(), watch::absolute(path)?)))
            .collect::<Result<Vec<_>, Error>>()?;
        let paths: Vec<PathBuf> = files.iter().map(|(_, path)| path.clone()).collect();
        // Armed before the first read, so no change between the two goes unseen.
        let watcher = FileWatcher::new(&paths, WatchOptions::default())?;
        let task = runtime.spawn(run(self.clone(), files.clone(), watcher));
        Ok(JwtBundleWatch { files, task })
    }
}

fn read(trust_domain: &TrustDomain, path: &Path) -> Result<JwtBundle, JwtBundleFileError> {
    let data = watch::read_bounded(path, MAX_BUNDLE_BYTES)?;
    JwtBundle::from_spiffe_json(trust_domain.clone(), &data).map_err(|source| {
        JwtBundleFileError::Bundle {
            path: path.to_owned(),
            source,
        }
    })
}

async fn run(bundles: JwtBundles, files: Vec<(TrustDomain, PathBuf)>, mut watcher: FileWatcher) {
    // What each file held when it last loaded.
    let mut loaded: Vec<Option<Vec<u8>>> = vec![None; files.len()];
    loop {
        let (files_, previous) = (files.clone(), std::mem::take(&mut loaded));
        let current = bundles.load();
        // File reads block; they run on the blocking pool.
        match tokio::task::spawn_blocking(move || reread(&files_, previous, current)).await {
            Ok((contents, Some(set))) => {
                loaded = contents;
                bundles.publish(set);
            }
            Ok((contents, None)) => loaded = contents,
            Err(err) => {
                tracing::warn!(error = %err, "JWT bundle reload failed");
                loaded = vec![None; files.len()];
            }
        }
        watcher.changed().await;
    }
}

/// Reads every file; returns what each now holds and, when a bundle changed, the
/// set to publish: the new bundles, and the previous bundle of each domain whose
/// file did not load.
fn reread(
    files: &[(TrustDomain, PathBuf)],
    previous: Vec<Option<Vec<u8>>>,
    current: JwtBundleSet,
) -> (Vec<Option<Vec<u8>>>, Option<JwtBundleSet>) {
    let mut set = current;
    let mut changed = false;
    let mut contents = Vec::with_capacity(files.len());
    for ((trust_domain, path), before) in files.iter().zip(previous) {
        let data = match watch::read_bounded(path, MAX_BUNDLE_BYTES) {
            Ok(data) => data,
            Err(err) => {
                tracing::warn!(trust_domain = %trust_domain, error = %err, "JWT bundle file unreadable; the bundle in force stays");
                contents.push(before);
                continue;
            }
        };
        if before.as_deref() == Some(&data[..]) {
            contents.push(before);
            continue;
        }
        match JwtBundle::from_spiffe_json(trust_domain.clone(), &data) {
            Ok(bundle) => {
                tracing::info!(trust_domain = %trust_domain, keys = bundle.len(), "JWT bundle loaded");
                set.insert(bundle);
                changed = true;
                contents.push(Some(data));
            }
            Err(err) => {
                tracing::warn!(file = %path.display(), error = %err, "JWT bundle file rejected; the bundle in force stays");
                contents.push(before);
            }
        }
    }
    (contents, changed.then_some(set))
}

/// A JWT-SVID read from a file and re-read when it changes, as the SPIFFE helper
/// writes it (`jwt_svid_file_name`). A file that does not hold a token — empty,
/// half-written, expired — is logged and the last good token stays; dropping
/// the value stops the watch.
pub struct JwtSvidFile {
    path: PathBuf,
    current: Arc<ArcSwapOption<JwtSvid>>,
    task: JoinHandle<()>,
}

// === impl JwtSvidFile ===

impl JwtSvidFile {
    /// Reads the token in `path` and watches the file.
    ///
    /// # Errors
    ///
    /// [`Error::NoRuntime`] outside a tokio runtime (with time enabled);
    /// [`Error::Io`] when the file watcher cannot be started. A file that does not
    /// hold a token yet is not an error: [`current`](JwtSvidSource::current) is
    /// `None` until it does.
    pub fn watch(path: impl AsRef<Path>) -> Result<Self, Error> {
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| Error::NoRuntime)?;
        let path = watch::absolute(path.as_ref())?;
        let watcher = FileWatcher::new(std::slice::from_ref(&path), WatchOptions::default())?;
        let current = Arc::new(ArcSwapOption::empty());
        // The first read happens here, so a token that is there is served at once.
        reread_token(&path, &current);
        let task = runtime.spawn(run_token(path.clone(), Arc::clone(&current), watcher));
        Ok(Self {
            path,
            current,
            task,
        })
    }

    /// The watched file, made absolute.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl JwtSvidSource for JwtSvidFile {
    fn current(&self) -> Option<JwtSvid> {
        self.current
            .load_full()
            .filter(|svid| !svid.is_expired(SystemTime::now()))
            .map(|svid| (*svid).clone())
    }
}

impl Drop for JwtSvidFile {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl fmt::Debug for JwtSvidFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JwtSvidFile")
            .field("path", &self.path)
            .field("current", &self.current.load_full())
            .finish_non_exhaustive()
    }
}

async fn run_token(path: PathBuf, current: Arc<ArcSwapOption<JwtSvid>>, mut watcher: FileWatcher) {
    loop {
        watcher.changed().await;
        let (path_, current_) = (path.clone(), Arc::clone(&current));
        // File reads block; they run on the blocking pool.
        if let Err(err) = tokio::task::spawn_blocking(move || reread_token(&path_, &current_)).await
        {
            tracing::warn!(error = %err, "JWT-SVID reload failed");
        }
    }
}

fn reread_token(path: &Path, current: &ArcSwapOption<JwtSvid>) {
    let token = match watch::read_bounded(path, MAX_JWT_BYTES) {
        Ok(bytes) => bytes,
        Err(err) => {
            tracing::warn!(error = %err, "JWT-SVID file unreadable; the token in force stays");
            return;
        }
    };
    let parsed = std::str::from_utf8(&token)
        .map_err(|_| JwtError::Malformed("token is not UTF-8"))
        .and_then(JwtSvid::parse);
    match parsed {
        Ok(svid) if svid.is_expired(SystemTime::now()) => {
            tracing::warn!(file = %path.display(), "JWT-SVID file holds an expired token; the token in force stays");
        }
        Ok(svid) => {
            if current.load().as_deref() != Some(&svid) {
                tracing::info!(file = %path.display(), id = %svid.id(), "JWT-SVID loaded");
                current.store(Some(Arc::new(svid)));
            }
        }
        Err(err) => {
            tracing::warn!(file = %path.display(), error = %err, "JWT-SVID file rejected; the token in force stays");
        }
    }
}
