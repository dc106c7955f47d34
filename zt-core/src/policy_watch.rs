//! Keeping a [`PolicyStore`] in step with a policy file (feature `files`).
//!
//! [`PolicyStore::watch_file`] watches the file's directory with the same watcher
//! as [`FileSource`](crate::FileSource) (so Kubernetes `..data` swaps and
//! rename-over writes are seen, bursts are debounced, and a safety-net re-read runs
//! every 30 seconds) and reloads the file when its content changed. A file that does
//! not load — half-written, invalid, too large — is reported and the policy in force
//! stays; the next change tries again.
//!
//! ```
//! # #[cfg(feature = "files")] {
//! use zt_core::{Policy, PolicyStore};
//!
//! # let dir = std::env::temp_dir().join(format!("zt-doc-policy-watch-{}", std::process::id()));
//! # std::fs::create_dir_all(&dir)?;
//! let path = dir.join("policy.json");
//! std::fs::write(&path, r#"{"rules": [{"name": "web", "action": "allow", "from": {"ids": ["spiffe://example.org/web"]}}]}"#)?;
//!
//! # let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
//! # runtime.block_on(async {
//! let store = PolicyStore::new(Policy::load(&path)?);
//! let mut changes = store.changes();
//! let _watch = store.watch_file(&path)?; // stops when dropped
//!
//! std::fs::write(&path, r#"{"rules": []}"#)?;
//! # tokio::time::timeout(std::time::Duration::from_secs(10), async {
//! while store.load().rule_count() != 0 {
//!     changes.changed().await;
//! }
//! # }).await?;
//! assert_eq!(store.load().rule_count(), 0);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! # })?;
//! # std::fs::remove_dir_all(&dir)?;
//! # }
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::fmt;
use std::path::{Path, PathBuf};

use tokio::task::JoinHandle;

use crate::error::Error;
use crate::policy::MAX_POLICY_BYTES;
use crate::policy::store::{Extension, PolicyStore};
use crate::policy::{Policy, PolicyError};
use crate::watch::{self, FileWatcher, WatchOptions};

/// A running watch of a policy file; dropping it stops the watch. The store keeps
/// the last policy loaded.
pub struct PolicyWatch {
    path: PathBuf,
    task: JoinHandle<()>,
}

// === impl PolicyWatch ===

impl PolicyWatch {
    /// The watched file, made absolute.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for PolicyWatch {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl fmt::Debug for PolicyWatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PolicyWatch")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl PolicyStore {
    /// Reloads the policy from the file at `path` (see
    /// [`reload_from`](Self::reload_from)) whenever its content changes, until the
    /// returned [`PolicyWatch`] is dropped.
    ///
    /// The file is read once as soon as the watch runs, so a change made between
    /// loading the store and starting the watch is not missed. Rejected files are
    /// logged and recorded in [`status`](Self::status); the policy in force stays.
    ///
    /// # Errors
    ///
    /// [`Error::NoRuntime`] outside a tokio runtime (with time enabled);
    /// [`Error::Io`] when the file watcher cannot be started.
    pub fn watch_file(&self, path: impl AsRef<Path>) -> Result<PolicyWatch, Error> {
        self.watch(path.as_ref(), None)
    }

    /// As [`watch_file`](Self::watch_file), with the rules `extension` makes
    /// added to every policy the file loads (see [`Policy::extend`]): rules the
    /// application always wants, whatever the file says. A file whose policy
    /// cannot be extended (a rule name the extension uses too) is rejected
    /// like an invalid one; the policy in force stays.
    ///
    /// Store the first policy extended the same way, so that the rules are in
    /// force from the start.
    ///
    /// # Errors
    ///
    /// As [`watch_file`](Self::watch_file).
    pub fn watch_file_extended<F>(
        &self,
        path: impl AsRef<Path>,
        extension: F,
    ) -> Result<PolicyWatch, Error>
    where
        F: Fn() -> Result<Policy, PolicyError> + Send + Sync + 'static,
    {
        self.watch(path.as_ref(), Some(std::sync::Arc::new(extension)))
    }

    fn watch(&self, path: &Path, extension: Option<Extension>) -> Result<PolicyWatch, Error> {
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| Error::NoRuntime)?;
        let path = watch::absolute(path)?;
        // Armed before the first read, so no change between the two goes unseen.
        let watcher = FileWatcher::new(std::slice::from_ref(&path), WatchOptions::default())?;
        let task = runtime.spawn(run(self.clone(), path.clone(), watcher, extension));
        Ok(PolicyWatch { path, task })
    }
}

async fn run(
    store: PolicyStore,
    path: PathBuf,
    mut watcher: FileWatcher,
    extension: Option<Extension>,
) {
    let mut loaded: Option<Vec<u8>> = None;
    loop {
        let (store_, path_, previous) = (store.clone(), path.clone(), loaded.take());
        let extension_ = extension.clone();
        // File reads block; they run on the blocking pool.
        let outcome = tokio::task::spawn_blocking(move || {
            reload_if_changed(&store_, &path_, previous, extension_.as_ref())
        })
        .await;
        match outcome {
            Ok(current) => loaded = current,
            Err(err) => {
                tracing::warn!(file = %path.display(), error = %err, "policy reload failed")
            }
        }
        watcher.changed().await;
    }
}

/// Reloads the store from `path` unless the file still holds `previous`. Returns
/// the content now in force, or `None` when it is unknown (the file was rejected),
/// so that the next tick tries again.
fn reload_if_changed(
    store: &PolicyStore,
    path: &Path,
    previous: Option<Vec<u8>>,
    extension: Option<&Extension>,
) -> Option<Vec<u8>> {
    let current = match watch::read_bounded(path, MAX_POLICY_BYTES) {
        Ok(current) => current,
        Err(err) => {
            // Loading records the error in the store's status, with the same words;
            // it reads through the same non-blocking reader, so it cannot hang on
            // what this read refused.
            if let Err(load) = store.reload_extended(path, extension) {
                tracing::warn!(file = %path.display(), error = %load, "policy file unreadable; the policy in force stays");
            } else {
                tracing::debug!(error = %err, "policy file unreadable at first, then loaded");
            }
            return None;
        }
    };
    if previous.as_deref() == Some(current.as_slice()) {
        return previous;
    }
    // Parsed from the bytes just compared, never read again: a file replaced in
    // between would be stored while the bytes recorded as in force are the older
    // ones, and once the file went back to those, the change would go unseen.
    match store.reload_from_bytes(path, &current, extension) {
        Ok(()) => {
            tracing::info!(file = %path.display(), "policy file reloaded");
            Some(current)
        }
        Err(_) => None,
    }
}
