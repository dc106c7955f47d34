//! The live policy: a [`Policy`] swapped atomically, with change notifications.

use std::fmt;
use std::ops::Deref;
use std::path::Path;
use std::sync::Arc;

use arc_swap::{ArcSwap, Guard};
use tokio::sync::watch;

use super::{Decision, Mode, Policy, PolicyError, Request};
use crate::id::SpiffeId;
use crate::peer::PeerIdentity;

/// The policy in force, shared between the code that decides requests and the
/// code that replaces the policy (a file watcher, an admin endpoint).
///
/// Cloning is cheap and every clone sees the same policy. Reading is one
/// atomic load; replacing is an atomic swap, so a request is decided either
/// entirely under the old policy or entirely under the new one. A policy that
/// fails to load never replaces the current one.
///
/// Storing a dry-run policy logs a warning: it lets every request through.
#[derive(Clone)]
pub struct PolicyStore {
    shared: Arc<Shared>,
}

struct Shared {
    current: ArcSwap<Policy>,
    status: watch::Sender<PolicyStatus>,
}

// === impl PolicyStore ===

impl PolicyStore {
    /// A store serving `policy`; its generation is 1.
    #[must_use]
    pub fn new(policy: Policy) -> Self {
        announce(&policy, 1);
        crate::metrics::policy_stored(1, policy.rule_count(), false);
        let status = PolicyStatus::serving(&policy, 1);
        let (status, _) = watch::channel(status);
        Self {
            shared: Arc::new(Shared {
                current: ArcSwap::from_pointee(policy),
                status,
            }),
        }
    }

    /// The policy in force, for one or a few decisions.
    ///
    /// The guard is cheap (no reference-count traffic in the common case) but
    /// meant to be short-lived; use [`load_full`](Self::load_full) to keep the
    /// policy around.
    #[must_use]
    pub fn load(&self) -> PolicyGuard {
        PolicyGuard {
            guard: self.shared.current.load(),
        }
    }

    /// The policy in force, as an owned reference.
    #[must_use]
    pub fn load_full(&self) -> Arc<Policy> {
        self.shared.current.load_full()
    }

    /// Decides `request` from `peer` under the policy in force.
    #[must_use]
    pub fn decide(&self, peer: &SpiffeId, request: &Request<'_>) -> Decision {
        self.shared.current.load().decide(peer, request)
    }

    /// Decides `request` from an anonymous peer under the policy in force; see
    /// [`Policy::decide_anonymous`].
    #[must_use]
    pub fn decide_anonymous(&self, request: &Request<'_>) -> Decision {
        self.shared.current.load().decide_anonymous(request)
    }

    /// Decides `request` from a connection's verified `peer` under the policy
    /// in force: [`Policy::decide_peer`], which finds the rules that can match
    /// the peer once per connection and policy. A policy stored since the
    /// peer's last request decides its next one, with a selection of its own.
    #[must_use]
    pub fn decide_peer(&self, peer: &PeerIdentity, request: &Request<'_>) -> Decision {
        self.shared.current.load().decide_peer(peer, request)
    }

    /// Makes `policy` the policy in force and notifies subscribers.
    pub fn store(&self, policy: Policy) {
        let policy = Arc::new(policy);
        // Swapping under the status lock keeps concurrent stores from handing
        // out the same generation or publishing a status for the policy
        // that lost the race.
        self.shared.status.send_modify(|status| {
            let generation = status.generation.saturating_add(1);
            announce(&policy, generation);
            self.shared.current.store(Arc::clone(&policy));
            crate::metrics::policy_stored(generation, policy.rule_count(), true);
            *status = PolicyStatus::serving(&policy, generation);
        });
    }

    /// Loads the policy file at `path` (see [`Policy::load`]) and, if the whole
    /// file is valid, makes it the policy in force.
    ///
    /// # Errors
    ///
    /// Why the file was rejected. The current policy stays in force; the error
    /// is logged as a warning with the file name, recorded in
    /// [`PolicyStatus::last_error`] and subscribers are notified.
    pub fn reload_from(&self, path: impl AsRef<Path>) -> Result<(), PolicyError> {
        let path = path.as_ref();
        self.store_loaded(path, Policy::load(path))
    }

    /// As [`reload_from`](Self::reload_from), with the file's content already
    /// read into `bytes` and the policy extended with `extension`'s rules.
    #[cfg(feature = "files")]
    pub(crate) fn reload_from_bytes(
        &self,
        path: &Path,
        bytes: &[u8],
        extension: Option<&Extension>,
    ) -> Result<(), PolicyError> {
        let loaded = Policy::from_file_bytes(path, bytes);
        self.store_loaded(path, extend(loaded, extension))
    }

    /// As [`reload_from`](Self::reload_from), the policy extended with
    /// `extension`'s rules.
    #[cfg(feature = "files")]
    pub(crate) fn reload_extended(
        &self,
        path: &Path,
        extension: Option<&Extension>,
    ) -> Result<(), PolicyError> {
        self.store_loaded(path, extend(Policy::load(path), extension))
    }

    fn store_loaded(
        &self,
        path: &Path,
        loaded: Result<Policy, PolicyError>,
    ) -> Result<(), PolicyError> {
        match loaded {
            Ok(policy) => {
                self.store(policy);
                Ok(())
            }
            Err(err) => {
                tracing::warn!(
                    file = %path.display(),
                    error = %err,
                    "policy rejected; keeping the current policy"
                );
                crate::metrics::policy_rejected();
                let message = err.to_string();
                self.shared.status.send_modify(|status| {
                    status.last_error = Some(message);
                });
                Err(err)
            }
        }
    }

    /// A subscription to changes: stored policies and rejected reloads.
    #[must_use]
    pub fn changes(&self) -> PolicyChanges {
        PolicyChanges {
            rx: self.shared.status.subscribe(),
        }
    }

    /// The generation of the policy in force and the last reload error.
    #[must_use]
    pub fn status(&self) -> PolicyStatus {
        self.shared.status.borrow().clone()
    }

    /// Whether `self` and `other` are handles on the same store.
    #[must_use]
    pub fn ptr_eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.shared, &other.shared)
    }
}

impl fmt::Debug for PolicyStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PolicyStore")
            .field("status", &*self.shared.status.borrow())
            .finish_non_exhaustive()
    }
}

/// Rules added to every policy a watched file loads (see
/// [`PolicyStore::watch_file_extended`]).
#[cfg(feature = "files")]
pub(crate) type Extension = Arc<dyn Fn() -> Result<Policy, PolicyError> + Send + Sync>;

/// `loaded`, extended with `extension`'s rules: a policy whose extension fails
/// is rejected like a file that does not load.
#[cfg(feature = "files")]
fn extend(
    loaded: Result<Policy, PolicyError>,
    extension: Option<&Extension>,
) -> Result<Policy, PolicyError> {
    match extension {
        Some(extension) => loaded?.extend(extension()?),
        None => loaded,
    }
}

/// Logs a policy about to take effect; loudly when it is not enforced.
fn announce(policy: &Policy, generation: u64) {
    match policy.mode() {
        Mode::Enforce => tracing::info!(generation, rules = policy.rule_count(), "policy in force"),
        Mode::DryRun => tracing::warn!(
            generation,
            rules = policy.rule_count(),
            "policy in DRY-RUN mode: denials are logged but NOT enforced, every request is let through"
        ),
    }
}

/// A short-lived read reference to the policy in force; see [`PolicyStore::load`].
pub struct PolicyGuard {
    guard: Guard<Arc<Policy>>,
}

impl PolicyGuard {
    /// An owned reference to the same policy.
    #[must_use]
    pub fn into_arc(self) -> Arc<Policy> {
        Guard::into_inner(self.guard)
    }
}

impl Deref for PolicyGuard {
    type Target = Policy;

    fn deref(&self) -> &Policy {
        &self.guard
    }
}

impl fmt::Debug for PolicyGuard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&**self.guard, f)
    }
}

/// The state of a [`PolicyStore`], as its subscribers see it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PolicyStatus {
    generation: u64,
    rule_count: usize,
    mode: Mode,
    last_error: Option<String>,
}

// === impl PolicyStatus ===

impl PolicyStatus {
    fn serving(policy: &Policy, generation: u64) -> Self {
        Self {
            generation,
            rule_count: policy.rule_count(),
            mode: policy.mode(),
            last_error: None,
        }
    }

    /// 1 for the first policy, growing by one with each stored policy.
    #[must_use]
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// The number of rules of the policy in force.
    #[must_use]
    pub fn rule_count(&self) -> usize {
        self.rule_count
    }

    /// The mode of the policy in force.
    #[must_use]
    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// Why the last reload was rejected; cleared when a policy is stored.
    #[must_use]
    pub fn last_error(&self) -> Option<&str> {
        self.last_error.as_deref()
    }
}

/// A subscription to [`PolicyStore`] changes; see [`PolicyStore::changes`].
#[derive(Debug)]
pub struct PolicyChanges {
    rx: watch::Receiver<PolicyStatus>,
}

impl PolicyChanges {
    /// Waits for the next change: a stored policy or a rejected reload.
    /// Returns `false` once every handle on the store is gone.
    pub async fn changed(&mut self) -> bool {
        self.rx.changed().await.is_ok()
    }

    /// The status as of the latest change, marking it seen.
    #[must_use]
    pub fn status(&mut self) -> PolicyStatus {
        self.rx.borrow_and_update().clone()
    }
}
