//! Metrics: the names zt-tower records through the `metrics` facade, and
//! [`AuthzMetrics`], the in-process view of authorization decisions.
//!
//! Two paths, for two uses:
//!
//! - **The facade is the exporter path** (feature `metrics`, default). zt-tower
//!   records decisions, refusals, handshake rejections and connections through the
//!   [`metrics`](https://docs.rs/metrics) crate under the names below; the
//!   application installs the recorder (a Prometheus exporter, an OpenTelemetry
//!   bridge…) and calls [`describe`] once. With no recorder installed, nothing is
//!   recorded. A decision costs one increment of a counter handle the layer
//!   keeps (a map lookup; the key is built and registered once per rule, trust
//!   domain, decision, protocol and recorder), plus one per audit rule it
//!   matched; the labels hold bounded values only: a rule name (bounded by the
//!   policy), the peer's trust domain (bounded by the trusted bundles, and one
//!   fixed value, `(anonymous)`, for every anonymous peer), never a SPIFFE ID, a
//!   path or a header.
//! - **[`AuthzMetrics`] is the in-process view**: a handful of atomic counters
//!   shared by every clone of an [`Authorize`](crate::Authorize) service, read with
//!   [`AuthzMetrics::counts`] by a status page or a test, at one relaxed atomic add
//!   per decision and without any recorder.
//!
//! Both count the same decisions, in the one place decisions are decided
//! (`authorize/decide.rs`). docs/operations.md lists every metric, its labels and
//! when it changes.
//!
//! | name | kind | labels |
//! |---|---|---|
//! | [`AUTHZ_DECISIONS_TOTAL`] | counter | `decision`, `rule`, `protocol`, `trust_domain` |
//! | [`AUTHZ_REFUSALS_TOTAL`] | counter | `reason` |
//! | [`TLS_HANDSHAKE_REJECTIONS_TOTAL`] | counter | `side`, `reason` |
//! | [`SERVER_CONNECTIONS_OPEN`] | gauge | |
//! | [`SERVER_HANDSHAKES_IN_FLIGHT`] | gauge | |
//! | [`SERVER_HANDSHAKE_DURATION_SECONDS`] | histogram | |
//! | [`SERVER_CONNECTIONS_CLOSED_TOTAL`] | counter | `reason` |
//! | [`SERVER_UPGRADES_TOTAL`] | counter | `upgrade` |
//! | [`SERVER_UPGRADES_CLOSED_TOTAL`] | counter | `reason` |
//!
//! ```
//! let metrics = zt_tower::AuthzMetrics::default();
//! assert_eq!(metrics.counts().allowed, 0);
//! assert!(zt_tower::metrics::NAMES.contains(&zt_tower::metrics::AUTHZ_DECISIONS_TOTAL));
//! ```

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

#[cfg(feature = "metrics")]
use metrics::{SharedString, Unit, counter, describe_counter, describe_gauge, describe_histogram};

/// Counter: policy decisions; labels `decision` (`allow`, `deny`, `audit`,
/// `dry_run_deny`), `rule` (the deciding rule, `none` for the default deny),
/// `protocol` (`http`, `grpc`) and `trust_domain` (the peer's; `(anonymous)`,
/// which no trust domain can be, for a peer that presented no certificate).
pub const AUTHZ_DECISIONS_TOTAL: &str = "zt_authz_decisions_total";
/// Counter: requests refused without a policy decision; label `reason`
/// (`no_identity`, `untrusted_peer`, `malformed`, `unsupported`, `invalid_token`,
/// `hook`).
pub const AUTHZ_REFUSALS_TOTAL: &str = "zt_authz_refusals_total";
/// Counter: failed TLS handshakes; labels `side` (`server`, `client`: the side
/// zt is on) and `reason` (`unknown_ca`, `svid_rule`, `expired`, `no_identity`,
/// `timeout`, `peer_id`, `other`).
pub const TLS_HANDSHAKE_REJECTIONS_TOTAL: &str = "zt_tls_handshake_rejections_total";
/// Gauge: connections the server serves, from the end of their handshake.
pub const SERVER_CONNECTIONS_OPEN: &str = "zt_server_connections_open";
/// Gauge: TLS handshakes the server is running.
pub const SERVER_HANDSHAKES_IN_FLIGHT: &str = "zt_server_handshakes_in_flight";
/// Histogram: how long successful server handshakes took, in seconds.
pub const SERVER_HANDSHAKE_DURATION_SECONDS: &str = "zt_server_handshake_duration_seconds";
/// Counter: connections the server closed after their handshake; label `reason`
/// (`svid_expired`, `max_age`, `shutdown`, `peer_closed`, `error`,
/// `untrusted_peer`, `policy_denied`).
pub const SERVER_CONNECTIONS_CLOSED_TOTAL: &str = "zt_server_connections_closed_total";
/// Counter: governed upgrades the server let through (the response switched
/// protocols); label `upgrade` (`websocket`).
pub const SERVER_UPGRADES_TOTAL: &str = "zt_server_upgrades_total";
/// Counter: connections carrying governed upgrades that the server closed
/// because an upgrade was no longer allowed; label `reason` (`svid_expired`,
/// `untrusted_peer`, `policy_denied`).
pub const SERVER_UPGRADES_CLOSED_TOTAL: &str = "zt_server_upgrades_closed_total";

/// Every metric zt-tower records (zt-core's are in `zt_core::metrics::NAMES`).
pub const NAMES: &[&str] = &[
    AUTHZ_DECISIONS_TOTAL,
    AUTHZ_REFUSALS_TOTAL,
    TLS_HANDSHAKE_REJECTIONS_TOTAL,
    SERVER_CONNECTIONS_OPEN,
    SERVER_HANDSHAKES_IN_FLIGHT,
    SERVER_HANDSHAKE_DURATION_SECONDS,
    SERVER_CONNECTIONS_CLOSED_TOTAL,
    SERVER_UPGRADES_TOTAL,
    SERVER_UPGRADES_CLOSED_TOTAL,
];

/// Describes zt-tower's and zt-core's metrics (help text and unit) to the
/// installed recorder. Call it once after installing the recorder; calling it
/// again repeats the same descriptions.
#[cfg(feature = "metrics")]
#[cfg_attr(docsrs, doc(cfg(feature = "metrics")))]
pub fn describe() {
    zt_core::metrics::describe();
    describe_counter!(
        AUTHZ_DECISIONS_TOTAL,
        "Policy decisions on requests, by decision, rule, protocol and peer trust domain"
    );
    describe_counter!(
        AUTHZ_REFUSALS_TOTAL,
        "Requests refused without a policy decision, by reason"
    );
    describe_counter!(
        TLS_HANDSHAKE_REJECTIONS_TOTAL,
        "Failed TLS handshakes, by side and reason"
    );
    describe_gauge!(SERVER_CONNECTIONS_OPEN, "Open server connections");
    describe_gauge!(
        SERVER_HANDSHAKES_IN_FLIGHT,
        "Server TLS handshakes in progress"
    );
    describe_histogram!(
        SERVER_HANDSHAKE_DURATION_SECONDS,
        Unit::Seconds,
        "Duration of successful server TLS handshakes"
    );
    describe_counter!(
        SERVER_CONNECTIONS_CLOSED_TOTAL,
        "Server connections closed, by reason"
    );
    describe_counter!(
        SERVER_UPGRADES_TOTAL,
        "Governed protocol upgrades let through, by upgrade"
    );
    describe_counter!(
        SERVER_UPGRADES_CLOSED_TOTAL,
        "Connections closed because an upgrade they carry is no longer allowed, by reason"
    );
}

/// Without the `metrics` feature there is nothing to describe.
#[cfg(not(feature = "metrics"))]
pub fn describe() {}

/// Shared decision counters. Cheap to clone; clones count together.
#[derive(Clone, Default)]
pub struct AuthzMetrics {
    inner: Arc<Counters>,
}

#[derive(Default)]
struct Counters {
    allowed: AtomicU64,
    denied: AtomicU64,
    dry_run_denied: AtomicU64,
    audited: AtomicU64,
    untrusted_peer: AtomicU64,
    no_identity: AtomicU64,
    hook_denied: AtomicU64,
    malformed: AtomicU64,
    invalid_token: AtomicU64,
}

/// The counts at one moment. Every request is counted once in exactly one of
/// `allowed`, `dry_run_denied`, `denied`, `untrusted_peer`, `no_identity`,
/// `hook_denied` and `malformed`; `audited` counts requests that matched an audit rule as well.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct AuthzCounts {
    /// Passed on: allowed by the policy and by the decision hook.
    pub allowed: u64,
    /// Refused by the policy.
    pub denied: u64,
    /// Passed on although the policy would deny them, because it is in dry-run mode.
    pub dry_run_denied: u64,
    /// Matched at least one audit rule (in addition to their outcome).
    pub audited: u64,
    /// Refused because the peer no longer verifies: its SVID expired or today's
    /// bundle no longer vouches for it.
    pub untrusted_peer: u64,
    /// Refused because they carried no peer identity: a server setup error.
    pub no_identity: u64,
    /// Allowed by the policy, refused by the application's decision hook.
    pub hook_denied: u64,
    /// Refused before the policy for their shape: a malformed or conflicting
    /// authority, a lower-case method, a malformed upgrade, a `CONNECT` or
    /// `Upgrade` zt does not govern.
    pub malformed: u64,
    /// Refused before the policy because their JWT-SVID does not validate.
    pub invalid_token: u64,
}

#[derive(Clone, Copy, Debug)]
pub(crate) enum Outcome {
    Allowed,
    Denied,
    DryRunDenied,
    UntrustedPeer,
    NoIdentity,
    HookDenied,
    Malformed,
    InvalidToken,
}

// === impl AuthzMetrics ===

impl AuthzMetrics {
    /// The current counts.
    pub fn counts(&self) -> AuthzCounts {
        let c = &*self.inner;
        AuthzCounts {
            allowed: c.allowed.load(Ordering::Relaxed),
            denied: c.denied.load(Ordering::Relaxed),
            dry_run_denied: c.dry_run_denied.load(Ordering::Relaxed),
            audited: c.audited.load(Ordering::Relaxed),
            untrusted_peer: c.untrusted_peer.load(Ordering::Relaxed),
            no_identity: c.no_identity.load(Ordering::Relaxed),
            hook_denied: c.hook_denied.load(Ordering::Relaxed),
            malformed: c.malformed.load(Ordering::Relaxed),
            invalid_token: c.invalid_token.load(Ordering::Relaxed),
        }
    }

    pub(crate) fn record(&self, outcome: Outcome) {
        let c = &*self.inner;
        let counter = match outcome {
            Outcome::Allowed => &c.allowed,
            Outcome::Denied => &c.denied,
            Outcome::DryRunDenied => &c.dry_run_denied,
            Outcome::UntrustedPeer => &c.untrusted_peer,
            Outcome::NoIdentity => &c.no_identity,
            Outcome::HookDenied => &c.hook_denied,
            Outcome::Malformed => &c.malformed,
            Outcome::InvalidToken => &c.invalid_token,
        };
        // Counters order nothing; relaxed is enough and the cheapest.
        counter.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn record_audit(&self) {
        self.inner.audited.fetch_add(1, Ordering::Relaxed);
    }
}

impl fmt::Debug for AuthzMetrics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuthzMetrics")
            .field("counts", &self.counts())
            .finish_non_exhaustive()
    }
}

// === the facade ===

/// The `zt_authz_decisions_total` handles one [`Authorize`](crate::Authorize)
/// layer has registered, so that a decision costs one map lookup and one
/// increment instead of building, hashing and registering a four-label key.
///
/// A handle belongs to the recorder that made it, so the recorder is part of the
/// key: installing a global recorder after requests were counted with none
/// starts new handles. The recorder is told apart by its address; a
/// thread-local recorder dropped and replaced by another at the same address
/// while the same layer serves would keep receiving the old one's handles, a
/// trade-off that only tests, which build a layer per recorder, could meet.
/// The rule is told apart by the address of its shared name, which every entry
/// keeps alive, so an address is never reused for another name while it is a
/// key; a policy shares its rule names with every decision it makes. The trust
/// domain is told apart by its name: every connection's peer carries a string
/// of its own, so keying it by address would register a handle for each new
/// connection. At [`DECISION_HANDLES`] handles (policies replaced many times,
/// many rules and trust domains) the map starts over.
#[derive(Default)]
pub(crate) struct DecisionCounters {
    #[cfg(feature = "metrics")]
    handles: std::sync::RwLock<DecisionHandles>,
}

#[cfg(feature = "metrics")]
#[derive(Default)]
struct DecisionHandles {
    by_key: std::collections::HashMap<DecisionKey, RuleHandles, BuildAddressHasher>,
    /// Handles in all of `by_key`.
    len: usize,
}

/// How many handles [`DecisionCounters`] keeps at most.
#[cfg(feature = "metrics")]
const DECISION_HANDLES: usize = 4096;

#[cfg(feature = "metrics")]
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
struct DecisionKey {
    recorder: usize,
    /// Address and length of the static label values.
    decision: (usize, usize),
    protocol: (usize, usize),
    /// Address of the shared rule name, 0 for the default deny.
    rule: usize,
}

/// The handles of one [`DecisionKey`], one per trust domain: as many as the
/// trust domains whose peers the rule decided, which the trusted bundles bound.
#[cfg(feature = "metrics")]
struct RuleHandles {
    // Keeps the key's rule address taken.
    _rule: Option<Arc<str>>,
    by_trust_domain: Vec<(Arc<str>, metrics::Counter)>,
}

#[cfg(feature = "metrics")]
impl RuleHandles {
    fn get(&self, trust_domain: &Arc<str>) -> Option<&metrics::Counter> {
        self.by_trust_domain
            .iter()
            .find(|(name, _)| Arc::ptr_eq(name, trust_domain) || **name == **trust_domain)
            .map(|(_, counter)| counter)
    }
}

/// Hashes the addresses of [`DecisionKey`]: chosen by zt and the allocator,
/// never by a peer, so a multiply-and-rotate mix is enough.
#[cfg(feature = "metrics")]
#[derive(Default)]
struct AddressHasher(u64);

#[cfg(feature = "metrics")]
type BuildAddressHasher = std::hash::BuildHasherDefault<AddressHasher>;

#[cfg(feature = "metrics")]
impl std::hash::Hasher for AddressHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &byte in bytes {
            self.write_u64(u64::from(byte));
        }
    }

    fn write_u64(&mut self, value: u64) {
        self.0 = (self.0.rotate_left(5) ^ value).wrapping_mul(0x517c_c1b7_2722_0a95);
    }

    fn write_usize(&mut self, value: usize) {
        self.write_u64(value as u64);
    }
}

#[cfg(feature = "metrics")]
fn address(text: &str) -> (usize, usize) {
    (text.as_ptr() as usize, text.len())
}

// === impl DecisionCounters ===

#[cfg(feature = "metrics")]
impl DecisionCounters {
    /// One policy decision, or one audit rule matched (`decision` is then `audit`).
    pub(crate) fn decision(
        &self,
        decision: &'static str,
        rule: Option<&Arc<str>>,
        protocol: &'static str,
        trust_domain: &Arc<str>,
    ) {
        metrics::with_recorder(|recorder| {
            let key = DecisionKey {
                recorder: std::ptr::from_ref(recorder).cast::<()>() as usize,
                decision: address(decision),
                protocol: address(protocol),
                rule: rule.map_or(0, |rule| Arc::as_ptr(rule).cast::<u8>() as usize),
            };
            if let Ok(handles) = self.handles.read()
                && let Some(counter) = handles
                    .by_key
                    .get(&key)
                    .and_then(|rule| rule.get(trust_domain))
            {
                counter.increment(1);
                return;
            }
            let counter = decision_counter(decision, rule, protocol, trust_domain);
            counter.increment(1);
            // A poisoned map only costs the lookups it would have saved.
            if let Ok(mut handles) = self.handles.write() {
                if handles.len >= DECISION_HANDLES {
                    *handles = DecisionHandles::default();
                }
                let entry = handles.by_key.entry(key).or_insert_with(|| RuleHandles {
                    _rule: rule.cloned(),
                    by_trust_domain: Vec::new(),
                });
                // Another request may have registered it since the read.
                if entry.get(trust_domain).is_none() {
                    entry
                        .by_trust_domain
                        .push((Arc::clone(trust_domain), counter));
                    handles.len += 1;
                }
            }
        });
    }
}

/// The `trust_domain` label of every anonymous peer's decisions: one series per
/// rule and outcome, whatever the peer. Parentheses never appear in a trust domain.
#[cfg(feature = "metrics")]
pub(crate) fn anonymous_trust_domain() -> &'static Arc<str> {
    static ANONYMOUS: std::sync::LazyLock<Arc<str>> =
        std::sync::LazyLock::new(|| Arc::from("(anonymous)"));
    &ANONYMOUS
}

/// The handle of one `zt_authz_decisions_total` series in the current recorder.
#[cfg(feature = "metrics")]
fn decision_counter(
    decision: &'static str,
    rule: Option<&Arc<str>>,
    protocol: &'static str,
    trust_domain: &Arc<str>,
) -> metrics::Counter {
    // Labels share the policy's and the peer's strings: no copy.
    let rule = rule.map_or(SharedString::const_str("none"), |rule| {
        SharedString::from(Arc::clone(rule))
    });
    counter!(
        AUTHZ_DECISIONS_TOTAL,
        "decision" => decision,
        "rule" => rule,
        "protocol" => protocol,
        "trust_domain" => SharedString::from(Arc::clone(trust_domain))
    )
}

impl fmt::Debug for DecisionCounters {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DecisionCounters").finish_non_exhaustive()
    }
}

/// A request refused without a policy decision.
#[cfg_attr(not(feature = "metrics"), allow(unused_variables))]
pub(crate) fn refusal(reason: &'static str) {
    #[cfg(feature = "metrics")]
    counter!(AUTHZ_REFUSALS_TOTAL, "reason" => reason).increment(1);
}

/// Which side of a handshake zt was on.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Side {
    Server,
    Client,
}

/// A failed handshake; `err` is the handshake's error, `None` for a timeout.
#[cfg_attr(not(feature = "metrics"), allow(unused_variables))]
pub(crate) fn handshake_rejected(side: Side, err: Option<&(dyn std::error::Error + 'static)>) {
    #[cfg(feature = "metrics")]
    {
        let side = match side {
            Side::Server => "server",
            Side::Client => "client",
        };
        let reason = err.map_or("timeout", handshake_reason);
        counter!(TLS_HANDSHAKE_REJECTIONS_TOTAL, "side" => side, "reason" => reason).increment(1);
    }
}

/// The `reason` label of a failed handshake: what zt's verifier refused, or
/// `other` (the peer refused us, spoke no TLS, or the connection broke).
#[cfg(feature = "metrics")]
fn handshake_reason(err: &(dyn std::error::Error + 'static)) -> &'static str {
    use zt_core::SvidError;
    use zt_core::tls::Rejection;
    match Rejection::of(err) {
        Some(Rejection::UnknownIssuer | Rejection::Svid(SvidError::UnknownIssuer(_))) => {
            "unknown_ca"
        }
        Some(Rejection::Svid(SvidError::Expired | SvidError::NotYetValid)) => "expired",
        Some(Rejection::NoIdentityYet(_)) => "no_identity",
        Some(Rejection::Unauthorized(_)) => "peer_id",
        Some(_) => "svid_rule",
        None => "other",
    }
}

/// Holds a gauge up by one while it lives: a handshake in flight, an open
/// connection. Dropped on every path, so the gauge cannot drift.
pub(crate) struct GaugeGuard {
    #[cfg(feature = "metrics")]
    gauge: metrics::Gauge,
}

impl GaugeGuard {
    pub(crate) fn handshake() -> Self {
        Self::up(SERVER_HANDSHAKES_IN_FLIGHT)
    }

    pub(crate) fn connection() -> Self {
        Self::up(SERVER_CONNECTIONS_OPEN)
    }

    #[cfg_attr(not(feature = "metrics"), allow(unused_variables))]
    fn up(name: &'static str) -> Self {
        #[cfg(feature = "metrics")]
        {
            let gauge = metrics::gauge!(name);
            gauge.increment(1.0);
            Self { gauge }
        }
        #[cfg(not(feature = "metrics"))]
        Self {}
    }
}

impl Drop for GaugeGuard {
    fn drop(&mut self) {
        #[cfg(feature = "metrics")]
        self.gauge.decrement(1.0);
    }
}

/// A server handshake succeeded after `elapsed`.
#[cfg_attr(not(feature = "metrics"), allow(unused_variables))]
pub(crate) fn handshake_duration(elapsed: std::time::Duration) {
    #[cfg(feature = "metrics")]
    metrics::histogram!(SERVER_HANDSHAKE_DURATION_SECONDS).record(elapsed.as_secs_f64());
}

/// Why the server closed a connection: the `reason` label.
#[derive(Clone, Copy, Debug)]
pub(crate) enum CloseReason {
    SvidExpired,
    MaxAge,
    Shutdown,
    PeerClosed,
    Error,
    /// Governance: the peer no longer verifies against today's bundle.
    UntrustedPeer,
    /// Governance: the policy in force denies an upgrade the connection carries.
    PolicyDenied,
}

impl CloseReason {
    /// The `reason` label.
    #[cfg_attr(not(feature = "metrics"), allow(dead_code))]
    fn label(self) -> &'static str {
        match self {
            Self::SvidExpired => "svid_expired",
            Self::MaxAge => "max_age",
            Self::Shutdown => "shutdown",
            Self::PeerClosed => "peer_closed",
            Self::Error => "error",
            Self::UntrustedPeer => "untrusted_peer",
            Self::PolicyDenied => "policy_denied",
        }
    }
}

/// A connection that completed its handshake was closed.
#[cfg_attr(not(feature = "metrics"), allow(unused_variables))]
pub(crate) fn connection_closed(reason: CloseReason) {
    #[cfg(feature = "metrics")]
    counter!(SERVER_CONNECTIONS_CLOSED_TOTAL, "reason" => reason.label()).increment(1);
}

/// A governed upgrade was let through.
#[cfg_attr(not(feature = "metrics"), allow(unused_variables))]
pub(crate) fn upgrade_allowed(upgrade: zt_core::Upgrade) {
    #[cfg(feature = "metrics")]
    counter!(SERVER_UPGRADES_TOTAL, "upgrade" => upgrade.as_str()).increment(1);
}

/// A connection was closed because an upgrade it carries is no longer allowed.
#[cfg_attr(not(feature = "metrics"), allow(unused_variables))]
pub(crate) fn upgrade_closed(reason: CloseReason) {
    #[cfg(feature = "metrics")]
    counter!(SERVER_UPGRADES_CLOSED_TOTAL, "reason" => reason.label()).increment(1);
}
