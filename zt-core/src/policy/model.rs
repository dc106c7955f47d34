//! The policy document (placeholder until the full model lands).

use super::{Format, Mode, PolicyError};

pub(crate) struct Document {
    pub(crate) mode: Mode,
    pub(crate) rules: Vec<crate::IdMatcher>,
}

impl Document {
    pub(crate) fn allow_patterns<I, S>(patterns: I) -> Result<Self, PolicyError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let rules = patterns
            .into_iter()
            .map(|p| {
                crate::IdMatcher::pattern(p.as_ref()).map_err(|source| {
                    PolicyError::InvalidPattern {
                        pattern: p.as_ref().to_owned(),
                        source,
                    }
                })
            })
            .collect::<Result<_, _>>()?;
        Ok(Self {
            mode: Mode::Enforce,
            rules,
        })
    }
}

pub(crate) fn parse(_text: &str, format: Format) -> Result<Document, PolicyError> {
    Err(PolicyError::FormatNotEnabled { format })
}
