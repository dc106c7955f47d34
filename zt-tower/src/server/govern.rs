//! Governed upgrades (see [`ServerBuilder::websockets`](super::ServerBuilder::websockets)):
//! an upgraded stream carries traffic no request-level check sees, so zt keeps
//! the request that opened it and decides it again whenever what it was decided
//! on changes, closing the stream once it would no longer be allowed.
//!
//! 1. [`ConnService`](super::service::ConnService) gives each upgrade request a
//!    [`UpgradeTicket`] (a request extension only zt-tower can make).
//! 2. [`Authorize`](crate::Authorize) decides the request like any other; if it
//!    allows it, it adds the canonical view it decided on, with the peer, the
//!    identity and the policy store, to the ticket ([`Approved`]). Nested
//!    `Authorize` layers each add theirs, and each is watched.
//! 3. When the response switches protocols (HTTP/1.1 `101`, HTTP/2 `2xx` to an
//!    extended `CONNECT`), the connection's [`Governor`] commits the approval and
//!    starts its watch; a switching response without an approval is replaced by
//!    `501 Not Implemented`, so no layering of services lets an upgrade through
//!    undecided.
//! 4. The watch re-verifies the peer and decides the request again at every
//!    change of the identity's snapshot or of the policy, and at the peer
//!    SVID's expiry. The first failure closes the connection at once: an HTTP/1
//!    connection carries only the upgraded stream, an HTTP/2 connection all of
//!    that one peer's streams.

use std::borrow::Cow;
use std::io;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime};

use http::HeaderMap;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use zt_core::policy::AmbiguousPath;
use zt_core::{Identity, PeerIdentity, PolicyStore, SpiffeId, SvidError, Upgrade};

use super::connection::{AbortOnDrop, CLOSE, Signal};
use crate::authorize::HeaderView;
use crate::metrics::{self, CloseReason};

/// How many distinct upgrade requests one connection may carry. Each is watched
/// until the connection ends (hyper does not say when an HTTP/2 upgraded stream
/// ends), so the number is bounded; a client that needs more opens another
/// connection.
const MAX_UPGRADES_PER_CONNECTION: usize = 16;

/// The expiry is checked this long after the SVID's `notAfter`, which is
/// inclusive, so that the check after the sleep finds it expired.
const EXPIRY_SLACK: Duration = Duration::from_millis(10);

/// A request extension on upgrade requests of a server with governed upgrades:
/// [`Authorize`](crate::Authorize) records its approval in it. Only zt-tower can
/// make one, so an upgrade request without it is not governed and is refused.
#[derive(Clone, Default)]
pub(crate) struct UpgradeTicket(Arc<Mutex<Vec<Approved>>>);

impl UpgradeTicket {
    /// Records that an `Authorize` layer allowed the request, as `approved` says.
    pub(crate) fn approve(&self, approved: Approved) {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(approved);
    }

    fn take(&self) -> Vec<Approved> {
        std::mem::take(&mut *self.0.lock().unwrap_or_else(PoisonError::into_inner))
    }
}

/// An upgrade request the policy allowed, with what it was decided on.
pub(crate) struct Approved {
    pub(crate) peer: PeerIdentity,
    pub(crate) identity: Identity,
    pub(crate) policy: PolicyStore,
    pub(crate) view: OwnedView,
}

/// The canonical view of an upgrade request, owned, to decide it again later.
#[derive(PartialEq)]
pub(crate) struct OwnedView {
    method: String,
    path: Result<String, AmbiguousPath>,
    host: Option<String>,
    headers: HeaderMap,
    upgrade: Upgrade,
    /// The subject of the request's validated JWT-SVID, and when the token
    /// expires: the stream lives no longer than the token it was admitted on.
    jwt: Option<(SpiffeId, SystemTime)>,
}

impl OwnedView {
    /// The owned form of `view` with `headers`; `None` when it asks for no upgrade.
    /// Copies nothing for a request without an upgrade, the common case.
    pub(crate) fn of(view: &zt_core::Request<'_>, headers: &HeaderMap) -> Option<Self> {
        let upgrade = view.upgrade()?;
        Some(Self {
            method: view.method().to_owned(),
            path: view.path().map(str::to_owned),
            host: view.host().map(str::to_owned),
            headers: headers.clone(),
            upgrade,
            jwt: None,
        })
    }

    /// The same view, admitted on a JWT-SVID with `subject` expiring at `expiry`.
    #[cfg_attr(not(feature = "jwt"), allow(dead_code))]
    pub(crate) fn with_jwt(self, subject: SpiffeId, expiry: SystemTime) -> Self {
        Self {
            jwt: Some((subject, expiry)),
            ..self
        }
    }

    /// How long the stream may live for the token it was admitted on, from `now`.
    fn token_left(&self, now: SystemTime) -> Option<Duration> {
        self.jwt
            .as_ref()
            .map(|(_, expiry)| expiry.duration_since(now).unwrap_or_default())
    }

    /// Whether the policy in force in `policy` still allows the request from `peer`.
    fn allowed(&self, policy: &PolicyStore, peer: &PeerIdentity) -> bool {
        let headers = HeaderView(&self.headers);
        let path = self.path.as_deref().map(Cow::Borrowed).map_err(|why| *why);
        let mut view = zt_core::Request::from_canonical(&self.method, path)
            .with_headers(&headers)
            .with_upgrade(self.upgrade);
        if let Some(host) = &self.host {
            view = view.with_host(host);
        }
        if let Some((subject, _)) = &self.jwt {
            view = view.with_jwt_subject(subject);
        }
        let decision = policy.decide(peer.id(), &view);
        tracing::debug!(
            target: "zt::authz",
            peer = %peer.id(),
            path = self.path.as_deref().unwrap_or("(ambiguous)"),
            upgrade = %self.upgrade,
            decision = %decision.reason(),
            "upgraded stream decided again"
        );
        decision.is_allowed()
    }
}

/// Whether a response switches the request's stream to another protocol.
pub(super) fn switches(status: http::StatusCode, connect: bool) -> bool {
    status == http::StatusCode::SWITCHING_PROTOCOLS || (connect && status.is_success())
}

/// Why a switching response was not let through.
#[derive(Debug)]
pub(super) enum NotCommitted {
    /// No [`Authorize`](crate::Authorize) approved the request.
    Unapproved,
    /// The connection carries as many upgrades as it may.
    TooMany,
}

/// One connection's governed upgrades and their watches.
pub(super) struct Governor {
    signal: Arc<Signal>,
    peer: PeerIdentity,
    watched: Mutex<Vec<Watched>>,
}

struct Watched {
    view: Arc<OwnedView>,
    identity: Identity,
    policy: PolicyStore,
    _task: AbortOnDrop,
}

impl Watched {
    /// Whether this watch decides `approved` already: the same view, under the
    /// same identity and policy store (the peer is the connection's).
    fn watches(&self, approved: &Approved) -> bool {
        *self.view == approved.view
            && self.identity.ptr_eq(&approved.identity)
            && self.policy.ptr_eq(&approved.policy)
    }
}

// === impl Governor ===

impl Governor {
    pub(super) fn new(signal: Arc<Signal>, peer: PeerIdentity) -> Self {
        Self {
            signal,
            peer,
            watched: Mutex::new(Vec::new()),
        }
    }

    /// Lets the switching response to the request of `ticket` through: watches
    /// each approval of it from now on.
    pub(super) fn commit(&self, ticket: &UpgradeTicket) -> Result<(), NotCommitted> {
        let approvals = ticket.take();
        let Some(upgrade) = approvals.first().map(|approved| approved.view.upgrade) else {
            tracing::warn!(
                peer = %self.peer.id(),
                "upgrade answered without an authorization decision; refused (is Authorize in front of the route?)"
            );
            return Err(NotCommitted::Unapproved);
        };
        let mut watched = self.watched.lock().unwrap_or_else(PoisonError::into_inner);
        // The same request decided by the same layer again is watched once.
        let new: Vec<Approved> = approvals
            .into_iter()
            .filter(|approved| !watched.iter().any(|w| w.watches(approved)))
            .collect();
        if watched.len().saturating_add(new.len()) > MAX_UPGRADES_PER_CONNECTION {
            tracing::info!(
                peer = %self.peer.id(),
                max = MAX_UPGRADES_PER_CONNECTION,
                "too many distinct upgrades on one connection; refused"
            );
            return Err(NotCommitted::TooMany);
        }
        metrics::upgrade_allowed(upgrade);
        // Set before the response goes out, so the IO registers its users'
        // wakers before any of them can wait on the upgraded stream.
        self.signal.upgraded.store(true, Ordering::Release);
        for approved in new {
            let view = Arc::new(approved.view);
            let task = tokio::spawn(watch(
                approved.peer,
                approved.identity.clone(),
                approved.policy.clone(),
                Arc::clone(&view),
                Arc::clone(&self.signal),
            ));
            watched.push(Watched {
                view,
                identity: approved.identity,
                policy: approved.policy,
                _task: AbortOnDrop(task),
            });
        }
        Ok(())
    }

    /// Ends the watches: the connection is over.
    pub(super) fn stop(&self) {
        self.watched
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clear();
    }
}

/// Decides an upgraded request again at every change of the identity or the
/// policy and at the peer's SVID expiry; closes the connection at the first
/// failure.
async fn watch(
    peer: PeerIdentity,
    identity: Identity,
    policy: PolicyStore,
    view: Arc<OwnedView>,
    signal: Arc<Signal>,
) {
    let mut identity_changes = identity.changes();
    let mut policy_changes = policy.changes();
    // A source or store whose every writer is gone changes no more; the expiry
    // still comes.
    let (mut identity_open, mut policy_open) = (true, true);
    loop {
        // Checked first too: the policy or the snapshot may have changed since
        // the request was decided.
        let now = SystemTime::now();
        if let Err(err) = peer.reverify(&identity, now) {
            let reason = match err {
                SvidError::Expired => CloseReason::SvidExpired,
                _ => CloseReason::UntrustedPeer,
            };
            close(&signal, &peer, &view, reason, &err);
            return;
        }
        if view.token_left(now).is_some_and(|left| left.is_zero()) {
            close(
                &signal,
                &peer,
                &view,
                CloseReason::PolicyDenied,
                &"the JWT-SVID the upgrade was admitted on expired",
            );
            return;
        }
        if !view.allowed(&policy, &peer) {
            close(
                &signal,
                &peer,
                &view,
                CloseReason::PolicyDenied,
                &"the policy in force denies the upgrade request",
            );
            return;
        }
        let left = match view.token_left(now) {
            Some(token) => peer.time_left(now).min(token),
            None => peer.time_left(now),
        };
        let expiry = tokio::time::Instant::now()
            .checked_add(left.saturating_add(EXPIRY_SLACK))
            .unwrap_or_else(tokio::time::Instant::now);
        tokio::select! {
            alive = identity_changes.changed(), if identity_open => identity_open = alive,
            alive = policy_changes.changed(), if policy_open => policy_open = alive,
            () = tokio::time::sleep_until(expiry) => {}
        }
    }
}

/// Closes the connection of an upgraded stream that is no longer allowed.
fn close(
    signal: &Signal,
    peer: &PeerIdentity,
    view: &OwnedView,
    reason: CloseReason,
    why: &dyn std::fmt::Display,
) {
    // The connection may be draining already (the watchdog drains it at the
    // SVID's expiry): the reason it records first stays, and this close is
    // counted if it is the one that ends the connection.
    signal.ended_by(reason);
    if signal.close() {
        tracing::info!(
            target: "zt::authz",
            peer = %peer.id(),
            path = view.path.as_deref().unwrap_or("(ambiguous)"),
            upgrade = %view.upgrade,
            reason = %why,
            "upgraded stream no longer allowed; closing its connection"
        );
        metrics::upgrade_closed(reason);
    }
}

/// A served connection's IO on a server with governed upgrades: once the
/// watchdog or the governance closes the connection, it fails every read and
/// write, which reaches an upgraded HTTP/1 stream in the application's task.
/// Until the connection carries an upgrade it costs one atomic load per read
/// or write.
pub(super) struct GovernedIo<I> {
    io: I,
    signal: Arc<Signal>,
}

impl<I> GovernedIo<I> {
    pub(super) fn new(io: I, signal: Arc<Signal>) -> Self {
        Self { io, signal }
    }

    /// `Some` error once the connection is closed; registers `waker` to hear of
    /// the close while the connection carries an upgrade.
    fn closed(&self, waker: &atomic_waker::AtomicWaker, cx: &Context<'_>) -> Option<io::Error> {
        if self.signal.upgraded.load(Ordering::Acquire) {
            waker.register(cx.waker());
        }
        (self.signal.state.load(Ordering::Acquire) == CLOSE).then(|| {
            io::Error::new(
                io::ErrorKind::ConnectionAborted,
                "connection closed: its upgrade is no longer allowed or the server closed it",
            )
        })
    }
}

impl<I> Drop for GovernedIo<I> {
    fn drop(&mut self) {
        self.signal.io_gone.store(true, Ordering::Release);
        self.signal.wake_task();
    }
}

impl<I: AsyncRead + Unpin> AsyncRead for GovernedIo<I> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if let Some(err) = self.closed(&self.signal.io_read, cx) {
            return Poll::Ready(Err(err));
        }
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl<I: AsyncWrite + Unpin> AsyncWrite for GovernedIo<I> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        if let Some(err) = self.closed(&self.signal.io_write, cx) {
            return Poll::Ready(Err(err));
        }
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        if let Some(err) = self.closed(&self.signal.io_write, cx) {
            return Poll::Ready(Err(err));
        }
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if let Some(err) = self.closed(&self.signal.io_write, cx) {
            return Poll::Ready(Err(err));
        }
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}
