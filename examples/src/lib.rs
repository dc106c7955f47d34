//! Support code shared by the zt examples: the command-line flags they share (parsed
//! with clap), the loading of PEM credentials, bundles and policies named on the
//! command line, and the `helloworld.Greeter` gRPC service of the greeter examples.
//!
//! ```
//! use clap::Parser;
//! use zt_examples::cli::Credentials;
//!
//! #[derive(Parser)]
//! struct Cli {
//!     #[command(flatten)]
//!     credentials: Credentials,
//! }
//! let cli = Cli::try_parse_from(["x", "--cert", "a.pem", "--key", "k.pem", "--bundle", "b.pem",
//!     "--federated", "partner.org=p.json"])?;
//! assert_eq!(cli.credentials.federated[0].0.as_str(), "partner.org");
//! # Ok::<(), clap::Error>(())
//! ```

pub mod cli {
    //! The flags the examples share, as clap argument groups.

    use std::path::PathBuf;

    use zt_core::{BundleSet, TrustDomain, X509Bundle, X509Svid};

    /// A command-line mistake found after clap parsed the flags; the example prints
    /// it with its usage and exits 2, as clap does for its own.
    #[derive(Debug, thiserror::Error)]
    #[error("{0}")]
    pub struct UsageError(pub String);

    /// Our SVID and the bundles we trust, from files.
    #[derive(Clone, Debug, clap::Args)]
    pub struct Credentials {
        /// Our X.509-SVID chain, PEM (leaf first).
        #[arg(long, value_name = "FILE")]
        pub cert: PathBuf,
        /// The SVID's private key, PEM (PKCS#8).
        #[arg(long, value_name = "FILE")]
        pub key: PathBuf,
        /// Our own trust domain's bundle, PEM or SPIFFE bundle JSON.
        #[arg(long, value_name = "FILE")]
        pub bundle: PathBuf,
        /// Another trust domain's bundle to trust, as TRUST_DOMAIN=FILE (PEM or
        /// SPIFFE bundle JSON); repeatable.
        #[arg(long, value_name = "TD=FILE", value_parser = parse_federated)]
        pub federated: Vec<(TrustDomain, PathBuf)>,
    }

    fn parse_federated(value: &str) -> Result<(TrustDomain, PathBuf), String> {
        let (td, file) = value
            .split_once('=')
            .ok_or_else(|| format!("expected TRUST_DOMAIN=FILE, got {value:?}"))?;
        let td = td.parse().map_err(|e| format!("{td:?}: {e}"))?;
        Ok((td, PathBuf::from(file)))
    }

    /// The policy a server enforces: a policy file, or allow-patterns.
    #[derive(Clone, Debug, clap::Args)]
    #[group(required = true, multiple = false)]
    pub struct PolicyArgs {
        /// A policy file (YAML, TOML or JSON, by extension), re-read when it changes.
        #[arg(long, value_name = "FILE")]
        pub policy: Option<PathBuf>,
        /// Allow peers whose SPIFFE ID matches PATTERN (`*`, `**` segments);
        /// repeatable. Instead of --policy.
        #[arg(long, value_name = "PATTERN")]
        pub allow: Vec<String>,
    }

    /// The exit code for an example's outcome: 0 on success; 2 with the usage after a
    /// command-line mistake; 1 with a one-line error otherwise.
    pub fn exit(
        outcome: Result<(), Box<dyn std::error::Error>>,
        usage: &str,
    ) -> std::process::ExitCode {
        use std::process::ExitCode;
        match outcome {
            Ok(()) => ExitCode::SUCCESS,
            Err(err) if err.is::<UsageError>() => {
                eprintln!("error: {err}\n{usage}");
                ExitCode::from(2)
            }
            Err(err) => {
                eprintln!("error: {err}");
                ExitCode::FAILURE
            }
        }
    }

    /// Logs at INFO to stderr, so stdout carries only what the example prints.
    pub fn init_logging() {
        tracing_subscriber::fmt()
            .with_max_level(tracing::Level::INFO)
            .with_writer(std::io::stderr)
            .init();
    }

    /// Reads a file, naming it in the error.
    ///
    /// # Errors
    ///
    /// When the file cannot be read.
    pub fn read(path: &str) -> Result<Vec<u8>, Box<dyn std::error::Error>> {
        std::fs::read(path).map_err(|e| format!("cannot read {path}: {e}").into())
    }

    /// Our SVID from `--cert` and `--key`, and the bundles from `--bundle` (our own
    /// trust domain's) and `--federated`, read once.
    ///
    /// # Errors
    ///
    /// Usage errors, unreadable files and invalid PEM or bundle documents.
    pub fn load_material(
        credentials: &Credentials,
    ) -> Result<(X509Svid, BundleSet), Box<dyn std::error::Error>> {
        let shown = |path: &PathBuf| path.display().to_string();
        let (cert, key, bundle) = (
            shown(&credentials.cert),
            shown(&credentials.key),
            shown(&credentials.bundle),
        );
        let svid = X509Svid::from_pem(&read(&cert)?, &read(&key)?)
            .map_err(|e| format!("{cert} / {key}: {e}"))?;
        let own = X509Bundle::from_pem_or_json(svid.id().trust_domain().clone(), &read(&bundle)?)
            .map_err(|e| format!("{bundle}: {e}"))?;
        let mut bundles = BundleSet::new().with(own);
        for (td, path) in &credentials.federated {
            let shown = shown(path);
            let bundle = X509Bundle::from_pem_or_json(td.clone(), &read(&shown)?)
                .map_err(|e| format!("{shown}: {e}"))?;
            bundles.insert(bundle);
        }
        Ok((svid, bundles))
    }

    /// How long a server waits for valid credentials before giving up.
    pub const STARTUP_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

    /// Our identity from `--cert`, `--key`, `--bundle` and `--federated`, read from
    /// the files and re-read when they change, once it is ready.
    ///
    /// Keep the returned source alive for as long as the identity serves.
    ///
    /// # Errors
    ///
    /// Usage errors, a watcher that cannot start, or no valid identity within
    /// [`STARTUP_TIMEOUT`].
    pub async fn watched_identity(
        credentials: &Credentials,
    ) -> Result<(zt_core::FileSource, zt_core::Identity), Box<dyn std::error::Error>> {
        use zt_core::IdentitySource;

        let layout =
            zt_core::FileLayout::explicit(&credentials.cert, &credentials.key, &credentials.bundle);
        let mut source = zt_core::FileSource::builder(layout);
        for (td, path) in &credentials.federated {
            source = source.federated(td.clone(), path);
        }
        let source = source.start()?;
        let identity = source.identity();
        if tokio::time::timeout(STARTUP_TIMEOUT, identity.ready())
            .await
            .is_err()
        {
            let status = identity.status();
            let reason = status.not_ready_reason().unwrap_or_default();
            return Err(format!("no valid identity after {STARTUP_TIMEOUT:?}: {reason}").into());
        }
        Ok((source, identity))
    }

    /// The policy from `--policy FILE` (re-read when the file changes; keep the
    /// returned watch alive) or from `--allow PATTERN ...`.
    ///
    /// # Errors
    ///
    /// Neither or both flags, an invalid policy or pattern, or a watcher that
    /// cannot start.
    pub fn policy(
        args: &PolicyArgs,
    ) -> Result<(zt_core::PolicyStore, Option<zt_core::PolicyWatch>), Box<dyn std::error::Error>>
    {
        use zt_core::{Policy, PolicyStore};

        match (&args.policy, args.allow.as_slice()) {
            (Some(path), []) => {
                let store = PolicyStore::new(Policy::load(path)?);
                let watch = store.watch_file(path)?;
                Ok((store, Some(watch)))
            }
            (None, patterns) if !patterns.is_empty() => {
                Ok((PolicyStore::new(Policy::allow_patterns(patterns)?), None))
            }
            _ => Err(UsageError("give either --policy or --allow".to_owned()).into()),
        }
    }

    /// Completes on Ctrl-C or, on Unix, SIGTERM.
    pub async fn shutdown_signal() {
        let ctrl_c = async {
            let _ = tokio::signal::ctrl_c().await;
        };
        #[cfg(unix)]
        let terminate = async {
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(mut signal) => {
                    signal.recv().await;
                }
                Err(_) => std::future::pending().await,
            }
        };
        #[cfg(not(unix))]
        let terminate = std::future::pending::<()>();
        tokio::select! {
            () = ctrl_c => {}
            () = terminate => {}
        }
        tracing::info!("shutting down");
    }
}

pub mod greeter;
