//! Helpers of the example tests: certificates written to a temp dir, the built
//! example binaries, and real peers (curl, openssl, nginx) found on PATH.
//!
//! The examples are the programs users run, so the tests run the binaries cargo
//! built into `target/<profile>/examples/` (`cargo test` builds a package's examples
//! before its tests).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    dead_code,
    unreachable_pub
)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader, Lines};
use tokio::process::{Child, ChildStdout, Command};
use zt_core::SpiffeId;
use zt_core::dev::{DevCa, SvidParams};

/// Upper bound for every wait and child process; a hang fails the test.
pub const TIMEOUT: Duration = Duration::from_secs(30);

pub const SERVER_ID: &str = "spiffe://example.org/api";
pub const CLIENT_ID: &str = "spiffe://example.org/web";
pub const OTHER_CLIENT_ID: &str = "spiffe://example.org/batch";

pub fn id(s: &str) -> SpiffeId {
    s.parse().expect("valid SPIFFE ID")
}

pub async fn within<F: std::future::Future>(what: &str, future: F) -> F::Output {
    tokio::time::timeout(TIMEOUT, future)
        .await
        .unwrap_or_else(|_| panic!("timed out after {TIMEOUT:?}: {what}"))
}

pub use zt_testkit::TempDir;

mod curl;
// Each test binary uses a part of these helpers.
#[allow(unused_imports)]
pub use curl::{Curl, curl, curl_anonymous};

pub fn s(path: &Path) -> &str {
    path.to_str().expect("UTF-8 path")
}

/// PEM files of one SVID.
#[derive(Clone, Debug)]
pub struct SvidFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// The examples' options for credentials in files: `--cert`, `--key`, `--bundle`.
pub fn file_args<'a>(svid: &'a SvidFiles, bundle: &'a Path) -> [&'a str; 6] {
    [
        "--cert",
        s(&svid.cert),
        "--key",
        s(&svid.key),
        "--bundle",
        s(bundle),
    ]
}

/// Writes an SVID for `svid_id` minted by `ca` as `<name>.pem` and `<name>_key.pem`.
/// Server SVIDs also name `localhost` so hostname-checking peers (curl) accept them.
pub fn write_svid(dir: &TempDir, name: &str, ca: &DevCa, svid_id: &str) -> SvidFiles {
    let mut params = SvidParams::new(id(svid_id));
    params.dns_names = vec!["localhost".to_owned()];
    let (chain, key) = ca.mint_pem(params).expect("mint PEM");
    SvidFiles {
        cert: dir.write_atomic(&format!("{name}.pem"), &chain),
        key: dir.write_atomic(&format!("{name}_key.pem"), &key),
    }
}

/// The PEM of a bundle trusting every CA in `cas`.
pub fn bundle_pem(cas: &[&DevCa]) -> String {
    cas.iter().map(|ca| ca.cert_pem()).collect()
}

/// The development PKI of a test: our trust domain's CA, a rogue CA of the same
/// trust domain name, and the files of every SVID the tests present.
pub struct Pki {
    pub dir: TempDir,
    pub ca: DevCa,
    pub rogue_ca: DevCa,
    pub bundle: PathBuf,
    pub server: SvidFiles,
    pub client: SvidFiles,
    pub other_client: SvidFiles,
    pub rogue_client: SvidFiles,
    pub rogue_server: SvidFiles,
    pub wrong_server: SvidFiles,
}

impl Pki {
    pub fn new(tag: &str) -> Self {
        let dir = TempDir::new(tag);
        let ca = DevCa::new("example.org".parse().unwrap()).expect("dev CA");
        let rogue_ca = DevCa::new("example.org".parse().unwrap()).expect("rogue CA");
        let bundle = dir.write_atomic("bundle.pem", ca.bundle_pem());
        let server = write_svid(&dir, "server", &ca, SERVER_ID);
        let client = write_svid(&dir, "client", &ca, CLIENT_ID);
        let other_client = write_svid(&dir, "other", &ca, OTHER_CLIENT_ID);
        let rogue_client = write_svid(&dir, "rogue_client", &rogue_ca, CLIENT_ID);
        let rogue_server = write_svid(&dir, "rogue_server", &rogue_ca, SERVER_ID);
        let wrong_server = write_svid(&dir, "wrong_server", &ca, "spiffe://example.org/billing");
        Self {
            dir,
            ca,
            rogue_ca,
            bundle,
            server,
            client,
            other_client,
            rogue_client,
            rogue_server,
            wrong_server,
        }
    }
}

// === programs ===

/// A built example binary, next to this test's own directory.
pub fn example(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    // target/<profile>/deps/<test> -> target/<profile>/examples/<name>
    let path = exe
        .parent()
        .and_then(Path::parent)
        .map(|profile| profile.join("examples").join(name))
        .expect("target directory");
    assert!(
        path.exists(),
        "{} is missing: run the tests with `cargo test -p zt-examples`, which builds the examples first",
        path.display()
    );
    path
}

/// A tool the tests need as a real peer; fails the test, saying how to get it,
/// when it is missing.
pub fn tool(name: &str) -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let mut dirs: Vec<PathBuf> = std::env::split_paths(&path).collect();
    // nginx lives in sbin, which is not on every user's PATH.
    dirs.extend(["/usr/sbin", "/usr/local/sbin", "/sbin"].map(PathBuf::from));
    dirs.into_iter()
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
        .unwrap_or_else(|| {
            panic!(
                "`{name}` is not installed; these tests use curl, openssl and nginx as real \
                 peers, and .ci/run installs them (apt-get install curl openssl nginx)"
            )
        })
}

/// Spawns `program` with piped output, killed when dropped.
pub fn spawn(program: &Path, args: &[&str]) -> Child {
    Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|err| panic!("cannot run {}: {err}", program.display()))
}

/// Runs `program` to completion, at most [`TIMEOUT`].
pub async fn run(program: &Path, args: &[&str]) -> Output {
    let child = spawn(program, args);
    match tokio::time::timeout(TIMEOUT, child.wait_with_output()).await {
        Ok(output) => output.expect("wait for child"),
        Err(_) => panic!("{} did not exit within {TIMEOUT:?}", program.display()),
    }
}

pub fn describe(output: &Output) -> String {
    format!(
        "status: {}\n--- stdout ---\n{}\n--- stderr ---\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// Collects a child's stream in the background, for failure messages.
pub fn drain<R: AsyncRead + Unpin + Send + 'static>(stream: R, into: Arc<Mutex<String>>) {
    tokio::spawn(async move {
        let mut lines = BufReader::new(stream).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            let mut log = into.lock().unwrap();
            log.push_str(&line);
            log.push('\n');
        }
    });
}

/// A running example server (killed on drop).
pub struct ExampleServer {
    pub addr: SocketAddr,
    pub log: Arc<Mutex<String>>,
    admin: Option<SocketAddr>,
    _child: Child,
}

/// An example server started with `--admin`, which may not be ready yet: its
/// admin listener answers while it waits for its identity.
pub struct Launching {
    pub name: String,
    pub admin: Option<SocketAddr>,
    pub log: Arc<Mutex<String>>,
    child: Child,
    lines: Lines<BufReader<ChildStdout>>,
}

impl Launching {
    fn spawn(name: &str, first: &[&str], args: &[&str]) -> Self {
        let mut all = first.to_vec();
        all.extend_from_slice(args);
        let mut child = spawn(&example(name), &all);
        let log = Arc::new(Mutex::new(String::new()));
        drain(child.stderr.take().unwrap(), Arc::clone(&log));
        let lines = BufReader::new(child.stdout.take().unwrap()).lines();
        Self {
            name: name.to_owned(),
            admin: None,
            log,
            child,
            lines,
        }
    }

    /// Starts the example server `name` on 127.0.0.1 with `--admin 127.0.0.1:0`
    /// and `args`; returns once it prints `admin on ADDR`, whether or not its
    /// identity is ready.
    pub async fn with_admin(name: &str, args: &[&str]) -> Self {
        let mut launching = Self::spawn(
            name,
            &["--listen", "127.0.0.1:0", "--admin", "127.0.0.1:0"],
            args,
        );
        let addr = launching.wait_for("admin on ").await;
        launching.admin = Some(addr);
        launching
    }

    /// The admin listener's address.
    pub fn admin(&self) -> SocketAddr {
        self.admin.expect("started with --admin")
    }

    /// Waits until the server prints `listening on ADDR`.
    pub async fn listening(mut self) -> ExampleServer {
        let addr = self.wait_for("listening on ").await;
        let mut lines = self.lines;
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        ExampleServer {
            addr,
            log: self.log,
            admin: self.admin,
            _child: self.child,
        }
    }

    async fn wait_for(&mut self, prefix: &str) -> SocketAddr {
        let lines = &mut self.lines;
        let addr = tokio::time::timeout(TIMEOUT, async {
            while let Ok(Some(line)) = lines.next_line().await {
                if let Some(addr) = line.strip_prefix(prefix) {
                    return Some(addr.trim().parse::<SocketAddr>().expect("address"));
                }
            }
            None
        })
        .await;
        let Ok(Some(addr)) = addr else {
            panic!(
                "{} did not print `{prefix}ADDR`:\n{}",
                self.name,
                self.log.lock().unwrap()
            );
        };
        addr
    }
}

/// What a plain-HTTP GET on an admin listener answered, by curl.
pub struct AdminAnswer {
    /// The HTTP status, `000` without an answer.
    pub status: String,
    pub body: String,
}

/// `GET http://ADMIN/path` with curl.
pub async fn admin_get(admin: SocketAddr, path: &str) -> AdminAnswer {
    let output = run(
        &tool("curl"),
        &[
            "--silent",
            "--max-time",
            "20",
            "--write-out",
            "\n%{http_code}",
            &format!("http://{admin}{path}"),
        ],
    )
    .await;
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let (body, status) = stdout.rsplit_once('\n').unwrap_or(("", &stdout));
    AdminAnswer {
        status: status.to_owned(),
        body: body.to_owned(),
    }
}

/// The echo-server example, running.
pub type EchoServer = ExampleServer;

impl ExampleServer {
    /// Starts the echo-server example with the PKI's server SVID and bundle and
    /// `extra` arguments; returns once it prints `listening on ADDR`.
    pub async fn start(pki: &Pki, extra: &[&str]) -> Self {
        Self::start_with_files(&pki.server, &pki.bundle, extra).await
    }

    /// Starts the echo-server example with the SVID `server` and the bundle file
    /// `bundle`; see [`ExampleServer::start`].
    pub async fn start_with_files(server: &SvidFiles, bundle: &Path, extra: &[&str]) -> Self {
        let mut args = file_args(server, bundle).to_vec();
        args.extend_from_slice(extra);
        Self::launch("echo-server", &args).await
    }

    /// Starts the example server `name` on 127.0.0.1 with `args` (credentials and
    /// policy); returns once it prints `listening on ADDR`.
    pub async fn launch(name: &str, args: &[&str]) -> Self {
        Launching::spawn(name, &["--listen", "127.0.0.1:0"], args)
            .listening()
            .await
    }

    /// As [`ExampleServer::launch`], with the admin listener on 127.0.0.1 too
    /// (`--admin`); its address is in [`ExampleServer::admin`].
    pub async fn launch_with_admin(name: &str, args: &[&str]) -> Self {
        Launching::with_admin(name, args).await.listening().await
    }

    /// The admin listener's address; the server must have been launched with it.
    pub fn admin(&self) -> SocketAddr {
        self.admin
            .expect("launched without --admin: use ExampleServer::launch_with_admin")
    }

    /// `https://localhost:PORT` followed by `path`.
    pub fn url(&self, path: &str) -> String {
        format!("https://localhost:{}{path}", self.addr.port())
    }
}

/// Runs the echo-client example against `url` with `client`'s SVID, trusting the
/// PKI's bundle and expecting `server_id`.
pub async fn echo_client(pki: &Pki, client: &SvidFiles, url: &str, server_id: &str) -> Output {
    echo_client_trusting(&pki.bundle, client, url, server_id).await
}

/// As [`echo_client`], trusting the bundle file `bundle`.
pub async fn echo_client_trusting(
    bundle: &Path,
    client: &SvidFiles,
    url: &str,
    server_id: &str,
) -> Output {
    let mut args = vec!["--url", url];
    args.extend(file_args(client, bundle));
    args.extend(["--server-id", server_id]);
    run(&example("echo-client"), &args).await
}

/// A free port on 127.0.0.1 for a program that cannot report the one it bound.
/// Another process may take it before the program binds it; callers retry.
pub fn free_port() -> u16 {
    let probe = std::net::TcpListener::bind("127.0.0.1:0").expect("bind probe");
    probe.local_addr().expect("probe addr").port()
}

/// Waits until something accepts TCP connections on 127.0.0.1:`port`.
pub async fn wait_listening(port: u16, child: &mut Child) -> bool {
    tokio::time::timeout(TIMEOUT, async {
        loop {
            if tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .is_ok()
            {
                return true;
            }
            if let Ok(Some(_)) = child.try_wait() {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .unwrap_or(false)
}

/// `python3`, failing the test with how to get grpcio and grpcio-tools when they
/// are missing: the tests use them as an independent, non-Rust gRPC peer.
pub fn python_with_grpcio() -> PathBuf {
    let python = tool("python3");
    let check = std::process::Command::new(&python)
        .args(["-c", "import grpc, grpc_tools"])
        .output()
        .expect("run python3");
    assert!(
        check.status.success(),
        "Python's grpcio and grpcio-tools are not installed; these tests use them as an \
         independent, non-Rust gRPC peer, and scripts/test installs them \
         (pip install grpcio grpcio-tools): {}",
        String::from_utf8_lossy(&check.stderr)
    );
    python
}
