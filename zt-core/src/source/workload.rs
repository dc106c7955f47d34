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
    /// that many workloads do not reconnect in step. A stream that delivered an update
    /// resets the delay to `initial`.
    pub fn backoff(mut self, initial: Duration, max: Duration) -> Self {
        self.initial_backoff = initial;
        self.max_backoff = max;
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
        loop {
            match stream.message().await {
                Ok(Some(update)) => {
                    self.backoff.reset();
                    self.apply(&update);
                }
                Ok(None) => break,
                Err(status) => return self.refused("Workload API stream failed", &status),
            }
        }
        self.publisher
            .reject(&"the Workload API closed the X.509-SVID stream");
        Next::Reconnect
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

    /// Turns one update into a candidate and publishes it.
    fn apply(&self, update: &X509SvidResponse) {
        tracing::debug!(
            svids = update.svids.len(),
            federated = update.federated_bundles.len(),
            "Workload API update received"
        );
        // Each update is the full state: no SVID at all means none is granted now.
        if update.svids.is_empty() {
            self.publisher
                .withdraw("the Workload API update carries no X.509-SVID");
            return;
        }
        let Some(picked) = self.picker.pick(&update.svids) else {
            self.publisher.withdraw(&format!(
                "the Workload API update has no SVID matching the picker ({})",
                self.picker
            ));
            return;
        };
        match candidate(picked, update) {
            // `publish` records and logs its own verdict.
            Ok((svid, bundles)) => {
                let _ = self.publisher.publish(svid, bundles);
            }
            Err(reason) => self
                .publisher
                .reject(&format_args!("Workload API update rejected: {reason}")),
        }
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

/// The candidate of an update: the picked SVID, its own trust domain's bundle as
/// the SVID entry carries it, the bundles of the update's other SVIDs' trust
/// domains, and the federated bundles. A federated entry for a trust domain of the
/// update's own SVIDs would replace the bundle the Workload API gave with the SVID:
/// it is refused, and the update with it, as the file source refuses one.
fn candidate(
    picked: &X509SvidEntry,
    update: &X509SvidResponse,
) -> Result<(X509Svid, BundleSet), String> {
    let svid = X509Svid::from_der(
        split_der(&picked.x509_svid).map_err(|err| format!("invalid X.509-SVID: {err}"))?,
        PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(picked.x509_svid_key.clone())),
    )
    .map_err(|err| format!("invalid X.509-SVID: {err}"))?;
    let own = svid.id().trust_domain().clone();
    let mut bundles = BundleSet::new();
    bundles.insert(bundle(own.clone(), &picked.bundle)?);
    let mut own_domains = vec![own];
    for entry in &update.svids {
        // Another SVID's bundle, for its trust domain (ours is the picked one's).
        let Ok(id) = entry.spiffe_id.parse::<SpiffeId>() else {
            continue;
        };
        let td = id.trust_domain().clone();
        if !own_domains.contains(&td) {
            bundles.insert(bundle(td.clone(), &entry.bundle)?);
            own_domains.push(td);
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
    Ok((svid, bundles))
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
