//! curl as a real HTTPS client of the example servers: one request presenting an
//! SVID's files, and what it showed (status, body, the leaf the server presented).

use std::path::Path;
use std::process::Output;

use zt_core::rustls::pki_types::CertificateDer;
use zt_core::rustls::pki_types::pem::PemObject;

use super::{ExampleServer, SvidFiles, run, s, tool};

/// Separates the body from what `--write-out` appends; no body or PEM holds it.
const STATUS_MARK: &str = "\n--zt-test-http-code ";

/// What one curl request showed.
#[derive(Debug)]
pub struct Curl {
    /// The HTTP status, `000` without an answer.
    pub status: String,
    pub body: String,
    /// The server's leaf (DER), when the handshake got that far.
    pub leaf: Option<Vec<u8>>,
    pub stderr: String,
    /// curl's exit status and output, for failure messages.
    pub output: Output,
}

/// `curl` GET `path` on `server` (as `localhost`) with `client`'s certificate,
/// trusting the bundle file `bundle`, with `extra` arguments before the URL.
pub async fn curl(
    server: &ExampleServer,
    client: &SvidFiles,
    bundle: &Path,
    path: &str,
    extra: &[&str],
) -> Curl {
    curl_as(server, Some(client), bundle, path, extra).await
}

/// As [`curl`], presenting no client certificate: an anonymous client.
pub async fn curl_anonymous(
    server: &ExampleServer,
    bundle: &Path,
    path: &str,
    extra: &[&str],
) -> Curl {
    curl_as(server, None, bundle, path, extra).await
}

async fn curl_as(
    server: &ExampleServer,
    client: Option<&SvidFiles>,
    bundle: &Path,
    path: &str,
    extra: &[&str],
) -> Curl {
    let resolve = format!("localhost:{}:127.0.0.1", server.addr.port());
    let url = server.url(path);
    let write_out = format!("{STATUS_MARK}%{{http_code}}\n%{{certs}}");
    let mut args = vec!["--silent", "--show-error", "--max-time", "20"];
    if let Some(client) = client {
        args.extend(["--cert", s(&client.cert), "--key", s(&client.key)]);
    }
    args.extend([
        "--cacert",
        s(bundle),
        "--resolve",
        &resolve,
        "--write-out",
        &write_out,
    ]);
    args.extend_from_slice(extra);
    args.push(&url);
    let output = run(&tool("curl"), &args).await;
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let (body, rest) = stdout.rsplit_once(STATUS_MARK).unwrap_or(("", &stdout));
    let (status, certs) = rest.split_once('\n').unwrap_or((rest, ""));
    let leaf = CertificateDer::pem_slice_iter(certs.as_bytes())
        .next()
        .and_then(Result::ok)
        .map(|cert| cert.to_vec());
    Curl {
        status: status.trim().to_owned(),
        body: body.to_owned(),
        leaf,
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        output,
    }
}
