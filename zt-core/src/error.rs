//! Errors of zt-core.
//!
//! Every rejection names what failed: [`SvidError`] for certificates and keys,
//! [`BundleError`] for trust bundles, [`IdError`](crate::IdError) and
//! [`PatternError`](crate::PatternError) for SPIFFE IDs and ID patterns, [`FileError`] for
//! credential files. [`Error`] gathers them for APIs that can fail in more than one way.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::id::{IdError, SpiffeId, TrustDomain};
use crate::matcher::PatternError;

/// Which side of a TLS connection a peer certificate authenticates.
///
/// X.509-SVIDs carry an extended key usage; a certificate that only allows
/// `serverAuth` must not authenticate a client, and the other way round.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PeerRole {
    /// The peer is the TLS client (we are the server).
    Client,
    /// The peer is the TLS server (we are the client).
    Server,
}

impl std::fmt::Display for PeerRole {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Client => "client",
            Self::Server => "server",
        })
    }
}

/// Why an X.509-SVID (ours or a peer's) or its private key was rejected.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SvidError {
    /// No certificate was found in the input.
    #[error("no certificate found")]
    NoCertificate,
    /// No private key was found in the input.
    #[error("no private key found")]
    NoPrivateKey,
    /// More than one private key was found in the input.
    #[error("more than one private key found")]
    MultiplePrivateKeys,
    /// The PEM text could not be decoded.
    #[error("invalid PEM: {0}")]
    Pem(String),
    /// The input is larger than zt accepts.
    #[error("input of {size} bytes exceeds the limit of {limit} bytes")]
    TooLarge {
        /// Size of the input in bytes.
        size: usize,
        /// The limit in bytes.
        limit: usize,
    },
    /// The chain has more certificates than zt accepts.
    #[error("chain of {len} certificates exceeds the limit of {limit}")]
    ChainTooLong {
        /// Number of certificates presented.
        len: usize,
        /// The limit.
        limit: usize,
    },
    /// A certificate is not valid DER X.509.
    #[error("certificate {index} is malformed: {reason}")]
    Malformed {
        /// Position in the chain (0 is the leaf).
        index: usize,
        /// What the parser reported.
        reason: String,
    },
    /// The leaf has no URI SAN, so it carries no SPIFFE ID.
    #[error("leaf certificate has no URI SAN")]
    NoUriSan,
    /// The leaf has more than one URI SAN (X509-SVID §5.2: MUST be rejected).
    #[error("leaf certificate has {0} URI SANs, an SVID has exactly one")]
    MultipleUriSans(usize),
    /// The URI SAN is not a valid SPIFFE ID.
    #[error("leaf URI SAN is not a valid SPIFFE ID: {0}")]
    InvalidSpiffeId(#[source] IdError),
    /// The leaf's SPIFFE ID has no path (X509-SVID §3.1, §5.2).
    #[error("leaf SPIFFE ID {0} has no path; a leaf SVID needs a non-root path")]
    RootId(SpiffeId),
    /// The leaf is a CA certificate (basic constraints `cA=true`).
    #[error("leaf certificate is a CA certificate (basic constraints cA=true)")]
    LeafIsCa,
    /// The leaf has no key usage extension.
    #[error("leaf certificate has no key usage extension")]
    MissingKeyUsage,
    /// The leaf's key usage lacks `digitalSignature`.
    #[error("leaf key usage does not set digitalSignature")]
    NoDigitalSignature,
    /// The leaf's key usage sets `keyCertSign`.
    #[error("leaf key usage sets keyCertSign")]
    LeafKeyCertSign,
    /// The leaf's key usage sets `cRLSign`.
    #[error("leaf key usage sets cRLSign")]
    LeafCrlSign,
    /// An intermediate certificate is not a CA.
    #[error("intermediate certificate {index} is not a CA certificate")]
    IntermediateNotCa {
        /// Position in the chain.
        index: usize,
    },
    /// An intermediate certificate's key usage lacks `keyCertSign`.
    #[error("intermediate certificate {index} does not set keyCertSign in its key usage")]
    IntermediateNoKeyCertSign {
        /// Position in the chain.
        index: usize,
    },
    /// The presented chain is not one issuance path, leaf first: a certificate
    /// does not name the next one as its issuer (by name, and by key identifier
    /// where both carry one), two intermediates share a subject, or an
    /// intermediate before the last is self-issued. Refused before any path
    /// building, which such chains would make costly.
    #[error("presented chain is not one issuance path at certificate {index}: {reason}")]
    UnlinkedChain {
        /// Position in the chain of the certificate that breaks the path.
        index: usize,
        /// How it breaks it.
        reason: &'static str,
    },
    /// There is no bundle for the leaf's trust domain.
    #[error("no trust bundle for trust domain {0}")]
    NoBundle(TrustDomain),
    /// The bundle for the leaf's trust domain has no authorities: every SVID of
    /// that domain is invalid.
    #[error("trust bundle for trust domain {0} is empty")]
    EmptyBundle(TrustDomain),
    /// The chain does not lead to an authority of the leaf's trust domain.
    #[error("certificate is not signed by an authority of trust domain {0}")]
    UnknownIssuer(TrustDomain),
    /// A certificate of the chain has expired.
    #[error("certificate expired")]
    Expired,
    /// A certificate of the chain is not valid yet.
    #[error("certificate is not valid yet")]
    NotYetValid,
    /// The extended key usage does not allow the certificate's use.
    #[error("extended key usage does not allow use as a TLS {0}")]
    WrongUsage(PeerRole),
    /// Path validation failed for another reason.
    #[error("path validation failed: {0}")]
    Path(String),
    /// The private key does not match the leaf certificate.
    #[error("private key does not match the leaf certificate")]
    KeyMismatch,
    /// The private key cannot be used with the crypto provider.
    #[error("private key cannot be used: {0}")]
    UnusableKey(String),
}

/// Why a trust bundle was rejected.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BundleError {
    /// The PEM text could not be decoded.
    #[error("invalid PEM: {0}")]
    Pem(String),
    /// A PEM bundle holds no certificate.
    #[error("no CA certificate found")]
    NoCertificate,
    /// An authority is not valid DER X.509.
    #[error("authority {index} is malformed: {reason}")]
    Malformed {
        /// Position in the bundle.
        index: usize,
        /// What the parser reported.
        reason: String,
    },
    /// An authority is not a CA certificate.
    #[error("authority {index} is not a CA certificate")]
    NotCa {
        /// Position in the bundle.
        index: usize,
    },
    /// The bundle holds more authorities than zt accepts.
    #[error("bundle of {len} authorities exceeds the limit of {limit}")]
    TooManyAuthorities {
        /// Number of authorities.
        len: usize,
        /// The limit.
        limit: usize,
    },
    /// The input is larger than zt accepts.
    #[error("input of {size} bytes exceeds the limit of {limit} bytes")]
    TooLarge {
        /// Size of the input in bytes.
        size: usize,
        /// The limit in bytes.
        limit: usize,
    },
    /// The SPIFFE bundle document is not valid JSON of the expected shape.
    #[error("invalid SPIFFE bundle document: {0}")]
    Json(String),
    /// A `jwt-svid` entry is not a key zt can verify JWT-SVIDs with: no `kid`, a
    /// repeated `kid`, a curve or key size outside the JWT-SVID algorithms, or
    /// key material that does not decode.
    #[error("key {index}: {reason}")]
    JwtKey {
        /// Position in the bundle.
        index: usize,
        /// What is wrong with it.
        reason: String,
    },
    /// An `x509-svid` entry's `x5c` value is not valid base64.
    #[error("key {index}: x5c is not valid base64")]
    Base64 {
        /// Position in `keys`.
        index: usize,
    },
}

/// Any error of zt-core.
#[derive(Clone, Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A SPIFFE ID or trust domain is invalid.
    #[error("invalid SPIFFE ID: {0}")]
    Id(#[from] IdError),
    /// An ID pattern is invalid.
    #[error("invalid SPIFFE ID pattern: {0}")]
    Pattern(#[from] PatternError),
    /// An X.509-SVID or its key was rejected.
    #[error("invalid X.509-SVID: {0}")]
    Svid(#[from] SvidError),
    /// A trust bundle was rejected.
    #[error("invalid trust bundle: {0}")]
    Bundle(#[from] BundleError),
    /// The SVID's trust domain has no bundle in the candidate bundle set.
    #[error("the bundle set has no bundle for our own trust domain {0}")]
    NoOwnBundle(TrustDomain),
    /// No crypto provider was given and none is available by default.
    #[error(
        "no crypto provider: enable the `aws-lc-rs` or `ring` feature, install a process default, or pass one explicitly"
    )]
    NoCryptoProvider,
    /// rustls rejected the configuration.
    #[error("TLS configuration: {0}")]
    Tls(#[from] rustls::Error),
    /// A credential or bundle file could not be used.
    #[error(transparent)]
    File(#[from] FileError),
    /// A builder was given a setting it cannot work with.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// An API that spawns a background task was called outside a tokio runtime.
    #[error("no tokio runtime: call this from within a runtime (with time enabled)")]
    NoRuntime,
    /// An I/O operation failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The underlying error.
        #[source]
        source: Arc<std::io::Error>,
    },
}

/// Why a file (an SVID, a key, a bundle) could not be used: which file, and what is
/// wrong with it.
#[derive(Clone, Debug, thiserror::Error)]
#[error("{}: {kind}", path.display())]
pub struct FileError {
    path: PathBuf,
    kind: FileErrorKind,
}

// === impl FileError ===

impl FileError {
    /// An error about the file at `path`.
    pub fn new(path: impl Into<PathBuf>, kind: FileErrorKind) -> Self {
        Self {
            path: path.into(),
            kind,
        }
    }

    /// The file at fault, as it was configured.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// What is wrong with it.
    pub fn kind(&self) -> &FileErrorKind {
        &self.kind
    }

    /// Classifies an I/O error met while opening or reading `path`.
    pub(crate) fn io(path: &Path, err: std::io::Error) -> Self {
        use std::io::ErrorKind as K;
        let kind = match err.kind() {
            K::NotFound => FileErrorKind::NotFound,
            K::PermissionDenied => FileErrorKind::PermissionDenied,
            K::IsADirectory => FileErrorKind::IsDirectory,
            _ => FileErrorKind::Io(Arc::new(err)),
        };
        Self::new(path, kind)
    }
}

/// What is wrong with a file; see [`FileError`].
#[derive(Clone, Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FileErrorKind {
    /// The file does not exist, or a symbolic link on its path dangles.
    #[error("file not found")]
    NotFound,
    /// The path names a directory.
    #[error("is a directory, not a file")]
    IsDirectory,
    /// The path names something that is neither a file nor a directory (a FIFO, a
    /// socket, a device), which zt refuses to read.
    #[error("not a regular file")]
    NotAFile,
    /// The process may not read the file.
    #[error("permission denied")]
    PermissionDenied,
    /// The file is larger than zt reads for its purpose; it was not read.
    #[error("file of {size} bytes exceeds the limit of {limit} bytes")]
    TooLarge {
        /// Size of the file in bytes (at least `limit + 1` when it grew while read).
        size: u64,
        /// The limit in bytes.
        limit: u64,
    },
    /// Reading failed for another reason.
    #[error("read failed: {0}")]
    Io(Arc<std::io::Error>),
    /// The file holds no valid X.509-SVID or key, or the SVID it holds was rejected.
    #[error("invalid X.509-SVID: {0}")]
    Svid(#[source] SvidError),
    /// The file holds no valid trust bundle.
    #[error("invalid trust bundle: {0}")]
    Bundle(#[source] BundleError),
    /// A federated bundle file was configured for our own trust domain, whose bundle
    /// comes from the credential layout.
    #[error("a federated bundle may not replace the bundle of our own trust domain {0}")]
    OwnTrustDomain(TrustDomain),
}
