//! The segment language that SPIFFE ID patterns and HTTP path patterns share.
//!
//! A pattern is a list of `/`-separated segments: a literal segment matches
//! itself, `*` matches exactly one non-empty segment, and `**`, allowed only as
//! the last segment, matches one or more further segments. [`IdMatcher`]
//! patterns, the policy's `patterns`/`not_patterns` and `paths`/`not_paths`, and
//! the policy linter all compile to [`Segments`] and ask it, so a pattern means
//! the same thing to the code that decides and to the code that reasons about
//! decisions.
//!
//! Each language keeps its own rules for literal segments (an ID segment's
//! characters, a path segment's canonical percent-encoding) and passes them to
//! [`Segments::compile`]; the wildcard grammar, matching and the comparisons
//! (`within`, `disjoint`) live here only.
//!
//! [`IdMatcher`]: crate::IdMatcher

use std::fmt;

/// One segment of a pattern before its trailing `**`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Segment {
    /// Matches exactly this segment (compared byte for byte).
    Literal(Box<str>),
    /// `*`: exactly one non-empty segment.
    One,
}

/// A compiled pattern: fixed segments, then with `rest` (`**`) one or more
/// further segments.
///
/// Matching takes the pattern's subject without its leading `/`: `Some("a/b")`
/// for `/a/b`, `Some("")` for `/`, `None` for nothing at all (a trust domain's
/// own ID, whose path is empty).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Segments {
    segments: Box<[Segment]>,
    rest: bool,
    /// How many segments at the front are literal.
    literals: usize,
    /// Those literal segments, each followed by `/`, compared in one go.
    prefix: Box<str>,
}

/// Why a pattern's segments do not compile; `E` is the language's own error for
/// a bad literal segment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum SyntaxError<E> {
    /// `**` before the last segment.
    RestNotLast,
    /// `*` together with other characters in one segment (`a*`, `***`).
    PartialWildcard,
    /// A literal segment the language refuses.
    Literal(E),
}

impl Segments {
    /// Compiles `path`, a pattern without its leading `/` (`None` for a pattern
    /// without segments). `literal` checks each literal segment (with whether it
    /// is the last) and returns the form it matches in.
    pub(crate) fn compile<E>(
        path: Option<&str>,
        mut literal: impl FnMut(&str, bool) -> Result<Box<str>, E>,
    ) -> Result<Self, SyntaxError<E>> {
        let mut segments = Vec::new();
        let mut rest = false;
        if let Some(path) = path {
            let mut parts = path.split('/').peekable();
            while let Some(part) = parts.next() {
                let last = parts.peek().is_none();
                match part {
                    "**" if last => rest = true,
                    "**" => return Err(SyntaxError::RestNotLast),
                    "*" => segments.push(Segment::One),
                    _ if part.contains('*') => return Err(SyntaxError::PartialWildcard),
                    _ => segments.push(Segment::Literal(
                        literal(part, last).map_err(SyntaxError::Literal)?,
                    )),
                }
            }
        }
        Ok(Self::new(segments, rest))
    }

    fn new(segments: Vec<Segment>, rest: bool) -> Self {
        let mut prefix = String::new();
        let mut literals = 0;
        for segment in &segments {
            let Segment::Literal(literal) = segment else {
                break;
            };
            prefix.push_str(literal);
            prefix.push('/');
            literals += 1;
        }
        Self {
            segments: segments.into_boxed_slice(),
            rest,
            literals,
            prefix: prefix.into(),
        }
    }

    /// `**` alone: every subject with at least one segment.
    pub(crate) fn everything() -> Self {
        Self::new(Vec::new(), true)
    }

    /// Whether the pattern has no wildcard, so it matches one subject only.
    pub(crate) fn is_literal(&self) -> bool {
        !self.rest && self.literals == self.segments.len()
    }

    /// Whether the pattern is `**` alone.
    pub(crate) fn is_everything(&self) -> bool {
        self.rest && self.segments.is_empty()
    }

    /// The first segment, when it is literal.
    pub(crate) fn first_literal(&self) -> Option<&str> {
        match self.segments.first() {
            Some(Segment::Literal(literal)) => Some(literal),
            _ => None,
        }
    }

    /// How many segments a matching subject has at least, and whether it may
    /// have more.
    pub(crate) fn arity(&self) -> (usize, bool) {
        if self.rest {
            (self.segments.len().saturating_add(1), true)
        } else {
            (self.segments.len(), false)
        }
    }

    /// Whether `subject` (without its leading `/`) matches. Never allocates.
    pub(crate) fn matches(&self, subject: Option<&str>) -> bool {
        let Some(subject) = subject else {
            return self.segments.is_empty() && !self.rest;
        };
        if self.is_literal() {
            // `prefix` is the whole pattern plus a final `/`.
            return self
                .prefix
                .strip_suffix('/')
                .is_some_and(|whole| whole == subject);
        }
        let mut remaining = subject.strip_prefix(&*self.prefix);
        for expected in self.segments.get(self.literals..).unwrap_or_default() {
            let Some(current) = remaining else {
                return false;
            };
            let (segment, next) = split_segment(current);
            match expected {
                Segment::Literal(literal) if **literal == *segment => {}
                // Whole-segment comparison is what keeps `/foo` from matching
                // `/foobar`, and `*` from matching an empty segment (`/a//b`).
                Segment::One if !segment.is_empty() => {}
                _ => return false,
            }
            remaining = next;
        }
        // With `**`, one more segment must follow; without it, none may.
        remaining.is_some() == self.rest
    }

    /// Whether every subject this pattern matches, `outer` matches too.
    pub(crate) fn within(&self, outer: &Self) -> bool {
        let (n, m) = (self.segments.len(), outer.segments.len());
        let lengths_fit = if outer.rest {
            n > m || (n == m && self.rest)
        } else {
            !self.rest && n == m
        };
        lengths_fit
            && self
                .segments
                .iter()
                .zip(&outer.segments)
                .all(|(a, b)| match (a, b) {
                    (Segment::Literal(a), Segment::Literal(b)) => a == b,
                    (Segment::Literal(a), Segment::One) => !a.is_empty(),
                    (Segment::One, Segment::One) => true,
                    (Segment::One, Segment::Literal(_)) => false,
                })
    }

    /// Whether no subject matches both patterns.
    pub(crate) fn disjoint(&self, other: &Self) -> bool {
        let (n, m) = (self.segments.len(), other.segments.len());
        let lengths_apart = match (self.rest, other.rest) {
            (false, false) => n != m,
            (false, true) => n <= m,
            (true, false) => m <= n,
            (true, true) => false,
        };
        lengths_apart
            || self
                .segments
                .iter()
                .zip(&other.segments)
                .any(|(a, b)| match (a, b) {
                    (Segment::Literal(a), Segment::Literal(b)) => a != b,
                    (Segment::Literal(a), Segment::One) | (Segment::One, Segment::Literal(a)) => {
                        a.is_empty()
                    }
                    (Segment::One, Segment::One) => false,
                })
    }
}

impl fmt::Display for Segments {
    /// Each segment with the `/` before it: `/a/*/**`, or nothing for a pattern
    /// without segments.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for segment in &self.segments {
            match segment {
                Segment::Literal(literal) => write!(f, "/{literal}")?,
                Segment::One => f.write_str("/*")?,
            }
        }
        if self.rest {
            f.write_str("/**")?;
        }
        Ok(())
    }
}

/// Splits `s` at its first `/` into the segment before it and the rest after
/// it, or `None` for the rest when there is no `/`.
pub(crate) fn split_segment(s: &str) -> (&str, Option<&str>) {
    match s.split_once('/') {
        Some((segment, rest)) => (segment, Some(rest)),
        None => (s, None),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    /// Any literal accepted as written.
    fn compile(pattern: &str) -> Segments {
        let path = pattern.strip_prefix('/');
        Segments::compile(path, |s, _| Ok::<_, ()>(s.into())).unwrap()
    }

    fn subject(path: &str) -> Option<&str> {
        path.strip_prefix('/')
    }

    #[test]
    fn double_star_needs_at_least_one_more_segment() {
        let p = compile("/a/**");
        assert!(p.matches(subject("/a/b")));
        assert!(p.matches(subject("/a/b/c")));
        assert!(!p.matches(subject("/a")));
        assert!(!p.matches(subject("/ab/c")));
        assert!(!compile("/**").matches(None));
        assert!(compile("/**").matches(subject("/")));
    }

    #[test]
    fn single_star_matches_one_non_empty_segment() {
        let p = compile("/a/*/c");
        assert!(p.matches(subject("/a/b/c")));
        assert!(!p.matches(subject("/a//c")));
        assert!(!p.matches(subject("/a/b/c/d")));
        assert!(!p.matches(subject("/a/b")));
    }

    #[test]
    fn literal_patterns_match_whole_subjects_only() {
        let p = compile("/foo");
        assert!(p.is_literal());
        assert!(p.matches(subject("/foo")));
        assert!(!p.matches(subject("/foobar")));
        assert!(!p.matches(subject("/foo/bar")));
        assert!(!p.matches(subject("/fo")));
        assert!(!p.matches(None));
        let root = compile("");
        assert!(root.is_literal());
        assert!(root.matches(None));
        assert!(!root.matches(Some("")));
        assert!(compile("/").matches(subject("/")));
    }

    #[test]
    fn wildcard_grammar_errors() {
        let refuse = |p: &str| Segments::compile(Some(p), |s, _| Ok::<_, ()>(s.into()));
        assert_eq!(refuse("**/a"), Err(SyntaxError::RestNotLast));
        assert_eq!(refuse("a*"), Err(SyntaxError::PartialWildcard));
        assert_eq!(refuse("***"), Err(SyntaxError::PartialWildcard));
        let literal = Segments::compile(
            Some("a/b"),
            |s, _| if s == "b" { Err(7) } else { Ok(s.into()) },
        );
        assert_eq!(literal, Err(SyntaxError::Literal(7)));
    }

    #[test]
    fn display_spells_the_pattern() {
        for p in ["/a/*/b/**", "/**", "/a", "/", ""] {
            assert_eq!(compile(p).to_string(), p);
        }
    }

    /// Every subject of up to four segments over a small alphabet, empty
    /// segments included: two more than the longest pattern below, enough to
    /// tell any two of them apart.
    fn subjects() -> Vec<Option<String>> {
        let alphabet = ["", "a", "b"];
        let mut all = vec![None];
        let mut level = vec![String::new()];
        for depth in 0..4 {
            let mut next = Vec::new();
            for prefix in &level {
                for s in alphabet {
                    next.push(if depth == 0 {
                        s.to_owned()
                    } else {
                        format!("{prefix}/{s}")
                    });
                }
            }
            all.extend(next.iter().cloned().map(Some));
            level = next;
        }
        all
    }

    /// Every pattern of up to two segments over the same alphabet and `*`, with
    /// and without `**`.
    fn patterns() -> Vec<Segments> {
        let parts = ["", "a", "b", "*"];
        let mut paths = vec![String::new()];
        for first in parts {
            paths.push(format!("/{first}"));
            for second in parts {
                paths.push(format!("/{first}/{second}"));
            }
        }
        let mut all = Vec::new();
        for path in paths {
            all.push(compile(&path));
            all.push(compile(&format!("{path}/**")));
        }
        all
    }

    #[test]
    fn within_and_disjoint_agree_with_matching_on_every_small_subject() {
        let subjects = subjects();
        let patterns = patterns();
        for p in &patterns {
            let matched: Vec<bool> = subjects.iter().map(|s| p.matches(s.as_deref())).collect();
            for q in &patterns {
                let both = subjects
                    .iter()
                    .zip(&matched)
                    .filter(|(s, m)| **m && q.matches(s.as_deref()))
                    .count();
                let inside = subjects
                    .iter()
                    .zip(&matched)
                    .all(|(s, m)| !*m || q.matches(s.as_deref()));
                assert_eq!(p.within(q), inside, "{p} within {q}");
                assert_eq!(p.disjoint(q), both == 0, "{p} disjoint from {q}");
            }
        }
    }
}
