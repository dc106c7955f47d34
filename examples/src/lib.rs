//! Support code shared by the zt examples: a small command-line parser, the
//! loading of PEM credentials, bundles and policies named on the command line, and
//! the `helloworld.Greeter` gRPC service of the greeter examples.
//!
//! ```
//! use zt_examples::cli::Args;
//!
//! let args = Args::parse_from(["--url", "https://api:8443/", "--allow", "a", "--allow=b"])?;
//! assert_eq!(args.one("--url")?, "https://api:8443/");
//! assert_eq!(args.all("--allow"), ["a", "b"]);
//! # Ok::<(), zt_examples::cli::UsageError>(())
//! ```

pub mod cli {
    //! Flags of the form `--name VALUE` or `--name=VALUE`, each possibly repeated.

    use std::collections::BTreeMap;
    use std::path::PathBuf;

    use zt_core::{BundleSet, TrustDomain, X509Bundle, X509Svid};

    /// A command-line mistake; the example prints it with its usage and exits 2.
    #[derive(Debug, thiserror::Error)]
    #[error("{0}")]
    pub struct UsageError(pub String);

    /// The flags echo-server and greeter-server share.
    pub const SERVER_FLAGS: &[&str] = &[
        "--listen",
        "--cert",
        "--key",
        "--bundle",
        "--federated",
        "--policy",
        "--allow",
    ];

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

    /// Parsed flags.
    #[derive(Debug, Default)]
    pub struct Args {
        values: BTreeMap<String, Vec<String>>,
    }

    impl Args {
        /// Parses the process arguments, accepting only the flags in `known`.
        ///
        /// # Errors
        ///
        /// An unknown flag or a flag without a value.
        pub fn parse(known: &[&str]) -> Result<Self, UsageError> {
            Self::parse_known(std::env::args().skip(1), known)
        }

        /// Parses `args` (without the program name), accepting only the flags in
        /// `known`.
        ///
        /// # Errors
        ///
        /// An unknown flag, a word that is not a flag, or a flag without a value.
        pub fn parse_known<I, S>(args: I, known: &[&str]) -> Result<Self, UsageError>
        where
            I: IntoIterator<Item = S>,
            S: Into<String>,
        {
            let args = Self::parse_from(args)?;
            if let Some(unknown) = args.values.keys().find(|k| !known.contains(&k.as_str())) {
                return Err(UsageError(format!("unknown flag {unknown}")));
            }
            Ok(args)
        }

        /// Parses `args` (without the program name).
        ///
        /// # Errors
        ///
        /// A word that is not a flag, or a flag without a value.
        pub fn parse_from<I, S>(args: I) -> Result<Self, UsageError>
        where
            I: IntoIterator<Item = S>,
            S: Into<String>,
        {
            let mut parsed = Self::default();
            let mut args = args.into_iter().map(Into::into);
            while let Some(arg) = args.next() {
                if !arg.starts_with("--") {
                    return Err(UsageError(format!("unexpected argument {arg:?}")));
                }
                let (name, value) = match arg.split_once('=') {
                    Some((name, value)) => (name.to_owned(), value.to_owned()),
                    None => {
                        let value = args
                            .next()
                            .ok_or_else(|| UsageError(format!("{arg} needs a value")))?;
                        (arg, value)
                    }
                };
                parsed.values.entry(name).or_default().push(value);
            }
            Ok(parsed)
        }

        /// The value of a flag given exactly once.
        ///
        /// # Errors
        ///
        /// When the flag is missing or repeated.
        pub fn one(&self, name: &str) -> Result<&str, UsageError> {
            match self.values.get(name).map(Vec::as_slice) {
                Some([value]) => Ok(value),
                Some(_) => Err(UsageError(format!("{name} may be given only once"))),
                None => Err(UsageError(format!("{name} is required"))),
            }
        }

        /// The value of a flag given at most once.
        ///
        /// # Errors
        ///
        /// When the flag is repeated.
        pub fn optional(&self, name: &str) -> Result<Option<&str>, UsageError> {
            match self.values.get(name).map(Vec::as_slice) {
                Some([value]) => Ok(Some(value)),
                Some(_) => Err(UsageError(format!("{name} may be given only once"))),
                None => Ok(None),
            }
        }

        /// Every value of a repeatable flag, in order.
        pub fn all(&self, name: &str) -> &[String] {
            self.values.get(name).map_or(&[], Vec::as_slice)
        }

        /// `--federated TD=FILE` values.
        ///
        /// # Errors
        ///
        /// A value that is not `TD=FILE` with a valid trust domain name.
        pub fn federated(&self) -> Result<Vec<(TrustDomain, PathBuf)>, UsageError> {
            self.all("--federated")
                .iter()
                .map(|value| {
                    let (td, file) = value.split_once('=').ok_or_else(|| {
                        UsageError(format!("--federated {value:?}: expected TRUST_DOMAIN=FILE"))
                    })?;
                    let td = td
                        .parse()
                        .map_err(|e| UsageError(format!("--federated {value:?}: {e}")))?;
                    Ok((td, PathBuf::from(file)))
                })
                .collect()
        }
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
    pub fn load_material(args: &Args) -> Result<(X509Svid, BundleSet), Box<dyn std::error::Error>> {
        let cert = args.one("--cert")?;
        let key = args.one("--key")?;
        let svid = X509Svid::from_pem(&read(cert)?, &read(key)?)
            .map_err(|e| format!("{cert} / {key}: {e}"))?;
        let bundle = args.one("--bundle")?;
        let own = X509Bundle::from_pem_or_json(svid.id().trust_domain().clone(), &read(bundle)?)
            .map_err(|e| format!("{bundle}: {e}"))?;
        let mut bundles = BundleSet::new().with(own);
        for (td, path) in args.federated()? {
            let shown = path.display().to_string();
            let bundle = X509Bundle::from_pem_or_json(td, &read(&shown)?)
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
        args: &Args,
    ) -> Result<(zt_core::FileSource, zt_core::Identity), Box<dyn std::error::Error>> {
        use zt_core::IdentitySource;

        let layout = zt_core::FileLayout::explicit(
            args.one("--cert")?,
            args.one("--key")?,
            args.one("--bundle")?,
        );
        let mut source = zt_core::FileSource::builder(layout);
        for (td, path) in args.federated()? {
            source = source.federated(td, path);
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
        args: &Args,
    ) -> Result<(zt_core::PolicyStore, Option<zt_core::PolicyWatch>), Box<dyn std::error::Error>>
    {
        use zt_core::{Policy, PolicyStore};

        match (args.optional("--policy")?, args.all("--allow")) {
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
