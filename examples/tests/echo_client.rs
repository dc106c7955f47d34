//! The echo-client example against real servers: `openssl s_server -www`, nginx
//! with `ssl_verify_client on`, and the echo-server example. A server with the
//! expected SPIFFE ID answers; one with another ID, or with an SVID of another CA,
//! is refused with a clear one-line error.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod common;

use std::process::Output;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Child;

use common::*;

/// The one line echo-client printed on failure.
fn error_line(output: &Output) -> String {
    assert!(
        !output.status.success(),
        "echo-client succeeded: {}",
        describe(output)
    );
    assert_eq!(output.status.code(), Some(1), "{}", describe(output));
    let stderr = String::from_utf8_lossy(&output.stderr);
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(
        lines.len(),
        1,
        "expected one error line: {}",
        describe(output)
    );
    assert!(lines[0].starts_with("error: "), "{}", describe(output));
    lines[0].to_owned()
}

fn assert_served(output: &Output, expect_in_body: &str) {
    assert!(output.status.success(), "{}", describe(output));
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains(expect_in_body), "{}", describe(output));
}

// === openssl s_server ===

/// A running `openssl s_server -www` presenting `server` (killed on drop).
struct SServer {
    _child: Child,
    port: u16,
}

impl SServer {
    /// Starts on a free port, requiring a client certificate that verifies against
    /// the PKI's bundle; returns once it prints `ACCEPT`.
    async fn start(pki: &Pki, server: &SvidFiles) -> Self {
        let openssl = tool("openssl");
        for _ in 0..5 {
            let port = free_port();
            let accept = format!("127.0.0.1:{port}");
            let mut child = spawn(
                &openssl,
                &[
                    "s_server",
                    "-accept",
                    &accept,
                    "-cert",
                    s(&server.cert),
                    "-key",
                    s(&server.key),
                    "-CAfile",
                    s(&pki.bundle),
                    "-Verify",
                    "1",
                    "-verify_return_error",
                    "-www",
                ],
            );
            let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
            let ready = within("s_server start", async {
                while let Ok(Some(line)) = lines.next_line().await {
                    if line.trim() == "ACCEPT" {
                        return true;
                    }
                }
                false
            })
            .await;
            if ready {
                tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
                return Self {
                    _child: child,
                    port,
                };
            }
            // Most likely the port was taken in between: try another.
        }
        panic!("openssl s_server did not start");
    }

    fn url(&self) -> String {
        format!("https://localhost:{}/", self.port)
    }
}

#[tokio::test]
async fn echo_client_reaches_openssl_s_server_with_expected_id() {
    let pki = Pki::new("s-server-good");
    let server = SServer::start(&pki, &pki.server).await;
    let output = echo_client(&pki, &pki.client, &server.url(), SERVER_ID).await;
    // `-www` answers with a status page that names s_server.
    assert_served(&output, "s_server");
}

#[tokio::test]
async fn echo_client_refuses_openssl_s_server_with_wrong_id() {
    let pki = Pki::new("s-server-wrong-id");
    let server = SServer::start(&pki, &pki.wrong_server).await;
    let output = echo_client(&pki, &pki.client, &server.url(), SERVER_ID).await;
    let line = error_line(&output);
    assert!(
        line.contains("server certificate refused")
            && line.contains("spiffe://example.org/billing is not authorized"),
        "{line}"
    );
}

#[tokio::test]
async fn echo_client_refuses_openssl_s_server_of_other_ca() {
    let pki = Pki::new("s-server-rogue");
    let server = SServer::start(&pki, &pki.rogue_server).await;
    let output = echo_client(&pki, &pki.client, &server.url(), SERVER_ID).await;
    let line = error_line(&output);
    assert!(
        line.contains("server certificate refused")
            && line.contains("not signed by a trusted authority of its trust domain"),
        "{line}"
    );
}

// === nginx ===

/// nginx serving TLS with `server`'s SVID on 127.0.0.1, requiring client
/// certificates that verify against the PKI's bundle; its prefix, config and logs
/// live in a temp dir. Killed on drop.
struct Nginx {
    child: Child,
    port: u16,
    dir: TempDir,
}

impl Nginx {
    async fn start(pki: &Pki, server: &SvidFiles) -> Self {
        let nginx = tool("nginx");
        let dir = TempDir::new("nginx");
        for _ in 0..5 {
            let port = free_port();
            let prefix = dir.path().display().to_string();
            let config = format!(
                r#"
daemon off;
master_process off;
worker_processes 1;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log info;
events {{ worker_connections 64; }}
http {{
    access_log off;
    client_body_temp_path {prefix}/client_body;
    proxy_temp_path {prefix}/proxy;
    fastcgi_temp_path {prefix}/fastcgi;
    uwsgi_temp_path {prefix}/uwsgi;
    scgi_temp_path {prefix}/scgi;
    server {{
        listen 127.0.0.1:{port} ssl;
        ssl_certificate {cert};
        ssl_certificate_key {key};
        ssl_client_certificate {bundle};
        ssl_verify_client on;
        ssl_verify_depth 3;
        location / {{
            default_type text/plain;
            return 200 "hello from nginx, client certificate $ssl_client_verify\n";
        }}
    }}
}}
"#,
                cert = s(&server.cert),
                key = s(&server.key),
                bundle = s(&pki.bundle),
            );
            let conf = dir.write_atomic("nginx.conf", &config);
            let error_log = dir.join("error.log");
            let mut child = spawn(
                &nginx,
                &["-p", &prefix, "-c", s(&conf), "-e", s(&error_log)],
            );
            if wait_listening(port, &mut child).await {
                return Self { child, port, dir };
            }
            let _ = child.kill().await;
        }
        let log = std::fs::read_to_string(dir.join("error.log")).unwrap_or_default();
        panic!("nginx did not start:\n{log}");
    }

    fn url(&self) -> String {
        format!("https://localhost:{}/", self.port)
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        // kill_on_drop sends SIGKILL; nginx leaves nothing behind outside its prefix.
        let _ = self.child.start_kill();
        let _ = &self.dir;
    }
}

#[tokio::test]
async fn echo_client_reaches_nginx_with_expected_id() {
    let pki = Pki::new("nginx-good");
    let nginx = Nginx::start(&pki, &pki.server).await;
    let output = echo_client(&pki, &pki.client, &nginx.url(), SERVER_ID).await;
    assert_served(&output, "hello from nginx, client certificate SUCCESS");
}

#[tokio::test]
async fn echo_client_refuses_nginx_with_wrong_id() {
    let pki = Pki::new("nginx-wrong-id");
    let nginx = Nginx::start(&pki, &pki.wrong_server).await;
    let output = echo_client(&pki, &pki.client, &nginx.url(), SERVER_ID).await;
    let line = error_line(&output);
    assert!(
        line.contains("server certificate refused")
            && line.contains("spiffe://example.org/billing is not authorized"),
        "{line}"
    );
}

#[tokio::test]
async fn echo_client_refuses_nginx_of_other_ca() {
    let pki = Pki::new("nginx-rogue");
    let nginx = Nginx::start(&pki, &pki.rogue_server).await;
    let output = echo_client(&pki, &pki.client, &nginx.url(), SERVER_ID).await;
    let line = error_line(&output);
    assert!(
        line.contains("server certificate refused")
            && line.contains("not signed by a trusted authority of its trust domain"),
        "{line}"
    );
}

#[tokio::test]
async fn nginx_refusing_client_of_other_ca_is_reported_by_echo_client() {
    let pki = Pki::new("nginx-refuses");
    let nginx = Nginx::start(&pki, &pki.server).await;
    // The client trusts both CAs (it must, to hold an SVID of the rogue one and
    // accept nginx's); nginx trusts only ours.
    let both = pki
        .dir
        .write_atomic("both.pem", bundle_pem(&[&pki.ca, &pki.rogue_ca]));
    let output = echo_client_trusting(&both, &pki.rogue_client, &nginx.url(), SERVER_ID).await;
    // nginx finishes the handshake and answers 400 when the client certificate
    // does not verify.
    let line = error_line(&output);
    assert!(line.contains("400"), "{line}");
}

// === echo-server ===

#[tokio::test]
async fn echo_client_gets_its_id_from_echo_server() {
    let pki = Pki::new("echo-pair");
    let server = EchoServer::start(&pki, &["--allow", CLIENT_ID]).await;
    let output = echo_client(&pki, &pki.client, &server.url("/whoami"), SERVER_ID).await;
    assert_served(&output, &format!(r#"{{"spiffe_id":"{CLIENT_ID}"}}"#));
}

#[tokio::test]
async fn echo_client_denied_by_echo_server_reports_403() {
    let pki = Pki::new("echo-denied");
    let server = EchoServer::start(&pki, &["--allow", CLIENT_ID]).await;
    let output = echo_client(&pki, &pki.other_client, &server.url("/whoami"), SERVER_ID).await;
    let line = error_line(&output);
    assert_eq!(line, "error: server answered 403 Forbidden");
}
