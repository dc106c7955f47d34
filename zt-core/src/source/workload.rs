//! An identity source streaming X.509-SVIDs and bundles from the SPIFFE Workload API
//! (feature `workload-api`).
//!
//! [`WorkloadApiSource`] holds the `FetchX509SVID` stream of a SPIFFE Workload API
//! endpoint (a SPIRE agent, for instance) open and turns every update into a candidate
//! [`Snapshot`](crate::Snapshot): the picked SVID with **all** bundles of the update,
//! our own trust domain's and the federated ones. Each update is the full state, so a
//! federated bundle missing from an update is no longer trusted.
//!
//! - An update that validates as a whole becomes the serving snapshot.
//! - A malformed update is rejected and the last good snapshot keeps serving; the
//!   reason shows in [`Status::last_error`](crate::Status::last_error).
//! - The own trust domain's bundle is the one the Workload API sends with the SVID.
//!   An update whose `federated_bundles` names one of its SVIDs' own trust domains
//!   is refused as a whole, as the file source refuses such a file: a federated
//!   entry never replaces (or widens) the bundle issued with the SVID. zt reads
//!   the update as sent to tell the two apart; the `spiffe` crate's `X509Context`
//!   merges them.
//! - An update without any SVID (or without the picked one) and a `PermissionDenied`
//!   answer withdraw the identity: handshakes fail closed until an SVID arrives again.
//! - A lost stream or an unreachable endpoint is retried with exponential backoff and
//!   jitter while the last good snapshot keeps serving.
//! - `InvalidArgument` and `Unimplemented` answers mean the endpoint will never serve
//!   this client (SPIFFE Workload Endpoint §6 says not to retry): the identity is
//!   withdrawn and the source stops.
//! - Dropping the source stops it and withdraws the identity, so nothing keeps serving
//!   an SVID that nobody rotates any more.
//!
//! The source needs a tokio runtime. [`WorkloadApiSourceBuilder::start`] returns at
//! once; [`Identity::ready`](crate::Identity::ready) waits for the first good update.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use zt_core::{IdMatcher, IdentitySource, SvidPicker, WorkloadApiError, WorkloadApiSource};
//!
//! let source = WorkloadApiSource::builder()
//!     .endpoint("unix:///run/zt-doc-example/no-agent-here.sock")
//!     .pick(SvidPicker::by_id(IdMatcher::pattern("spiffe://example.org/billing/**")?))
//!     .start()?;
//! // Nothing serves before the first good update; `identity.ready().await` waits for it.
//! assert!(!source.identity().status().is_ready());
//!
//! let err = WorkloadApiSource::builder().endpoint("http://127.0.0.1:8081").start().unwrap_err();
//! assert!(matches!(err, WorkloadApiError::InvalidEndpoint { .. }));
//! # Ok(())
//! # }
//! ```

use std::error::Error as StdError;
use std::fmt;
use std::hash::{BuildHasher, RandomState};
use std::sync::Arc;
use std::time::Duration;

use rustls::crypto::CryptoProvider;
use rustls_pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
use spiffe::transport::{Endpoint, TransportError};
use tokio::task::JoinHandle;
use tonic::{Code, Status};
use tracing::Instrument;

use super::workload_proto::{self, X509SvidEntry, X509SvidResponse, split_der};

use crate::{
    BundleSet, IdMatcher, Identity, IdentityPublisher, IdentitySource, SpiffeId, TrustDomain,
    X509Bundle, X509Svid,
};

/// The environment variable naming the Workload API endpoint when none is configured
/// (SPIFFE Workload Endpoint §4).
pub const SPIFFE_ENDPOINT_SOCKET: &str = "SPIFFE_ENDPOINT_SOCKET";

/// The first reconnection delay when none is configured.
pub const DEFAULT_INITIAL_BACKOFF: Duration = Duration::from_secs(1);

/// The longest reconnection delay when none is configured.
pub const DEFAULT_MAX_BACKOFF: Duration = Duration::from_secs(30);

/// How long an open stream may stay silent before its first update when none is
/// configured.
pub const DEFAULT_FIRST_UPDATE_TIMEOUT: Duration = Duration::from_secs(10);

/// How long establishing a connection may take before it counts as failed: a TCP
/// endpoint that drops packets must not stall the source for minutes.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Why a Workload API source could not start.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum WorkloadApiError {
    /// No endpoint was configured and `SPIFFE_ENDPOINT_SOCKET` is unset or empty.
    #[error("no Workload API endpoint: SPIFFE_ENDPOINT_SOCKET is not set and none was configured")]
    EndpointUnset,
    /// `SPIFFE_ENDPOINT_SOCKET` holds bytes that are not UTF-8.
    #[error("the SPIFFE_ENDPOINT_SOCKET variable is not valid UTF-8")]
    EndpointNotUnicode,
    /// The endpoint address is not a `unix:` or `tcp:` URI of the accepted form.
    #[error(
        "invalid Workload API endpoint {endpoint:?}: {reason} (expected unix:///absolute/path or tcp://IP:port)"
    )]
    InvalidEndpoint {
        /// The address as given.
        endpoint: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The backoff bounds are unusable.
    #[error(
        "invalid backoff: the initial delay ({initial:?}) must be above zero and not above the maximum ({max:?})"
    )]
    InvalidBackoff {
        /// The configured initial delay.
        initial: Duration,
        /// The configured maximum delay.
        max: Duration,
    },
    /// The first-update timeout is zero.
    #[error("invalid first-update timeout: it must be above zero")]
    InvalidFirstUpdateTimeout,
    /// `start` was called outside a tokio runtime.
    #[error("the Workload API source needs a tokio runtime: start it from within one")]
    NoRuntime,
    /// No crypto provider was given and none is available by default.
    #[error(
        "no crypto provider: enable the `aws-lc-rs` or `ring` feature, install a process default, or pass one explicitly"
    )]
    NoCryptoProvider,
}

/// Which of the SVIDs a Workload API update carries becomes our identity.
///
/// The Workload API may grant a workload several SVIDs; the first is the default.
/// When no SVID of an update matches, the identity is withdrawn (fail closed) rather
/// than served with an SVID the application did not ask for.
#[derive(Clone, Debug, Default)]
pub struct SvidPicker {
    rule: PickRule,
}

#[derive(Clone, Debug, Default)]
enum PickRule {
    #[default]
    First,
    Id(IdMatcher),
    Hint(String),
}

// === impl SvidPicker ===

impl SvidPicker {
    /// The first SVID of each update: the Workload API's default identity.
    pub fn first() -> Self {
        Self {
            rule: PickRule::First,
        }
    }

    /// The first SVID whose SPIFFE ID `matcher` matches.
    pub fn by_id(matcher: IdMatcher) -> Self {
        Self {
            rule: PickRule::Id(matcher),
        }
    }

    /// The first SVID whose operator-set hint is exactly `hint` (hints carry no
    /// security meaning; they only tell the SVIDs of one workload apart).
    pub fn by_hint(hint: impl Into<String>) -> Self {
        Self {
            rule: PickRule::Hint(hint.into()),
        }
    }

    fn pick<'a>(&self, svids: &'a [X509SvidEntry]) -> Option<&'a X509SvidEntry> {
        match &self.rule {
            PickRule::First => svids.first(),
            PickRule::Id(matcher) => svids.iter().find(|svid| {
                // An ID zt cannot parse cannot match; zt would reject that SVID anyway.
                svid.spiffe_id
                    .parse::<SpiffeId>()
                    .is_ok_and(|id| matcher.matches(&id))
            }),
            PickRule::Hint(hint) => svids.iter().find(|svid| svid.hint == *hint),
        }
    }
}

impl fmt::Display for SvidPicker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.rule {
            PickRule::First => f.write_str("the first SVID"),
            PickRule::Id(matcher) => write!(f, "the first SVID whose ID matches {matcher}"),
            PickRule::Hint(hint) => write!(f, "the first SVID with hint {hint:?}"),
        }
    }
}

/// Configures and starts a [`WorkloadApiSource`].
#[derive(Clone, Debug)]
#[must_use]
pub struct WorkloadApiSourceBuilder {
    endpoint: Option<String>,
    picker: SvidPicker,
    provider: Option<Arc<CryptoProvider>>,
    initial_backoff: Duration,
    max_backoff: Duration,
    first_update_timeout: Duration,
}

// === impl WorkloadApiSourceBuilder ===

impl WorkloadApiSourceBuilder {
    fn new() -> Self {
        Self {
            endpoint: None,
            picker: SvidPicker::first(),
            provider: None,
            initial_backoff: DEFAULT_INITIAL_BACKOFF,
            max_backoff: DEFAULT_MAX_BACKOFF,
            first_update_timeout: DEFAULT_FIRST_UPDATE_TIMEOUT,
        }
    }

    /// The endpoint address, `unix:///absolute/path` or `tcp://IP:port`. Without it,
    /// [`start`](Self::start) reads [`SPIFFE_ENDPOINT_SOCKET`].
    pub fn endpoint(mut self, address: impl Into<String>) -> Self {
        self.endpoint = Some(address.into());
        self
    }

    /// Which SVID to serve when the workload has several (default: the first).
    pub fn pick(mut self, picker: SvidPicker) -> Self {
        self.picker = picker;
        self
    }

    /// Validates candidates with `provider` instead of
    /// [`default_provider`](crate::default_provider).
    pub fn crypto_provider(mut self, provider: Arc<CryptoProvider>) -> Self {
        self.provider = Some(provider);
        self
    }

    /// Reconnection delays: the first retry waits about `initial`, each failure
    /// doubles the delay up to `max`, and every delay is jittered down by up to half so
    /// that many workloads do not reconnect in step.
    ///
    /// Only a healthy stream resets the delay to `initial`: one that delivered a
    /// valid update and then stayed open for at least `max`. An endpoint that
    /// accepts a stream and drops it soon after, again and again, is retried at
    /// ever longer delays up to `max`, not in a storm.
    pub fn backoff(mut self, initial: Duration, max: Duration) -> Self {
        self.initial_backoff = initial;
        self.max_backoff = max;
        self
    }

    /// How long an open stream may stay silent before its first update (default
    /// [`DEFAULT_FIRST_UPDATE_TIMEOUT`]). A stream that sends nothing by then is
    /// recorded in [`Status::last_error`](crate::Status::last_error), dropped and
    /// retried after a backoff. Later updates have no deadline: a healthy stream is
    /// silent between rotations.
    pub fn first_update_timeout(mut self, timeout: Duration) -> Self {
        self.first_update_timeout = timeout;
        self
    }

    /// Starts streaming on the current tokio runtime and returns at once.
    ///
    /// The identity is not ready until the first good update arrives; await
    /// [`Identity::ready`](crate::Identity::ready) to wait for it, or watch
    /// [`Identity::status`](crate::Identity::status) for why it is not.
    ///
    /// # Errors
    ///
    /// When no endpoint is configured and `SPIFFE_ENDPOINT_SOCKET` is unset, the
    /// address is malformed, the backoff bounds are unusable, there is no crypto
    /// provider, or no tokio runtime is running.
    pub fn start(self) -> Result<WorkloadApiSource, WorkloadApiError> {
        let runtime =
            tokio::runtime::Handle::try_current().map_err(|_| WorkloadApiError::NoRuntime)?;
        let address = match self.endpoint {
            Some(address) => address,
            None => endpoint_from_env()?,
        };
        let endpoint =
            Endpoint::parse(&address).map_err(|err| WorkloadApiError::InvalidEndpoint {
                endpoint: address.clone(),
                reason: err.to_string(),
            })?;
        if self.initial_backoff.is_zero() || self.initial_backoff > self.max_backoff {
            return Err(WorkloadApiError::InvalidBackoff {
                initial: self.initial_backoff,
                max: self.max_backoff,
            });
        }
        if self.first_update_timeout.is_zero() {
            return Err(WorkloadApiError::InvalidFirstUpdateTimeout);
        }
        let provider = match self.provider {
            Some(provider) => provider,
            None => crate::default_provider().map_err(|_| WorkloadApiError::NoCryptoProvider)?,
        };

        let publisher = IdentityPublisher::with_provider(provider);
        let identity = publisher.identity();
        let span = tracing::info_span!("workload_api", endpoint = %address);
        let worker = Worker {
            endpoint,
            picker: self.picker,
            backoff: Backoff::new(self.initial_backoff, self.max_backoff),
            first_update_timeout: self.first_update_timeout,
            publisher,
            stopped: false,
        };
        let task = runtime.spawn(worker.run().instrument(span));
        Ok(WorkloadApiSource {
            identity,
            endpoint: address,
            task,
        })
    }
}

fn endpoint_from_env() -> Result<String, WorkloadApiError> {
    let value = std::env::var_os(SPIFFE_ENDPOINT_SOCKET).ok_or(WorkloadApiError::EndpointUnset)?;
    let value = value
        .into_string()
        .map_err(|_| WorkloadApiError::EndpointNotUnicode)?;
    if value.is_empty() {
        return Err(WorkloadApiError::EndpointUnset);
    }
    Ok(value)
}

/// A live identity fed by the SPIFFE Workload API.
///
/// Dropping it stops the stream and withdraws the identity.
#[must_use = "dropping the source stops it and withdraws its identity"]
pub struct WorkloadApiSource {
    identity: Identity,
    endpoint: String,
    task: JoinHandle<()>,
}

// === impl WorkloadApiSource ===

impl WorkloadApiSource {
    /// A builder: endpoint from `SPIFFE_ENDPOINT_SOCKET`, the first SVID, the default
    /// crypto provider and backoff.
    pub fn builder() -> WorkloadApiSourceBuilder {
        WorkloadApiSourceBuilder::new()
    }

    /// The endpoint address this source streams from.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// `true` once the source stopped for good (an `InvalidArgument` or
    /// `Unimplemented` answer); the identity is then withdrawn.
    pub fn is_stopped(&self) -> bool {
        self.task.is_finished()
    }
}

impl IdentitySource for WorkloadApiSource {
    fn identity(&self) -> Identity {
        self.identity.clone()
    }
}

impl Drop for WorkloadApiSource {
    fn drop(&mut self) {
        // The worker withdraws the identity when its future is dropped, after any
        // publication in flight, so a late update cannot outlive the source.
        self.task.abort();
    }
}

impl fmt::Debug for WorkloadApiSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WorkloadApiSource")
            .field("endpoint", &self.endpoint)
            .field("identity", &self.identity)
            .finish_non_exhaustive()
    }
}

/// Exponential backoff with jitter.
#[derive(Debug)]
struct Backoff {
    initial: Duration,
    max: Duration,
    next: Duration,
    random: RandomState,
    draws: u64,
}

impl Backoff {
    fn new(initial: Duration, max: Duration) -> Self {
        Self {
            initial,
            max,
            next: initial,
            random: RandomState::new(),
            draws: 0,
        }
    }

    fn reset(&mut self) {
        self.next = self.initial;
    }

    /// How long a stream must stay open, after a valid update, to count as healthy
    /// and reset the delay: the longest delay. A stream that lives that long is not
    /// part of a reconnection storm.
    fn healthy_after(&self) -> Duration {
        self.max
    }

    /// The delay before the next attempt: uniform in [next/2, next], then `next`
    /// doubles up to `max`.
    fn delay(&mut self) -> Duration {
        let ceiling = self.next;
        self.next = self.next.saturating_mul(2).min(self.max);
        // Jitter needs no cryptographic quality; a randomly keyed hasher avoids a
        // dependency and differs between processes.
        self.draws = self.draws.wrapping_add(1);
        let noise = self.random.hash_one(self.draws);
        let half = ceiling / 2;
        let span = u64::try_from(half.as_micros()).unwrap_or(u64::MAX);
        let extra = noise.checked_rem(span).unwrap_or(0);
        half.saturating_add(Duration::from_micros(extra))
    }
}

/// What to do after a failed call or stream item.
enum Next {
    /// Drop the stream and reconnect after a backoff.
    Reconnect,
    /// The endpoint will never serve this client: stop.
    Stop,
}

/// The task behind a [`WorkloadApiSource`]; owns the one publisher.
struct Worker {
    endpoint: Endpoint,
    picker: SvidPicker,
    backoff: Backoff,
    first_update_timeout: Duration,
    publisher: IdentityPublisher,
    stopped: bool,
}

impl Worker {
    async fn run(mut self) {
        loop {
            if let Next::Stop = self.session().await {
                return;
            }
            let delay = self.backoff.delay();
            tracing::debug!(retry_in = ?delay, "reconnecting to the Workload API");
            tokio::time::sleep(delay).await;
        }
    }

    /// One connection: connect, open the stream, apply updates until it ends.
    async fn session(&mut self) -> Next {
        tracing::debug!("connecting to the Workload API");
        let channel =
            match tokio::time::timeout(CONNECT_TIMEOUT, spiffe::transport::connect(&self.endpoint))
                .await
            {
                Ok(Ok(channel)) => channel,
                Ok(Err(err)) => return self.unreachable(&err),
                Err(_) => {
                    self.publisher.reject(&format_args!(
                        "cannot reach the Workload API: no connection after {CONNECT_TIMEOUT:?}"
                    ));
                    return Next::Reconnect;
                }
            };
        let mut stream = match workload_proto::fetch_x509_svid(channel).await {
            Ok(stream) => stream,
            Err(status) => {
                return self.refused("the Workload API refused the X.509-SVID stream", &status);
            }
        };
        tracing::info!("Workload API stream open");
        let opened = tokio::time::Instant::now();
        // When the stream delivered its first valid update.
        let mut valid_since = None;
        let mut first = true;
        let next = loop {
            let message = if first {
                first = false;
                match tokio::time::timeout(self.first_update_timeout, stream.message()).await {
                    Ok(message) => message,
                    Err(_) => {
                        self.publisher.reject(&format_args!(
                            "the Workload API opened the X.509-SVID stream but sent no update within {:?}",
                            self.first_update_timeout
                        ));
                        break Next::Reconnect;
                    }
                }
            } else {
                stream.message().await
            };
            match message {
                Ok(Some(update)) => {
                    if self.apply(&update) && valid_since.is_none() {
                        valid_since = Some(tokio::time::Instant::now());
                    }
                }
                Ok(None) => {
                    self.publisher
                        .reject(&"the Workload API closed the X.509-SVID stream");
                    break Next::Reconnect;
                }
                Err(status) => break self.refused("Workload API stream failed", &status),
            }
        };
        if valid_since.is_some_and(|since| since.elapsed() >= self.backoff.healthy_after()) {
            self.backoff.reset();
        }
        tracing::debug!(open_for = ?opened.elapsed(), "Workload API stream ended");
        next
    }

    /// The endpoint could not be reached: retried, unless its transport is one
    /// this build cannot use.
    fn unreachable(&mut self, err: &TransportError) -> Next {
        let detail = error_chain(err);
        if let TransportError::UnsupportedEndpointTransport { .. } = err {
            self.stop(&format!("cannot reach the Workload API: {detail}"));
            return Next::Stop;
        }
        self.publisher
            .reject(&format_args!("cannot reach the Workload API: {detail}"));
        Next::Reconnect
    }

    /// Records a gRPC status and decides how to go on.
    fn refused(&mut self, context: &str, status: &Status) -> Next {
        let detail = format!("{:?}: {}", status.code(), status.message());
        match status.code() {
            Code::PermissionDenied => {
                self.publisher.withdraw(&format!(
                    "the Workload API grants this workload no identity (PermissionDenied): {detail}"
                ));
                Next::Reconnect
            }
            // SPIFFE Workload Endpoint §6: these answers do not change on retry.
            Code::InvalidArgument | Code::Unimplemented => {
                self.stop(&format!(
                    "{context}: {detail}; not retrying, this answer does not change on retry"
                ));
                Next::Stop
            }
            _ => {
                self.publisher.reject(&format_args!("{context}: {detail}"));
                Next::Reconnect
            }
        }
    }

    fn stop(&mut self, reason: &str) {
        tracing::error!(reason, "Workload API source stopped");
        self.publisher.withdraw(reason);
        self.stopped = true;
    }

    /// Turns one update into a candidate and publishes it. `true` when the update
    /// was valid: published, or the same as the serving snapshot.
    fn apply(&self, update: &X509SvidResponse) -> bool {
        tracing::debug!(
            svids = update.svids.len(),
            federated = update.federated_bundles.len(),
            "Workload API update received"
        );
        // SPIFFE Workload API §5.2.1: `svids` is mandatory and holds one or more
        // SVIDs; §4.5: a message whose mandatory field is empty is reported and
        // discarded. A server that grants nothing answers PermissionDenied instead.
        if update.svids.is_empty() {
            self.publisher.reject(
                &"Workload API update discarded: it carries no X.509-SVID, which the \
                  Workload API spec (5.2.1) requires; a server that grants none answers \
                  PermissionDenied",
            );
            return false;
        }
        let Some(picked) = self.picker.pick(&update.svids) else {
            // The SVID we serve was redacted: cease using it (§5.2.1).
            self.publisher.withdraw(&format!(
                "the Workload API update has no SVID matching the picker ({})",
                self.picker
            ));
            return false;
        };
        let provider = self.publisher.identity().crypto_provider().clone();
        let candidate = match candidate(picked, update, &provider) {
            Ok(candidate) => candidate,
            Err(reason) => {
                self.publisher
                    .reject(&format_args!("Workload API update rejected: {reason}"));
                return false;
            }
        };
        let notice = (!candidate.ignored.is_empty()).then(|| {
            format!(
                "Workload API update: serving {}; ignored {} other SVID(s) of the update: {}",
                picked_id(picked),
                candidate.ignored.len(),
                candidate.ignored.join("; ")
            )
        });
        if let Some(notice) = &notice {
            tracing::warn!(
                ignored = candidate.ignored.len(),
                notice,
                "Workload API SVID ignored"
            );
        }
        // `publish_noted` records and logs its own verdict.
        if self
            .publisher
            .publish_noted(candidate.svid, candidate.bundles, notice)
            .is_err()
        {
            return false;
        }
        true
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        if !self.stopped {
            self.publisher
                .withdraw("the Workload API source was dropped; nothing rotates this identity");
        }
    }
}

/// What an update offers to publish.
struct Candidate {
    svid: X509Svid,
    bundles: BundleSet,
    /// Why each other SVID of the update that is malformed was left out.
    ignored: Vec<String>,
}

/// The picked entry's SPIFFE ID as sent, escaped for logs.
fn picked_id(entry: &X509SvidEntry) -> String {
    format!("{:?}", entry.spiffe_id)
}

/// One entry's SVID and its own trust domain's bundle, checked as a whole: the
/// chain and key parse and match, the entry's `spiffe_id` is the SVID's own ID,
/// and the bundle parses.
fn entry(entry: &X509SvidEntry) -> Result<(X509Svid, X509Bundle), String> {
    let svid = X509Svid::from_der(
        split_der(&entry.x509_svid).map_err(|err| format!("invalid X.509-SVID: {err}"))?,
        PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(entry.x509_svid_key.clone())),
    )
    .map_err(|err| format!("invalid X.509-SVID: {err}"))?;
    if svid.id().as_str() != entry.spiffe_id {
        return Err(format!(
            "the entry names {:?} but its X.509-SVID is {}",
            entry.spiffe_id,
            svid.id()
        ));
    }
    let own = bundle(svid.id().trust_domain().clone(), &entry.bundle)?;
    Ok((svid, own))
}

/// Another entry than the picked one, checked as publishing would check it: as
/// [`entry`], and its key matches its certificate and its chain verifies against
/// its own bundle now.
fn other_entry(
    other: &X509SvidEntry,
    provider: &CryptoProvider,
) -> Result<(X509Svid, X509Bundle), String> {
    let (svid, own) = entry(other)?;
    svid.certified_key(provider)
        .map_err(|err| format!("invalid X.509-SVID: {err}"))?;
    let bundles = BundleSet::new().with(own.clone());
    svid.verify(&bundles, provider, std::time::SystemTime::now())
        .map_err(|err| format!("X.509-SVID does not verify against its bundle: {err}"))?;
    Ok((svid, own))
}

/// The candidate of an update: the picked SVID, its own trust domain's bundle as
/// the SVID entry carries it, the bundles of the update's other SVIDs' trust
/// domains, and the federated bundles.
///
/// - The picked entry must be valid as a whole, or the update is rejected.
/// - Another entry that is malformed is left out (its bundle is not trusted) and
///   reported: it does not make the picked SVID less valid.
/// - A federated entry for a trust domain of the update's own SVIDs would replace
///   the bundle the Workload API gave with the SVID: it is refused, and the update
///   with it, as the file source refuses one.
fn candidate(
    picked: &X509SvidEntry,
    update: &X509SvidResponse,
    provider: &CryptoProvider,
) -> Result<Candidate, String> {
    let (svid, own_bundle) = entry(picked)?;
    let mut bundles = BundleSet::new();
    let mut own_domains = vec![own_bundle.trust_domain().clone()];
    bundles.insert(own_bundle);
    let mut ignored = Vec::new();
    for (index, other) in update.svids.iter().enumerate() {
        if std::ptr::eq(other, picked) {
            continue;
        }
        match other_entry(other, provider) {
            // Another SVID's bundle, for its trust domain (the first entry of a
            // trust domain gives it, the picked one before all).
            Ok((_, other_bundle)) => {
                let td = other_bundle.trust_domain().clone();
                if !own_domains.contains(&td) {
                    bundles.insert(other_bundle);
                    own_domains.push(td);
                }
            }
            Err(reason) => ignored.push(format!("SVID {index} ({}): {reason}", picked_id(other))),
        }
    }
    let mut federated: Vec<_> = update.federated_bundles.iter().collect();
    federated.sort_unstable_by_key(|(name, _)| name.as_str());
    for (name, der) in federated {
        let td = federated_trust_domain(name)?;
        if own_domains.contains(&td) {
            return Err(format!(
                "federated bundle for trust domain {td}, which is this workload's own: \
                 refused, a federated entry never replaces the bundle issued with the SVID"
            ));
        }
        bundles.insert(bundle(td, der)?);
    }
    Ok(Candidate {
        svid,
        bundles,
        ignored,
    })
}

/// A `federated_bundles` key: the trust domain's SPIFFE ID (`spiffe://example.org`),
/// or, from some servers, the bare name.
fn federated_trust_domain(name: &str) -> Result<TrustDomain, String> {
    let bare = name.strip_prefix("spiffe://").unwrap_or(name);
    bare.parse()
        .map_err(|err| format!("invalid federated trust domain {name:?}: {err}"))
}

fn bundle(trust_domain: TrustDomain, der: &[u8]) -> Result<X509Bundle, String> {
    let authorities = split_der(der)
        .map_err(|err| format!("invalid bundle for trust domain {trust_domain}: {err}"))?;
    X509Bundle::new(trust_domain.clone(), authorities)
        .map_err(|err| format!("invalid bundle for trust domain {trust_domain}: {err}"))
}

/// An error with its sources, skipping a source whose text the outer message already
/// repeats.
fn error_chain(err: &(dyn StdError + 'static)) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(inner) = source {
        let inner_text = inner.to_string();
        if !text.contains(&inner_text) {
            text.push_str(": ");
            text.push_str(&inner_text);
        }
        source = inner.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn backoff_doubles_to_the_cap_and_jitters_within_the_upper_half() {
        let mut backoff = Backoff::new(ms(100), ms(800));
        for ceiling in [100, 200, 400, 800, 800, 800] {
            let delay = backoff.delay();
            assert!(
                delay >= ms(ceiling / 2) && delay <= ms(ceiling),
                "delay {delay:?} outside [{}ms, {ceiling}ms]",
                ceiling / 2
            );
        }
        backoff.reset();
        assert!(backoff.delay() <= ms(100));
    }

    #[test]
    fn backoff_jitter_spreads_delays() {
        let mut backoff = Backoff::new(ms(1000), ms(1000));
        let delays: std::collections::HashSet<_> = (0..16).map(|_| backoff.delay()).collect();
        assert!(delays.len() > 1, "no jitter: {delays:?}");
    }

    #[test]
    fn start_outside_a_runtime_is_refused() {
        let err = WorkloadApiSource::builder()
            .endpoint("unix:///run/agent.sock")
            .start()
            .unwrap_err();
        assert_eq!(err, WorkloadApiError::NoRuntime);
    }

    #[tokio::test]
    async fn unusable_backoff_bounds_are_refused() {
        for (initial, max) in [(Duration::ZERO, ms(10)), (ms(20), ms(10))] {
            let err = WorkloadApiSource::builder()
                .endpoint("unix:///run/agent.sock")
                .backoff(initial, max)
                .start()
                .unwrap_err();
            assert_eq!(err, WorkloadApiError::InvalidBackoff { initial, max });
        }
    }

    #[test]
    fn picker_describes_its_rule() {
        let picker = SvidPicker::by_hint("internal");
        assert_eq!(picker.to_string(), "the first SVID with hint \"internal\"");
        assert_eq!(SvidPicker::default().to_string(), "the first SVID");
    }
}
