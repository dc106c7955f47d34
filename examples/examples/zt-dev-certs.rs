//! Writes a development trust domain to disk: a CA bundle and one X.509-SVID per
//! SPIFFE ID, in the file layouts zt (and other SPIFFE tools) read. **Development
//! only.**
//!
//! ```text
//! cargo run --example zt-dev-certs -- --trust-domain example.org \
//!     --id spiffe://example.org/api --id spiffe://example.org/frontend/web \
//!     [--dns localhost ...] [--ttl 1h] --out ./dev-certs
//! ```
//!
//! Writes, in `--out DIR`:
//!
//! - `bundle.pem`: the CA certificate, the trust bundle of the trust domain;
//! - `bundle.json`: the same bundle as a SPIFFE bundle document (a JWK set with
//!   one `x509-svid` key and `spiffe_sequence`, the Unix time of the run);
//! - per ID, a directory named after the ID's path with `/` turned into `-`
//!   (`spiffe://example.org/frontend/web` → `DIR/frontend-web/`) holding the
//!   spiffe-helper layout (`svid.pem`, `svid_key.pem`, `svid_bundle.pem`) and the
//!   Kubernetes TLS Secret layout (`tls.crt`, `tls.key`, `ca.crt`) — the same SVID
//!   twice, for `FileLayout::spiffe_helper` and `FileLayout::kubernetes_tls`.
//!
//! Private keys are written with mode 0600, only into directories that are not
//! symbolic links and that no other user may write to (it refuses otherwise).
//! Each file is written to a temporary name and renamed into place, so a running
//! server watching the directory never reads half a file.
//!
//! Without `--ca-dir`, every run makes a new CA whose key is never written: rerun
//! with every ID you need, and restart or let reload everything that trusted the
//! old bundle. `--ca-dir DIR` keeps the CA (`ca.pem`, and its key `ca.key`, mode
//! 0600) in DIR: the first run makes it, later runs issue more SVIDs under it, so
//! re-issuing one ID leaves the others valid. `--ttl` (`90s`, `30m`, `1h`,
//! `2h30m`; default 1h) is the SVIDs' lifetime, at most the CA's 24 hours.
//! `--dns NAME` adds a DNS name to every SVID, for clients that check hostnames
//! (curl, browsers).

use std::error::Error;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use clap::{CommandFactory, Parser};
use x509_parser::oid_registry::{OID_EC_P256, OID_KEY_TYPE_EC_PUBLIC_KEY};
use x509_parser::prelude::{FromDer, X509Certificate};
use zt_core::dev::{DevCa, SvidParams};
use zt_core::{SpiffeId, TrustDomain};
use zt_examples::cli::UsageError;

/// Writes DEVELOPMENT X.509-SVIDs and their trust bundle, for trying zt with files.
#[derive(Parser)]
#[command(
    name = "zt-dev-certs",
    version,
    after_help = "Files written:\n  \
        OUT/bundle.pem, OUT/bundle.json    the CA, as PEM and as a SPIFFE bundle document\n  \
        OUT/<id path>/svid.pem svid_key.pem svid_bundle.pem    spiffe-helper layout\n  \
        OUT/<id path>/tls.crt tls.key ca.crt                    Kubernetes TLS layout\n  \
        CA_DIR/ca.pem, CA_DIR/ca.key       the kept CA, with --ca-dir (key mode 0600)\n\n\
        <id path> is the ID's path with '/' turned into '-': spiffe://td/ns/web -> ns-web/."
)]
struct Cli {
    /// The trust domain of the CA and of every ID.
    #[arg(long, value_name = "TD")]
    trust_domain: TrustDomain,
    /// A SPIFFE ID to issue an SVID for; repeatable.
    #[arg(long = "id", value_name = "SPIFFE_ID", required = true)]
    ids: Vec<String>,
    /// A DNS name to add to every SVID, for clients that check hostnames; repeatable.
    #[arg(long, value_name = "NAME")]
    dns: Vec<String>,
    /// The SVIDs' lifetime: 90s, 30m, 1h, 2h30m (at most the CA's 24h).
    #[arg(long, value_name = "DURATION", default_value = "1h")]
    ttl: String,
    /// Keep the CA in DIR (made on the first run) and issue under it on later runs.
    #[arg(long, value_name = "DIR")]
    ca_dir: Option<PathBuf>,
    /// The directory to write into.
    #[arg(long, value_name = "DIR")]
    out: PathBuf,
}

const BANNER: &str = "\
WARNING: zt-dev-certs writes DEVELOPMENT certificates from a throwaway CA.
WARNING: Never use them in production: issue SVIDs with SPIRE, cert-manager
WARNING: or another real certificate authority there.";

/// The development CA's lifetime (see `zt_core::dev::DevCa::new`).
const CA_LIFETIME: Duration = Duration::from_secs(24 * 3600);

fn main() -> ExitCode {
    let cli = Cli::parse();
    eprintln!("{BANNER}");
    let usage = Cli::command().render_usage().to_string();
    zt_examples::cli::exit(run(cli), &usage)
}

fn run(cli: Cli) -> Result<(), Box<dyn Error>> {
    let trust_domain = cli.trust_domain;
    let out = cli.out;
    let ttl = parse_ttl(&cli.ttl)?;
    let mut identities: Vec<(SpiffeId, String)> = Vec::new();
    for id in &cli.ids {
        let id: SpiffeId = id
            .parse()
            .map_err(|e| UsageError(format!("--id {id:?}: {e}")))?;
        let dir = dir_name(&id, &trust_domain)?;
        if let Some((other, _)) = identities.iter().find(|(_, d)| *d == dir) {
            return Err(UsageError(format!(
                "--id {id} and --id {other} would both be written to {dir}/"
            ))
            .into());
        }
        identities.push((id, dir));
    }

    let ca = match &cli.ca_dir {
        Some(dir) => kept_ca(dir, &trust_domain)?,
        None => DevCa::new(trust_domain.clone())?,
    };
    let ca_not_after = not_after(ca.cert_der())?;
    let bundle_pem = ca.bundle_pem();
    safe_dir(&out)?;
    write(&out.join("bundle.pem"), &bundle_pem, Secret::No)?;
    write(&out.join("bundle.json"), &spiffe_bundle(&ca)?, Secret::No)?;
    println!("trust domain {trust_domain}");
    println!(
        "  {}  the CA (trust bundle, PEM)",
        out.join("bundle.pem").display()
    );
    println!(
        "  {}  the same bundle as a SPIFFE bundle document",
        out.join("bundle.json").display()
    );

    for (id, dir) in &identities {
        let mut params = SvidParams::new(id.clone()).ttl(ttl);
        // A leaf outliving its CA would only fail later, and more confusingly.
        params.not_after = params.not_after.min(ca_not_after);
        params.dns_names = cli.dns.clone();
        let (chain, key) = ca.mint_pem(params)?;
        let dir = out.join(dir);
        safe_dir(&dir)?;
        for (name, contents, secret) in [
            ("svid.pem", &chain, Secret::No),
            ("svid_key.pem", &key, Secret::Yes),
            ("svid_bundle.pem", &bundle_pem, Secret::No),
            ("tls.crt", &chain, Secret::No),
            ("tls.key", &key, Secret::Yes),
            ("ca.crt", &bundle_pem, Secret::No),
        ] {
            write(&dir.join(name), contents, secret)?;
        }
        println!("{id}");
        println!(
            "  {}/  svid.pem svid_key.pem svid_bundle.pem (spiffe-helper), \
             tls.crt tls.key ca.crt (Kubernetes TLS); valid for {}",
            dir.display(),
            show_duration(ttl)
        );
    }
    Ok(())
}

/// The directory of `id`'s files: its path without the leading `/`, with the
/// other `/` turned into `-`.
fn dir_name(id: &SpiffeId, trust_domain: &TrustDomain) -> Result<String, UsageError> {
    if id.trust_domain() != trust_domain {
        return Err(UsageError(format!(
            "--id {id} is not in trust domain {trust_domain}"
        )));
    }
    let name = id.path().trim_start_matches('/').replace('/', "-");
    if name.is_empty() {
        return Err(UsageError(format!(
            "--id {id}: an SVID's ID needs a path, such as {}/api",
            trust_domain.id()
        )));
    }
    if matches!(name.as_str(), "bundle.pem" | "bundle.json") {
        return Err(UsageError(format!(
            "--id {id}: its directory would be named like the bundle file {name}"
        )));
    }
    Ok(name)
}

/// `90s`, `30m`, `1h`, `2h30m`, `1d`: a sum of numbers with units.
fn parse_ttl(text: &str) -> Result<Duration, UsageError> {
    let bad = || {
        UsageError(format!(
            "--ttl {text:?}: expected a duration such as 30m or 1h"
        ))
    };
    let mut total: u64 = 0;
    let mut number = String::new();
    for c in text.chars() {
        if c.is_ascii_digit() {
            number.push(c);
            continue;
        }
        let unit: u64 = match c {
            's' => 1,
            'm' => 60,
            'h' => 3600,
            'd' => 86_400,
            _ => return Err(bad()),
        };
        let n: u64 = number.parse().map_err(|_| bad())?;
        total = n
            .checked_mul(unit)
            .and_then(|secs| total.checked_add(secs))
            .ok_or_else(bad)?;
        number.clear();
    }
    if !number.is_empty() || total == 0 {
        return Err(bad());
    }
    let ttl = Duration::from_secs(total);
    if ttl > CA_LIFETIME {
        return Err(UsageError(format!(
            "--ttl {text}: at most 24h, the lifetime of the development CA"
        )));
    }
    Ok(ttl)
}

fn show_duration(d: Duration) -> String {
    let secs = d.as_secs();
    let (h, m, s) = (secs / 3600, secs % 3600 / 60, secs % 60);
    let mut out = String::new();
    for (n, unit) in [(h, "h"), (m, "m"), (s, "s")] {
        if n > 0 {
            let _ = write!(out, "{n}{unit}");
        }
    }
    out
}

fn not_after(der: &[u8]) -> Result<SystemTime, Box<dyn Error>> {
    let (_, cert) = X509Certificate::from_der(der).map_err(|e| format!("CA certificate: {e}"))?;
    let secs = u64::try_from(cert.validity().not_after.timestamp())
        .map_err(|_| "CA certificate: notAfter before 1970")?;
    Ok(UNIX_EPOCH + Duration::from_secs(secs))
}

/// The SPIFFE bundle document (X509-SVID spec §6) for the CA: one JWK with
/// `use: x509-svid`, the CA's P-256 public key and the CA certificate in `x5c`.
fn spiffe_bundle(ca: &DevCa) -> Result<String, Box<dyn Error>> {
    let der = ca.cert_der();
    let (_, cert) = X509Certificate::from_der(der).map_err(|e| format!("CA certificate: {e}"))?;
    let spki = cert.public_key();
    let curve = spki
        .algorithm
        .parameters
        .as_ref()
        .and_then(|p| p.as_oid().ok());
    if spki.algorithm.algorithm != OID_KEY_TYPE_EC_PUBLIC_KEY || curve != Some(OID_EC_P256) {
        return Err("the development CA's key is not an EC P-256 key".into());
    }
    // An uncompressed point: 0x04, then X and Y, 32 bytes each.
    let point = &*spki.subject_public_key.data;
    let (x, y) = match point {
        [0x04, xy @ ..] if xy.len() == 64 => xy.split_at(32),
        _ => return Err("the CA's public key is not an uncompressed P-256 point".into()),
    };
    let sequence = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let document = serde_json::json!({
        "keys": [{
            "use": "x509-svid",
            "kty": "EC",
            "crv": "P-256",
            "x": URL_SAFE_NO_PAD.encode(x),
            "y": URL_SAFE_NO_PAD.encode(y),
            "x5c": [STANDARD.encode(der)],
        }],
        "spiffe_sequence": sequence,
    });
    Ok(format!("{}\n", serde_json::to_string_pretty(&document)?))
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Secret {
    Yes,
    No,
}

/// The dev CA kept in `dir` (`ca.pem`, `ca.key`), made and saved there on the first
/// run, so that later runs add or re-issue SVIDs under the same bundle.
fn kept_ca(dir: &Path, trust_domain: &TrustDomain) -> Result<DevCa, Box<dyn Error>> {
    let (cert, key) = (dir.join("ca.pem"), dir.join("ca.key"));
    if cert.exists() || key.exists() {
        let read = |path: &Path| {
            std::fs::read_to_string(path)
                .map_err(|e| format!("cannot read {}: {e}", path.display()))
        };
        let ca =
            DevCa::from_pem(trust_domain.clone(), &read(&cert)?, &read(&key)?).map_err(|e| {
                format!(
                    "the dev CA in {} cannot be used for {trust_domain}: {e} \
                     (remove the directory to make a new CA)",
                    dir.display()
                )
            })?;
        eprintln!("using the dev CA kept in {}", dir.display());
        return Ok(ca);
    }
    safe_dir(dir)?;
    let ca = DevCa::new(trust_domain.clone())?;
    write(&cert, &ca.cert_pem(), Secret::No)?;
    write(&key, &ca.key_pem(), Secret::Yes)?;
    eprintln!(
        "WARNING: the dev CA's private key is kept in {}: whoever reads it can issue \
         identities of {trust_domain}. Development only.",
        key.display()
    );
    Ok(ca)
}

/// Creates `dir` if needed and checks that keys may be written into it: not a
/// symbolic link (a planted link would send the keys elsewhere) and, on Unix, not
/// writable by other users (who could swap the files). Each check is on the
/// directory itself, never followed through a link.
fn safe_dir(dir: &Path) -> Result<(), Box<dyn Error>> {
    let refuse = |why: &str| format!("refusing to write keys into {}: {why}", dir.display());
    match std::fs::symlink_metadata(dir) {
        Ok(meta) if meta.file_type().is_symlink() => {
            return Err(refuse("it is a symbolic link").into());
        }
        Ok(meta) if !meta.is_dir() => return Err(refuse("it is not a directory").into()),
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let mut builder = std::fs::DirBuilder::new();
            builder.recursive(true);
            #[cfg(unix)]
            {
                use std::os::unix::fs::DirBuilderExt as _;
                builder.mode(0o755);
            }
            builder
                .create(dir)
                .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        }
        Err(e) => return Err(refuse(&e.to_string()).into()),
    }
    let meta = std::fs::symlink_metadata(dir).map_err(|e| refuse(&e.to_string()))?;
    if meta.file_type().is_symlink() || !meta.is_dir() {
        return Err(refuse("it changed while being created").into());
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        if meta.permissions().mode() & 0o022 != 0 {
            return Err(refuse(
                "other users may write to it (mode allows group or world writes); \
                 use a directory only you can write to",
            )
            .into());
        }
    }
    Ok(())
}

/// Writes `contents` to a temporary file beside `path` and renames it over
/// `path`; private keys are created with mode 0600 and never exist with wider
/// permissions.
fn write(path: &Path, contents: &str, secret: Secret) -> Result<(), Box<dyn Error>> {
    use std::io::Write as _;

    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or_else(|| format!("{}: not a file name", path.display()))?;
    let tmp = path.with_file_name(format!(".{name}.tmp"));
    let fail = |e: std::io::Error| format!("cannot write {}: {e}", path.display());
    // A leftover from an interrupted run would keep its old permissions.
    match std::fs::remove_file(&tmp) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(fail(e).into()),
        _ => {}
    }
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(if secret == Secret::Yes { 0o600 } else { 0o644 });
    }
    #[cfg(not(unix))]
    let _ = secret;
    let mut file = options.open(&tmp).map_err(fail)?;
    file.write_all(contents.as_bytes()).map_err(fail)?;
    file.sync_all().map_err(fail)?;
    drop(file);
    std::fs::rename(&tmp, path).map_err(fail)?;
    Ok(())
}
