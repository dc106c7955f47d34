//! The one place zt-tower reads a request's shape: what the policy needs of it in
//! canonical form ([`Shape`]), the refusals of shapes zt cannot decide on, and the
//! changes that pass an allowed request on in the form it was decided in
//! ([`Rewrite`]).

use std::borrow::Cow;

use http::header::{CONNECTION, HOST, UPGRADE};
use http::uri::{Authority as UriAuthority, PathAndQuery};
use http::{HeaderMap, HeaderValue, Method, Request, Uri, Version};
use zt_core::policy::{AmbiguousPath, Authority, canonical_path};
use zt_core::{Headers, Upgrade};

use super::Denial;
use crate::server::UpgradeTicket;

/// What the policy needs of a request beyond its headers, in canonical form.
pub(super) struct Shape<'a> {
    /// The method the policy decides on: `GET` for a WebSocket upgrade, whichever
    /// HTTP version asked for it.
    pub(super) method: &'a str,
    /// The protocol the request asks to switch to, on a server that governs
    /// upgrades.
    pub(super) upgrade: Option<Upgrade>,
    pub(super) path: Result<Cow<'a, str>, AmbiguousPath>,
    pub(super) authority: Option<Authority<'a>>,
    /// The target's authority or the `Host` header is not written canonically.
    pub(super) rewrite_authority: bool,
}

// === impl Shape ===

impl<'a> Shape<'a> {
    /// The request's shape, or why zt refuses to decide on it.
    pub(super) fn of<B>(request: &'a Request<B>) -> Result<Self, (Denial, &'static str)> {
        let method = request.method();
        let method_str = method.as_str();
        let (decided_method, upgrade) =
            if method == Method::CONNECT || request.headers().contains_key(UPGRADE) {
                // Only a server that governs the upgraded stream gives the request
                // a ticket (zt-tower's `Server` with `websockets`).
                if request.extensions().get::<UpgradeTicket>().is_none() {
                    return Err(if method == Method::CONNECT {
                        (Denial::Unsupported, "CONNECT tunnels are not served")
                    } else {
                        (Denial::Unsupported, "protocol upgrades are not served")
                    });
                }
                ("GET", Some(upgrade_of(request)?))
            } else {
                (method_str, None)
            };
        if method_str.bytes().any(|b| b.is_ascii_lowercase()) {
            return Err((Denial::Malformed, "method has lower-case letters"));
        }
        let malformed = |why| (Denial::Malformed, why);
        let mut hosts = request.headers().get_all(HOST).iter();
        let host = match (hosts.next(), hosts.next()) {
            (None, _) => None,
            (Some(host), None) => Some(
                host.to_str()
                    .ok()
                    .and_then(|host| Authority::parse(host).ok())
                    .ok_or(malformed("malformed Host header"))?,
            ),
            (Some(_), Some(_)) => return Err(malformed("repeated Host header")),
        };
        let target = match request.uri().authority() {
            Some(authority) => Some(
                Authority::parse(authority.as_str())
                    .map_err(|_| malformed("malformed request authority"))?,
            ),
            None => None,
        };
        let rewrite_authority = [&target, &host]
            .into_iter()
            .flatten()
            .any(|authority| !authority.is_canonical());
        let authority = match (target, host) {
            (Some(target), Some(host)) if target != host => {
                return Err(malformed(
                    "Host header disagrees with the request authority",
                ));
            }
            (Some(authority), _) | (None, Some(authority)) => Some(authority),
            (None, None) => None,
        };
        Ok(Self {
            method: decided_method,
            upgrade,
            path: canonical_path(request.uri().path()),
            authority,
            rewrite_authority,
        })
    }
}

/// The upgrade a request asks for, in the one form the policy decides on:
/// HTTP/1.1 `GET` with `Upgrade: websocket` and `Connection: upgrade`, or
/// HTTP/2 `CONNECT` with `:protocol websocket`. Plain `CONNECT` and other
/// protocols are not served; shapes a server and an application could read
/// differently are malformed.
fn upgrade_of<B>(request: &Request<B>) -> Result<Upgrade, (Denial, &'static str)> {
    let malformed = |why| (Denial::Malformed, why);
    let unsupported = (Denial::Unsupported, "only websocket upgrades are served");
    let headers = request.headers();
    if request.method() == Method::CONNECT {
        // hyper puts the HTTP/2 `:protocol` here, only on CONNECT requests.
        let Some(protocol) = request.extensions().get::<hyper::ext::Protocol>() else {
            return Err((Denial::Unsupported, "CONNECT tunnels are not served"));
        };
        if headers.contains_key(UPGRADE) {
            return Err(malformed("Upgrade header on an extended CONNECT"));
        }
        return Upgrade::from_token(protocol.as_str()).ok_or(unsupported);
    }
    if request.version() != Version::HTTP_11 {
        return Err(malformed("Upgrade header outside HTTP/1.1"));
    }
    let mut fields = headers.get_all(UPGRADE).iter();
    let (Some(field), None) = (fields.next(), fields.next()) else {
        return Err(malformed("repeated Upgrade header"));
    };
    let value = field
        .to_str()
        .map_err(|_| malformed("malformed Upgrade header"))?;
    if value.contains(',') {
        return Err(malformed("Upgrade header names several protocols"));
    }
    let upgrade = Upgrade::from_token(value.trim_matches([' ', '\t'])).ok_or(unsupported)?;
    if request.method() != Method::GET {
        return Err(malformed("websocket upgrade with a method other than GET"));
    }
    let asks_upgrade = headers.get_all(CONNECTION).iter().any(|field| {
        field.to_str().is_ok_and(|value| {
            value.split(',').any(|option| {
                option
                    .trim_matches([' ', '\t'])
                    .eq_ignore_ascii_case("upgrade")
            })
        })
    });
    if !asks_upgrade {
        return Err(malformed("Upgrade header without Connection: upgrade"));
    }
    Ok(upgrade)
}

/// The changes that bring an allowed request into the canonical form it was
/// decided in.
pub(super) struct Rewrite {
    path: Option<String>,
    authority: Option<String>,
}

// === impl Rewrite ===

impl Rewrite {
    /// `None` when the request is canonical already, the common case.
    /// `canonical_authority` is the authority's canonical form when the request
    /// spells it otherwise.
    pub(super) fn of<B>(
        request: &Request<B>,
        view: &zt_core::Request<'_>,
        canonical_authority: Option<String>,
    ) -> Option<Self> {
        let path = view
            .path()
            .ok()
            .filter(|canonical| *canonical != request.uri().path())
            .map(str::to_owned);
        let authority = canonical_authority;
        (path.is_some() || authority.is_some()).then_some(Self { path, authority })
    }

    pub(super) fn apply<B>(self, request: &mut Request<B>) -> Result<(), &'static str> {
        // A copy (its parts are reference-counted), so that a failure leaves the
        // request as it came and the refusal is logged with its real path.
        let mut parts = request.uri().clone().into_parts();
        if let Some(path) = self.path {
            let path_and_query = match parts.path_and_query.as_ref().and_then(PathAndQuery::query) {
                Some(query) => format!("{path}?{query}"),
                None => path,
            };
            parts.path_and_query = Some(
                PathAndQuery::try_from(path_and_query)
                    .map_err(|_| "canonical path is not a valid URI path")?,
            );
        }
        if let Some(authority) = self.authority {
            if parts.authority.is_some() {
                parts.authority = Some(
                    UriAuthority::try_from(authority.as_str())
                        .map_err(|_| "canonical authority is not a valid URI authority")?,
                );
            }
            if request.headers().contains_key(HOST) {
                let value = HeaderValue::try_from(authority)
                    .map_err(|_| "canonical authority is not a valid header value")?;
                request.headers_mut().insert(HOST, value);
            }
        }
        *request.uri_mut() = Uri::from_parts(parts).map_err(|_| "canonical URI is invalid")?;
        Ok(())
    }
}

/// The request's headers as the policy reads them.
pub(crate) struct HeaderView<'a>(pub(crate) &'a HeaderMap);

impl Headers for HeaderView<'_> {
    fn get(&self, name: &str) -> Option<&str> {
        self.0.get(name)?.to_str().ok()
    }

    fn count(&self, name: &str) -> usize {
        self.0.get_all(name).iter().count()
    }

    fn all(&self, name: &str) -> Vec<Option<&str>> {
        self.0
            .get_all(name)
            .iter()
            .map(|v| v.to_str().ok())
            .collect()
    }
}
