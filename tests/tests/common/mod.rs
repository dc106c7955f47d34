//! Shared support for the workspace integration tests.
//!
//! - zt-testkit's run-time PKI ([`TestCa`], [`LeafSpec`], [`Defect`]): one CA per
//!   trust domain, intermediates, and leaves with exactly one defect each, so every
//!   rejection test says which rule it exercises; [`CredentialExt`] and [`TestCaExt`]
//!   turn them into zt types.
//! - Endpoints over real TCP sockets on 127.0.0.1: a [`TestServer`] that reports every
//!   handshake outcome over a channel and then echoes, zt and plain rustls configs, and
//!   a client connect helper.
//! - Helpers that read the reason out of a failed handshake ([`tls_error`],
//!   [`svid_error`], [`unauthorized`]).
//!
//! Plain rustls configs exist to *present* certificates zt would never publish; the
//! endpoint under test is always the zt one.

#![allow(
    dead_code,
    unreachable_pub,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::Mutex;
use std::time::Duration;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, HandshakeKind, ProtocolVersion,
    ServerConfig, SignatureScheme, SupportedProtocolVersion,
};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_rustls::{TlsAcceptor, TlsConnector, client};
use zt_core::tls::{ClientConfigBuilder, ServerConfigBuilder, UnauthorizedPeer};
use zt_core::{
    BundleSet, IdMatcher, Identity, IdentityPublisher, PeerIdentity, PeerRole, SpiffeId, SvidError,
    TrustDomain, X509Bundle, X509Svid,
};

/// How long any single network step may take before the test fails. A timeout is a
/// test failure, never a "refusal".
pub const STEP_TIMEOUT: Duration = Duration::from_secs(10);

/// TLS 1.3 and 1.2, as zt offers by default.
pub static ALL_VERSIONS: &[&SupportedProtocolVersion] = rustls::DEFAULT_VERSIONS;
/// TLS 1.2 only.
pub static TLS12_ONLY: &[&SupportedProtocolVersion] = &[&rustls::version::TLS12];
/// TLS 1.3 only.
pub static TLS13_ONLY: &[&SupportedProtocolVersion] = &[&rustls::version::TLS13];

/// Parses a SPIFFE ID, panicking on a typo in the test.
#[track_caller]
pub fn id(s: &str) -> SpiffeId {
    s.parse()
        .unwrap_or_else(|err| panic!("{s:?} should parse: {err}"))
}

/// Parses a trust domain name, panicking on a typo in the test.
#[track_caller]
pub fn td(s: &str) -> TrustDomain {
    TrustDomain::new(s).unwrap_or_else(|err| panic!("{s:?} should parse: {err}"))
}

/// The crypto provider every endpoint of the tests uses (aws-lc-rs).
pub fn provider() -> Arc<CryptoProvider> {
    zt_core::default_provider().expect("aws-lc-rs is enabled for the tests")
}

// ---------------------------------------------------------------------------------
// PKI: zt-testkit's test CA, seen as zt types
// ---------------------------------------------------------------------------------

pub use zt_testkit::ca::{Credential, Defect, LeafSpec, TestCa, der_contains, self_signed_leaf};

/// A test credential as zt sees it.
pub trait CredentialExt {
    /// The credential as a zt SVID, or why zt refuses it as one.
    fn try_svid(&self) -> Result<X509Svid, SvidError>;

    /// The credential as a zt SVID; panics when it is not a valid one.
    #[track_caller]
    fn svid(&self) -> X509Svid {
        self.try_svid()
            .unwrap_or_else(|err| panic!("test credential should be a valid SVID: {err}"))
    }
}

impl CredentialExt for Credential {
    fn try_svid(&self) -> Result<X509Svid, SvidError> {
        X509Svid::from_der(self.chain.clone(), self.key.clone_key())
    }
}

/// A test CA as zt sees it.
pub trait TestCaExt {
    /// The trust domain, parsed.
    fn td(&self) -> TrustDomain;
    /// The bundle of this CA's trust domain holding its root.
    fn bundle(&self) -> X509Bundle;
    /// A bundle set holding only [`TestCaExt::bundle`].
    fn bundle_set(&self) -> BundleSet {
        BundleSet::new().with(self.bundle())
    }
    /// A valid SVID for `id`.
    fn svid(&self, id: &str) -> X509Svid;
}

impl TestCaExt for TestCa {
    fn td(&self) -> TrustDomain {
        td(self.trust_domain())
    }

    fn bundle(&self) -> X509Bundle {
        X509Bundle::new(self.td(), vec![self.root_cert().clone()])
            .expect("a test root is a valid authority")
    }

    fn svid(&self, id: &str) -> X509Svid {
        self.valid(id).svid()
    }
}
// ---------------------------------------------------------------------------------
// zt identities and configs
// ---------------------------------------------------------------------------------

/// A publisher that has published `svid` with `bundles`.
#[track_caller]
pub fn publisher(svid: X509Svid, bundles: BundleSet) -> IdentityPublisher {
    let publisher = IdentityPublisher::with_provider(provider());
    publisher
        .publish(svid, bundles)
        .unwrap_or_else(|err| panic!("test identity should publish: {err}"));
    publisher
}

/// A zt server config for `identity` accepting every valid client.
pub fn zt_server_config(identity: Identity) -> ServerConfig {
    ServerConfigBuilder::new(identity)
        .build()
        .expect("zt server config")
}

/// A zt client config for `identity` expecting a server `server` matches.
pub fn zt_client_config(identity: Identity, server: IdMatcher) -> Arc<ClientConfig> {
    Arc::new(
        ClientConfigBuilder::new(identity, server)
            .build()
            .expect("zt client config"),
    )
}

// ---------------------------------------------------------------------------------
// Plain rustls configs (to present what zt would never publish)
// ---------------------------------------------------------------------------------

/// Accepts any server certificate (handshake signatures are still checked). Used only
/// by plain test clients whose job is to present a client certificate to a zt server;
/// the server's certificate is not what those tests examine.
#[derive(Debug)]
pub struct AcceptAnyServerCert {
    algorithms: WebPkiSupportedAlgorithms,
}

impl AcceptAnyServerCert {
    pub fn new() -> Self {
        Self {
            algorithms: provider().signature_verification_algorithms,
        }
    }
}

impl ServerCertVerifier for AcceptAnyServerCert {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

/// A plain rustls client that presents `credential` (or nothing), trusts any server
/// certificate, offers `versions`, and keeps rustls' default resumption (an in-memory
/// session cache of its own).
pub fn plain_client_config(
    credential: Option<&Credential>,
    versions: &[&'static SupportedProtocolVersion],
) -> Arc<ClientConfig> {
    let builder = ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(versions)
        .expect("protocol versions")
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AcceptAnyServerCert::new()));
    let config = match credential {
        Some(c) => builder
            .with_client_auth_cert(c.chain.clone(), c.key.clone_key())
            .expect("client certificate and key match"),
        None => builder.with_no_client_auth(),
    };
    Arc::new(config)
}

/// A plain rustls server that presents `credential`, asks for no client certificate,
/// offers `versions`, and keeps rustls' default session handling (a session-ID cache,
/// and two TLS 1.3 tickets per connection).
pub fn plain_server_config(
    credential: &Credential,
    versions: &[&'static SupportedProtocolVersion],
) -> ServerConfig {
    ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(versions)
        .expect("protocol versions")
        .with_no_client_auth()
        .with_single_cert(credential.chain.clone(), credential.key.clone_key())
        .expect("server certificate and key match")
}

/// Asks for a client certificate without requiring one, accepts whatever is presented,
/// and records every client leaf it is shown. Used to observe whether a zt client
/// disclosed its SVID.
#[derive(Debug)]
pub struct RecordingClientVerifier {
    algorithms: WebPkiSupportedAlgorithms,
    seen: Arc<Mutex<Vec<CertificateDer<'static>>>>,
}

impl ClientCertVerifier for RecordingClientVerifier {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        false
    }

    fn root_hint_subjects(&self) -> &[rustls::DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        self.seen
            .lock()
            .expect("recorder lock")
            .push(end_entity.clone().into_owned());
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

/// A plain rustls server that presents `credential`, offers `versions`, asks for an
/// optional client certificate and records every client leaf it receives (returned
/// list).
pub fn recording_server_config(
    credential: &Credential,
    versions: &[&'static SupportedProtocolVersion],
) -> (ServerConfig, Arc<Mutex<Vec<CertificateDer<'static>>>>) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let verifier = RecordingClientVerifier {
        algorithms: provider().signature_verification_algorithms,
        seen: Arc::clone(&seen),
    };
    let config = ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(versions)
        .expect("protocol versions")
        .with_client_cert_verifier(Arc::new(verifier))
        .with_single_cert(credential.chain.clone(), credential.key.clone_key())
        .expect("server certificate and key match");
    (config, seen)
}

// ---------------------------------------------------------------------------------
// Endpoints
// ---------------------------------------------------------------------------------

/// What a test server learned from a completed handshake.
#[derive(Debug)]
pub struct Accepted {
    /// `Identity::generation()` read before the handshake began (0 for plain servers).
    pub generation_before: u64,
    /// The client's chain as the server received it (empty when none).
    pub peer_chain: Vec<CertificateDer<'static>>,
    /// `PeerIdentity::from_connection(conn, PeerRole::Client, identity)`, or
    /// `from_chain` for plain servers.
    pub peer: Result<PeerIdentity, SvidError>,
    pub protocol_version: Option<ProtocolVersion>,
    pub handshake_kind: Option<HandshakeKind>,
}

/// A TLS server on 127.0.0.1 that reports the outcome of every handshake, in the order
/// they finish, then echoes on each accepted connection until the client closes it.
#[derive(Debug)]
pub struct TestServer {
    pub addr: SocketAddr,
    outcomes: mpsc::UnboundedReceiver<io::Result<Accepted>>,
    accept_loop: JoinHandle<()>,
}

impl TestServer {
    /// Starts serving `config`. With `identity`, its generation is read before each
    /// handshake for [`Accepted::generation_before`].
    pub async fn start(config: ServerConfig, identity: Option<Identity>) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("local addr");
        let acceptor = TlsAcceptor::from(Arc::new(config));
        let (tx, outcomes) = mpsc::unbounded_channel();
        let accept_loop = tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let acceptor = acceptor.clone();
                let tx = tx.clone();
                let generation_before = identity.as_ref().map_or(0, Identity::generation);
                let identity = identity.clone();
                tokio::spawn(async move {
                    match acceptor.accept(tcp).await {
                        Err(err) => {
                            let _ = tx.send(Err(err));
                        }
                        Ok(mut tls) => {
                            let conn = tls.get_ref().1;
                            let accepted = Accepted {
                                generation_before,
                                peer_chain: conn
                                    .peer_certificates()
                                    .map(|c| c.iter().map(|d| d.clone().into_owned()).collect())
                                    .unwrap_or_default(),
                                peer: match &identity {
                                    Some(identity) => PeerIdentity::from_connection(
                                        conn,
                                        PeerRole::Client,
                                        identity,
                                    ),
                                    None => conn
                                        .peer_certificates()
                                        .ok_or(SvidError::NoCertificate)
                                        .and_then(|chain| {
                                            PeerIdentity::from_chain(
                                                chain
                                                    .iter()
                                                    .map(|c| c.clone().into_owned())
                                                    .collect(),
                                                PeerRole::Client,
                                            )
                                        }),
                                },
                                protocol_version: conn.protocol_version(),
                                handshake_kind: conn.handshake_kind(),
                            };
                            let _ = tx.send(Ok(accepted));
                            echo_until_eof(&mut tls).await;
                        }
                    }
                });
            }
        });
        Self {
            addr,
            outcomes,
            accept_loop,
        }
    }

    /// Starts a zt server for `identity` accepting every valid client.
    pub async fn zt(identity: &Identity) -> Self {
        Self::start(zt_server_config(identity.clone()), Some(identity.clone())).await
    }

    /// The outcome of the next handshake to finish.
    pub async fn next_handshake(&mut self) -> io::Result<Accepted> {
        tokio::time::timeout(STEP_TIMEOUT, self.outcomes.recv())
            .await
            .expect("timed out waiting for the server's handshake outcome")
            .expect("server task ended")
    }

    /// The next handshake, which must have succeeded.
    pub async fn expect_accepted(&mut self) -> Accepted {
        match self.next_handshake().await {
            Ok(accepted) => accepted,
            Err(err) => panic!("server should have accepted the handshake, but: {err}"),
        }
    }

    /// The next handshake, which must have failed; returns the server's rustls error.
    pub async fn expect_refused(&mut self) -> rustls::Error {
        match self.next_handshake().await {
            Ok(accepted) => {
                panic!("server should have refused the handshake, but accepted {accepted:?}")
            }
            Err(err) => into_tls_error(err),
        }
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.accept_loop.abort();
    }
}

async fn echo_until_eof<S: AsyncRead + AsyncWrite + Unpin>(stream: &mut S) {
    let mut buf = [0_u8; 1024];
    loop {
        let n = match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        if stream.write_all(&buf[..n]).await.is_err() || stream.flush().await.is_err() {
            return;
        }
    }
}

/// A TLS client stream over TCP.
pub type ClientStream = client::TlsStream<TcpStream>;

/// Opens a TCP connection to `addr` and runs a TLS handshake for server name
/// `localhost`. Returns the handshake's error; panics on a timeout.
pub async fn connect(addr: SocketAddr, config: Arc<ClientConfig>) -> io::Result<ClientStream> {
    let name = ServerName::try_from("localhost").expect("valid server name");
    let attempt = async move {
        let tcp = TcpStream::connect(addr).await?;
        TlsConnector::from(config).connect(name, tcp).await
    };
    tokio::time::timeout(STEP_TIMEOUT, attempt)
        .await
        .expect("timed out connecting")
}

/// Sends a message and reads it back. Fails when the peer closes, errors or answers
/// anything else; panics on a timeout.
pub async fn echo<S: AsyncRead + AsyncWrite + Unpin>(stream: &mut S) -> io::Result<()> {
    const MESSAGE: &[u8] = b"zero trust, every byte";
    let attempt = async {
        stream.write_all(MESSAGE).await?;
        stream.flush().await?;
        let mut back = [0_u8; MESSAGE.len()];
        stream.read_exact(&mut back).await?;
        if back != MESSAGE {
            return Err(io::Error::new(io::ErrorKind::InvalidData, "echo mismatch"));
        }
        Ok(())
    };
    tokio::time::timeout(STEP_TIMEOUT, attempt)
        .await
        .expect("timed out exchanging bytes")
}

/// [`connect`], then one [`echo`] round trip. A TLS 1.3 client finishes its side of the
/// handshake before the server has verified the client certificate, so a refused client
/// only notices on its first read: this is the helper that shows a client was refused.
pub async fn connect_and_echo(
    addr: SocketAddr,
    config: Arc<ClientConfig>,
) -> io::Result<ClientStream> {
    let mut stream = connect(addr, config).await?;
    echo(&mut stream).await?;
    Ok(stream)
}

/// The leaf certificate the server presented on `stream`.
pub fn server_leaf(stream: &ClientStream) -> CertificateDer<'static> {
    stream
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|chain| chain.first())
        .expect("server presented a certificate")
        .clone()
        .into_owned()
}

// ---------------------------------------------------------------------------------
// Reading the reason of a failure
// ---------------------------------------------------------------------------------

/// The rustls error inside an I/O error from tokio-rustls; panics when there is none
/// (e.g. the connection was merely reset), since then the reason cannot be checked.
#[track_caller]
pub fn into_tls_error(err: io::Error) -> rustls::Error {
    let shown = format!("{err:?}");
    match err
        .into_inner()
        .map(|inner| inner.downcast::<rustls::Error>())
    {
        Some(Ok(tls)) => *tls,
        _ => panic!("expected a rustls error inside the I/O error, got {shown}"),
    }
}

/// The zt error behind `CertificateError::Other`, panicking when `err` is anything else.
#[track_caller]
fn other_certificate_error(
    err: &rustls::Error,
) -> &(dyn std::error::Error + Send + Sync + 'static) {
    match err {
        rustls::Error::InvalidCertificate(CertificateError::Other(other)) => &*other.0,
        _ => panic!("expected InvalidCertificate(Other(..)), got {err:?}"),
    }
}

/// The [`SvidError`] a zt verifier refused the peer with.
#[track_caller]
pub fn svid_error(err: &rustls::Error) -> SvidError {
    match zt_core::tls::Rejection::of(err) {
        Some(zt_core::tls::Rejection::Svid(svid)) => svid,
        _ => panic!("expected a zt SvidError, got {err:?}"),
    }
}

/// zt's reason for refusing the peer.
#[track_caller]
pub fn rejection(err: &rustls::Error) -> zt_core::tls::Rejection {
    zt_core::tls::Rejection::of(err)
        .unwrap_or_else(|| panic!("expected a zt rejection, got {err:?}"))
}

/// The [`UnauthorizedPeer`] a zt verifier wrapped in
/// `InvalidCertificate(CertificateError::Other(..))`.
#[track_caller]
pub fn unauthorized(err: &rustls::Error) -> &UnauthorizedPeer {
    other_certificate_error(err)
        .downcast_ref::<UnauthorizedPeer>()
        .unwrap_or_else(|| panic!("expected a zt UnauthorizedPeer, got {err:?}"))
}
