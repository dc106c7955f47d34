//! Support code shared by the zt examples: a small command-line parser and the
//! loading of PEM credentials and bundles named on the command line.
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
}
