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

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use rustls::crypto::CryptoProvider;
use spiffe::transport::Endpoint;
use tokio::task::JoinHandle;
use tracing::Instrument;

use super::workload_proto::X509SvidEntry;

use crate::id::SpiffeId;
use crate::identity::{Identity, IdentityPublisher, IdentitySource};
use crate::matcher::IdMatcher;

mod candidate;
#[cfg(feature = "jwt")]
mod jwt;
mod worker;

#[cfg(feature = "jwt")]
pub use self::jwt::{WorkloadJwtBundles, WorkloadJwtSvid};

use self::worker::{Backoff, Worker};

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
        let (address, endpoint) = resolve_endpoint(self.endpoint)?;
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

        let publisher = IdentityPublisher::with_provider(provider)
            .for_source(crate::metrics::UpdateSource::WorkloadApi);
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

/// The endpoint address — `address`, or `SPIFFE_ENDPOINT_SOCKET` without one —
/// and its parsed form.
fn resolve_endpoint(address: Option<String>) -> Result<(String, Endpoint), WorkloadApiError> {
    let address = match address {
        Some(address) => address,
        None => endpoint_from_env()?,
    };
    let endpoint = Endpoint::parse(&address).map_err(|err| WorkloadApiError::InvalidEndpoint {
        endpoint: address.clone(),
        reason: err.to_string(),
    })?;
    Ok((address, endpoint))
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
