//! The names of zt-core's metrics, and [`describe`] for exporters.
//!
//! zt-core records through the [`metrics`](https://docs.rs/metrics) facade
//! (feature `metrics`, default): the library says what happened, the application
//! chooses the exporter (Prometheus, OpenTelemetry, StatsD…) by installing a
//! recorder. Until one is installed every call is a no-op. The names follow the
//! Prometheus conventions: `_total` for counters, seconds for time, and labels with
//! a small, fixed set of values — never a SPIFFE ID, a path or a header.
//!
//! | name | kind | labels |
//! |---|---|---|
//! | [`IDENTITY_SVID_EXPIRY_TIMESTAMP_SECONDS`] | gauge | |
//! | [`IDENTITY_GENERATION`] | gauge | |
//! | [`IDENTITY_BUNDLE_AUTHORITIES`] | gauge | `trust_domain` |
//! | [`IDENTITY_UPDATES_TOTAL`] | counter | `source`, `result` |
//! | [`WORKLOAD_API_RECONNECTS_TOTAL`] | counter | |
//! | [`POLICY_GENERATION`] | gauge | |
//! | [`POLICY_RULES`] | gauge | |
//! | [`POLICY_RELOADS_TOTAL`] | counter | `result` |
//! | [`PEER_REVERIFY_FAILURES_TOTAL`] | counter | `reason` |
//!
//! docs/operations.md says when each one changes. The gauges describe one
//! identity and one policy per process: with several, the last one to change
//! sets them.
//!
//! The names are here whatever the features, so that an application can refer to
//! them; without the `metrics` feature nothing is recorded.
//!
//! ```
//! // Once, after installing the recorder, so that the exporter prints help texts.
//! zt_core::metrics::describe();
//! assert!(zt_core::metrics::NAMES.contains(&zt_core::metrics::POLICY_RULES));
//! ```

#[cfg(feature = "metrics")]
use metrics::{Unit, counter, describe_counter, describe_gauge, gauge};

#[cfg(feature = "metrics")]
use crate::error::SvidError;

/// Gauge: Unix time, in seconds, of the serving SVID's `notAfter`. Alert on
/// `zt_identity_svid_expiry_timestamp_seconds - time()`.
pub const IDENTITY_SVID_EXPIRY_TIMESTAMP_SECONDS: &str =
    "zt_identity_svid_expiry_timestamp_seconds";
/// Gauge: the generation of the serving identity snapshot.
pub const IDENTITY_GENERATION: &str = "zt_identity_generation";
/// Gauge: the authorities of each trusted trust domain's bundle; label
/// `trust_domain`.
pub const IDENTITY_BUNDLE_AUTHORITIES: &str = "zt_identity_bundle_authorities";
/// Counter: identity candidates; labels `source` (`files`, `workload_api`,
/// `static`) and `result` (`ok`, `rejected`).
pub const IDENTITY_UPDATES_TOTAL: &str = "zt_identity_updates_total";
/// Counter: Workload API stream reconnections.
pub const WORKLOAD_API_RECONNECTS_TOTAL: &str = "zt_workload_api_reconnects_total";
/// Gauge: the generation of the policy in force.
pub const POLICY_GENERATION: &str = "zt_policy_generation";
/// Gauge: the number of rules of the policy in force.
pub const POLICY_RULES: &str = "zt_policy_rules";
/// Counter: policies stored or rejected; label `result` (`ok`, `rejected`).
pub const POLICY_RELOADS_TOTAL: &str = "zt_policy_reloads_total";
/// Counter: peers of open connections that no longer verify; label `reason`.
pub const PEER_REVERIFY_FAILURES_TOTAL: &str = "zt_peer_reverify_failures_total";

/// Every metric zt-core records.
pub const NAMES: &[&str] = &[
    IDENTITY_SVID_EXPIRY_TIMESTAMP_SECONDS,
    IDENTITY_GENERATION,
    IDENTITY_BUNDLE_AUTHORITIES,
    IDENTITY_UPDATES_TOTAL,
    WORKLOAD_API_RECONNECTS_TOTAL,
    POLICY_GENERATION,
    POLICY_RULES,
    POLICY_RELOADS_TOTAL,
    PEER_REVERIFY_FAILURES_TOTAL,
];

/// Describes zt-core's metrics (help text and unit) to the installed recorder.
///
/// Call it once after installing the recorder; calling it again only repeats the
/// same descriptions. zt-tower's `metrics::describe` calls it too.
#[cfg(feature = "metrics")]
#[cfg_attr(docsrs, doc(cfg(feature = "metrics")))]
pub fn describe() {
    describe_gauge!(
        IDENTITY_SVID_EXPIRY_TIMESTAMP_SECONDS,
        Unit::Seconds,
        "Unix time at which the serving SVID expires (notAfter)"
    );
    describe_gauge!(
        IDENTITY_GENERATION,
        "Generation of the serving identity snapshot"
    );
    describe_gauge!(
        IDENTITY_BUNDLE_AUTHORITIES,
        "Trusted authorities in the bundle of each trust domain"
    );
    describe_counter!(
        IDENTITY_UPDATES_TOTAL,
        "Identity candidates accepted or rejected, by source"
    );
    describe_counter!(
        WORKLOAD_API_RECONNECTS_TOTAL,
        "Reconnections to the SPIFFE Workload API"
    );
    describe_gauge!(POLICY_GENERATION, "Generation of the policy in force");
    describe_gauge!(POLICY_RULES, "Rules of the policy in force");
    describe_counter!(POLICY_RELOADS_TOTAL, "Policies stored or rejected");
    describe_counter!(
        PEER_REVERIFY_FAILURES_TOTAL,
        "Peers of open connections that no longer verify, by reason"
    );
}

/// Without the `metrics` feature there is nothing to describe.
#[cfg(not(feature = "metrics"))]
pub fn describe() {}

/// Where an identity candidate came from: the `source` label.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum UpdateSource {
    #[cfg(feature = "files")]
    Files,
    #[cfg(feature = "workload-api")]
    WorkloadApi,
    /// Memory: `StaticSource` or a publisher used directly.
    Static,
}

impl UpdateSource {
    #[cfg(feature = "metrics")]
    fn as_str(self) -> &'static str {
        match self {
            #[cfg(feature = "files")]
            Self::Files => "files",
            #[cfg(feature = "workload-api")]
            Self::WorkloadApi => "workload_api",
            Self::Static => "static",
        }
    }
}

/// A new snapshot serves: its expiry, generation and bundles. Trust domains that
/// `previous` trusted and the new one does not are set to zero authorities.
#[cfg_attr(not(feature = "metrics"), allow(unused_variables))]
pub(crate) fn identity_published(
    snapshot: &crate::identity::Snapshot,
    previous: Option<&crate::identity::Snapshot>,
) {
    #[cfg(feature = "metrics")]
    {
        let not_after = snapshot
            .svid()
            .not_after()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64());
        gauge!(IDENTITY_SVID_EXPIRY_TIMESTAMP_SECONDS).set(not_after);
        // Generations stay far below 2^53, where f64 is exact.
        #[allow(clippy::cast_precision_loss)]
        gauge!(IDENTITY_GENERATION).set(snapshot.generation() as f64);
        let bundles = snapshot.bundles();
        for bundle in bundles.iter() {
            gauge!(IDENTITY_BUNDLE_AUTHORITIES, "trust_domain" => bundle.trust_domain().to_string())
                .set(bundle.authorities().len() as f64);
        }
        for gone in previous
            .into_iter()
            .flat_map(|p| p.bundles().iter())
            .filter(|b| bundles.get(b.trust_domain()).is_none())
        {
            gauge!(IDENTITY_BUNDLE_AUTHORITIES, "trust_domain" => gone.trust_domain().to_string())
                .set(0.0);
        }
    }
}

/// A candidate was accepted (`ok`) or rejected.
#[cfg_attr(not(feature = "metrics"), allow(unused_variables))]
pub(crate) fn identity_update(source: UpdateSource, ok: bool) {
    #[cfg(feature = "metrics")]
    counter!(
        IDENTITY_UPDATES_TOTAL,
        "source" => source.as_str(),
        "result" => if ok { "ok" } else { "rejected" }
    )
    .increment(1);
}

/// The Workload API stream is reopened.
#[cfg(feature = "workload-api")]
pub(crate) fn workload_api_reconnect() {
    #[cfg(feature = "metrics")]
    counter!(WORKLOAD_API_RECONNECTS_TOTAL).increment(1);
}

/// A policy is in force (`reloaded`: it replaced another).
#[cfg_attr(not(feature = "metrics"), allow(unused_variables))]
pub(crate) fn policy_stored(generation: u64, rules: usize, reloaded: bool) {
    #[cfg(feature = "metrics")]
    {
        #[allow(clippy::cast_precision_loss)]
        gauge!(POLICY_GENERATION).set(generation as f64);
        #[allow(clippy::cast_precision_loss)]
        gauge!(POLICY_RULES).set(rules as f64);
        if reloaded {
            counter!(POLICY_RELOADS_TOTAL, "result" => "ok").increment(1);
        }
    }
}

/// A policy was rejected; the old one stays.
pub(crate) fn policy_rejected() {
    #[cfg(feature = "metrics")]
    counter!(POLICY_RELOADS_TOTAL, "result" => "rejected").increment(1);
}

/// A peer no longer verifies.
#[cfg_attr(not(feature = "metrics"), allow(unused_variables))]
pub(crate) fn reverify_failed(err: &crate::error::SvidError) {
    #[cfg(feature = "metrics")]
    counter!(PEER_REVERIFY_FAILURES_TOTAL, "reason" => reverify_reason(err)).increment(1);
}

/// The `reason` label of a re-verification failure: a fixed set, whatever the
/// error carries.
#[cfg(feature = "metrics")]
fn reverify_reason(err: &SvidError) -> &'static str {
    match err {
        SvidError::Expired => "expired",
        SvidError::NotYetValid => "not_yet_valid",
        SvidError::NoBundle(_) | SvidError::EmptyBundle(_) => "no_bundle",
        SvidError::UnknownIssuer(_) => "unknown_authority",
        SvidError::WrongUsage(_) => "wrong_usage",
        _ => "invalid",
    }
}

#[cfg(all(test, feature = "metrics"))]
mod tests {
    use super::*;

    #[test]
    fn reverify_reasons_are_a_fixed_set() {
        assert_eq!(reverify_reason(&SvidError::Expired), "expired");
        assert_eq!(
            reverify_reason(&SvidError::NoBundle("example.org".parse().unwrap())),
            "no_bundle"
        );
        assert_eq!(reverify_reason(&SvidError::LeafIsCa), "invalid");
    }
}
