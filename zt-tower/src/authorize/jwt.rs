//! Reading the JWT-SVID a request carries (feature `jwt`): which header, which
//! shapes of it are refused, and the validation of the token for this request.

use std::fmt;

use http::Request;
use http::header::{AUTHORIZATION, HeaderName};
use zt_core::jwt::{JwtError, JwtPeer, JwtValidator};

/// How a layer reads and validates tokens.
#[derive(Clone)]
pub(crate) struct JwtCheck {
    validator: JwtValidator,
    header: HeaderName,
}

/// Why a request's token was refused.
#[derive(Debug)]
pub(crate) enum TokenError {
    /// The header appears more than once: which token counts would be a guess.
    Repeated,
    /// The header is not `Bearer <token>` (for `Authorization`) or not text.
    Shape,
    /// The token does not validate.
    Invalid(JwtError),
}

impl fmt::Display for TokenError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Repeated => f.write_str("the token header is repeated"),
            Self::Shape => f.write_str("the token header is not a bearer token"),
            Self::Invalid(err) => fmt::Display::fmt(err, f),
        }
    }
}

impl JwtCheck {
    pub(crate) fn new(validator: JwtValidator, header: HeaderName) -> Self {
        Self { validator, header }
    }

    /// The validated token of `request`; `Ok(None)` when it carries none.
    ///
    /// `Authorization` must be `Bearer <token>` (the scheme in any case, RFC
    /// 6750 §2.1); another scheme is not a JWT-SVID and counts as none. Another
    /// header holds the token itself, with or without `Bearer `.
    pub(crate) fn read<B>(&self, request: &Request<B>) -> Result<Option<JwtPeer>, TokenError> {
        let mut values = request.headers().get_all(&self.header).iter();
        let value = match (values.next(), values.next()) {
            (None, _) => return Ok(None),
            (Some(value), None) => value,
            (Some(_), Some(_)) => return Err(TokenError::Repeated),
        };
        let value = value.to_str().map_err(|_| TokenError::Shape)?;
        let token = match bearer(value) {
            Some(token) => token,
            None if self.header == AUTHORIZATION => return Ok(None),
            None => value,
        };
        if token.is_empty() || token.contains(char::is_whitespace) {
            return Err(TokenError::Shape);
        }
        self.validator
            .validate(token)
            .map(Some)
            .map_err(TokenError::Invalid)
    }
}

/// The token of a `Bearer` credential.
fn bearer(value: &str) -> Option<&str> {
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim_start_matches(' '))
}

impl fmt::Debug for JwtCheck {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JwtCheck")
            .field("validator", &self.validator)
            .field("header", &self.header)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_scheme_is_case_insensitive_and_other_schemes_are_not_tokens() {
        assert_eq!(bearer("Bearer abc"), Some("abc"));
        assert_eq!(bearer("bearer abc"), Some("abc"));
        assert_eq!(bearer("BEARER  abc"), Some("abc"));
        assert_eq!(bearer("Basic abc"), None);
        assert_eq!(bearer("Bearerabc"), None);
    }
}
