//! The decision events: one `tracing` event per decision, target `zt::authz`,
//! with the fields `peer` (the SPIFFE ID, or `anonymous`), `method`, `path`,
//! `decision`, `rule` and `reason`.
//! Allowed: `DEBUG`; refused or audited: `INFO`; dry-run denials and peers that
//! no longer verify: `WARN`; setup errors: `ERROR`. The reason goes here, never to
//! the peer.

use http::{Method, Request, Uri};
use zt_core::{Decision, PeerIdentity, Principal, SpiffeId, SvidError, Verdict};

use super::Refusal;

pub(super) fn no_identity<B>(request: &Request<B>) {
    tracing::error!(
        target: "zt::authz",
        method = request.method().as_str(),
        path = request.uri().path(),
        decision = "deny",
        "request carries no verified peer identity: serve the application with \
         zt_tower::Server (or zt_tonic's incoming connections), which puts the peer's \
         identity into every request"
    );
}

pub(super) fn untrusted_peer<B>(peer: &PeerIdentity, request: &Request<B>, err: &SvidError) {
    tracing::warn!(
        target: "zt::authz",
        peer = %peer.id(),
        method = request.method().as_str(),
        path = request.uri().path(),
        decision = "deny",
        rule = "peer verification",
        reason = %err,
        "peer no longer verifies"
    );
}

pub(super) fn shape_refused(peer: &Principal, method: &str, path: &str, why: &str) {
    tracing::info!(
        target: "zt::authz",
        peer = %peer,
        method,
        path,
        decision = "deny",
        rule = "request shape",
        reason = why,
        "request refused before the policy"
    );
}

/// The policy's decision, and one event per audit rule it matched.
/// `jwt` is the subject of the request's validated JWT-SVID, logged as the field
/// `jwt` (empty without one).
pub(super) fn decision(
    peer: &Principal,
    jwt: Option<&SpiffeId>,
    method: &str,
    path: &str,
    decision: &Decision,
) {
    let rule = decision.rule().unwrap_or("default deny");
    let jwt = jwt.map_or("", SpiffeId::as_str);
    for audit in decision.audit_rules() {
        tracing::info!(
            target: "zt::authz",
            peer = %peer,
            jwt,
            method,
            path,
            decision = decision.verdict().as_str(),
            rule,
            reason = %decision.reason(),
            audit_rule = audit,
            "audit rule matched"
        );
    }
    match (decision.verdict(), decision.dry_run()) {
        (Verdict::Allow, _) => tracing::debug!(
            target: "zt::authz",
            peer = %peer,
            jwt,
            method,
            path,
            decision = "allow",
            rule,
            reason = %decision.reason(),
            "request allowed"
        ),
        (Verdict::Deny, true) => tracing::warn!(
            target: "zt::authz",
            peer = %peer,
            jwt,
            method,
            path,
            decision = "dry_run_deny",
            rule,
            reason = %decision.reason(),
            "policy would deny this request; let through because the policy is in dry-run mode"
        ),
        (Verdict::Deny, false) => tracing::info!(
            target: "zt::authz",
            peer = %peer,
            jwt,
            method,
            path,
            decision = "deny",
            rule,
            reason = %decision.reason(),
            "request denied"
        ),
    }
}

pub(super) fn not_canonical<B>(peer: &Principal, request: &Request<B>, why: &str) {
    tracing::warn!(
        target: "zt::authz",
        peer = %peer,
        method = request.method().as_str(),
        path = request.uri().path(),
        decision = "deny",
        rule = "request shape",
        reason = why,
        "request could not be passed on in canonical form"
    );
}

pub(super) fn hook_refused(peer: &Principal, method: &Method, uri: &Uri, refusal: &Refusal) {
    tracing::info!(
        target: "zt::authz",
        peer = %peer,
        method = method.as_str(),
        path = uri.path(),
        decision = "deny",
        rule = "decision hook",
        reason = %refusal,
        "request refused"
    );
}

#[cfg(feature = "jwt")]
pub(super) fn invalid_token<B>(
    peer: &Principal,
    request: &Request<B>,
    err: &super::jwt::TokenError,
) {
    tracing::info!(
        target: "zt::authz",
        peer = %peer,
        method = request.method().as_str(),
        path = request.uri().path(),
        decision = "deny",
        rule = "jwt-svid",
        reason = %err,
        "request refused: its JWT-SVID does not validate"
    );
}
