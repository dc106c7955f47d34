//! Default-deny authorization of every request, on the peer's verified SPIFFE ID.
//!
//! A [`Policy`] is a list of named rules, written in YAML, TOML or JSON (see
//! `docs/policy.md` for the reference) or built in code with
//! [`Policy::allow_patterns`]. It is validated as a whole and compiled into an
//! index when it is loaded; [`Policy::decide`] then answers, for one peer and
//! one [`Request`], with a [`Decision`]:
//!
//! - nothing is allowed unless an `allow` rule matches (default deny);
//! - any matching `deny` rule wins over every `allow` rule;
//! - `audit` rules never change the outcome, they are reported in the decision;
//! - in `dry-run` mode, a request the policy would deny is let through and the
//!   decision says so.
//!
//! For the verified peer of a connection, [`Policy::decide_peer`] gives the same
//! decision and finds the rules that can match the peer once per connection and
//! policy instead of on every request.
//!
//! [`PolicyStore`] holds the policy in force and swaps in a new one atomically,
//! only once it has loaded completely.
//!
//! ```
//! use zt_core::{Format, Policy, Request, SpiffeId, Verdict};
//!
//! let policy = Policy::parse(r#"{
//!     "rules": [
//!         { "name": "frontend-reads-items", "action": "allow",
//!           "from": { "patterns": ["spiffe://example.org/frontend/**"] },
//!           "to": { "methods": ["GET"], "paths": ["/v1/items/*"] } },
//!         { "name": "no-legacy", "action": "deny",
//!           "from": { "ids": ["spiffe://example.org/frontend/legacy"] } }
//!     ]
//! }"#, Format::Json)?;
//!
//! let web: SpiffeId = "spiffe://example.org/frontend/web".parse()?;
//! let decision = policy.decide(&web, &Request::new("GET", "/v1/items/42"));
//! assert!(decision.is_allowed());
//! assert_eq!(decision.reason().to_string(), "allowed by rule frontend-reads-items");
//!
//! let decision = policy.decide(&web, &Request::new("DELETE", "/v1/items/42"));
//! assert!(!decision.is_allowed());
//! assert_eq!(decision.rule(), None);
//!
//! let legacy: SpiffeId = "spiffe://example.org/frontend/legacy".parse()?;
//! let decision = policy.decide(&legacy, &Request::new("GET", "/v1/items/42"));
//! assert_eq!(decision.verdict(), Verdict::Deny);
//! assert_eq!(decision.reason().to_string(), "denied by rule no-legacy");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

mod canonical;
pub(crate) mod decision;
mod document;
mod engine;
mod lint;
mod model;
mod pattern;
pub(crate) mod request;
pub(crate) mod store;
mod validate;

pub use canonical::{AmbiguousPath, Authority, MalformedAuthority, canonical_path};
pub use decision::{Decision, Reason, Verdict};
pub use lint::{LintFinding, LintKind};
pub use request::{Headers, Request, Upgrade};
pub use store::{PolicyChanges, PolicyGuard, PolicyStatus, PolicyStore};

use crate::id::SpiffeId;
use crate::peer::PeerIdentity;
use engine::{Engine, Selection};

/// Largest policy accepted, in bytes: 32 MiB, room for well over 100,000
/// rules. Bounds the memory a bad or hostile file can make a reload use.
pub const MAX_POLICY_BYTES: usize = 32 * 1024 * 1024;

/// Whether a policy is enforced.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Mode {
    /// Requests the policy denies are refused. The default.
    #[default]
    Enforce,
    /// Every request is let through; decisions still say what the policy
    /// would have done, so it can be tried before it is enforced.
    DryRun,
}

impl Mode {
    /// `"enforce"` or `"dry-run"`, as written in policy files.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Enforce => "enforce",
            Self::DryRun => "dry-run",
        }
    }
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

/// The syntax a policy document is written in.
///
/// JSON is always available; YAML needs the `policy-yaml` feature and TOML the
/// `policy-toml` feature.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Format {
    /// YAML (feature `policy-yaml`).
    Yaml,
    /// TOML (feature `policy-toml`).
    Toml,
    /// JSON.
    Json,
}

impl Format {
    /// The format a file name's extension names: `.yaml`/`.yml`, `.toml` or
    /// `.json` (lowercase).
    #[must_use]
    pub fn from_path(path: &Path) -> Option<Self> {
        match path.extension()?.to_str()? {
            "yaml" | "yml" => Some(Self::Yaml),
            "toml" => Some(Self::Toml),
            "json" => Some(Self::Json),
            _ => None,
        }
    }

    /// Whether this build of zt-core can parse the format.
    #[must_use]
    pub fn is_enabled(self) -> bool {
        match self {
            Self::Yaml => cfg!(feature = "policy-yaml"),
            Self::Toml => cfg!(feature = "policy-toml"),
            Self::Json => true,
        }
    }

    fn feature(self) -> &'static str {
        match self {
            Self::Yaml => "policy-yaml",
            Self::Toml => "policy-toml",
            Self::Json => "(none)",
        }
    }
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(match self {
            Self::Yaml => "YAML",
            Self::Toml => "TOML",
            Self::Json => "JSON",
        })
    }
}

/// A position in a policy document, as its format's parser reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Location {
    /// Line, counting from 1.
    pub line: usize,
    /// Column, counting from 1.
    pub column: usize,
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}, column {}", self.line, self.column)
    }
}

/// Why a policy could not be loaded. The policy in force, if any, stays.
#[derive(Clone, Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PolicyError {
    /// The document is not a valid policy: a syntax error, an unknown field,
    /// an invalid ID, pattern, path, method or header, or an invalid rule
    /// (empty, contradictory, duplicate name). Rule errors name the rule.
    #[error("{}", InvalidDisplay { path: path.as_deref(), format: *format, location: *location, message })]
    Invalid {
        /// The file, when the policy was read from one.
        path: Option<PathBuf>,
        /// The syntax the document was parsed as.
        format: Format,
        /// Where the parser was when it found the problem, when it says.
        location: Option<Location>,
        /// What is wrong.
        message: String,
    },
    /// A pattern given to [`Policy::allow_patterns`] is invalid.
    #[error("invalid allow pattern {pattern:?}: {source}")]
    InvalidPattern {
        /// The pattern as given.
        pattern: String,
        /// Why it is invalid.
        #[source]
        source: crate::PatternError,
    },
    /// The policy is larger than [`MAX_POLICY_BYTES`].
    #[error("{} of {size} bytes or more exceeds the limit of {limit} bytes", PathDisplay(path.as_deref()))]
    TooLarge {
        /// The file, when the policy was read from one.
        path: Option<PathBuf>,
        /// The size seen, in bytes.
        size: u64,
        /// The limit, in bytes.
        limit: usize,
    },
    /// The file name does not tell the format.
    #[error(
        "cannot tell the format of policy file {}: name it .yaml, .yml, .toml or .json",
        path.display()
    )]
    UnknownFormat {
        /// The file.
        path: PathBuf,
    },
    /// The format is not compiled into this build.
    #[error("{format} policies need zt-core's {} feature", format.feature())]
    FormatNotEnabled {
        /// The format.
        format: Format,
    },
    /// [`Policy::extend`] was given a rule whose name the policy already has.
    #[error("rule {name:?} is in both policies: rule names must be unique")]
    DuplicateRule {
        /// The name both policies use.
        name: String,
    },
    /// The file could not be read.
    #[error("cannot read policy file {}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: Arc<std::io::Error>,
    },
}

struct PathDisplay<'a>(Option<&'a Path>);

impl fmt::Display for PathDisplay<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(path) => write!(f, "policy file {}", path.display()),
            None => f.write_str("policy"),
        }
    }
}

struct InvalidDisplay<'a> {
    path: Option<&'a Path>,
    format: Format,
    location: Option<Location>,
    message: &'a str,
}

impl fmt::Display for InvalidDisplay<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid {} policy", self.format)?;
        if let Some(path) = self.path {
            write!(f, " {}", path.display())?;
        }
        if let Some(location) = self.location {
            write!(f, " at {location}")?;
        }
        write!(f, ": {}", self.message)
    }
}

/// The format of the policy file at `path`, told by its extension.
fn file_format(path: &Path) -> Result<Format, PolicyError> {
    let format = Format::from_path(path).ok_or_else(|| PolicyError::UnknownFormat {
        path: path.to_owned(),
    })?;
    if !format.is_enabled() {
        return Err(PolicyError::FormatNotEnabled { format });
    }
    Ok(format)
}

/// A compiled, immutable authorization policy. Cheap to share (`Arc`), safe to
/// use from any thread.
pub struct Policy {
    mode: Mode,
    engine: Engine,
    /// Unique among the policies of the process: the key of the selections
    /// made from this one ([`PeerRules`]).
    stamp: u64,
}

/// The next [`Policy::stamp`]. A `u64` does not wrap in the life of a process
/// (one policy per nanosecond would take 584 years).
static NEXT_STAMP: AtomicU64 = AtomicU64::new(1);

fn next_stamp() -> u64 {
    NEXT_STAMP.fetch_add(1, Ordering::Relaxed)
}

// === impl Policy ===

impl Policy {
    /// Parses and validates a whole policy document.
    ///
    /// # Errors
    ///
    /// [`PolicyError::Invalid`] with the location the format's parser reports,
    /// [`PolicyError::TooLarge`] beyond [`MAX_POLICY_BYTES`], or
    /// [`PolicyError::FormatNotEnabled`].
    pub fn parse(text: &str, format: Format) -> Result<Self, PolicyError> {
        if text.len() > MAX_POLICY_BYTES {
            return Err(PolicyError::TooLarge {
                path: None,
                size: u64::try_from(text.len()).unwrap_or(u64::MAX),
                limit: MAX_POLICY_BYTES,
            });
        }
        let document = document::parse(text, format)?;
        Ok(Self::from_document(document))
    }

    /// Reads and parses the policy file at `path`; the extension names the
    /// format (`.yaml`, `.yml`, `.toml`, `.json`). At most
    /// [`MAX_POLICY_BYTES`] are read.
    ///
    /// # Errors
    ///
    /// As [`Policy::parse`], plus [`PolicyError::Io`] and
    /// [`PolicyError::UnknownFormat`]. Errors name the file.
    pub fn load(path: impl AsRef<Path>) -> Result<Self, PolicyError> {
        let path = path.as_ref();
        file_format(path)?;
        let bytes =
            crate::read::read_bounded(path, MAX_POLICY_BYTES).map_err(|err| match err.kind() {
                crate::FileErrorKind::TooLarge { size, .. } => PolicyError::TooLarge {
                    path: Some(path.to_owned()),
                    size: *size,
                    limit: MAX_POLICY_BYTES,
                },
                kind => PolicyError::Io {
                    path: path.to_owned(),
                    source: Arc::new(std::io::Error::other(kind.clone())),
                },
            })?;
        Self::from_file_bytes(path, &bytes)
    }

    /// Parses `bytes`, read from the policy file at `path`, as [`Policy::load`]
    /// would: the extension names the format and errors name the file.
    pub(crate) fn from_file_bytes(path: &Path, bytes: &[u8]) -> Result<Self, PolicyError> {
        let format = file_format(path)?;
        let with_path = |err: PolicyError| match err {
            PolicyError::Invalid {
                path: None,
                format,
                location,
                message,
            } => PolicyError::Invalid {
                path: Some(path.to_owned()),
                format,
                location,
                message,
            },
            PolicyError::TooLarge {
                path: None,
                size,
                limit,
            } => PolicyError::TooLarge {
                path: Some(path.to_owned()),
                size,
                limit,
            },
            other => other,
        };
        let text = std::str::from_utf8(bytes).map_err(|err| {
            with_path(PolicyError::Invalid {
                path: None,
                format,
                location: None,
                message: format!(
                    "not valid UTF-8 (first invalid byte at offset {})",
                    err.valid_up_to()
                ),
            })
        })?;
        Self::parse(text, format).map_err(with_path)
    }

    /// The policy that allows nothing.
    #[must_use]
    pub fn deny_all() -> Self {
        Self {
            mode: Mode::Enforce,
            engine: Engine::empty(),
            stamp: next_stamp(),
        }
    }

    /// One `allow` rule per ID pattern (see
    /// [`IdMatcher::pattern`](crate::IdMatcher::pattern)), each allowing every
    /// request: the `--allow PATTERN` shorthand. Each rule is named after its
    /// pattern; duplicates are dropped. No patterns allow nothing.
    ///
    /// ```
    /// use zt_core::{Policy, Request};
    ///
    /// let policy = Policy::allow_patterns(["spiffe://example.org/ns/prod/**"])?;
    /// let api = "spiffe://example.org/ns/prod/api".parse()?;
    /// let decision = policy.decide(&api, &Request::new("POST", "/anything"));
    /// assert_eq!(decision.rule(), Some("spiffe://example.org/ns/prod/**"));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    ///
    /// [`PolicyError::InvalidPattern`] for the first invalid pattern.
    pub fn allow_patterns<I, S>(patterns: I) -> Result<Self, PolicyError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let document = model::Document::allow_patterns(patterns)?;
        Ok(Self::from_document(document))
    }

    /// This policy's rules followed by those of `more`, in this policy's mode:
    /// rules that the application adds to every policy it loads, such as the
    /// examples' `--allow-anonymous`.
    ///
    /// ```
    /// use zt_core::{Format, Policy, Request};
    ///
    /// let file = Policy::parse(r#"{"rules": [{"name": "web", "action": "allow",
    ///     "from": {"ids": ["spiffe://example.org/web"]}}]}"#, Format::Json)?;
    /// let probes = Policy::parse(r#"{"rules": [{"name": "probes", "action": "allow",
    ///     "from": {"unauthenticated": true}, "to": {"paths": ["/healthz"]}}]}"#, Format::Json)?;
    /// let policy = file.extend(probes)?;
    /// assert_eq!(policy.rule_names().collect::<Vec<_>>(), ["web", "probes"]);
    /// assert!(policy.decide_anonymous(&Request::new("GET", "/healthz")).is_allowed());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    ///
    /// [`PolicyError::DuplicateRule`] when a rule of `more` has the name of one
    /// of this policy's rules.
    pub fn extend(self, more: Policy) -> Result<Self, PolicyError> {
        let names: std::collections::HashSet<&str> = self.rule_names().collect();
        if let Some(name) = more.rule_names().find(|name| names.contains(name)) {
            return Err(PolicyError::DuplicateRule {
                name: name.to_owned(),
            });
        }
        let mut rules = self.engine.into_rules();
        rules.extend(more.engine.into_rules());
        // A new engine, so a new stamp: no selection made from either part
        // answers for the whole.
        Ok(Self {
            mode: self.mode,
            engine: Engine::compile(rules),
            stamp: next_stamp(),
        })
    }

    fn from_document(document: model::Document) -> Self {
        Self {
            mode: document.mode,
            engine: Engine::compile(document.rules.0),
            stamp: next_stamp(),
        }
    }

    /// Decides whether `peer` may make `request`.
    ///
    /// `peer` must be the ID of a verified peer; the policy only looks at the
    /// ID string. Does not allocate unless `audit` rules match.
    #[must_use]
    pub fn decide(&self, peer: &SpiffeId, request: &Request<'_>) -> Decision {
        self.decision(self.engine.decide(peer, request))
    }

    /// Decides whether the verified peer of a connection may make `request`:
    /// the same decision as [`decide`](Self::decide) with `peer.id()`, made
    /// with less work on a connection's later requests.
    ///
    /// The rules whose `from` matches the peer depend on its ID and the policy
    /// alone. They are found on the peer's first request under this policy,
    /// kept with the peer (every clone of one connection's [`PeerIdentity`]
    /// shares them), and reused by its later requests while this policy
    /// decides them; each request still matches every one of those rules'
    /// `to` and `when`. The selection is keyed by this policy, unique in the
    /// process: a policy replaced in a [`PolicyStore`], or any other policy,
    /// makes a new one and never uses another's. A request that finds the
    /// peer's selection in use by another request of the same connection at
    /// that instant decides from the index instead, with the same outcome, as
    /// do the requests of a peer whose `from` matches more rules than a
    /// connection should hold (64). Allocates the selection (at most 64 rule
    /// indices) on the peer's first decision under a policy, and otherwise only
    /// when `audit` rules match.
    ///
    /// Does not check that the peer is still trusted: call
    /// [`PeerIdentity::reverify`] first, as `zt_tower::Authorize` does.
    ///
    /// ```
    /// # #[cfg(feature = "dev")] {
    /// use zt_core::{PeerIdentity, PeerRole, Policy, Request, dev::DevCa};
    ///
    /// let ca = DevCa::new("example.org".parse()?)?;
    /// let svid = ca.mint(&"spiffe://example.org/web".parse()?)?;
    /// let peer = PeerIdentity::from_chain(svid.chain().to_vec(), PeerRole::Client)?;
    ///
    /// let policy = Policy::allow_patterns(["spiffe://example.org/web"])?;
    /// let request = Request::new("GET", "/items");
    /// let decision = policy.decide_peer(&peer, &request);
    /// assert!(decision.is_allowed());
    /// assert_eq!(decision, policy.decide(peer.id(), &request));
    ///
    /// // Another policy never decides with this one's selection.
    /// let other = Policy::allow_patterns(["spiffe://example.org/api"])?;
    /// assert!(!other.decide_peer(&peer, &request).is_allowed());
    /// # }
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[must_use]
    pub fn decide_peer(&self, peer: &PeerIdentity, request: &Request<'_>) -> Decision {
        let id = peer.id();
        let outcome = match peer.policy_rules().selected.try_lock() {
            Ok(mut selected) => {
                let selected = match &mut *selected {
                    Some(selected) if selected.policy == self.stamp => selected,
                    slot => slot.insert(Selected {
                        policy: self.stamp,
                        selection: self.engine.select(id),
                    }),
                };
                match &selected.selection {
                    Some(selection) => self.engine.decide_selected(selection, id, request),
                    None => self.engine.decide(id, request),
                }
            }
            // Another request of the connection holds it (or one panicked
            // while holding it): the index gives the same outcome.
            Err(_) => self.engine.decide(id, request),
        };
        self.decision(outcome)
    }

    fn decision(&self, outcome: engine::Outcome) -> Decision {
        Decision::new(
            outcome.verdict,
            self.mode == Mode::DryRun,
            outcome.rule,
            outcome.audit,
        )
    }

    /// Decides whether an anonymous peer, one that presented no client
    /// certificate, may make `request`.
    ///
    /// Only `allow` rules with `from: {unauthenticated: true}` admit it; `deny`
    /// and `audit` rules without a positive `from` field (no `from`, or only
    /// `not_` fields) match it as well. A dry-run policy does not relax this
    /// decision: an anonymous request the policy denies is refused in either
    /// mode, so trying a policy never opens the service to unauthenticated
    /// clients.
    ///
    /// ```
    /// use zt_core::{Format, Policy, Request};
    ///
    /// let policy = Policy::parse(r#"{ "mode": "dry-run", "rules": [
    ///     { "name": "probes", "action": "allow",
    ///       "from": { "unauthenticated": true },
    ///       "to": { "methods": ["GET"], "paths": ["/healthz"] } },
    ///     { "name": "everyone", "action": "allow", "to": { "paths": ["/**"] } }
    /// ] }"#, Format::Json)?;
    ///
    /// let probe = policy.decide_anonymous(&Request::new("GET", "/healthz"));
    /// assert_eq!(probe.rule(), Some("probes"));
    ///
    /// // Rules without `unauthenticated: true` admit authenticated peers only,
    /// // and dry-run does not let an anonymous request through.
    /// let other = policy.decide_anonymous(&Request::new("GET", "/whoami"));
    /// assert!(!other.is_allowed());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[must_use]
    pub fn decide_anonymous(&self, request: &Request<'_>) -> Decision {
        let outcome = self.engine.decide_anonymous(request);
        Decision::new(outcome.verdict, false, outcome.rule, outcome.audit)
    }

    /// Whether the policy is enforced or in dry-run mode.
    #[must_use]
    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// The number of rules.
    #[must_use]
    pub fn rule_count(&self) -> usize {
        self.engine.rule_count()
    }

    /// The rule names, in policy order.
    pub fn rule_names(&self) -> impl ExactSizeIterator<Item = &str> + '_ {
        self.engine.rule_names()
    }

    /// Rules that can never match a request from a verified peer, values that
    /// can never match, and rules that never decide (shadowed by a `deny`
    /// rule, or redundant after an earlier rule with the same action), in
    /// policy order. Every finding is proven; see [`LintFinding`] for what
    /// lint looks for and what it does not detect. Does not change decisions.
    ///
    /// ```
    /// use zt_core::{Format, Policy};
    ///
    /// let policy = Policy::parse(r#"{ "rules": [
    ///     { "name": "api", "action": "allow",
    ///       "from": { "patterns": ["spiffe://example.org/ns/*/sa/api"],
    ///                 "not_patterns": ["spiffe://example.org/ns/**"] } }
    /// ] }"#, Format::Json)?;
    /// let findings: Vec<String> = policy.lint().iter().map(ToString::to_string).collect();
    /// assert_eq!(findings, [
    ///     "rule \"api\" (rule 1): pattern spiffe://example.org/ns/*/sa/api can never match: \
    ///      not_patterns excludes all of it with spiffe://example.org/ns/**",
    ///     "rule \"api\" (rule 1): can never match: no pattern of from.patterns can match \
    ///      a verified peer",
    /// ]);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[must_use]
    pub fn lint(&self) -> Vec<LintFinding> {
        lint::lint(self.engine.rules())
    }

    /// Rules whose meaning changed when zt came to decide every request on one
    /// canonical view ([`LintKind::MeaningChanged`]): HTTP rules that now also
    /// match gRPC calls on their paths, and rules naming `GET` that now also
    /// cover `HEAD`. Informational: read them when upgrading a policy.
    ///
    /// ```
    /// use zt_core::{Format, Policy};
    ///
    /// let policy = Policy::parse(r#"{"rules": [{"name": "writes", "action": "deny",
    ///     "from": {"any": true}, "to": {"methods": ["POST"], "paths": ["/*/*"]}}]}"#,
    ///     Format::Json)?;
    /// let notes = policy.upgrade_notes();
    /// assert_eq!(notes.len(), 1);
    /// assert!(notes[0].message().contains("gRPC"));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[must_use]
    pub fn upgrade_notes(&self) -> Vec<LintFinding> {
        lint::upgrade_notes(self.engine.rules())
    }
}

/// The rules of one policy whose `from` matches one connection's peer, kept
/// with the peer ([`PeerIdentity`]) for [`Policy::decide_peer`]. Empty until
/// the peer's first decision; replaced when another policy decides.
#[derive(Default)]
pub(crate) struct PeerRules {
    selected: Mutex<Option<Selected>>,
}

struct Selected {
    /// The [`Policy::stamp`] of the policy `selection` was made from.
    policy: u64,
    /// `None` when the peer's `from` matches too many rules to keep with a
    /// connection; its requests are then decided from the index.
    selection: Option<Selection>,
}

impl fmt::Debug for Policy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Policy")
            .field("mode", &self.mode)
            .field("rules", &self.rule_count())
            .finish_non_exhaustive()
    }
}
