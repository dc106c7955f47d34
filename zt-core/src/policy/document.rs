//! Reading a policy document from text: JSON, YAML or TOML through serde, with
//! every parser message sanitised and located (line and column) before it
//! reaches an operator.

use super::model::Document;
use super::{Format, Location, PolicyError};

/// Parses a whole document in `format`.
pub(crate) fn parse(text: &str, format: Format) -> Result<Document, PolicyError> {
    let invalid = |location: Option<Location>, message: String| PolicyError::Invalid {
        path: None,
        format,
        location,
        message: sanitize(&message),
    };
    match format {
        Format::Json => serde_json::from_str(text).map_err(|err| {
            let location = (err.line() > 0).then(|| Location {
                line: err.line(),
                column: err.column(),
            });
            // serde_json appends the position to its message; it is kept apart here.
            let suffix = format!(" at line {} column {}", err.line(), err.column());
            invalid(location, strip_position(err.to_string(), &suffix))
        }),
        #[cfg(feature = "policy-toml")]
        Format::Toml => toml::from_str(text).map_err(|err| {
            let location = err.span().map(|span| location_of(text, span.start));
            invalid(location, err.message().to_owned())
        }),
        #[cfg(feature = "policy-yaml")]
        Format::Yaml => serde_saphyr::from_str_with_options(text, yaml_options()).map_err(|err| {
            let location = err.location().map(|at| Location {
                line: usize::try_from(at.line()).unwrap_or(usize::MAX),
                column: usize::try_from(at.column()).unwrap_or(usize::MAX),
            });
            let message = yaml_message(&err);
            let message = match location {
                Some(at) => strip_position(message, &format!(" at {at}")),
                None => message,
            };
            invalid(location, message)
        }),
        #[allow(
            unreachable_patterns,
            reason = "reachable when a format feature is off"
        )]
        _ => Err(PolicyError::FormatNotEnabled { format }),
    }
}

/// Parser error text made safe to log and show: control characters escaped, so
/// that a field name holding a newline cannot forge a log line, and string values
/// the parser quotes (`invalid type: string "…"`) replaced by their length, so
/// that a file of secrets given as the policy by mistake does not end up in logs
/// and status pages. Field names stay (escaped): they say what to fix.
pub(crate) fn sanitize(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    let mut rest = message;
    while let Some(at) = rest.find("string \"") {
        let (before, from) = rest.split_at(at);
        push_escaped(&mut out, before);
        let value = from.get("string \"".len()..).unwrap_or_default();
        // The closing quote: the first one not escaped by a backslash.
        let mut escaped = false;
        let end = value.char_indices().find_map(|(i, c)| {
            let close = c == '"' && !escaped;
            escaped = c == '\\' && !escaped;
            close.then_some(i)
        });
        match end {
            Some(end) => {
                out.push_str(&format!("a string of {end} bytes"));
                rest = value.get(end.saturating_add(1)..).unwrap_or_default();
            }
            None => {
                out.push_str("a string");
                rest = "";
            }
        }
    }
    push_escaped(&mut out, rest);
    out
}

fn push_escaped(out: &mut String, text: &str) {
    for c in text.chars() {
        if c.is_control()
            || matches!(c, '\u{2028}' | '\u{2029}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
        {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
}

fn strip_position(message: String, suffix: &str) -> String {
    match message.strip_suffix(suffix) {
        Some(stripped) => stripped.to_owned(),
        None => message,
    }
}

/// The 1-based line and column of byte `offset` in `text`.
#[cfg(feature = "policy-toml")]
fn location_of(text: &str, offset: usize) -> Location {
    let before = text.get(..offset).unwrap_or(text);
    let line_start = before.rfind('\n').map_or(0, |i| i.saturating_add(1));
    Location {
        line: before.matches('\n').count().saturating_add(1),
        column: before
            .get(line_start..)
            .map_or(0, |line| line.chars().count())
            .saturating_add(1),
    }
}

#[cfg(feature = "policy-yaml")]
fn yaml_options() -> serde_saphyr::Options {
    let mut budget = serde_saphyr::Budget::default();
    // Events are bounded by the input size (MAX_POLICY_BYTES) for everything
    // but alias expansion, which the budget's alias limits bound. The default
    // of one million events is too few for a policy of 100,000 rules.
    budget.max_events = super::MAX_POLICY_BYTES;
    // Nodes, like events, take at least a byte of input each; the default of
    // 250,000 refused policies of about 25,000 rules.
    budget.max_nodes = super::MAX_POLICY_BYTES;
    serde_saphyr::options! {
        budget: Some(budget),
        // `yes`/`on` silently becoming `true` has no place in a policy.
        strict_booleans: true,
        duplicate_keys: serde_saphyr::DuplicateKeyPolicy::Error,
        with_snippet: false,
    }
}

#[cfg(feature = "policy-yaml")]
fn yaml_message(err: &serde_saphyr::Error) -> String {
    err.render_with_options(serde_saphyr::render_options! {
        snippets: serde_saphyr::SnippetMode::Off,
    })
}
