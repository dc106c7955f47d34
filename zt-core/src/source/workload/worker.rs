//! The task behind a `WorkloadApiSource`: connects, reads the `FetchX509SVID`
//! stream, publishes each valid update, and reconnects with jittered backoff.

use std::hash::{BuildHasher, RandomState};
use std::time::Duration;

use spiffe::transport::{Endpoint, TransportError};
use tonic::{Code, Status};

use super::candidate::{candidate, error_chain, picked_id};
use super::{CONNECT_TIMEOUT, SvidPicker};
use crate::identity::IdentityPublisher;
use crate::source::workload_proto::{self, X509SvidResponse};

/// Exponential backoff with jitter.
#[derive(Debug)]
pub(super) struct Backoff {
    initial: Duration,
    max: Duration,
    next: Duration,
    random: RandomState,
    draws: u64,
}

impl Backoff {
    pub(super) fn new(initial: Duration, max: Duration) -> Self {
        Self {
            initial,
            max,
            next: initial,
            random: RandomState::new(),
            draws: 0,
        }
    }

    pub(super) fn reset(&mut self) {
        self.next = self.initial;
    }

    /// How long a stream must stay open, after a valid update, to count as healthy
    /// and reset the delay: the longest delay. A stream that lives that long is not
    /// part of a reconnection storm.
    pub(super) fn healthy_after(&self) -> Duration {
        self.max
    }

    /// The delay before the next attempt: uniform in [next/2, next], then `next`
    /// doubles up to `max`.
    pub(super) fn delay(&mut self) -> Duration {
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
pub(super) enum Next {
    /// Drop the stream and reconnect after a backoff.
    Reconnect,
    /// The endpoint will never serve this client: stop.
    Stop,
}

/// The task behind a [`WorkloadApiSource`]; owns the one publisher.
pub(super) struct Worker {
    pub(super) endpoint: Endpoint,
    pub(super) picker: SvidPicker,
    pub(super) backoff: Backoff,
    pub(super) first_update_timeout: Duration,
    pub(super) publisher: IdentityPublisher,
    pub(super) stopped: bool,
}

impl Worker {
    pub(super) async fn run(mut self) {
        loop {
            if let Next::Stop = self.session().await {
                return;
            }
            crate::metrics::workload_api_reconnect();
            let delay = self.backoff.delay();
            tracing::debug!(retry_in = ?delay, "reconnecting to the Workload API");
            tokio::time::sleep(delay).await;
        }
    }

    /// One connection: connect, open the stream, apply updates until it ends.
    pub(super) async fn session(&mut self) -> Next {
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
        let opened = tokio::time::Instant::now();
        // When the stream delivered its first valid update.
        let mut valid_since = None;
        let mut first = true;
        let next = loop {
            let message = if first {
                first = false;
                match tokio::time::timeout(self.first_update_timeout, stream.message()).await {
                    Ok(message) => message,
                    Err(_) => {
                        self.publisher.reject(&format_args!(
                            "the Workload API opened the X.509-SVID stream but sent no update within {:?}",
                            self.first_update_timeout
                        ));
                        break Next::Reconnect;
                    }
                }
            } else {
                stream.message().await
            };
            match message {
                Ok(Some(update)) => {
                    if self.apply(&update) && valid_since.is_none() {
                        valid_since = Some(tokio::time::Instant::now());
                    }
                }
                Ok(None) => {
                    self.publisher
                        .reject(&"the Workload API closed the X.509-SVID stream");
                    break Next::Reconnect;
                }
                Err(status) => break self.refused("Workload API stream failed", &status),
            }
        };
        if valid_since.is_some_and(|since| since.elapsed() >= self.backoff.healthy_after()) {
            self.backoff.reset();
        }
        tracing::debug!(open_for = ?opened.elapsed(), "Workload API stream ended");
        next
    }

    /// The endpoint could not be reached: retried, unless its transport is one
    /// this build cannot use.
    pub(super) fn unreachable(&mut self, err: &TransportError) -> Next {
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
    pub(super) fn refused(&mut self, context: &str, status: &Status) -> Next {
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

    pub(super) fn stop(&mut self, reason: &str) {
        tracing::error!(reason, "Workload API source stopped");
        self.publisher.withdraw(reason);
        self.stopped = true;
    }

    /// Turns one update into a candidate and publishes it. `true` when the update
    /// was valid: published, or the same as the serving snapshot.
    pub(super) fn apply(&self, update: &X509SvidResponse) -> bool {
        tracing::debug!(
            svids = update.svids.len(),
            federated = update.federated_bundles.len(),
            "Workload API update received"
        );
        // SPIFFE Workload API §5.2.1: `svids` is mandatory and holds one or more
        // SVIDs; §4.5: a message whose mandatory field is empty is reported and
        // discarded. A server that grants nothing answers PermissionDenied instead.
        if update.svids.is_empty() {
            self.publisher.reject(
                &"Workload API update discarded: it carries no X.509-SVID, which the \
                  Workload API spec (5.2.1) requires; a server that grants none answers \
                  PermissionDenied",
            );
            return false;
        }
        let Some(picked) = self.picker.pick(&update.svids) else {
            // The SVID we serve was redacted: cease using it (§5.2.1).
            self.publisher.withdraw(&format!(
                "the Workload API update has no SVID matching the picker ({})",
                self.picker
            ));
            return false;
        };
        let provider = self.publisher.identity().crypto_provider().clone();
        let candidate = match candidate(picked, update, &provider) {
            Ok(candidate) => candidate,
            Err(reason) => {
                self.publisher
                    .reject(&format_args!("Workload API update rejected: {reason}"));
                return false;
            }
        };
        let notice = (!candidate.ignored.is_empty()).then(|| {
            format!(
                "Workload API update: serving {}; ignored {} other SVID(s) of the update: {}",
                picked_id(picked),
                candidate.ignored.len(),
                candidate.ignored.join("; ")
            )
        });
        if let Some(notice) = &notice {
            tracing::warn!(
                ignored = candidate.ignored.len(),
                notice,
                "Workload API SVID ignored"
            );
        }
        // `publish_noted` records and logs its own verdict.
        if self
            .publisher
            .publish_noted(candidate.svid, candidate.bundles, notice)
            .is_err()
        {
            return false;
        }
        true
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
