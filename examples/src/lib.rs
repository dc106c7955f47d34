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

    /// Our SVID and the bundles we trust: from files (`--cert`, `--key`, `--bundle`,
    /// `--federated`) or from the SPIFFE Workload API (`--workload-api`), never both.
    #[derive(Clone, Debug, clap::Args)]
    pub struct Credentials {
        /// Our X.509-SVID chain, PEM (leaf first).
        #[arg(
            long,
            value_name = "FILE",
            required_unless_present = "workload_api",
            conflicts_with = "workload_api"
        )]
        pub cert: Option<PathBuf>,
        /// The SVID's private key, PEM (PKCS#8).
        #[arg(
            long,
            value_name = "FILE",
            required_unless_present = "workload_api",
            conflicts_with = "workload_api"
        )]
        pub key: Option<PathBuf>,
        /// Our own trust domain's bundle, PEM or SPIFFE bundle JSON.
        #[arg(
            long,
            value_name = "FILE",
            required_unless_present = "workload_api",
            conflicts_with = "workload_api"
        )]
        pub bundle: Option<PathBuf>,
        /// Another trust domain's bundle to trust, as TRUST_DOMAIN=FILE (PEM or
        /// SPIFFE bundle JSON); repeatable.
        #[arg(long, value_name = "TD=FILE", value_parser = parse_federated, conflicts_with = "workload_api")]
        pub federated: Vec<(TrustDomain, PathBuf)>,
        /// Take the SVID and every bundle, federated ones included, from the SPIFFE
        /// Workload API at ADDR (`unix:/path`, `unix:///path` or `tcp://IP:port`;
        /// without ADDR, from SPIFFE_ENDPOINT_SOCKET), instead of --cert, --key,
        /// --bundle and --federated. Rotations arrive on the stream.
        #[arg(long, value_name = "ADDR", num_args = 0..=1, default_missing_value = "")]
        pub workload_api: Option<String>,
        /// With --workload-api: serve the first SVID whose operator hint is HINT.
        #[arg(
            long,
            value_name = "HINT",
            requires = "workload_api",
            conflicts_with = "svid_id"
        )]
        pub svid_hint: Option<String>,
        /// With --workload-api: serve the first SVID whose SPIFFE ID matches PATTERN
        /// (`*`, `**` segments).
        #[arg(long, value_name = "PATTERN", requires = "workload_api")]
        pub svid_id: Option<String>,
    }

    /// Where the credentials come from, as the flags say.
    #[derive(Debug)]
    pub enum Origin<'a> {
        /// PEM or bundle-JSON files.
        Files {
            /// `--cert`.
            cert: &'a PathBuf,
            /// `--key`.
            key: &'a PathBuf,
            /// `--bundle`.
            bundle: &'a PathBuf,
        },
        /// The SPIFFE Workload API; `None` reads `SPIFFE_ENDPOINT_SOCKET`.
        WorkloadApi(Option<&'a str>),
    }

    impl Credentials {
        /// Where the credentials come from.
        ///
        /// # Errors
        ///
        /// When the flags name neither files nor the Workload API (clap catches
        /// this first for the examples' own parsers).
        pub fn origin(&self) -> Result<Origin<'_>, UsageError> {
            match (&self.workload_api, &self.cert, &self.key, &self.bundle) {
                (Some(address), None, None, None) if self.federated.is_empty() => Ok(
                    Origin::WorkloadApi(Some(address.as_str()).filter(|a| !a.is_empty())),
                ),
                (None, Some(_), Some(_), Some(_))
                    if self.svid_hint.is_some() || self.svid_id.is_some() =>
                {
                    Err(UsageError(
                        "--svid-hint and --svid-id pick among the Workload API's SVIDs: \
                         use them with --workload-api"
                            .to_owned(),
                    ))
                }
                (None, Some(cert), Some(key), Some(bundle)) => {
                    Ok(Origin::Files { cert, key, bundle })
                }
                _ => Err(UsageError(
                    "give either --cert, --key and --bundle, or --workload-api".to_owned(),
                )),
            }
        }

        /// The Workload API picker from `--svid-hint` or `--svid-id`.
        ///
        /// # Errors
        ///
        /// When the `--svid-id` pattern is invalid.
        pub fn picker(&self) -> Result<zt_core::SvidPicker, UsageError> {
            use zt_core::{IdMatcher, SvidPicker};
            match (&self.svid_hint, &self.svid_id) {
                (Some(hint), _) => Ok(SvidPicker::by_hint(hint.clone())),
                (None, Some(pattern)) => IdMatcher::pattern(pattern)
                    .map(SvidPicker::by_id)
                    .map_err(|e| UsageError(format!("--svid-id {pattern:?}: {e}"))),
                (None, None) => Ok(SvidPicker::first()),
            }
        }
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

    /// Clients without a certificate (`--anonymous`) and the routes the policy
    /// opens to them (`--allow-anonymous`).
    #[derive(Clone, Debug, Default, clap::Args)]
    pub struct AnonymousArgs {
        /// Request but do not require a client certificate. A client that presents
        /// none is an anonymous peer: it reaches only what --allow-anonymous (or a
        /// policy rule with `from: {unauthenticated: true}`) opens to it, nothing
        /// without. A client that presents a bad certificate is still refused.
        #[arg(long)]
        pub anonymous: bool,
        /// Add a rule letting anonymous peers GET PATH (a path pattern, `*` and
        /// `**` segments) to the --allow or --policy rules; repeatable. Needs
        /// --anonymous.
        #[arg(long = "allow-anonymous", value_name = "PATH", requires = "anonymous")]
        pub allow_anonymous: Vec<String>,
    }

    impl AnonymousArgs {
        /// The rules of `--allow-anonymous`: one per path, named
        /// `anonymous-get:PATH` (characters a rule name cannot hold become `_`),
        /// allowing anonymous peers `GET PATH`. `None` without any.
        ///
        /// ```
        /// use clap::Parser;
        /// use zt_core::Request;
        /// use zt_examples::cli::AnonymousArgs;
        ///
        /// #[derive(Parser)]
        /// struct Cli {
        ///     #[command(flatten)]
        ///     anonymous: AnonymousArgs,
        /// }
        /// let cli = Cli::try_parse_from(["x", "--anonymous", "--allow-anonymous", "/healthz"])?;
        /// let rules = cli.anonymous.rules()?.expect("one rule");
        /// assert_eq!(rules.rule_names().collect::<Vec<_>>(), ["anonymous-get:/healthz"]);
        /// assert!(rules.decide_anonymous(&Request::new("GET", "/healthz")).is_allowed());
        /// assert!(!rules.decide_anonymous(&Request::new("POST", "/healthz")).is_allowed());
        ///
        /// assert!(Cli::try_parse_from(["x", "--allow-anonymous", "/healthz"]).is_err());
        /// # Ok::<(), Box<dyn std::error::Error>>(())
        /// ```
        ///
        /// # Errors
        ///
        /// An invalid path.
        pub fn rules(&self) -> Result<Option<zt_core::Policy>, zt_core::PolicyError> {
            anonymous_rules(&self.allow_anonymous)
        }

        /// `builder`, requesting but not requiring a client certificate with
        /// `--anonymous`.
        #[must_use]
        pub fn server(&self, builder: zt_tower::ServerBuilder) -> zt_tower::ServerBuilder {
            if self.anonymous {
                builder.allow_anonymous()
            } else {
                builder
            }
        }
    }

    /// JWT-SVIDs on incoming requests: the JWT bundles to check them with and the
    /// audience they must name.
    #[derive(Clone, Debug, Default, clap::Args)]
    pub struct JwtArgs {
        /// Validate the `Authorization: Bearer` JWT-SVID of every request with the
        /// JWT bundle of trust domain TD in FILE (SPIFFE bundle JSON, re-read when
        /// it changes); repeatable, one per trust domain. Needs --audience.
        #[arg(long = "jwt-bundle", value_name = "TD=FILE", requires = "audience")]
        pub jwt_bundles: Vec<String>,
        /// The audience JWT-SVIDs must name. Needs --jwt-bundle.
        #[arg(long, value_name = "AUD", requires = "jwt_bundles")]
        pub audience: Option<String>,
    }

    /// The JWT bundles an application validates with, kept in step with their
    /// files until dropped.
    #[derive(Debug)]
    pub struct JwtBundleFiles {
        /// The validator for `--audience`.
        pub validator: zt_core::jwt::JwtValidator,
        _watch: zt_core::jwt::JwtBundleWatch,
    }

    impl JwtArgs {
        /// Loads and watches the `--jwt-bundle` files; `None` without them.
        ///
        /// # Errors
        ///
        /// A malformed `TD=FILE`, a file that does not load, no tokio runtime.
        pub fn load(&self) -> Result<Option<JwtBundleFiles>, Box<dyn std::error::Error>> {
            let Some(audience) = &self.audience else {
                return Ok(None);
            };
            let mut files = Vec::new();
            for spec in &self.jwt_bundles {
                let (td, file) = spec.split_once('=').ok_or_else(|| {
                    UsageError(format!("--jwt-bundle {spec:?}: expected TD=FILE"))
                })?;
                let td: zt_core::TrustDomain = td
                    .parse()
                    .map_err(|e| UsageError(format!("--jwt-bundle {spec:?}: {e}")))?;
                files.push((td, PathBuf::from(file)));
            }
            let bundles = zt_core::jwt::JwtBundles::default();
            bundles.load_files(&files)?;
            let watch = bundles.watch_files(&files)?;
            let validator = zt_core::jwt::JwtValidator::new(bundles, audience.as_str())?;
            Ok(Some(JwtBundleFiles {
                validator,
                _watch: watch,
            }))
        }
    }

    fn anonymous_rules(paths: &[String]) -> Result<Option<zt_core::Policy>, zt_core::PolicyError> {
        if paths.is_empty() {
            return Ok(None);
        }
        let mut seen = std::collections::HashSet::new();
        let rules: Vec<serde_json::Value> = paths
            .iter()
            .filter(|path| seen.insert(path.as_str()))
            .map(|path| {
                let name: String = path
                    .chars()
                    .map(|c| {
                        if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | ':' | '/' | '-') {
                            c
                        } else {
                            '_'
                        }
                    })
                    .collect();
                serde_json::json!({
                    "name": format!("anonymous-get:{name}"),
                    "action": "allow",
                    "from": { "unauthenticated": true },
                    "to": { "methods": ["GET"], "paths": [path] },
                })
            })
            .collect();
        let document = serde_json::json!({ "rules": rules }).to_string();
        zt_core::Policy::parse(&document, zt_core::Format::Json).map(Some)
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
    /// Usage errors (also when the credentials come from the Workload API),
    /// unreadable files and invalid PEM or bundle documents.
    pub fn load_material(
        credentials: &Credentials,
    ) -> Result<(X509Svid, BundleSet), Box<dyn std::error::Error>> {
        let Origin::Files { cert, key, bundle } = credentials.origin()? else {
            return Err(UsageError("the credentials come from the Workload API".to_owned()).into());
        };
        let shown = |path: &PathBuf| path.display().to_string();
        let (cert, key, bundle) = (shown(cert), shown(key), shown(bundle));
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

    /// The source behind an example's identity; keep it alive while the identity
    /// serves (dropping a source withdraws its identity).
    #[derive(Debug)]
    pub enum Source {
        /// Watched files.
        Files(zt_core::FileSource),
        /// Files read once.
        Static(zt_core::StaticSource),
        /// The SPIFFE Workload API stream.
        WorkloadApi(zt_core::WorkloadApiSource),
    }

    // === impl Source ===

    impl Source {
        /// The identity this source maintains, ready or not.
        pub fn identity(&self) -> zt_core::Identity {
            use zt_core::IdentitySource;

            match self {
                Self::Files(files) => files.identity(),
                Self::Static(fixed) => fixed.identity(),
                Self::WorkloadApi(api) => api.identity(),
            }
        }
    }

    /// Our identity for a server: from `--cert`, `--key`, `--bundle` and
    /// `--federated`, re-read when the files change, or streamed from the Workload
    /// API with `--workload-api`; once it is ready.
    ///
    /// # Errors
    ///
    /// Usage errors, a watcher or stream that cannot start, or no valid identity
    /// within [`STARTUP_TIMEOUT`].
    pub async fn watched_identity(
        credentials: &Credentials,
    ) -> Result<(Source, zt_core::Identity), Box<dyn std::error::Error>> {
        ready(watched_source(credentials)?).await
    }

    /// The source of [`watched_identity`], started but not yet ready, for a
    /// server that reports its readiness (`--admin`) while it waits; wait with
    /// [`ready`].
    ///
    /// # Errors
    ///
    /// Usage errors, a watcher or stream that cannot start.
    pub fn watched_source(credentials: &Credentials) -> Result<Source, Box<dyn std::error::Error>> {
        Ok(match credentials.origin()? {
            Origin::Files { cert, key, bundle } => {
                let layout = zt_core::FileLayout::explicit(cert, key, bundle);
                let mut source = zt_core::FileSource::builder(layout);
                for (td, path) in &credentials.federated {
                    source = source.federated(td.clone(), path);
                }
                Source::Files(source.start()?)
            }
            Origin::WorkloadApi(address) => workload_api(credentials, address)?,
        })
    }

    /// Our identity for a one-shot client: the files read once, or the Workload
    /// API's stream with `--workload-api`; once it is ready.
    ///
    /// # Errors
    ///
    /// As [`load_material`] and [`watched_identity`].
    pub async fn client_identity(
        credentials: &Credentials,
    ) -> Result<(Source, zt_core::Identity), Box<dyn std::error::Error>> {
        let source = match credentials.origin()? {
            Origin::Files { .. } => {
                let (svid, bundles) = load_material(credentials)?;
                Source::Static(zt_core::StaticSource::new(svid, bundles)?)
            }
            Origin::WorkloadApi(address) => workload_api(credentials, address)?,
        };
        ready(source).await
    }

    fn workload_api(
        credentials: &Credentials,
        address: Option<&str>,
    ) -> Result<Source, Box<dyn std::error::Error>> {
        let mut builder = zt_core::WorkloadApiSource::builder().pick(credentials.picker()?);
        if let Some(address) = address {
            builder = builder.endpoint(address);
        }
        let source = builder.start().map_err(|e| match e {
            zt_core::WorkloadApiError::InvalidEndpoint { .. }
            | zt_core::WorkloadApiError::EndpointUnset
            | zt_core::WorkloadApiError::EndpointNotUnicode => {
                Box::new(UsageError(format!("--workload-api: {e}"))) as Box<dyn std::error::Error>
            }
            other => other.into(),
        })?;
        tracing::info!(
            endpoint = source.endpoint(),
            "identity from the SPIFFE Workload API"
        );
        Ok(Source::WorkloadApi(source))
    }

    /// Waits until `source`'s identity is ready.
    ///
    /// # Errors
    ///
    /// No valid identity within [`STARTUP_TIMEOUT`], with the reason.
    pub async fn ready(
        source: Source,
    ) -> Result<(Source, zt_core::Identity), Box<dyn std::error::Error>> {
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
        policy_admitting(args, &AnonymousArgs::default())
    }

    /// As [`policy`], with the rules of `--allow-anonymous` added to the policy
    /// and, with `--policy`, to every version of the file it re-reads.
    ///
    /// # Errors
    ///
    /// As [`policy`], and an invalid `--allow-anonymous` path or a rule name the
    /// policy already uses.
    pub fn policy_admitting(
        args: &PolicyArgs,
        anonymous: &AnonymousArgs,
    ) -> Result<(zt_core::PolicyStore, Option<zt_core::PolicyWatch>), Box<dyn std::error::Error>>
    {
        use zt_core::{Policy, PolicyStore};

        let extended = |policy: Policy| match anonymous.rules()? {
            Some(rules) => policy.extend(rules),
            None => Ok(policy),
        };
        match (&args.policy, args.allow.as_slice()) {
            (Some(path), []) => {
                let store = PolicyStore::new(extended(Policy::load(path)?)?);
                let watch = if anonymous.allow_anonymous.is_empty() {
                    store.watch_file(path)?
                } else {
                    let paths = anonymous.allow_anonymous.clone();
                    // The rules are the same every time: paths that parsed once do again.
                    store.watch_file_extended(path, move || {
                        Ok(anonymous_rules(&paths)?.unwrap_or_else(Policy::deny_all))
                    })?
                };
                Ok((store, Some(watch)))
            }
            (None, patterns) if !patterns.is_empty() => Ok((
                PolicyStore::new(extended(Policy::allow_patterns(patterns)?)?),
                None,
            )),
            _ => Err(UsageError("give either --policy or --allow".to_owned()).into()),
        }
    }

    /// The plain-HTTP status and admin listener of a server (`--admin`).
    #[derive(Clone, Debug, clap::Args)]
    pub struct AdminArgs {
        /// Serve GET /live, /ready, /status and /metrics (Prometheus text) over
        /// plain HTTP on ADDR, such as 127.0.0.1:9090: localhost or a port of its
        /// own, never the mTLS port.
        #[arg(long, value_name = "ADDR")]
        pub admin: Option<String>,
    }

    /// The admin listener, bound, with the Prometheus recorder installed.
    #[derive(Debug)]
    pub struct AdminListener {
        listener: tokio::net::TcpListener,
        metrics: metrics_exporter_prometheus::PrometheusHandle,
    }

    impl AdminArgs {
        /// With `--admin`: installs the Prometheus recorder as the global
        /// `metrics` recorder and binds ADDR. Call it before starting anything
        /// that records metrics (the identity source), so nothing is lost.
        ///
        /// # Errors
        ///
        /// When ADDR cannot be bound or another recorder is installed.
        pub async fn bind(&self) -> Result<Option<AdminListener>, Box<dyn std::error::Error>> {
            let Some(addr) = &self.admin else {
                return Ok(None);
            };
            let listener = tokio::net::TcpListener::bind(addr)
                .await
                .map_err(|e| format!("--admin: cannot listen on {addr}: {e}"))?;
            let metrics = metrics_exporter_prometheus::PrometheusBuilder::new()
                .install_recorder()
                .map_err(|e| format!("--admin: cannot install the metrics recorder: {e}"))?;
            Ok(Some(AdminListener { listener, metrics }))
        }
    }

    impl AdminListener {
        /// Serves `identity`'s and `policy`'s status and the recorded metrics in a
        /// task of their own; prints `admin on ADDR`.
        ///
        /// # Errors
        ///
        /// When the listener has no local address.
        pub fn serve(
            self,
            identity: zt_core::Identity,
            policy: zt_core::PolicyStore,
        ) -> Result<(), Box<dyn std::error::Error>> {
            let metrics = self.metrics;
            let admin = zt_tower::admin::Admin::new(identity)
                .with_policy(policy)
                .with_metrics(move || metrics.render());
            println!("admin on {}", self.listener.local_addr()?);
            let listener = self.listener;
            tokio::spawn(async move {
                if let Err(err) = admin.serve(listener).await {
                    tracing::error!(error = %err, "the admin listener stopped");
                }
            });
            Ok(())
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
