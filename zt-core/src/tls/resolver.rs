//! Certificate resolvers that present the SVID of the live snapshot.

use std::fmt;
use std::sync::Arc;

use rustls::SignatureScheme;
use rustls::client::ResolvesClientCert;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

use crate::identity::Identity;

/// Presents the serving snapshot's SVID on every handshake, so a rotation takes
/// effect on the next handshake without rebuilding any config. Presents nothing (and
/// the handshake fails) while there is no snapshot.
pub(crate) struct SvidResolver {
    identity: Identity,
}

impl SvidResolver {
    pub(crate) fn new(identity: Identity) -> Self {
        Self { identity }
    }

    fn current(&self) -> Option<Arc<CertifiedKey>> {
        let snapshot = self.identity.load();
        let key = snapshot.as_ref().map(|s| Arc::clone(s.certified_key()));
        if key.is_none() {
            tracing::debug!("no SVID to present: identity not ready");
        }
        key
    }
}

impl ResolvesServerCert for SvidResolver {
    fn resolve(&self, _client_hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.current()
    }
}

impl ResolvesClientCert for SvidResolver {
    fn resolve(
        &self,
        _root_hint_subjects: &[&[u8]],
        _sigschemes: &[SignatureScheme],
    ) -> Option<Arc<CertifiedKey>> {
        self.current()
    }

    fn has_certs(&self) -> bool {
        true
    }
}

impl fmt::Debug for SvidResolver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SvidResolver").finish_non_exhaustive()
    }
}
