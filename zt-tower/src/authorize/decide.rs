//! The decision path, once for every front end: re-verify the peer against
//! today's snapshot, read the request's shape, decide its canonical view with
//! the policy, pass it on in that form, run the hook; log every step's refusal
//! and count the outcome. It returns a typed refusal, a [`Denial`]; answering it
//! is the front end's part ([`Answer`](super::Answer)).

use std::time::SystemTime;

use http::Request;
use zt_core::{AnonymousPeer, Decision, Identity, PeerIdentity, PolicyStore, Principal, Verdict};

use super::shape::{HeaderView, Rewrite, Shape};
use super::{DecisionHook, log};
use crate::metrics::{self, AuthzMetrics, DecisionCounters, Outcome};
use crate::server::{Approved, OwnedView, UpgradeTicket};

/// Why [`Authorize`](super::Authorize) refused a request, for integrations that
/// answer refusals in their own protocol (zt-tonic answers with a gRPC status).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Denial {
    /// The request carried neither a verified peer identity nor the mark of an
    /// anonymous peer: a server setup error.
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
    /// The request carried a JWT-SVID that does not validate: a bad signature,
    /// an unknown key, another audience, an expired token, a malformed or
    /// repeated token header (see `AuthorizeLayer::jwt`, feature `jwt`).
    InvalidToken,
    /// The request asks for a tunnel or a protocol switch (`CONNECT`,
    /// `Upgrade`) that zt does not govern: any, unless zt-tower's server governs
    /// WebSocket upgrades ([`ServerBuilder::websockets`](crate::ServerBuilder::websockets)),
    /// and then any but a WebSocket upgrade. It would escape per-request
    /// authorization.
    Unsupported,
}

/// How a request that is let through was let through.
#[derive(Clone, Copy)]
pub(super) enum Passed {
    /// The policy and the hook allowed it.
    Allowed,
    /// The policy would deny it and is in dry-run mode; the hook allowed it.
    DryRunDenied,
}

/// What the policy decided, for the counters.
// Without the `metrics` feature only `AuthzMetrics` reads it, and only the decision.
#[cfg_attr(not(feature = "metrics"), allow(dead_code))]
pub(super) struct Decided {
    decision: Decision,
    pub(super) peer: Principal,
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
    /// Validates the JWT-SVIDs requests carry, when the layer reads them.
    #[cfg(feature = "jwt")]
    pub(super) jwt: Option<super::jwt::JwtCheck>,
}

// === impl Shared ===

impl Shared {
    pub(super) fn new(identity: Identity, policy: PolicyStore, metrics: AuthzMetrics) -> Self {
        Self {
            identity,
            policy,
            metrics,
            counters: DecisionCounters::default(),
            #[cfg(feature = "jwt")]
            jwt: None,
        }
    }

    /// Decides `request`; `Ok` lets it through, in canonical form. Logs the
    /// outcome, and counts it ([`record`](Self::record)).
    pub(super) fn authorize<B, H: DecisionHook<B>>(
        &self,
        hook: &mut H,
        request: &mut Request<B>,
    ) -> Result<(), Denial> {
        let mut decided = None;
        let result = self.decide(request, &mut decided).and_then(|passed| {
            let Some(Decided { peer, .. }) = &decided else {
                return Err(Denial::NoIdentity);
            };
            let checked = match peer {
                Principal::Verified(verified) => hook.check(verified, request),
                _ => hook.check_anonymous(request),
            };
            match checked {
                Ok(()) => Ok(passed),
                Err(refusal) => {
                    log::hook_refused(peer, request.method(), request.uri(), &refusal);
                    Err(Denial::Hook)
                }
            }
        });
        self.record(result, decided.as_ref());
        result.map(drop)
    }

    /// Counts a finished decision, here, the one place decisions are counted: in
    /// [`AuthzMetrics`] and through the `metrics` facade.
    pub(super) fn record(&self, result: Result<Passed, Denial>, decided: Option<&Decided>) {
        if decided.is_some_and(|d| d.decision.audit_rules().len() > 0) {
            self.metrics.record_audit();
        }
        self.metrics.record(outcome(result));
        count(&self.counters, result, decided);
    }

    /// The decision path up to the application's hook; `decided` is set once the
    /// policy decided. A request that passes carries the [`Decision`] in its
    /// extensions.
    pub(super) fn decide<B>(
        &self,
        request: &mut Request<B>,
        decided: &mut Option<Decided>,
    ) -> Result<Passed, Denial> {
        // A verified peer, or one the server marked anonymous: an anonymous peer
        // is never inferred from a missing identity.
        let extensions = request.extensions();
        let peer = match extensions.get::<PeerIdentity>() {
            Some(peer) => Principal::Verified(peer.clone()),
            None => match extensions.get::<AnonymousPeer>() {
                Some(anonymous) => Principal::Anonymous(*anonymous),
                None => {
                    log::no_identity(request);
                    return Err(Denial::NoIdentity);
                }
            },
        };

        // An anonymous peer has nothing to verify again.
        if let Principal::Verified(verified) = &peer
            && let Err(err) = verified.reverify(&self.identity, SystemTime::now())
        {
            log::untrusted_peer(verified, request, &err);
            return Err(Denial::UntrustedPeer);
        }

        // The token's subject, validated for this request, before the policy
        // that may decide on it.
        #[cfg(feature = "jwt")]
        let jwt_peer = match self.jwt.as_ref().map(|check| check.read(request)) {
            Some(Ok(jwt)) => jwt,
            Some(Err(err)) => {
                log::invalid_token(&peer, request, &err);
                return Err(Denial::InvalidToken);
            }
            None => None,
        };
        #[cfg(feature = "jwt")]
        let jwt_subject = jwt_peer.as_ref().map(zt_core::jwt::JwtPeer::id);
        #[cfg(not(feature = "jwt"))]
        let jwt_subject = None;

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
            if let Some(subject) = jwt_subject {
                view = view.with_jwt_subject(subject);
            }
            let decision = match &peer {
                Principal::Verified(verified) => self.policy.decide_peer(verified, &view),
                _ => self.policy.decide_anonymous(&view),
            };
            log::decision(&peer, jwt_subject, method, path, &decision);
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
        // For the hook and the handler: which rule let the request through.
        if let Some(decided) = decided.as_ref() {
            request.extensions_mut().insert(decided.decision.clone());
        }
        // An upgrade admitted on a token lives no longer than the token.
        #[cfg(feature = "jwt")]
        let upgrade = match (upgrade, &jwt_peer) {
            (Some(view), Some(jwt)) => Some(view.with_jwt(jwt.id().clone(), jwt.expiry())),
            (upgrade, _) => upgrade,
        };
        // For the handler: on whose behalf the request came, when a token said so.
        #[cfg(feature = "jwt")]
        if let Some(jwt) = jwt_peer {
            request.extensions_mut().insert(jwt);
        }
        // Only a verified peer's upgrade is governed: an anonymous peer has no
        // SVID whose expiry or trust a watch could follow, so its switching
        // response finds no approval and is refused.
        if let Some(view) = upgrade
            && let Some(Decided {
                peer: Principal::Verified(verified),
                ..
            }) = decided.as_ref()
            && let Some(ticket) = request.extensions().get::<UpgradeTicket>()
        {
            ticket.approve(Approved {
                peer: verified.clone(),
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
        Err(Denial::InvalidToken) => Outcome::InvalidToken,
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
        let trust_domain = match &d.peer {
            Principal::Verified(verified) => verified.id().trust_domain().shared_name(),
            _ => metrics::anonymous_trust_domain(),
        };
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
        Err(Denial::InvalidToken) => "invalid_token",
        Err(Denial::Unsupported) => "unsupported",
        Err(Denial::Hook) => "hook",
    };
    metrics::refusal(reason);
}
