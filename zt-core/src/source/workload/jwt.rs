//! The Workload API's JWT calls (features `workload-api` and `jwt`):
//! [`WorkloadJwtBundles`] streams `FetchJWTBundles` into [`JwtBundles`];
//! [`WorkloadJwtSvid`] fetches our JWT-SVID for one audience with
//! `FetchJWTSVID` and fetches it again before it expires.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwapOption;
use spiffe::transport::Endpoint;
use tokio::task::JoinHandle;
use tonic::Code;
use tracing::Instrument as _;

use super::worker::Backoff;
use super::{CONNECT_TIMEOUT, WorkloadApiError, resolve_endpoint};
use crate::id::TrustDomain;
use crate::jwt::{JwtBundle, JwtBundleSet, JwtBundles, JwtSvid, JwtSvidSource};
use crate::source::workload_proto;

const INITIAL_BACKOFF: Duration = Duration::from_millis(200);
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// A token is fetched again once half of its remaining lifetime has passed, and
/// at least this long before it expires.
const REFRESH_MARGIN: Duration = Duration::from_secs(30);

async fn connect(endpoint: &Endpoint) -> Result<tonic::transport::Channel, String> {
    match tokio::time::timeout(CONNECT_TIMEOUT, spiffe::transport::connect(endpoint)).await {
        Ok(Ok(channel)) => Ok(channel),
        Ok(Err(err)) => Err(format!("cannot reach the Workload API: {err}")),
        Err(_) => Err(format!(
            "cannot reach the Workload API: no connection after {CONNECT_TIMEOUT:?}"
        )),
    }
}

/// Keeps [`JwtBundles`] in step with the Workload API's `FetchJWTBundles`
/// stream: each message is the whole set (a trust domain missing from it is
/// withdrawn), published as a whole once every bundle in it reads. A message
/// with a bundle that does not read is refused and the set in force stays. When
/// the Workload API says the workload has no identity (`PermissionDenied`), no
/// bundle is trusted until it says otherwise.
///
/// Dropping it stops the stream; the bundles keep the last set.
#[must_use = "dropping it stops the stream"]
pub struct WorkloadJwtBundles {
    endpoint: String,
    task: JoinHandle<()>,
}

// === impl WorkloadJwtBundles ===

impl WorkloadJwtBundles {
    /// Streams the bundles from `endpoint` (`unix:///path` or `tcp://IP:port`;
    /// `None`: `SPIFFE_ENDPOINT_SOCKET`) into `bundles`, reconnecting with
    /// backoff.
    ///
    /// # Errors
    ///
    /// When the endpoint is unset or malformed, or outside a tokio runtime.
    pub fn start(endpoint: Option<String>, bundles: JwtBundles) -> Result<Self, WorkloadApiError> {
        let runtime =
            tokio::runtime::Handle::try_current().map_err(|_| WorkloadApiError::NoRuntime)?;
        let (address, endpoint) = resolve_endpoint(endpoint)?;
        let span = tracing::info_span!("workload_api_jwt_bundles", endpoint = %address);
        let task = runtime.spawn(stream_bundles(endpoint, bundles).instrument(span));
        Ok(Self {
            endpoint: address,
            task,
        })
    }

    /// The endpoint address.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }
}

impl Drop for WorkloadJwtBundles {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl fmt::Debug for WorkloadJwtBundles {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WorkloadJwtBundles")
            .field("endpoint", &self.endpoint)
            .finish_non_exhaustive()
    }
}

async fn stream_bundles(endpoint: Endpoint, bundles: JwtBundles) {
    let mut backoff = Backoff::new(INITIAL_BACKOFF, MAX_BACKOFF);
    loop {
        match bundle_session(&endpoint, &bundles).await {
            Ok(()) => backoff.reset(),
            Err(why) => {
                tracing::warn!(reason = %why, "JWT bundle stream interrupted; the bundles in force stay")
            }
        }
        tokio::time::sleep(backoff.delay()).await;
    }
}

/// One stream: `Ok` when it ended after at least one good message.
async fn bundle_session(endpoint: &Endpoint, bundles: &JwtBundles) -> Result<(), String> {
    let channel = connect(endpoint).await?;
    let mut stream = match workload_proto::fetch_jwt_bundles(channel).await {
        Ok(stream) => stream,
        Err(status) if status.code() == Code::PermissionDenied => {
            bundles.publish(JwtBundleSet::new());
            return Err(format!(
                "no JWT bundles for this workload: {}",
                status.message()
            ));
        }
        Err(status) => return Err(format!("stream refused: {}", status.message())),
    };
    let mut good = false;
    loop {
        match stream.message().await {
            Ok(Some(message)) => match bundle_set(&message.bundles) {
                Ok(set) => {
                    tracing::info!(trust_domains = set.len(), "JWT bundles updated");
                    bundles.publish(set);
                    good = true;
                }
                Err(why) => {
                    tracing::warn!(reason = %why, "JWT bundle update refused; the bundles in force stay")
                }
            },
            Ok(None) if good => return Ok(()),
            Ok(None) => return Err("stream ended before a usable update".into()),
            Err(status) if status.code() == Code::PermissionDenied => {
                bundles.publish(JwtBundleSet::new());
                return Err(format!(
                    "no JWT bundles for this workload: {}",
                    status.message()
                ));
            }
            Err(status) => return Err(format!("stream failed: {}", status.message())),
        }
    }
}

/// A `FetchJWTBundles` message as a set: every bundle must read.
fn bundle_set(
    bundles: &std::collections::HashMap<String, Vec<u8>>,
) -> Result<JwtBundleSet, String> {
    let mut set = JwtBundleSet::new();
    for (name, document) in bundles {
        // Keys are trust domains written as SPIFFE IDs; plain names are accepted too.
        let domain = name.strip_prefix("spiffe://").unwrap_or(name);
        let trust_domain: TrustDomain = domain
            .parse()
            .map_err(|err| format!("bundle key {:?} is not a trust domain: {err}", cut(name)))?;
        let bundle = JwtBundle::from_spiffe_json(trust_domain.clone(), document)
            .map_err(|err| format!("bundle of {trust_domain}: {err}"))?;
        set.insert(bundle);
    }
    Ok(set)
}

fn cut(value: &str) -> String {
    value.chars().take(64).collect()
}

/// Our JWT-SVID for one audience from the Workload API's `FetchJWTSVID`,
/// fetched at start and again when half of its remaining lifetime has passed,
/// with backoff on failure. The token in hand stays in use until it expires;
/// [`current`](JwtSvidSource::current) never returns an expired one. When the
/// Workload API grants several, the first is used.
///
/// Dropping it stops the refreshes.
#[must_use = "dropping it stops the refreshes"]
pub struct WorkloadJwtSvid {
    audience: String,
    current: Arc<ArcSwapOption<JwtSvid>>,
    task: JoinHandle<()>,
}

// === impl WorkloadJwtSvid ===

impl WorkloadJwtSvid {
    /// Starts fetching our JWT-SVID for `audience` from `endpoint` (`None`:
    /// `SPIFFE_ENDPOINT_SOCKET`).
    ///
    /// # Errors
    ///
    /// When the endpoint is unset or malformed, or outside a tokio runtime.
    pub fn start(
        endpoint: Option<String>,
        audience: impl Into<String>,
    ) -> Result<Self, WorkloadApiError> {
        let runtime =
            tokio::runtime::Handle::try_current().map_err(|_| WorkloadApiError::NoRuntime)?;
        let (address, endpoint) = resolve_endpoint(endpoint)?;
        let audience = audience.into();
        let current = Arc::new(ArcSwapOption::empty());
        let span =
            tracing::info_span!("workload_api_jwt_svid", endpoint = %address, audience = %audience);
        let task = runtime
            .spawn(refresh_svid(endpoint, audience.clone(), Arc::clone(&current)).instrument(span));
        Ok(Self {
            audience,
            current,
            task,
        })
    }

    /// The audience the tokens are for.
    pub fn audience(&self) -> &str {
        &self.audience
    }

    /// Waits until a token is in hand, at most `timeout`.
    pub async fn ready(&self, timeout: Duration) -> Option<JwtSvid> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if let Some(svid) = self.current() {
                return Some(svid);
            }
            if tokio::time::Instant::now() >= deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl JwtSvidSource for WorkloadJwtSvid {
    fn current(&self) -> Option<JwtSvid> {
        self.current
            .load_full()
            .filter(|svid| !svid.is_expired(SystemTime::now()))
            .map(|svid| (*svid).clone())
    }
}

impl Drop for WorkloadJwtSvid {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl fmt::Debug for WorkloadJwtSvid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WorkloadJwtSvid")
            .field("audience", &self.audience)
            .field("current", &self.current.load_full())
            .finish_non_exhaustive()
    }
}

async fn refresh_svid(endpoint: Endpoint, audience: String, current: Arc<ArcSwapOption<JwtSvid>>) {
    let mut backoff = Backoff::new(INITIAL_BACKOFF, MAX_BACKOFF);
    loop {
        let wait = match fetch_svid(&endpoint, &audience).await {
            Ok(svid) => {
                backoff.reset();
                let wait = refresh_in(&svid, SystemTime::now());
                tracing::debug!(id = %svid.id(), refresh_in = ?wait, "JWT-SVID fetched");
                current.store(Some(Arc::new(svid)));
                wait
            }
            Err(why) => {
                tracing::warn!(reason = %why, "JWT-SVID fetch failed; the token in hand stays until it expires");
                backoff.delay()
            }
        };
        tokio::time::sleep(wait).await;
    }
}

async fn fetch_svid(endpoint: &Endpoint, audience: &str) -> Result<JwtSvid, String> {
    let channel = connect(endpoint).await?;
    let response = workload_proto::fetch_jwt_svid(channel, audience)
        .await
        .map_err(|status| format!("FetchJWTSVID refused: {}", status.message()))?;
    let first = response
        .svids
        .first()
        .ok_or("the Workload API granted no JWT-SVID")?;
    let svid = JwtSvid::parse(&first.svid).map_err(|err| format!("JWT-SVID unusable: {err}"))?;
    if !svid.audience().iter().any(|a| a == audience) {
        return Err("JWT-SVID does not name the audience asked for".into());
    }
    if svid.is_expired(SystemTime::now()) {
        return Err("JWT-SVID expired already".into());
    }
    Ok(svid)
}

/// Half of the remaining lifetime, but at least [`REFRESH_MARGIN`] before expiry
/// and never less than a second.
fn refresh_in(svid: &JwtSvid, now: SystemTime) -> Duration {
    let left = svid.expiry().duration_since(now).unwrap_or_default();
    (left / 2)
        .min(left.saturating_sub(REFRESH_MARGIN))
        .max(Duration::from_secs(1))
}
