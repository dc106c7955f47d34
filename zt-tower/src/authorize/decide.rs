//! The decision path, once for every front end: re-verify the peer against
//! today's snapshot, read the request's shape, decide its canonical view with
//! the policy, pass it on in that form, run the hook; log every step's refusal
//! and count the outcome. It returns a typed refusal, a [`Denial`]; answering it
//! is the front end's part ([`Answer`](super::Answer)).

use std::time::SystemTime;

use http::Request;
use zt_core::{Decision, Identity, PeerIdentity, PolicyStore, Verdict};

use super::shape::{HeaderView, Rewrite, Shape};
use super::{DecisionHook, log};
use crate::metrics::{self, AuthzMetrics, DecisionCounters, Outcome};
use crate::server::{Approved, OwnedView, UpgradeTicket};

/// Why [`Authorize`](super::Authorize) refused a request, for integrations that
/// answer refusals in their own protocol (zt-tonic answers with a gRPC status).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Denial {
    /// The request carried no verified peer identity: a server setup error.
    NoIdentity,
    /// The peer no longer verifies: its SVID expired or today's bundle no longer
    /// vouches for it.
    UntrustedPeer,
    /// The policy denied the request.
    Policy,
    /// The policy allowed the request and the [`DecisionHook`] refused it.
    Hook,
    /// The request's shape cannot be decided on: a method with lower-case
    /// letters, a repeated `Host`, a `Host` that disagrees with the
    /// `:authority` or the absolute-form target, or a malformed authority.
    Malformed,
    /// The request asks for a tunnel or a protocol switch (`CONNECT`,
    /// `Upgrade`) that zt does not govern: any, unless zt-tower's server governs
    /// WebSocket upgrades ([`ServerBuilder::websockets`](crate::ServerBuilder::websockets)),
    /// and then any but a WebSocket upgrade. It would escape per-request
    /// authorization.
    Unsupported,
}

/// How a request that is let through was let through.
#[derive(Clone, Copy)]
enum Passed {
    /// The policy and the hook allowed it.
    Allowed,
    /// The policy would deny it and is in dry-run mode; the hook allowed it.
    DryRunDenied,
}

/// What the policy decided, for the counters.
// Without the `metrics` feature only `AuthzMetrics` reads it, and only the decision.
#[cfg_attr(not(feature = "metrics"), allow(dead_code))]
struct Decided {
    decision: Decision,
    peer: PeerIdentity,
    /// The `protocol` label.
    protocol: &'static str,
}

/// What every clone of the service shares: one reference count per clone.
pub(super) struct Shared {
    pub(super) identity: Identity,
    pub(super) policy: PolicyStore,
    pub(super) metrics: AuthzMetrics,
    /// The facade's decision handles this layer registered.
    counters: DecisionCounters,
}

// === impl Shared ===

impl Shared {
    pub(super) fn new(identity: Identity, policy: PolicyStore, metrics: AuthzMetrics) -> Self {
        Self {
            identity,
            policy,
            metrics,
            counters: DecisionCounters::default(),
        }
    }

    /// Decides `request`; `Ok` lets it through, in canonical form. Logs the
    /// outcome, and counts it here, the one place decisions are counted: in
    /// [`AuthzMetrics`] and through the `metrics` facade.
    pub(super) fn authorize<B, H: DecisionHook<B>>(
        &self,
        hook: &mut H,
        request: &mut Request<B>,
    ) -> Result<(), Denial> {
        let mut decided = None;
        let result = self.decide(hook, request, &mut decided);
        if decided
            .as_ref()
            .is_some_and(|d| d.decision.audit_rules().len() > 0)
        {
            self.metrics.record_audit();
        }
        self.metrics.record(outcome(result));
        count(&self.counters, result, decided.as_ref());
        result.map(drop)
    }

    /// The decision path; `decided` is set once the policy decided.
    fn decide<B, H: DecisionHook<B>>(
        &self,
        hook: &mut H,
        request: &mut Request<B>,
        decided: &mut Option<Decided>,
    ) -> Result<Passed, Denial> {
        let Some(peer) = request.extensions().get::<PeerIdentity>().cloned() else {
            log::no_identity(request);
            return Err(Denial::NoIdentity);
        };

        if let Err(err) = peer.reverify(&self.identity, SystemTime::now()) {
            log::untrusted_peer(&peer, request, &err);
            return Err(Denial::UntrustedPeer);
        }

        let (verdict, rewrite, peer, upgrade) = {
            let path = request.uri().path();
            let shape = match Shape::of(request) {
                Ok(shape) => shape,
                Err((denial, why)) => {
                    log::shape_refused(&peer, request.method().as_str(), path, why);
                    return Err(denial);
                }
            };
            let method = shape.method;
            let asks_upgrade = shape.upgrade.is_some();
            let headers = HeaderView(request.headers());
            // The canonical spelling, made only for an authority written otherwise.
            let canonical_authority = shape
                .authority
                .as_ref()
                .filter(|_| shape.rewrite_authority)
                .map(ToString::to_string);
            let mut view =
                zt_core::Request::from_canonical(method, shape.path).with_headers(&headers);
            if let Some(authority) = shape.authority {
                view = view.with_authority(authority);
            }
            if let Some(upgrade) = shape.upgrade {
                view = view.with_upgrade(upgrade);
            }
            let decision = self.policy.decide(peer.id(), &view);
            log::decision(&peer, method, path, &decision);
            if let Some(rule) = decision.rule() {
                // The request's span (zt-tower's server opens one) carries the rule.
                tracing::Span::current().record("security_rule.name", rule);
            }
            let (allowed, verdict) = (decision.is_allowed(), decision.verdict());
            // The peer moves into `decided`, which the counters read afterwards.
            let decided = decided.insert(Decided {
                decision,
                peer,
                protocol: protocol(request),
            });
            if !allowed {
                return Err(Denial::Policy);
            }
            let rewrite = Rewrite::of(request, &view, canonical_authority);
            // An upgrade keeps what it was decided on, to be decided again for
            // as long as its stream lives.
            let upgrade = if asks_upgrade {
                OwnedView::of(&view, request.headers())
            } else {
                None
            };
            (verdict, rewrite, &decided.peer, upgrade)
        };
        // The application routes and serves what the policy decided on.
        if let Some(rewrite) = rewrite
            && let Err(why) = rewrite.apply(request)
        {
            log::not_canonical(peer, request, why);
            return Err(Denial::Malformed);
        }

        if let Err(refusal) = hook.check(peer, request) {
            log::hook_refused(peer, request, &refusal);
            return Err(Denial::Hook);
        }
        if let Some(view) = upgrade
            && let Some(ticket) = request.extensions().get::<UpgradeTicket>()
        {
            ticket.approve(Approved {
                peer: peer.clone(),
                identity: self.identity.clone(),
                policy: self.policy.clone(),
                view,
            });
        }
        Ok(if verdict == Verdict::Allow {
            Passed::Allowed
        } else {
            Passed::DryRunDenied
        })
    }
}

/// The counter a decision goes to. Exhaustive on purpose: a new kind of refusal
/// cannot go uncounted.
fn outcome(result: Result<Passed, Denial>) -> Outcome {
    match result {
        Ok(Passed::Allowed) => Outcome::Allowed,
        Ok(Passed::DryRunDenied) => Outcome::DryRunDenied,
        Err(Denial::NoIdentity) => Outcome::NoIdentity,
        Err(Denial::UntrustedPeer) => Outcome::UntrustedPeer,
        Err(Denial::Policy) => Outcome::Denied,
        Err(Denial::Hook) => Outcome::HookDenied,
        // Shapes zt cannot decide on, tunnels included, and requests that could
        // not be passed on in canonical form.
        Err(Denial::Malformed | Denial::Unsupported) => Outcome::Malformed,
    }
}

/// The `protocol` label: `grpc` for a request whose content type is
/// `application/grpc` (with or without a suffix such as `+proto`), whichever front
/// end answers it; `http` otherwise. The client chooses it, so it only splits the
/// counts, it decides nothing.
fn protocol<B>(request: &Request<B>) -> &'static str {
    const GRPC: &[u8] = b"application/grpc";
    let grpc = request
        .headers()
        .get(http::header::CONTENT_TYPE)
        .and_then(|value| value.as_bytes().get(..GRPC.len()))
        .is_some_and(|prefix| prefix.eq_ignore_ascii_case(GRPC));
    if grpc { "grpc" } else { "http" }
}

/// Counts a decision through the `metrics` facade: one call per outcome, plus
/// one per audit rule matched. Exhaustive on purpose, as [`outcome`].
#[cfg_attr(not(feature = "metrics"), allow(unused_variables))]
fn count(counters: &DecisionCounters, result: Result<Passed, Denial>, decided: Option<&Decided>) {
    #[cfg(feature = "metrics")]
    if let Some(d) = decided {
        let trust_domain = d.peer.id().trust_domain();
        for rule in d.decision.audit_rules_shared() {
            counters.decision("audit", Some(rule), d.protocol, trust_domain);
        }
        let decision = match result {
            Ok(Passed::Allowed) => Some("allow"),
            Ok(Passed::DryRunDenied) => Some("dry_run_deny"),
            Err(Denial::Policy) => Some("deny"),
            // Refused after the policy allowed it: counted as a refusal below.
            Err(_) => None,
        };
        if let Some(decision) = decision {
            counters.decision(decision, d.decision.rule_shared(), d.protocol, trust_domain);
            return;
        }
    }
    #[cfg(not(feature = "metrics"))]
    let _ = decided;
    let reason = match result {
        Ok(_) | Err(Denial::Policy) => return,
        Err(Denial::NoIdentity) => "no_identity",
        Err(Denial::UntrustedPeer) => "untrusted_peer",
        Err(Denial::Malformed) => "malformed",
        Err(Denial::Unsupported) => "unsupported",
        Err(Denial::Hook) => "hook",
    };
    metrics::refusal(reason);
}
