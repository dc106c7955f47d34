//! Asks a zt policy file what it decides, and lints it — for people and for CI.
//!
//! ```text
//! cargo run --example zt-policy -- check POLICY (--peer SPIFFE_ID | --anonymous) \
//!     (--method METHOD --path PATH | --grpc pkg.Service/Method) [--host HOST] \
//!     [--header NAME=VALUE ...] [--upgrade websocket] [--jwt-sub SPIFFE_ID]
//! cargo run --example zt-policy -- lint POLICY
//! ```
//!
//! `check` decides the request's canonical view, as zt-tower and zt-tonic do
//! (the path percent-normalised, the host lower case without port or trailing
//! dot; `--host`, or a `host` header, sets it; `--upgrade websocket` makes it a
//! WebSocket upgrade, which is decided as a `GET`), and prints that view, the verdict, the deciding rule and the reason, the audit rules
//! that matched, and a note when the policy is in dry-run mode. The verdict is the
//! policy's, also in dry-run mode, so a check keeps its meaning when the policy is
//! switched to `enforce`.
//!
//! With `--jwt-sub`, the request carries a validated JWT-SVID with that subject,
//! as behind a gateway: `from: {jwt: ...}` rules decide on it together with the
//! peer. Without it, the request carries no token.
//!
//! With `--anonymous` instead of `--peer`, the request is decided as from an
//! anonymous peer, one that presented no client certificate to a server that
//! allows them: only `from: {unauthenticated: true}` rules admit it, and a
//! dry-run policy does not let it through.
//!
//! `lint` loads the policy (load errors name the file, line and column) and
//! reports the findings of `Policy::lint`: rules and values that can never match,
//! `allow` rules a `deny` rule shadows, and rules an earlier rule makes
//! redundant. See `docs/policy.md` for what lint does not detect. It also prints,
//! as notes that do not fail it, rules whose meaning changed when requests came
//! to be decided on one canonical view (`Policy::upgrade_notes`).
//!
//! Exit codes: 0 allow / no findings, 1 deny / findings, 2 usage or load error.
//! POLICY is YAML, TOML or JSON, by its extension.

use std::error::Error;
use std::process::ExitCode;

use clap::{CommandFactory, Parser, Subcommand};
use zt_core::{Mode, Policy, Request, SpiffeId, Upgrade, Verdict};
use zt_examples::cli::UsageError;

/// Asks a zt policy file what it decides, and lints it: for people and for CI.
/// Exit codes: 0 allow / no findings, 1 deny / findings, 2 usage or load error.
#[derive(Parser)]
#[command(name = "zt-policy", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

// Parsed once per run: the size of the larger variant costs nothing worth boxing for.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand)]
enum Command {
    /// Decide one request, as zt-tower and zt-tonic would: prints the canonical
    /// request, the verdict, the deciding rule and the audit rules.
    Check {
        /// The policy file (YAML, TOML or JSON, by extension).
        policy: String,
        /// The peer's SPIFFE ID.
        #[arg(long, value_name = "SPIFFE_ID", required_unless_present = "anonymous")]
        peer: Option<SpiffeId>,
        /// Decide as from an anonymous peer (no client certificate) instead of --peer.
        #[arg(long, conflicts_with = "peer")]
        anonymous: bool,
        /// The HTTP method (with --path).
        #[arg(long)]
        method: Option<String>,
        /// The request path, with or without a query (with --method).
        #[arg(long)]
        path: Option<String>,
        /// A gRPC call, pkg.Service/Method (instead of --method and --path).
        #[arg(long, value_name = "pkg.Service/Method")]
        grpc: Option<String>,
        /// The request's host (`:authority` or `Host`).
        #[arg(long)]
        host: Option<String>,
        /// A request header, NAME=VALUE; repeatable.
        #[arg(long, value_name = "NAME=VALUE")]
        header: Vec<String>,
        /// The protocol the request asks to switch to: websocket (with --method GET).
        #[arg(long, value_name = "PROTOCOL")]
        upgrade: Option<String>,
        /// The subject of a validated JWT-SVID the request carries.
        #[arg(long, value_name = "SPIFFE_ID")]
        jwt_sub: Option<SpiffeId>,
    },
    /// Load the policy and report rules that never match, shadowed and redundant
    /// rules; notes on rules whose meaning changed do not fail it.
    Lint {
        /// The policy file (YAML, TOML or JSON, by extension).
        policy: String,
    },
}

/// The verdict or lint outcome, as the exit code CI acts on.
enum Outcome {
    Pass,
    Fail,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(Outcome::Pass) => ExitCode::SUCCESS,
        Ok(Outcome::Fail) => ExitCode::FAILURE,
        Err(err) if err.is::<UsageError>() => {
            eprintln!("error: {err}\n{}", Cli::command().render_usage());
            ExitCode::from(2)
        }
        Err(err) => {
            eprintln!("error: {err}");
            ExitCode::from(2)
        }
    }
}

fn run(cli: Cli) -> Result<Outcome, Box<dyn Error>> {
    match cli.command {
        Command::Lint { policy } => lint(&policy),
        Command::Check {
            policy,
            peer,
            anonymous: _,
            method,
            path,
            grpc,
            host,
            header,
            jwt_sub,
            upgrade,
        } => check(
            &policy,
            (peer.as_ref(), jwt_sub.as_ref()),
            (method.as_deref(), path.as_deref(), grpc.as_deref()),
            host.as_deref(),
            &header,
            upgrade.as_deref(),
        ),
    }
}

fn check(
    path: &str,
    (peer, jwt_sub): (Option<&SpiffeId>, Option<&SpiffeId>),
    (method, request_path, grpc): (Option<&str>, Option<&str>, Option<&str>),
    host: Option<&str>,
    header: &[String],
    upgrade: Option<&str>,
) -> Result<Outcome, Box<dyn Error>> {
    let headers = header
        .iter()
        .map(|h| match h.split_once('=') {
            Some((name, value)) => Ok((name.to_owned(), value.to_owned())),
            None => Err(UsageError(format!("--header {h:?}: expected NAME=VALUE"))),
        })
        .collect::<Result<Vec<_>, _>>()?;
    let grpc_path;
    let request = match (method, request_path, grpc) {
        (Some(method), Some(path), None) => Request::new(method, path),
        (None, None, Some(call)) => {
            grpc_path = format!("/{}", call.strip_prefix('/').unwrap_or(call));
            Request::grpc(&grpc_path)
        }
        _ => {
            return Err(UsageError(
                "describe the request with --method and --path, or with --grpc".to_owned(),
            )
            .into());
        }
    };
    let mut request = request.with_headers(&headers);
    let host = match host {
        Some(host) => Some(host),
        None => headers
            .iter()
            .find(|(name, _)| name.eq_ignore_ascii_case("host"))
            .map(|(_, value)| value.as_str()),
    };
    if let Some(host) = host {
        request = request.with_host(host);
    }
    if let Some(protocol) = upgrade {
        let upgrade = Upgrade::from_token(protocol).ok_or_else(|| {
            UsageError(format!(
                "--upgrade {protocol:?}: the only upgrade zt governs is websocket"
            ))
        })?;
        if request.method() != "GET" {
            return Err(UsageError(
                "--upgrade: an upgrade is decided as a GET request (HTTP/2 extended CONNECT \
                 too): use --method GET"
                    .to_owned(),
            )
            .into());
        }
        request = request.with_upgrade(upgrade);
    }
    if let Some(subject) = jwt_sub {
        request = request.with_jwt_subject(subject);
    }
    let policy = Policy::load(path)?;

    // clap requires --peer unless --anonymous, and refuses both.
    let decision = match peer {
        Some(peer) => policy.decide(peer, &request),
        None => policy.decide_anonymous(&request),
    };
    println!("{}: {}", decision.verdict(), decision.reason());
    match peer {
        Some(peer) => println!("  peer     {peer}"),
        None => println!("  peer     anonymous"),
    }
    if let Some(subject) = jwt_sub {
        println!("  jwt      {subject}");
    }
    match request.path() {
        Ok(path) => println!("  request  {} {path}", request.method()),
        Err(why) => println!("  request  {} (ambiguous: {why})", request.method()),
    }
    if let Some((service, method)) = request.grpc_call() {
        println!("  gRPC     {service}/{method}");
    }
    if let Some(host) = request.host() {
        println!("  host     {host}");
    }
    if let Some(upgrade) = request.upgrade() {
        println!("  upgrade  {upgrade}");
    }
    for audit in decision.audit_rules() {
        println!("  audit    matched audit rule {audit}");
    }
    if policy.mode() == Mode::DryRun {
        match peer {
            Some(_) => println!(
                "  note     the policy is in dry-run mode: it lets every request through, \
                 this verdict is what it would enforce"
            ),
            None => println!(
                "  note     the policy is in dry-run mode, which never lets an anonymous \
                 request through that the policy denies"
            ),
        }
    }
    Ok(match decision.verdict() {
        Verdict::Allow => Outcome::Pass,
        Verdict::Deny => Outcome::Fail,
    })
}

fn lint(path: &str) -> Result<Outcome, Box<dyn Error>> {
    let policy = Policy::load(path)?;
    let findings = policy.lint();
    let rules = policy.rule_count();
    println!(
        "{path}: {rules} rule{}, mode {}",
        if rules == 1 { "" } else { "s" },
        policy.mode()
    );
    for finding in &findings {
        println!("{finding}");
    }
    if policy.mode() == Mode::DryRun {
        println!("note: mode is dry-run: the policy lets every request through");
    }
    // Informational: they do not fail the lint.
    for note in policy.upgrade_notes() {
        println!("note: {note}");
    }
    match findings.len() {
        0 => {
            println!("no findings");
            Ok(Outcome::Pass)
        }
        n => {
            println!("{n} finding{}", if n == 1 { "" } else { "s" });
            Ok(Outcome::Fail)
        }
    }
}
