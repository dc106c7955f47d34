//! The structure of validated gRPC and header value patterns, compared without
//! re-parsing: `within` and `disjoint`. Path and ID patterns compare through
//! their compiled segments (`crate::segments`).

use crate::policy::pattern::{GrpcPattern, ValuePattern};

/// A gRPC pattern: a service and one method, or all its methods.
#[derive(Clone, Copy, Debug)]
pub(super) struct Call<'a> {
    service: &'a str,
    method: Option<&'a str>,
}

impl<'a> Call<'a> {
    pub(super) fn of(pattern: &'a GrpcPattern) -> Self {
        let (service, method) = pattern.raw.split_once('/').unwrap_or((&pattern.raw, "*"));
        Self {
            service,
            method: (method != "*").then_some(method),
        }
    }

    pub(super) fn within(self, outer: Call<'_>) -> bool {
        self.service == outer.service && (outer.method.is_none() || self.method == outer.method)
    }

    pub(super) fn disjoint(self, other: Call<'_>) -> bool {
        self.service != other.service
            || matches!((self.method, other.method), (Some(a), Some(b)) if a != b)
    }
}

/// A header value pattern.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum ValueShape<'a> {
    Any,
    Exact(&'a str),
    Prefix(&'a str),
    Suffix(&'a str),
}

impl<'a> ValueShape<'a> {
    pub(super) fn of(pattern: &'a ValuePattern) -> Self {
        let raw = &*pattern.raw;
        if raw == "*" {
            Self::Any
        } else if let Some(prefix) = raw.strip_suffix('*') {
            Self::Prefix(prefix)
        } else if let Some(suffix) = raw.strip_prefix('*') {
            Self::Suffix(suffix)
        } else {
            Self::Exact(raw)
        }
    }

    pub(super) fn matches(self, value: &str) -> bool {
        match self {
            Self::Any => true,
            Self::Exact(exact) => value == exact,
            Self::Prefix(prefix) => value.starts_with(prefix),
            Self::Suffix(suffix) => value.ends_with(suffix),
        }
    }

    pub(super) fn within(self, outer: ValueShape<'_>) -> bool {
        match (self, outer) {
            (_, ValueShape::Any) => true,
            (Self::Exact(value), outer) => outer.matches(value),
            (Self::Prefix(a), ValueShape::Prefix(b)) => a.starts_with(b),
            (Self::Suffix(a), ValueShape::Suffix(b)) => a.ends_with(b),
            _ => false,
        }
    }

    pub(super) fn disjoint(self, other: ValueShape<'_>) -> bool {
        match (self, other) {
            (Self::Exact(value), other) => !other.matches(value),
            (this, ValueShape::Exact(value)) => !this.matches(value),
            (Self::Prefix(a), ValueShape::Prefix(b)) => !(a.starts_with(b) || b.starts_with(a)),
            (Self::Suffix(a), ValueShape::Suffix(b)) => !(a.ends_with(b) || b.ends_with(a)),
            _ => false,
        }
    }
}
