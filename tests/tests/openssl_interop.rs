//! Interop of zt's rustls configs with a real, independent TLS stack: the `openssl`
//! command-line tool (`s_client` and `s_server`), over real sockets on 127.0.0.1.
//!
//! `openssl` must be on `PATH` (CI installs it); when it is missing every test fails
//! with a message saying so, none passes silently.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use std::io;
use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use rustls::pki_types::ServerName;
use rustls::{CertificateError, ProtocolVersion};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::process::{Child, Command};
use tokio::task::JoinHandle;
use tokio_rustls::{TlsAcceptor, TlsConnector};
use zt_core::dev::{DevCa, SvidParams};
use zt_core::tls::{ClientConfigBuilder, ServerConfigBuilder, UnauthorizedPeer};
use zt_core::{
    BundleSet, IdMatcher, Identity, IdentitySource, PeerIdentity, PeerRole, SpiffeId, StaticSource,
    SvidError,
};
use zt_testkit::TempDir;

/// Upper bound for any child process or handshake; a hang fails the test.
const TIMEOUT: Duration = Duration::from_secs(20);

const TRUST_DOMAIN: &str = "example.org";
const CLIENT_ID: &str = "spiffe://example.org/client";
const SERVER_ID: &str = "spiffe://example.org/api";
const OTHER_SERVER_ID: &str = "spiffe://example.org/other";

// === helpers ===

/// A protocol version to force on the openssl side.
#[derive(Clone, Copy, Debug)]
enum Version {
    Tls13,
    Tls12,
}

const VERSIONS: [Version; 2] = [Version::Tls13, Version::Tls12];

impl Version {
    fn flag(self) -> &'static str {
        match self {
            Self::Tls13 => "-tls1_3",
            Self::Tls12 => "-tls1_2",
        }
    }

    fn rustls(self) -> ProtocolVersion {
        match self {
            Self::Tls13 => ProtocolVersion::TLSv1_3,
            Self::Tls12 => ProtocolVersion::TLSv1_2,
        }
    }
}

fn id(s: &str) -> SpiffeId {
    s.parse().expect("valid SPIFFE ID")
}

fn new_ca() -> DevCa {
    DevCa::new(TRUST_DOMAIN.parse().expect("trust domain")).expect("dev CA")
}

/// A zt identity holding an SVID for `svid_id` minted by `ca`, trusting `ca`.
fn zt_identity(ca: &DevCa, svid_id: &str) -> (StaticSource, Identity) {
    let svid = ca.mint(&id(svid_id)).expect("mint SVID");
    let source = StaticSource::new(svid, BundleSet::new().with(ca.bundle())).expect("source");
    let identity = source.identity();
    (source, identity)
}

/// Writes a freshly minted SVID of `ca` as `<name>.pem` (chain) and `<name>_key.pem`.
fn write_svid(dir: &TempDir, name: &str, ca: &DevCa, params: SvidParams) -> (PathBuf, PathBuf) {
    let (chain, key) = ca.mint_pem(params).expect("mint PEM");
    assert!(!key.is_empty(), "DevCa::mint_pem returned no key");
    (
        dir.write(&format!("{name}.pem"), &chain),
        dir.write(&format!("{name}_key.pem"), &key),
    )
}

fn path_str(path: &Path) -> &str {
    path.to_str().expect("UTF-8 temp path")
}

/// `openssl <subcommand>` with every stream piped and the child killed when dropped.
/// Fails the test, loudly, when the tool cannot be started.
fn openssl(args: &[&str]) -> Child {
    Command::new("openssl")
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|err| {
            panic!(
                "cannot run the `openssl` command-line tool ({err}); these interop tests \
                 need OpenSSL 3.x's `openssl` on PATH (e.g. `apt-get install openssl`)"
            )
        })
}

/// Waits for `child` to exit, at most [`TIMEOUT`]; on timeout the child is killed
/// (`kill_on_drop`) and the test fails.
async fn bounded_output(child: Child, what: &str) -> Output {
    match tokio::time::timeout(TIMEOUT, child.wait_with_output()).await {
        Ok(output) => output.expect("wait for openssl"),
        Err(_) => panic!("{what} did not exit within {TIMEOUT:?}; killed"),
    }
}

fn describe(output: &Output) -> String {
    format!(
        "status: {}\n--- stdout ---\n{}\n--- stderr ---\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// The `rustls::Error` inside an I/O error from tokio-rustls.
fn rustls_error(err: &io::Error) -> &rustls::Error {
    err.get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
        .unwrap_or_else(|| panic!("expected a rustls::Error inside the I/O error, got {err:?}"))
}

/// The error zt wrapped in `InvalidCertificate(CertificateError::Other(..))`.
fn other_certificate_error<E: std::error::Error + 'static>(err: &io::Error) -> &E {
    match rustls_error(err) {
        rustls::Error::InvalidCertificate(CertificateError::Other(other)) => {
            other.0.downcast_ref::<E>().unwrap_or_else(|| {
                panic!(
                    "expected a {} inside CertificateError::Other, got {other:?}",
                    std::any::type_name::<E>()
                )
            })
        }
        other => panic!("expected InvalidCertificate(CertificateError::Other(..)), got {other:?}"),
    }
}

/// A zt server for one connection on 127.0.0.1: after the handshake it writes the
/// client's SPIFFE ID and a newline, then closes. The task returns that ID, or the
/// handshake error.
async fn zt_server_once(identity: Identity) -> (u16, JoinHandle<io::Result<SpiffeId>>) {
    let config = ServerConfigBuilder::new(identity.clone())
        .build()
        .expect("server config");
    let acceptor = TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("local addr").port();
    let task = tokio::spawn(async move {
        let serve = async {
            let (tcp, _) = listener.accept().await?;
            let mut tls = acceptor.accept(tcp).await?;
            let (_, conn) = tls.get_ref();
            let peer = PeerIdentity::from_connection(conn, PeerRole::Client, &identity)
                .map_err(io::Error::other)?;
            peer.reverify(&identity, SystemTime::now())
                .map_err(io::Error::other)?;
            tls.write_all(format!("{}\n", peer.id()).as_bytes()).await?;
            tls.shutdown().await?;
            Ok(peer.id().clone())
        };
        tokio::time::timeout(TIMEOUT, serve)
            .await
            .unwrap_or_else(|_| Err(io::Error::other("zt server timed out")))
    });
    (port, task)
}

async fn server_result(task: JoinHandle<io::Result<SpiffeId>>) -> io::Result<SpiffeId> {
    tokio::time::timeout(TIMEOUT, task)
        .await
        .expect("zt server task did not finish")
        .expect("zt server task panicked")
}

/// Runs `openssl s_client` against 127.0.0.1:`port`, verifying the server against
/// `ca_file`, with `extra` arguments (client cert, version, ...).
async fn s_client(port: u16, ca_file: &Path, extra: &[&str]) -> Output {
    let connect = format!("127.0.0.1:{port}");
    let mut args = vec![
        "s_client",
        "-connect",
        &connect,
        "-CAfile",
        path_str(ca_file),
        // Verify the server's chain and abort on failure (without `-verify`,
        // s_client only reports verification errors).
        "-verify",
        "5",
        "-verify_return_error",
        // Print only application data; implies -ign_eof, so s_client waits for the
        // server to close instead of quitting on stdin's EOF.
        "-quiet",
    ];
    args.extend_from_slice(extra);
    bounded_output(openssl(&args), "openssl s_client").await
}

/// A running `openssl s_server` and the port it accepts on. The process is killed
/// when this is dropped (e.g. when a test panics), or by [`SServer::stop`].
struct SServer {
    child: Child,
    port: u16,
}

impl SServer {
    /// Kills s_server and waits for it, so no zombie outlives the test.
    async fn stop(mut self) {
        self.child.kill().await.expect("kill openssl s_server");
    }
}

/// Starts `openssl s_server -www` on a free 127.0.0.1 port presenting `cert`/`key`,
/// requiring a client certificate that verifies against `ca_file`, forcing
/// `version`. Returns once it prints `ACCEPT`, i.e. listens.
async fn s_server(cert: &Path, key: &Path, ca_file: &Path, version: Version) -> SServer {
    let mut last_failure = String::new();
    // The free port is found by binding and dropping it, so another process may
    // take it in between: try a few ports.
    for _ in 0..5 {
        let port = {
            let probe = std::net::TcpListener::bind("127.0.0.1:0").expect("bind probe");
            probe.local_addr().expect("probe addr").port()
        };
        let accept = format!("127.0.0.1:{port}");
        let mut child = openssl(&[
            "s_server",
            "-accept",
            &accept,
            "-cert",
            path_str(cert),
            "-key",
            path_str(key),
            "-CAfile",
            path_str(ca_file),
            // Require a client certificate and fail the handshake when it does not
            // verify.
            "-Verify",
            "1",
            "-verify_return_error",
            version.flag(),
            // Answer `GET /` with `HTTP/1.0 200 ok` and a status page, then close.
            "-www",
        ]);
        let stdout = child.stdout.take().expect("piped stdout");
        let mut lines = BufReader::new(stdout).lines();
        let ready = tokio::time::timeout(TIMEOUT, async {
            while let Some(line) = lines.next_line().await? {
                if line.trim() == "ACCEPT" {
                    return Ok(true);
                }
            }
            Ok::<_, io::Error>(false)
        })
        .await;
        match ready {
            Ok(Ok(true)) => {
                // Keep draining stdout so s_server never blocks on a full pipe.
                tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
                return SServer { child, port };
            }
            Ok(Ok(false)) | Ok(Err(_)) => {
                let output = bounded_output(child, "openssl s_server").await;
                last_failure = describe(&output);
            }
            Err(_) => panic!("openssl s_server did not start listening within {TIMEOUT:?}"),
        }
    }
    panic!("openssl s_server failed to start:\n{last_failure}");
}

/// Connects a zt client expecting `expected` to the s_server on `port` and sends
/// `GET /`; returns the response or the error.
async fn zt_client_get(
    identity: Identity,
    expected: &str,
    port: u16,
) -> io::Result<(ProtocolVersion, String)> {
    let config = ClientConfigBuilder::new(identity, IdMatcher::exact(id(expected)))
        .build()
        .expect("client config");
    let connector = TlsConnector::from(Arc::new(config));
    let exchange = async {
        let tcp = TcpStream::connect(("127.0.0.1", port)).await?;
        let name = ServerName::try_from("localhost").expect("server name");
        let mut tls = connector.connect(name, tcp).await?;
        let version = tls
            .get_ref()
            .1
            .protocol_version()
            .expect("negotiated version");
        tls.write_all(b"GET / HTTP/1.0\r\n\r\n").await?;
        tls.flush().await?;
        // s_server -www ends with close_notify: a truncated response is an error.
        let mut response = Vec::new();
        tls.read_to_end(&mut response).await?;
        Ok((version, String::from_utf8_lossy(&response).into_owned()))
    };
    tokio::time::timeout(TIMEOUT, exchange)
        .await
        .unwrap_or_else(|_| panic!("zt client did not finish within {TIMEOUT:?}"))
}

// === openssl s_client -> zt server ===

#[tokio::test]
async fn openssl_s_client_with_valid_svid_completes_handshake_with_zt_server() {
    let ca = new_ca();
    let dir = TempDir::new("valid-client");
    let bundle = dir.write("bundle.pem", ca.bundle_pem());
    let (cert, key) = write_svid(&dir, "client", &ca, SvidParams::new(id(CLIENT_ID)));
    let (_source, identity) = zt_identity(&ca, SERVER_ID);

    for version in VERSIONS {
        let (port, server) = zt_server_once(identity.clone()).await;
        let sess_out = dir.join(format!("session{}.pem", version.flag()));
        let output = s_client(
            port,
            &bundle,
            &[
                "-cert",
                path_str(&cert),
                "-key",
                path_str(&key),
                version.flag(),
                "-sess_out",
                path_str(&sess_out),
            ],
        )
        .await;

        let peer = server_result(server)
            .await
            .unwrap_or_else(|err| panic!("{version:?}: zt server handshake failed: {err:?}"));
        assert_eq!(peer.as_str(), CLIENT_ID, "{version:?}");
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(
            stdout.lines().any(|line| line == CLIENT_ID),
            "{version:?}: s_client did not receive the ID line\n{}",
            describe(&output)
        );
        assert!(
            output.status.success(),
            "{version:?}\n{}",
            describe(&output)
        );

        // s_client writes -sess_out from its new-session callback, which OpenSSL only
        // calls for a resumable session: one with a TLS 1.3 NewSessionTicket, or a
        // TLS 1.2 session ID or ticket. zt disables resumption, so none must exist.
        assert!(
            !sess_out.exists(),
            "{version:?}: zt offered a resumable session:\n{}",
            std::fs::read_to_string(&sess_out).unwrap_or_default()
        );
    }
}

/// `openssl s_client` presents `issuer`'s SVID with `params` to a zt server of
/// `ca`, over every version: the server refuses it with `expected`, and s_client
/// reports `alert` (the alert zt chose) and gets no data.
async fn s_client_refused(
    ca: &DevCa,
    issuer: &DevCa,
    params: SvidParams,
    expected: zt_core::tls::Rejection,
    alert: &str,
) {
    let dir = TempDir::new("refused-client");
    let bundle = dir.write("bundle.pem", ca.bundle_pem());
    let (cert, key) = write_svid(&dir, "client", issuer, params);
    let (_source, identity) = zt_identity(ca, SERVER_ID);

    for version in VERSIONS {
        let (port, server) = zt_server_once(identity.clone()).await;
        let output = s_client(
            port,
            &bundle,
            &[
                "-cert",
                path_str(&cert),
                "-key",
                path_str(&key),
                version.flag(),
            ],
        )
        .await;
        let err = server_result(server)
            .await
            .expect_err("zt server accepted the client");
        assert_eq!(
            zt_core::tls::Rejection::of(&err),
            Some(expected.clone()),
            "{version:?}"
        );
        // The peer learns why in terms it knows: the alert.
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            stderr.contains(alert),
            "{version:?}: s_client did not report {alert:?}\n{}",
            describe(&output)
        );
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(
            !stdout.contains(CLIENT_ID),
            "{version:?}: s_client got data\n{}",
            describe(&output)
        );
        assert!(
            !output.status.success(),
            "{version:?}: s_client reported success\n{}",
            describe(&output)
        );
    }
}

#[tokio::test]
async fn openssl_s_client_with_svid_from_unknown_ca_is_refused() {
    let ca = new_ca();
    let rogue = new_ca();
    s_client_refused(
        &ca,
        &rogue,
        SvidParams::new(id(CLIENT_ID)),
        zt_core::tls::Rejection::UnknownIssuer,
        "alert unknown ca",
    )
    .await;
}

#[tokio::test]
async fn openssl_s_client_with_expired_svid_sees_certificate_expired() {
    let ca = new_ca();
    let now = SystemTime::now();
    let params = SvidParams {
        not_before: now - Duration::from_secs(2 * 3600),
        not_after: now - Duration::from_secs(3600),
        ..SvidParams::new(id(CLIENT_ID))
    };
    s_client_refused(
        &ca,
        &ca,
        params,
        zt_core::tls::Rejection::Svid(SvidError::Expired),
        "alert certificate expired",
    )
    .await;
}

#[tokio::test]
async fn openssl_s_client_without_client_certificate_is_refused() {
    let ca = new_ca();
    let dir = TempDir::new("no-client-cert");
    let bundle = dir.write("bundle.pem", ca.bundle_pem());
    let (_source, identity) = zt_identity(&ca, SERVER_ID);

    for version in VERSIONS {
        let (port, server) = zt_server_once(identity.clone()).await;
        let output = s_client(port, &bundle, &[version.flag()]).await;

        let err = server_result(server)
            .await
            .expect_err("zt server accepted a client without a certificate");
        assert!(
            matches!(rustls_error(&err), rustls::Error::NoCertificatesPresented),
            "{version:?}: {err:?}"
        );
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(
            !stdout.contains("spiffe://"),
            "{version:?}: s_client got data\n{}",
            describe(&output)
        );
        assert!(
            !output.status.success(),
            "{version:?}: s_client reported success\n{}",
            describe(&output)
        );
    }
}

// === zt client -> openssl s_server ===

#[tokio::test]
async fn zt_client_accepts_openssl_s_server_presenting_expected_svid() {
    let ca = new_ca();
    let dir = TempDir::new("valid-server");
    let bundle = dir.write("bundle.pem", ca.bundle_pem());
    let (cert, key) = write_svid(&dir, "server", &ca, SvidParams::new(id(SERVER_ID)));
    let (_source, identity) = zt_identity(&ca, CLIENT_ID);

    for version in VERSIONS {
        // s_server requires and verifies the client certificate (-Verify 1
        // -verify_return_error): a response proves openssl accepted zt's client SVID.
        let server = s_server(&cert, &key, &bundle, version).await;
        let (negotiated, response) = zt_client_get(identity.clone(), SERVER_ID, server.port)
            .await
            .unwrap_or_else(|err| panic!("{version:?}: zt client failed: {err:?}"));
        assert_eq!(negotiated, version.rustls());
        assert!(
            response.starts_with("HTTP/1.0 200"),
            "{version:?}: unexpected response:\n{response}"
        );
        server.stop().await;
    }
}

/// Starts s_server (once per version) presenting an SVID minted by `issuer` with
/// `server_params`, and connects a zt client that trusts `ca` and expects
/// [`SERVER_ID`]. Returns the client's connection error for each version; fails the
/// test if the client accepts the server.
async fn zt_client_errors(
    server_params: SvidParams,
    issuer: &DevCa,
    ca: &DevCa,
) -> Vec<(Version, io::Error)> {
    let dir = TempDir::new("refused-server");
    let bundle = dir.write("bundle.pem", ca.bundle_pem());
    let (cert, key) = write_svid(&dir, "server", issuer, server_params);
    let (_source, identity) = zt_identity(ca, CLIENT_ID);
    let mut errors = Vec::new();
    for version in VERSIONS {
        let server = s_server(&cert, &key, &bundle, version).await;
        match zt_client_get(identity.clone(), SERVER_ID, server.port).await {
            Ok((_, response)) => {
                panic!("{version:?}: zt client accepted the server and got:\n{response}")
            }
            Err(err) => errors.push((version, err)),
        }
        server.stop().await;
    }
    errors
}

#[tokio::test]
async fn zt_client_refuses_openssl_s_server_with_another_spiffe_id() {
    let ca = new_ca();
    for (version, err) in zt_client_errors(SvidParams::new(id(OTHER_SERVER_ID)), &ca, &ca).await {
        let unauthorized = other_certificate_error::<UnauthorizedPeer>(&err);
        assert_eq!(unauthorized.id.as_str(), OTHER_SERVER_ID, "{version:?}");
        assert!(
            unauthorized.expected.contains(SERVER_ID),
            "{version:?}: {unauthorized:?}"
        );
    }
}

#[tokio::test]
async fn zt_client_refuses_openssl_s_server_with_svid_from_unknown_ca() {
    let ca = new_ca();
    let rogue = new_ca();
    for (version, err) in zt_client_errors(SvidParams::new(id(SERVER_ID)), &rogue, &ca).await {
        assert!(
            matches!(
                rustls_error(&err),
                rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer)
            ),
            "{version:?}: {err:?}"
        );
    }
}

#[tokio::test]
async fn zt_client_refuses_openssl_s_server_with_expired_svid() {
    let ca = new_ca();
    let now = SystemTime::now();
    let params = SvidParams {
        not_before: now - Duration::from_secs(2 * 3600),
        not_after: now - Duration::from_secs(3600),
        ..SvidParams::new(id(SERVER_ID))
    };
    for (version, err) in zt_client_errors(params, &ca, &ca).await {
        assert!(
            matches!(
                rustls_error(&err),
                rustls::Error::InvalidCertificate(CertificateError::Expired)
            ),
            "{version:?}: {err:?}"
        );
    }
}
