//! Identity sources.
//!
//! [`StaticSource`] publishes one SVID and bundle set, validated like any other
//! candidate, and can be updated from memory. `FileSource` (feature `files`) reads
//! PEM files and reloads them when they change. The SPIFFE Workload API implements
//! the same [`IdentitySource`](crate::IdentitySource) trait.
//!
//! ```
//! # #[cfg(feature = "dev")] {
//! use zt_core::{BundleSet, IdentitySource, StaticSource, dev::DevCa};
//!
//! let ca = DevCa::new("example.org".parse()?)?;
//! let svid = ca.mint(&"spiffe://example.org/api".parse()?)?;
//! let source = StaticSource::new(svid, BundleSet::new().with(ca.bundle()))?;
//! assert!(source.identity().status().is_ready());
//! # }
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

#[cfg(feature = "workload-api")]
mod workload;
#[cfg(feature = "workload-api")]
mod workload_proto;

use std::sync::Arc;

#[cfg(feature = "workload-api")]
pub use workload::{
    DEFAULT_FIRST_UPDATE_TIMEOUT, DEFAULT_INITIAL_BACKOFF, DEFAULT_MAX_BACKOFF,
    SPIFFE_ENDPOINT_SOCKET, SvidPicker, WorkloadApiError, WorkloadApiSource,
    WorkloadApiSourceBuilder,
};
#[cfg(all(feature = "workload-api", feature = "jwt"))]
pub use workload::{WorkloadJwtBundles, WorkloadJwtSvid};
#[cfg(feature = "files")]
mod files;

#[cfg(feature = "files")]
pub use files::{FileLayout, FileSource, FileSourceBuilder};

use crate::bundle::BundleSet;
use crate::error::Error;
use crate::identity::{Identity, IdentityPublisher, IdentitySource, Snapshot};
use crate::svid::X509Svid;

/// An identity held in memory: published at construction, replaced on demand.
#[derive(Debug)]
pub struct StaticSource {
    publisher: IdentityPublisher,
}

impl StaticSource {
    /// Validates and publishes `svid` with `bundles`, using the default crypto provider.
    ///
    /// # Errors
    ///
    /// As [`IdentityPublisher::publish`], or [`Error::NoCryptoProvider`].
    pub fn new(svid: X509Svid, bundles: BundleSet) -> Result<Self, Error> {
        Self::with_publisher(IdentityPublisher::new()?, svid, bundles)
    }

    /// As [`StaticSource::new`] with an explicit publisher (and so crypto provider).
    ///
    /// # Errors
    ///
    /// As [`IdentityPublisher::publish`].
    pub fn with_publisher(
        publisher: IdentityPublisher,
        svid: X509Svid,
        bundles: BundleSet,
    ) -> Result<Self, Error> {
        publisher.publish(svid, bundles)?;
        Ok(Self { publisher })
    }

    /// Replaces the identity; a rejected candidate leaves the current one serving.
    ///
    /// # Errors
    ///
    /// As [`IdentityPublisher::publish`].
    pub fn update(&self, svid: X509Svid, bundles: BundleSet) -> Result<Arc<Snapshot>, Error> {
        self.publisher.publish(svid, bundles)
    }

    /// The publisher, for withdrawals and status reports.
    pub fn publisher(&self) -> &IdentityPublisher {
        &self.publisher
    }
}

impl IdentitySource for StaticSource {
    fn identity(&self) -> Identity {
        self.publisher.identity()
    }
}
