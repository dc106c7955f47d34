//! nginx as an mTLS sidecar for the comparison benchmark: its configuration,
//! started as a child process and stopped on drop.
//!
//! ```no_run
//! # fn main() -> std::io::Result<()> {
//! let dir = std::path::Path::new("/tmp/sidecar"); // server.pem, server-key.pem, ca.pem
//! let backend = "127.0.0.1:8080".parse().unwrap();
//! let (nginx, addr) = zt_benches::nginx::start(dir, backend, None)?;
//! println!("nginx {:?} on {addr}", zt_benches::nginx::version());
//! drop(nginx); // stops it
//! # Ok(())
//! # }
//! ```

use std::io;
use std::net::{SocketAddr, TcpListener as StdListener};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::process::{Managed, children_of, pinned};

/// Where Debian and Ubuntu install nginx.
pub const NGINX: &str = "/usr/sbin/nginx";

/// The installed nginx's version, `None` without one.
pub fn version() -> Option<String> {
    let out = Command::new(NGINX).arg("-v").output().ok()?;
    let text = String::from_utf8_lossy(&out.stderr);
    Some(text.trim().trim_start_matches("nginx version: ").to_owned())
}

/// Starts nginx terminating mTLS on a free port of 127.0.0.1 (`ssl_verify_client
/// on`, no session cache, no tickets) and proxying to the plaintext `backend` over
/// keep-alive connections; on `core` when given. `dir` holds `server.pem`,
/// `server-key.pem` and `ca.pem`, and gets nginx's configuration, logs and
/// temporary files. Returns once it accepts connections and its worker runs.
///
/// # Errors
///
/// nginx could not be started, exited, or did not listen within 10 s.
pub fn start(
    dir: &Path,
    backend: SocketAddr,
    core: Option<&str>,
) -> io::Result<(Managed, SocketAddr)> {
    // nginx binds the port itself; take a free one and hand it over.
    let addr = StdListener::bind("127.0.0.1:0")?.local_addr()?;
    let d = dir.display();
    let conf = format!(
        r#"daemon off;
master_process on;
worker_processes 1;
worker_rlimit_nofile 8192;
pid {d}/nginx.pid;
error_log {d}/nginx-error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    client_body_temp_path {d}/body;
    proxy_temp_path {d}/proxy;
    fastcgi_temp_path {d}/fastcgi;
    uwsgi_temp_path {d}/uwsgi;
    scgi_temp_path {d}/scgi;
    upstream backend {{
        server {backend};
        keepalive 64;
    }}
    server {{
        listen {addr} ssl http2;
        ssl_certificate {d}/server.pem;
        ssl_certificate_key {d}/server-key.pem;
        ssl_client_certificate {d}/ca.pem;
        ssl_verify_client on;
        ssl_verify_depth 2;
        ssl_protocols TLSv1.2 TLSv1.3;
        ssl_session_cache off;
        ssl_session_tickets off;
        keepalive_requests 10000000;
        keepalive_timeout 120s;
        location / {{
            proxy_pass http://backend;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }}
    }}
}}
"#
    );
    let conf_path = dir.join("nginx.conf");
    std::fs::write(&conf_path, conf)?;
    let child = pinned(Path::new(NGINX), core)
        .arg("-p")
        .arg(dir)
        .arg("-c")
        .arg(&conf_path)
        .arg("-e")
        .arg(dir.join("nginx-error.log"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()?;
    let mut managed = Managed {
        child,
        stdin: None,
        nginx_workers: Vec::new(),
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if std::net::TcpStream::connect(addr).is_ok() {
            managed.nginx_workers = children_of(managed.child.id());
            if !managed.nginx_workers.is_empty() {
                break;
            }
        }
        if let Ok(Some(status)) = managed.child.try_wait() {
            let log = std::fs::read_to_string(dir.join("nginx-error.log")).unwrap_or_default();
            return Err(io::Error::other(format!(
                "nginx exited with {status}: {log}"
            )));
        }
        if Instant::now() > deadline {
            return Err(io::Error::other(
                "nginx did not start listening within 10 s",
            ));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok((managed, addr))
}
