//! The application's check after the policy: [`DecisionHook`], [`NoHook`] and the
//! hook's [`Refusal`].

use std::borrow::Cow;
use std::fmt;

use http::Request;
use zt_core::PeerIdentity;

/// An application check that runs after the policy allowed a request, with the
/// verified peer at hand: tenant ownership, request-specific rules, anything the
/// policy cannot express.
///
/// Implemented for closures `FnMut(&PeerIdentity, &mut Request<B>) -> Result<(),
/// Refusal>`. It may add extensions to the request for the handler; it must not
/// change the method, path or authority, which the policy decided on and the
/// router is about to route. The [`Decision`](zt_core::Decision) that let the
/// request through is in its extensions. For checks that must `.await`, use an
/// [`AsyncDecisionHook`](super::AsyncDecisionHook), which runs with a deadline.
///
/// ```
/// use http::Request;
/// use zt_tower::{PeerIdentity, Refusal};
///
/// // Only the tenant's own workload may touch /tenants/<name>/…
/// let hook = |peer: &PeerIdentity, request: &mut Request<String>| {
///     let tenant = request.uri().path().strip_prefix("/tenants/").and_then(|p| p.split('/').next());
///     match tenant {
///         Some(t) if peer.id().path() != format!("/tenant/{t}") => Err(Refusal::new("not this tenant's workload")),
///         _ => Ok(()),
///     }
/// };
/// let layer = zt_tower::AuthorizeLayer::new(
/// #   zt_core::IdentityPublisher::new()?.identity(),
/// #   zt_tower::PolicyStore::new(zt_tower::Policy::deny_all()),
/// # ).hook(hook);
/// # let _ = layer;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub trait DecisionHook<B> {
    /// Lets the request through with `Ok(())`, or refuses it: `403 Forbidden`
    /// from zt-tower, `PERMISSION_DENIED` from zt-tonic ([`Denial::Hook`](super::Denial::Hook)).
    ///
    /// # Errors
    ///
    /// A [`Refusal`] whose reason is logged, never sent to the peer.
    fn check(&mut self, peer: &PeerIdentity, request: &mut Request<B>) -> Result<(), Refusal>;

    /// Checks a request from an anonymous peer (one that presented no
    /// certificate, on a server that
    /// [allows them](crate::ServerBuilder::allow_anonymous)) that the policy
    /// allowed.
    ///
    /// Refuses by default, so that a hook written for verified peers never lets
    /// an anonymous request through without saying so: implement it to admit
    /// them. [`NoHook`] admits what the policy admits.
    ///
    /// # Errors
    ///
    /// A [`Refusal`] whose reason is logged, never sent to the peer.
    fn check_anonymous(&mut self, request: &mut Request<B>) -> Result<(), Refusal> {
        let _ = request;
        Err(Refusal::new(
            "the decision hook does not admit anonymous peers (implement \
             DecisionHook::check_anonymous)",
        ))
    }
}

impl<B, F> DecisionHook<B> for F
where
    F: FnMut(&PeerIdentity, &mut Request<B>) -> Result<(), Refusal>,
{
    fn check(&mut self, peer: &PeerIdentity, request: &mut Request<B>) -> Result<(), Refusal> {
        self(peer, request)
    }
}

/// The hook that refuses nothing: the policy alone decides.
#[derive(Clone, Copy, Debug, Default)]
pub struct NoHook;

impl<B> DecisionHook<B> for NoHook {
    fn check(&mut self, _peer: &PeerIdentity, _request: &mut Request<B>) -> Result<(), Refusal> {
        Ok(())
    }

    fn check_anonymous(&mut self, _request: &mut Request<B>) -> Result<(), Refusal> {
        Ok(())
    }
}

/// A [`DecisionHook`]'s refusal, with the reason to log.
#[derive(Clone, Debug)]
pub struct Refusal {
    reason: Cow<'static, str>,
}

// === impl Refusal ===

impl Refusal {
    /// A refusal for `reason`, which is logged, never sent to the peer.
    pub fn new(reason: impl Into<Cow<'static, str>>) -> Self {
        Self {
            reason: reason.into(),
        }
    }

    /// Why the request was refused.
    pub fn reason(&self) -> &str {
        &self.reason
    }
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.reason)
    }
}
