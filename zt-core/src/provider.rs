//! Choice of the rustls crypto provider.
//!
//! A library must not decide which cryptography an application links. zt takes an
//! `Arc<CryptoProvider>` wherever it needs one; when none is given it uses, in order:
//! the process-wide default installed with
//! [`CryptoProvider::install_default`], then aws-lc-rs (feature `aws-lc-rs`, on by
//! default), then ring (feature `ring`).
//!
//! ```
//! let provider = zt_core::default_provider()?;
//! assert!(!provider.cipher_suites.is_empty());
//! # Ok::<(), zt_core::Error>(())
//! ```

use std::sync::Arc;

use rustls::crypto::CryptoProvider;

use crate::error::Error;

/// The crypto provider zt uses when the application names none.
///
/// # Errors
///
/// [`Error::NoCryptoProvider`] when no process default is installed and neither the
/// `aws-lc-rs` nor the `ring` feature is enabled.
pub fn default_provider() -> Result<Arc<CryptoProvider>, Error> {
    if let Some(installed) = CryptoProvider::get_default() {
        return Ok(Arc::clone(installed));
    }
    builtin_provider().ok_or(Error::NoCryptoProvider)
}

#[cfg(feature = "aws-lc-rs")]
fn builtin_provider() -> Option<Arc<CryptoProvider>> {
    Some(Arc::new(rustls::crypto::aws_lc_rs::default_provider()))
}

#[cfg(all(feature = "ring", not(feature = "aws-lc-rs")))]
fn builtin_provider() -> Option<Arc<CryptoProvider>> {
    Some(Arc::new(rustls::crypto::ring::default_provider()))
}

#[cfg(not(any(feature = "aws-lc-rs", feature = "ring")))]
fn builtin_provider() -> Option<Arc<CryptoProvider>> {
    None
}
