#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! SPIFFE ID parsing and ID matching, tested through the public API.
//!
//! The `go_spiffe_vectors` module re-expresses the input vectors of go-spiffe
//! v2's `spiffeid` tests (inputs and the rule each one breaks) as data. Older
//! go-spiffe releases accepted some of those inputs (an uppercase scheme,
//! uppercase trust domains folded to lowercase, `//`, `:` or `@` in paths);
//! the current standard and current go-spiffe reject them, and so do we.

use std::collections::hash_map::DefaultHasher;
use std::collections::{BTreeSet, HashSet};
use std::hash::{Hash, Hasher};

use serde::{Deserialize, Serialize};
use zt_core::id::{MAX_ID_LEN, MAX_TRUST_DOMAIN_LEN};
use zt_core::{IdError, IdMatcher, PatternError, SpiffeId, TrustDomain};

#[track_caller]
fn id(s: &str) -> SpiffeId {
    SpiffeId::new(s).unwrap_or_else(|err| panic!("{s:?} should parse: {err}"))
}

#[track_caller]
fn td(s: &str) -> TrustDomain {
    TrustDomain::new(s).unwrap_or_else(|err| panic!("{s:?} should parse: {err}"))
}

#[track_caller]
fn pattern(s: &str) -> IdMatcher {
    IdMatcher::pattern(s).unwrap_or_else(|err| panic!("{s:?} should compile: {err}"))
}

#[track_caller]
fn assert_id_rejected(input: &str, expected: IdError) {
    assert_eq!(SpiffeId::new(input), Err(expected), "input {input:?}");
}

/// A valid trust domain name of exactly `len` bytes.
fn trust_domain_of_len(len: usize) -> String {
    "a".repeat(len)
}

/// A SPIFFE ID of exactly `len` bytes in trust domain `example.org`.
fn id_of_len(len: usize) -> String {
    let prefix = "spiffe://example.org/";
    format!("{prefix}{}", "a".repeat(len - prefix.len()))
}

mod go_spiffe_vectors {
    use super::*;

    /// What parsing an input should produce: its trust domain and path, or
    /// the error naming the rule it breaks.
    type Expected = Result<(&'static str, &'static str), IdError>;

    const FROM_STRING: &[(&str, Expected)] = &[
        // Accepted.
        ("spiffe://trustdomain", Ok(("trustdomain", ""))),
        ("spiffe://trustdomain/path", Ok(("trustdomain", "/path"))),
        (
            "spiffe://domain.test/path/element",
            Ok(("domain.test", "/path/element")),
        ),
        ("spiffe://trustdomain/.path", Ok(("trustdomain", "/.path"))),
        (
            "spiffe://trustdomain/..path",
            Ok(("trustdomain", "/..path")),
        ),
        ("spiffe://trustdomain/...", Ok(("trustdomain", "/..."))),
        // Empty input.
        ("", Err(IdError::Empty)),
        // Scheme.
        ("s", Err(IdError::WrongScheme)),
        ("spiffe:/", Err(IdError::WrongScheme)),
        ("Spiffe://", Err(IdError::WrongScheme)),
        (
            "SPIFFE://domain.test/path/element",
            Err(IdError::WrongScheme),
        ),
        ("http://domain.test/path/element", Err(IdError::WrongScheme)),
        ("192.168.2.2:6688", Err(IdError::WrongScheme)),
        ("spiffe:path/element", Err(IdError::WrongScheme)),
        ("spiffe:/path/element", Err(IdError::WrongScheme)),
        ("spiffe:/trustdomain/path", Err(IdError::WrongScheme)),
        // Trust domain.
        ("spiffe://", Err(IdError::MissingTrustDomain)),
        ("spiffe:///", Err(IdError::MissingTrustDomain)),
        ("spiffe:///path", Err(IdError::MissingTrustDomain)),
        ("spiffe:///path/element", Err(IdError::MissingTrustDomain)),
        (
            "spiffe://domain.test:8080/path/element",
            Err(IdError::BadTrustDomainChar),
        ),
        (
            "spiffe://domain.test:/path/element",
            Err(IdError::BadTrustDomainChar),
        ),
        (
            "spiffe://user:password@test.org/path/element",
            Err(IdError::BadTrustDomainChar),
        ),
        ("spiffe://trust$domain", Err(IdError::BadTrustDomainChar)),
        (
            "spiffe://%F0%9F%A4%AF/path",
            Err(IdError::BadTrustDomainChar),
        ),
        ("spiffe://%62%61%64/path", Err(IdError::BadTrustDomainChar)),
        (
            "spiffe://DomAin.TesT/path",
            Err(IdError::BadTrustDomainChar),
        ),
        // Empty segments and trailing slashes.
        ("spiffe://trustdomain/", Err(IdError::TrailingSlash)),
        ("spiffe://trustdomain/path/", Err(IdError::TrailingSlash)),
        ("spiffe://trustdomain//", Err(IdError::EmptySegment)),
        ("spiffe://trustdomain//path", Err(IdError::EmptySegment)),
        (
            "spiffe://domain.test//path/element",
            Err(IdError::EmptySegment),
        ),
        // Dot segments.
        ("spiffe://trustdomain/.", Err(IdError::DotSegment)),
        ("spiffe://trustdomain/./path", Err(IdError::DotSegment)),
        (
            "spiffe://trustdomain/path/./other",
            Err(IdError::DotSegment),
        ),
        ("spiffe://trustdomain/path/..", Err(IdError::DotSegment)),
        ("spiffe://trustdomain/..", Err(IdError::DotSegment)),
        ("spiffe://trustdomain/../path", Err(IdError::DotSegment)),
        (
            "spiffe://trustdomain/path/../other",
            Err(IdError::DotSegment),
        ),
        // Path characters, including everything a URL would allow.
        (
            "spiffe://trustdomain/path$",
            Err(IdError::BadPathSegmentChar),
        ),
        (
            "spiffe://trustdomain/%F0%9F%A4%AF",
            Err(IdError::BadPathSegmentChar),
        ),
        (
            "spiffe://trustdomain/%62%61%64",
            Err(IdError::BadPathSegmentChar),
        ),
        (
            "spiffe://domain.test/path/element?query=1",
            Err(IdError::BadPathSegmentChar),
        ),
        (
            "spiffe://domain.test/path/element?#fragment-1",
            Err(IdError::BadPathSegmentChar),
        ),
        (
            "spiffe://domain.test/pa:th/element:",
            Err(IdError::BadPathSegmentChar),
        ),
        (
            "spiffe://domain.test/pa@th/element:",
            Err(IdError::BadPathSegmentChar),
        ),
        (
            "spiffe://domain.test/p!a$t&h'/(e)l*e+m,e;n=t",
            Err(IdError::BadPathSegmentChar),
        ),
        (
            "spiffe://domain.test/path/elem%5uent",
            Err(IdError::BadPathSegmentChar),
        ),
        (
            "spiffe://domain.test/path/element%5",
            Err(IdError::BadPathSegmentChar),
        ),
        (
            "spiffe://domain.test/path/elem[ent",
            Err(IdError::BadPathSegmentChar),
        ),
        (
            "spiffe://domain.test/path/elem]ent",
            Err(IdError::BadPathSegmentChar),
        ),
        (
            "spiffe://domain.test/spiffe://domain.test/path/element",
            Err(IdError::BadPathSegmentChar),
        ),
    ];

    #[test]
    fn from_string_vectors_parse_or_fail_with_the_named_rule() {
        for (input, expected) in FROM_STRING {
            let actual = SpiffeId::new(input);
            match expected {
                Ok((trust_domain, path)) => {
                    let actual =
                        actual.unwrap_or_else(|err| panic!("{input:?} should parse: {err}"));
                    assert_eq!(actual.trust_domain().as_str(), *trust_domain, "{input:?}");
                    assert_eq!(actual.path(), *path, "{input:?}");
                    assert_eq!(actual.as_str(), *input);
                }
                Err(err) => assert_eq!(actual, Err(err.clone()), "input {input:?}"),
            }
        }
    }

    /// `[a-z0-9._-]`
    fn is_trust_domain_char(c: char) -> bool {
        c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '.' | '-' | '_')
    }

    /// `[a-zA-Z0-9._-]`
    fn is_path_char(c: char) -> bool {
        c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_')
    }

    /// Code points 0 to 255, which covers every ASCII byte and, from 128 on,
    /// two-byte UTF-8 sequences that must be refused byte by byte.
    fn latin1_chars() -> impl Iterator<Item = char> {
        (0u8..=255).map(char::from)
    }

    #[test]
    fn trust_domain_char_in_id_is_accepted_only_if_allowed() {
        // `/` ends the trust domain, so it is covered by the path tests.
        for c in latin1_chars().filter(|&c| c != '/') {
            let input = format!("spiffe://trustdomain{c}/path");
            let result = SpiffeId::new(&input);
            if is_trust_domain_char(c) {
                let parsed = result.unwrap_or_else(|err| panic!("{input:?}: {err}"));
                assert_eq!(parsed.trust_domain().as_str(), format!("trustdomain{c}"));
                assert_eq!(parsed.path(), "/path");
            } else {
                assert_eq!(result, Err(IdError::BadTrustDomainChar), "{input:?}");
            }
        }
    }

    #[test]
    fn path_char_in_id_is_accepted_only_if_allowed() {
        for c in latin1_chars().filter(|&c| c != '/') {
            let input = format!("spiffe://trustdomain/path{c}");
            let result = SpiffeId::new(&input);
            if is_path_char(c) {
                let parsed = result.unwrap_or_else(|err| panic!("{input:?}: {err}"));
                assert_eq!(parsed.path(), format!("/path{c}"));
            } else {
                assert_eq!(result, Err(IdError::BadPathSegmentChar), "{input:?}");
            }
        }
    }

    #[test]
    fn trust_domain_char_in_bare_name_is_accepted_only_if_allowed() {
        for c in latin1_chars() {
            let name = format!("trustdomain{c}");
            if is_trust_domain_char(c) {
                let expected = td(&name);
                assert_eq!(TrustDomain::from_id_or_name(&name), Ok(expected.clone()));
                assert_eq!(
                    TrustDomain::from_id_or_name(&format!("spiffe://{name}")),
                    Ok(expected)
                );
            } else {
                assert_eq!(
                    TrustDomain::from_id_or_name(&name),
                    Err(IdError::BadTrustDomainChar),
                    "{name:?}"
                );
                assert_eq!(
                    TrustDomain::new(&name),
                    Err(IdError::BadTrustDomainChar),
                    "{name:?}"
                );
            }
        }
    }

    const TRUST_DOMAIN_FROM_STRING: &[(&str, Result<&str, IdError>)] = &[
        ("trustdomain", Ok("trustdomain")),
        ("spiffe://trustdomain", Ok("trustdomain")),
        ("spiffe://trustdomain/path", Ok("trustdomain")),
        ("spiffe://domain.test/path/element", Ok("domain.test")),
        ("", Err(IdError::MissingTrustDomain)),
        ("spiffe:/trustdomain/path", Err(IdError::WrongScheme)),
        ("http://domain.test", Err(IdError::WrongScheme)),
        ("://domain.test", Err(IdError::WrongScheme)),
        ("spiffe://", Err(IdError::MissingTrustDomain)),
        ("spiffe:///path", Err(IdError::MissingTrustDomain)),
        ("spiffe://trustdomain/", Err(IdError::TrailingSlash)),
        ("spiffe://trustdomain/path/", Err(IdError::TrailingSlash)),
        (
            "spiffe://%F0%9F%A4%AF/path",
            Err(IdError::BadTrustDomainChar),
        ),
        (
            "spiffe://trustdomain/%F0%9F%A4%AF",
            Err(IdError::BadPathSegmentChar),
        ),
        ("spiffe://domain.test:80", Err(IdError::BadTrustDomainChar)),
        ("spiffe://domain.test:", Err(IdError::BadTrustDomainChar)),
        ("DomAin.TesT", Err(IdError::BadTrustDomainChar)),
        (
            "spiffe://domain.test/spiffe://domain.test/path/element",
            Err(IdError::BadPathSegmentChar),
        ),
    ];

    #[test]
    fn trust_domain_from_id_or_name_vectors_parse_or_fail_with_the_named_rule() {
        for (input, expected) in TRUST_DOMAIN_FROM_STRING {
            let actual = TrustDomain::from_id_or_name(input);
            assert_eq!(
                actual.as_ref().map(TrustDomain::as_str),
                expected.as_ref().copied(),
                "input {input:?}"
            );
        }
    }

    const FROM_PATH: &[(&str, Result<&str, IdError>)] = &[
        ("", Ok("spiffe://trustdomain")),
        ("/foo", Ok("spiffe://trustdomain/foo")),
        ("/foo/bar", Ok("spiffe://trustdomain/foo/bar")),
        ("foo", Err(IdError::NoLeadingSlash)),
        ("/", Err(IdError::TrailingSlash)),
        ("/foo/", Err(IdError::TrailingSlash)),
        ("//", Err(IdError::EmptySegment)),
        ("//foo", Err(IdError::EmptySegment)),
        ("/./foo", Err(IdError::DotSegment)),
        ("/foo/..", Err(IdError::DotSegment)),
        ("/$", Err(IdError::BadPathSegmentChar)),
        ("/foo?bar", Err(IdError::BadPathSegmentChar)),
    ];

    #[test]
    fn from_parts_vectors_build_or_fail_with_the_named_rule() {
        let trust_domain = td("trustdomain");
        for (path, expected) in FROM_PATH {
            let actual = SpiffeId::from_parts(&trust_domain, path);
            assert_eq!(
                actual.as_ref().map(SpiffeId::as_str),
                expected.as_ref().copied(),
                "path {path:?}"
            );
        }
    }

    #[test]
    fn error_messages_match_go_spiffe() {
        for (err, message) in [
            (IdError::Empty, "cannot be empty"),
            (IdError::WrongScheme, "scheme is missing or invalid"),
            (IdError::MissingTrustDomain, "trust domain is missing"),
            (
                IdError::BadTrustDomainChar,
                "trust domain characters are limited to lowercase letters, numbers, dots, dashes, and underscores",
            ),
            (
                IdError::BadPathSegmentChar,
                "path segment characters are limited to letters, numbers, dots, dashes, and underscores",
            ),
            (IdError::NoLeadingSlash, "path must have a leading slash"),
            (IdError::EmptySegment, "path cannot contain empty segments"),
            (IdError::DotSegment, "path cannot contain dot segments"),
            (IdError::TrailingSlash, "path cannot have a trailing slash"),
        ] {
            assert_eq!(err.to_string(), message);
        }
    }
}

mod spec_rules {
    use super::*;

    #[test]
    fn empty_id_is_rejected() {
        assert_id_rejected("", IdError::Empty);
    }

    #[test]
    fn uppercase_scheme_is_rejected() {
        assert_id_rejected("SPIFFE://example.org/a", IdError::WrongScheme);
    }

    #[test]
    fn other_scheme_is_rejected() {
        assert_id_rejected("https://example.org/a", IdError::WrongScheme);
    }

    #[test]
    fn id_without_scheme_is_rejected() {
        assert_id_rejected("example.org/a", IdError::WrongScheme);
    }

    #[test]
    fn id_without_trust_domain_is_rejected() {
        assert_id_rejected("spiffe:///a", IdError::MissingTrustDomain);
    }

    #[test]
    fn id_with_uppercase_trust_domain_is_rejected() {
        assert_id_rejected("spiffe://Example.org/a", IdError::BadTrustDomainChar);
    }

    #[test]
    fn id_with_userinfo_is_rejected() {
        assert_id_rejected("spiffe://admin@example.org/a", IdError::BadTrustDomainChar);
    }

    #[test]
    fn id_with_port_is_rejected() {
        assert_id_rejected("spiffe://example.org:443/a", IdError::BadTrustDomainChar);
    }

    #[test]
    fn id_with_percent_encoded_trust_domain_is_rejected() {
        assert_id_rejected("spiffe://example%2eorg/a", IdError::BadTrustDomainChar);
    }

    #[test]
    fn id_with_ipv6_literal_trust_domain_is_rejected() {
        assert_id_rejected("spiffe://[::1]/a", IdError::BadTrustDomainChar);
    }

    #[test]
    fn id_with_space_in_trust_domain_is_rejected() {
        assert_id_rejected("spiffe://example .org/a", IdError::BadTrustDomainChar);
    }

    #[test]
    fn id_with_query_is_rejected() {
        assert_id_rejected("spiffe://example.org/a?b=c", IdError::BadPathSegmentChar);
    }

    #[test]
    fn root_id_with_query_is_rejected() {
        assert_id_rejected("spiffe://example.org?b=c", IdError::BadTrustDomainChar);
    }

    #[test]
    fn id_with_fragment_is_rejected() {
        assert_id_rejected("spiffe://example.org/a#b", IdError::BadPathSegmentChar);
    }

    #[test]
    fn root_id_with_fragment_is_rejected() {
        assert_id_rejected("spiffe://example.org#b", IdError::BadTrustDomainChar);
    }

    #[test]
    fn id_with_percent_encoded_path_is_rejected() {
        assert_id_rejected("spiffe://example.org/a%2Fb", IdError::BadPathSegmentChar);
    }

    #[test]
    fn id_with_space_in_path_is_rejected() {
        assert_id_rejected("spiffe://example.org/a b", IdError::BadPathSegmentChar);
    }

    #[test]
    fn id_with_non_ascii_path_is_rejected() {
        assert_id_rejected(
            "spiffe://example.org/caf\u{e9}",
            IdError::BadPathSegmentChar,
        );
    }

    #[test]
    fn id_with_trailing_slash_is_rejected() {
        assert_id_rejected("spiffe://example.org/a/", IdError::TrailingSlash);
    }

    #[test]
    fn root_id_with_trailing_slash_is_rejected() {
        assert_id_rejected("spiffe://example.org/", IdError::TrailingSlash);
    }

    #[test]
    fn id_with_empty_segment_is_rejected() {
        assert_id_rejected("spiffe://example.org/a//b", IdError::EmptySegment);
    }

    #[test]
    fn id_with_dot_segment_is_rejected() {
        assert_id_rejected("spiffe://example.org/a/./b", IdError::DotSegment);
    }

    #[test]
    fn id_with_dot_dot_segment_is_rejected() {
        assert_id_rejected("spiffe://example.org/a/../b", IdError::DotSegment);
    }

    #[test]
    fn trust_domain_of_max_length_is_accepted() {
        let name = trust_domain_of_len(MAX_TRUST_DOMAIN_LEN);
        assert_eq!(MAX_TRUST_DOMAIN_LEN, 255);
        assert_eq!(td(&name).as_str(), name);
        assert_eq!(
            id(&format!("spiffe://{name}/a")).trust_domain().as_str(),
            name
        );
    }

    #[test]
    fn trust_domain_over_max_length_is_rejected() {
        let name = trust_domain_of_len(MAX_TRUST_DOMAIN_LEN + 1);
        assert_eq!(TrustDomain::new(&name), Err(IdError::TrustDomainTooLong));
        assert_id_rejected(&format!("spiffe://{name}/a"), IdError::TrustDomainTooLong);
        assert_id_rejected(&format!("spiffe://{name}"), IdError::TrustDomainTooLong);
    }

    #[test]
    fn id_of_max_length_is_accepted() {
        let input = id_of_len(MAX_ID_LEN);
        assert_eq!(MAX_ID_LEN, 2048);
        assert_eq!(input.len(), 2048);
        assert_eq!(id(&input).as_str(), input);
    }

    #[test]
    fn id_over_max_length_is_rejected() {
        assert_id_rejected(&id_of_len(MAX_ID_LEN + 1), IdError::TooLong);
    }

    #[test]
    fn from_parts_over_max_length_is_rejected() {
        let trust_domain = td("example.org");
        let longest_path = id_of_len(MAX_ID_LEN).split_off("spiffe://example.org".len());
        assert!(SpiffeId::from_parts(&trust_domain, &longest_path).is_ok());
        assert_eq!(
            SpiffeId::from_parts(&trust_domain, &format!("{longest_path}a")),
            Err(IdError::TooLong)
        );
    }

    #[test]
    fn path_is_case_sensitive() {
        assert_ne!(
            id("spiffe://example.org/API"),
            id("spiffe://example.org/api")
        );
    }

    #[test]
    fn bare_trust_domain_name_rejects_full_id() {
        assert_eq!(
            TrustDomain::new("spiffe://example.org"),
            Err(IdError::BadTrustDomainChar)
        );
        assert_eq!(
            "spiffe://example.org".parse::<TrustDomain>(),
            Err(IdError::BadTrustDomainChar)
        );
    }

    #[test]
    fn empty_bare_trust_domain_name_is_rejected() {
        assert_eq!(TrustDomain::new(""), Err(IdError::MissingTrustDomain));
    }
}

mod accessors {
    use super::*;

    #[test]
    fn root_id_has_empty_path_and_no_segments() {
        let root = id("spiffe://example.org");
        assert!(root.is_root());
        assert_eq!(root.path(), "");
        assert_eq!(root.segments().count(), 0);
    }

    #[test]
    fn segments_yield_each_path_segment_in_order() {
        let workload = id("spiffe://example.org/ns/prod/sa/api");
        assert!(!workload.is_root());
        assert_eq!(
            workload.segments().collect::<Vec<_>>(),
            ["ns", "prod", "sa", "api"]
        );
        assert_eq!(
            workload.segments().rev().collect::<Vec<_>>(),
            ["api", "sa", "prod", "ns"]
        );
    }

    #[test]
    fn segments_can_be_consumed_from_both_ends() {
        let workload = id("spiffe://example.org/a/b/c");
        let mut segments = workload.segments();
        assert_eq!(segments.next(), Some("a"));
        assert_eq!(segments.next_back(), Some("c"));
        assert_eq!(segments.next(), Some("b"));
        assert_eq!(segments.next_back(), None);
        assert_eq!(segments.next(), None);
    }

    #[test]
    fn trust_domain_id_is_the_root_id() {
        let root = td("example.org").id();
        assert_eq!(root, id("spiffe://example.org"));
        assert!(root.is_root());
        assert_eq!(root.trust_domain(), &td("example.org"));
    }

    #[test]
    fn from_parts_equals_the_parsed_id() {
        let built = SpiffeId::from_parts(&td("example.org"), "/ns/prod").unwrap();
        assert_eq!(built, id("spiffe://example.org/ns/prod"));
        assert_eq!(built.path(), "/ns/prod");
        assert_eq!(built.trust_domain().as_str(), "example.org");
    }

    #[test]
    fn id_is_member_of_its_own_trust_domain_only() {
        let example = td("example.org");
        assert!(id("spiffe://example.org/a").is_member_of(&example));
        assert!(id("spiffe://example.org").is_member_of(&example));
        assert!(!id("spiffe://example.net/a").is_member_of(&example));
        assert!(!id("spiffe://example.org.evil/a").is_member_of(&example));
        assert!(!id("spiffe://sub.example.org/a").is_member_of(&example));
        assert!(!id("spiffe://org/a").is_member_of(&example));
    }

    #[test]
    fn display_reproduces_the_parsed_input() {
        for input in [
            "spiffe://example.org",
            "spiffe://example.org/a",
            "spiffe://a-b_c.0/Mixed/Case/.hidden/...",
        ] {
            assert_eq!(id(input).to_string(), input);
            assert_eq!(id(input).as_str(), input);
        }
    }

    #[test]
    fn trust_domain_display_is_the_bare_name() {
        assert_eq!(td("example.org").to_string(), "example.org");
        assert_eq!(
            TrustDomain::from_id_or_name("spiffe://example.org/a")
                .unwrap()
                .to_string(),
            "example.org"
        );
    }

    #[test]
    fn debug_shows_the_type_and_string() {
        assert_eq!(
            format!("{:?}", id("spiffe://example.org/a")),
            r#"SpiffeId("spiffe://example.org/a")"#
        );
        assert_eq!(
            format!("{:?}", td("example.org")),
            r#"TrustDomain("example.org")"#
        );
    }

    #[test]
    fn from_str_agrees_with_new() {
        assert_eq!(
            "spiffe://example.org/a".parse(),
            Ok(id("spiffe://example.org/a"))
        );
        assert_eq!(
            "spiffe://example.org/".parse::<SpiffeId>(),
            Err(IdError::TrailingSlash)
        );
        assert_eq!("example.org".parse(), Ok(td("example.org")));
    }

    #[test]
    fn types_can_be_shared_across_threads() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<SpiffeId>();
        assert_send_sync::<TrustDomain>();
        assert_send_sync::<IdMatcher>();
        assert_send_sync::<IdError>();
        assert_send_sync::<PatternError>();
    }
}

mod ordering_and_hashing {
    use super::*;

    fn hash_of<T: Hash>(value: &T) -> u64 {
        let mut hasher = DefaultHasher::new();
        value.hash(&mut hasher);
        hasher.finish()
    }

    #[test]
    fn ids_order_like_their_strings() {
        let inputs = [
            "spiffe://b.org",
            "spiffe://a.org/z",
            "spiffe://a.org/B",
            "spiffe://a.org",
            "spiffe://a.org/a/b",
        ];
        let ids: BTreeSet<SpiffeId> = inputs.iter().map(|s| id(s)).collect();
        let mut strings = inputs.to_vec();
        strings.sort_unstable();
        assert_eq!(
            ids.iter().map(SpiffeId::as_str).collect::<Vec<_>>(),
            strings
        );
    }

    #[test]
    fn trust_domains_order_like_their_names() {
        assert!(td("a.org") < td("b.org"));
        assert!(td("a.org") < td("a.org.b"));
    }

    #[test]
    fn equal_ids_hash_equally_however_they_were_built() {
        let parsed = id("spiffe://example.org/a");
        let built = SpiffeId::from_parts(&td("example.org"), "/a").unwrap();
        assert_eq!(parsed, built);
        assert_eq!(hash_of(&parsed), hash_of(&built));
        assert_eq!(hash_of(&parsed), hash_of(&parsed.clone()));
    }

    #[test]
    fn hash_set_deduplicates_equal_ids() {
        let set: HashSet<SpiffeId> = [
            id("spiffe://example.org/a"),
            id("spiffe://example.org/a"),
            SpiffeId::from_parts(&td("example.org"), "/a").unwrap(),
            id("spiffe://example.org/A"),
            td("example.org").id(),
            id("spiffe://example.org"),
        ]
        .into_iter()
        .collect();
        assert_eq!(set.len(), 3);
    }

    #[test]
    fn equal_trust_domains_hash_equally() {
        let parsed = TrustDomain::from_id_or_name("spiffe://example.org/a").unwrap();
        assert_eq!(parsed, td("example.org"));
        assert_eq!(hash_of(&parsed), hash_of(&td("example.org")));
    }
}

mod serde_support {
    use super::*;

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Peer {
        id: SpiffeId,
        trust_domain: TrustDomain,
    }

    #[test]
    fn id_and_trust_domain_serialize_as_strings() {
        let peer = Peer {
            id: id("spiffe://example.org/a"),
            trust_domain: td("example.org"),
        };
        assert_eq!(
            serde_json::to_string(&peer).unwrap(),
            r#"{"id":"spiffe://example.org/a","trust_domain":"example.org"}"#
        );
    }

    #[test]
    fn serde_round_trip_preserves_values() {
        let peer = Peer {
            id: id("spiffe://example.org/ns/prod"),
            trust_domain: td("example.org"),
        };
        let json = serde_json::to_string(&peer).unwrap();
        assert_eq!(serde_json::from_str::<Peer>(&json).unwrap(), peer);
    }

    #[test]
    fn invalid_id_is_a_serde_error_with_the_rule_message() {
        let err = serde_json::from_str::<SpiffeId>(r#""BAD""#).unwrap_err();
        assert!(
            err.to_string().contains("scheme is missing or invalid"),
            "{err}"
        );
    }

    #[test]
    fn invalid_trust_domain_is_a_serde_error_with_the_rule_message() {
        let err = serde_json::from_str::<TrustDomain>(r#""BAD""#).unwrap_err();
        assert!(
            err.to_string()
                .contains(&IdError::BadTrustDomainChar.to_string()),
            "{err}"
        );
    }

    #[test]
    fn non_string_id_is_a_serde_error() {
        assert!(serde_json::from_str::<SpiffeId>("42").is_err());
        assert!(serde_json::from_str::<TrustDomain>("null").is_err());
    }

    #[test]
    fn serde_accepts_and_rejects_exactly_what_from_str_does() {
        let long_id = id_of_len(MAX_ID_LEN + 1);
        let inputs = [
            "spiffe://example.org",
            "spiffe://example.org/a/b",
            "",
            "SPIFFE://example.org",
            "spiffe://example.org/",
            "spiffe://example.org//a",
            "spiffe://example.org/../a",
            "spiffe://example.org:80/a",
            "spiffe://example.org/a?b",
            "spiffe://example.org/a%20",
            long_id.as_str(),
        ];
        for input in inputs {
            let json = serde_json::to_string(input).unwrap();
            let via_serde = serde_json::from_str::<SpiffeId>(&json);
            match input.parse::<SpiffeId>() {
                Ok(parsed) => assert_eq!(via_serde.unwrap(), parsed),
                Err(err) => {
                    let serde_err = via_serde.unwrap_err().to_string();
                    assert!(
                        serde_err.contains(&err.to_string()),
                        "{input:?}: {serde_err}"
                    );
                }
            }
        }
    }
}

mod matcher {
    use super::*;

    #[track_caller]
    fn assert_matches(matcher: &IdMatcher, accepted: &[&str], rejected: &[&str]) {
        for input in accepted {
            assert!(
                matcher.matches(&id(input)),
                "{matcher} should match {input}"
            );
        }
        for input in rejected {
            assert!(
                !matcher.matches(&id(input)),
                "{matcher} should not match {input}"
            );
        }
    }

    #[test]
    fn exact_matches_only_the_same_id() {
        assert_matches(
            &IdMatcher::exact(id("spiffe://example.org/api")),
            &["spiffe://example.org/api"],
            &[
                "spiffe://example.org",
                "spiffe://example.org/API",
                "spiffe://example.org/api/v2",
                "spiffe://example.org/apiv2",
                "spiffe://example.net/api",
                "spiffe://example.org.evil/api",
            ],
        );
    }

    #[test]
    fn one_of_matches_each_listed_id_and_nothing_else() {
        let matcher = IdMatcher::one_of([
            id("spiffe://example.org/a"),
            id("spiffe://example.org"),
            id("spiffe://example.net/b"),
        ]);
        assert_matches(
            &matcher,
            &[
                "spiffe://example.org/a",
                "spiffe://example.org",
                "spiffe://example.net/b",
            ],
            &[
                "spiffe://example.org/b",
                "spiffe://example.net/a",
                "spiffe://example.net",
            ],
        );
    }

    #[test]
    fn empty_one_of_matches_nothing() {
        assert_matches(&IdMatcher::one_of([]), &[], &["spiffe://example.org"]);
    }

    #[test]
    fn large_one_of_matches_members_only() {
        let matcher =
            IdMatcher::one_of((0..1000).map(|i| id(&format!("spiffe://example.org/workload-{i}"))));
        assert_matches(
            &matcher,
            &[
                "spiffe://example.org/workload-0",
                "spiffe://example.org/workload-999",
            ],
            &[
                "spiffe://example.org/workload-1000",
                "spiffe://example.org/workload",
            ],
        );
    }

    #[test]
    fn trust_domain_matches_every_id_of_that_trust_domain_including_root() {
        assert_matches(
            &IdMatcher::trust_domain(td("example.org")),
            &[
                "spiffe://example.org",
                "spiffe://example.org/a",
                "spiffe://example.org/a/b/c",
            ],
            &[
                "spiffe://example.net/a",
                "spiffe://example.org.evil/a",
                "spiffe://sub.example.org/a",
                "spiffe://org/example.org",
            ],
        );
    }

    #[test]
    fn any_matches_ids_from_every_trust_domain() {
        assert_matches(
            &IdMatcher::any(),
            &["spiffe://example.org", "spiffe://example.net/a/b"],
            &[],
        );
    }

    #[test]
    fn single_star_matches_exactly_one_segment() {
        assert_matches(
            &pattern("spiffe://example.org/ns/*/sa/api"),
            &[
                "spiffe://example.org/ns/prod/sa/api",
                "spiffe://example.org/ns/x/sa/api",
            ],
            &[
                "spiffe://example.org/ns/sa/api",
                "spiffe://example.org/ns/a/b/sa/api",
                "spiffe://example.org/ns/prod/sa/api/extra",
                "spiffe://example.org/ns/prod/sa/web",
            ],
        );
    }

    #[test]
    fn trailing_single_star_does_not_match_the_parent_or_grandchildren() {
        assert_matches(
            &pattern("spiffe://example.org/ns/*"),
            &["spiffe://example.org/ns/prod"],
            &["spiffe://example.org/ns", "spiffe://example.org/ns/prod/sa"],
        );
    }

    #[test]
    fn double_star_matches_one_or_more_segments() {
        assert_matches(
            &pattern("spiffe://example.org/ns/*/sa/**"),
            &[
                "spiffe://example.org/ns/prod/sa/api",
                "spiffe://example.org/ns/prod/sa/api/v2/x",
            ],
            &[
                "spiffe://example.org/ns/prod/sa",
                "spiffe://example.org/ns/prod",
                "spiffe://example.org/ns/prod/sb/api",
            ],
        );
    }

    #[test]
    fn double_star_does_not_match_the_root_id() {
        assert_matches(
            &pattern("spiffe://example.org/**"),
            &["spiffe://example.org/a", "spiffe://example.org/a/b"],
            &["spiffe://example.org"],
        );
    }

    #[test]
    fn double_star_does_not_match_its_parent() {
        assert_matches(
            &pattern("spiffe://example.org/foo/**"),
            &["spiffe://example.org/foo/bar"],
            &["spiffe://example.org/foo"],
        );
    }

    #[test]
    fn pattern_never_matches_another_trust_domain() {
        assert_matches(
            &pattern("spiffe://a.org/**"),
            &["spiffe://a.org/x"],
            &["spiffe://b.org/x", "spiffe://b.org/a.org/x"],
        );
    }

    #[test]
    fn pattern_does_not_match_a_trust_domain_extending_its_own() {
        for matcher in [
            pattern("spiffe://example.org/x"),
            pattern("spiffe://example.org/*"),
            pattern("spiffe://example.org/**"),
        ] {
            assert_matches(
                &matcher,
                &["spiffe://example.org/x"],
                &["spiffe://example.org.evil/x", "spiffe://sub.example.org/x"],
            );
        }
    }

    #[test]
    fn pattern_prefix_only_matches_on_segment_boundaries() {
        assert_matches(
            &pattern("spiffe://example.org/foo/**"),
            &["spiffe://example.org/foo/bar"],
            &[
                "spiffe://example.org/foobar",
                "spiffe://example.org/foobar/baz",
            ],
        );
        assert_matches(
            &pattern("spiffe://example.org/foo/*"),
            &["spiffe://example.org/foo/bar"],
            &[
                "spiffe://example.org/foobar",
                "spiffe://example.org/foobar/baz",
            ],
        );
        assert_matches(
            &pattern("spiffe://example.org/*/bar"),
            &["spiffe://example.org/foo/bar"],
            &[
                "spiffe://example.org/foo/barbaz",
                "spiffe://example.org/foo/bar/baz",
            ],
        );
    }

    #[test]
    fn pattern_literal_segments_are_case_sensitive() {
        assert_matches(
            &pattern("spiffe://example.org/Ns/*"),
            &["spiffe://example.org/Ns/a"],
            &["spiffe://example.org/ns/a", "spiffe://example.org/NS/a"],
        );
    }

    #[test]
    fn pattern_without_wildcards_behaves_like_exact() {
        let candidates = [
            "spiffe://example.org",
            "spiffe://example.org/a",
            "spiffe://example.org/a/b",
            "spiffe://example.org/a/b/c",
            "spiffe://example.org/ab",
            "spiffe://example.net/a/b",
        ];
        for spelled in ["spiffe://example.org", "spiffe://example.org/a/b"] {
            let from_pattern = pattern(spelled);
            let exact = IdMatcher::exact(id(spelled));
            for candidate in candidates {
                let candidate = id(candidate);
                assert_eq!(
                    from_pattern.matches(&candidate),
                    exact.matches(&candidate),
                    "{spelled} vs {candidate}"
                );
            }
        }
    }

    #[test]
    fn pattern_display_reproduces_the_pattern() {
        for input in [
            "spiffe://example.org",
            "spiffe://example.org/a",
            "spiffe://example.org/*",
            "spiffe://example.org/**",
            "spiffe://td/ns/*/sa/**",
            "spiffe://td/*/*/x",
        ] {
            assert_eq!(pattern(input).to_string(), input);
        }
    }

    #[test]
    fn from_str_agrees_with_pattern() {
        let parsed: IdMatcher = "spiffe://example.org/*".parse().unwrap();
        assert_eq!(
            parsed.to_string(),
            pattern("spiffe://example.org/*").to_string()
        );
        assert_eq!(
            "spiffe://example.org/a*".parse::<IdMatcher>().unwrap_err(),
            PatternError::PartialWildcard
        );
    }

    #[test]
    fn invalid_patterns_are_rejected_with_the_named_rule() {
        let too_long = format!("{}/*", id_of_len(MAX_ID_LEN - 1));
        let cases: &[(&str, PatternError)] = &[
            ("spiffe://td/**/a", PatternError::RecursiveWildcardNotLast),
            ("spiffe://td/**/**", PatternError::RecursiveWildcardNotLast),
            ("spiffe://td/a*", PatternError::PartialWildcard),
            ("spiffe://td/*a", PatternError::PartialWildcard),
            ("spiffe://td/a/*b*", PatternError::PartialWildcard),
            ("spiffe://td/***", PatternError::PartialWildcard),
            ("spiffe://td/*/a**", PatternError::PartialWildcard),
            ("spiffe://*/a", PatternError::WildcardInTrustDomain),
            (
                "spiffe://*.example.org/a",
                PatternError::WildcardInTrustDomain,
            ),
            ("spiffe://example.*/**", PatternError::WildcardInTrustDomain),
            ("spiffe://**", PatternError::WildcardInTrustDomain),
            ("spiffe://td//a", PatternError::Id(IdError::EmptySegment)),
            ("spiffe://td/*//a", PatternError::Id(IdError::EmptySegment)),
            ("spiffe://td/", PatternError::Id(IdError::TrailingSlash)),
            ("spiffe://td/a/", PatternError::Id(IdError::TrailingSlash)),
            ("spiffe://td/*/", PatternError::Id(IdError::TrailingSlash)),
            // Rules are checked left to right, as in ID parsing.
            ("spiffe://td/**/", PatternError::RecursiveWildcardNotLast),
            ("spiffe://td/./*", PatternError::Id(IdError::DotSegment)),
            ("spiffe://td/*/..", PatternError::Id(IdError::DotSegment)),
            (
                "spiffe://td/a$/*",
                PatternError::Id(IdError::BadPathSegmentChar),
            ),
            (
                "spiffe://td/*/a%20",
                PatternError::Id(IdError::BadPathSegmentChar),
            ),
            (
                "spiffe://td/*/a?b",
                PatternError::Id(IdError::BadPathSegmentChar),
            ),
            ("spiffe://td/*#a", PatternError::PartialWildcard),
            (
                "spiffe://TD/*",
                PatternError::Id(IdError::BadTrustDomainChar),
            ),
            (
                "spiffe://td:443/*",
                PatternError::Id(IdError::BadTrustDomainChar),
            ),
            (
                "spiffe://user@td/*",
                PatternError::Id(IdError::BadTrustDomainChar),
            ),
            ("spiffe:///*", PatternError::Id(IdError::MissingTrustDomain)),
            ("SPIFFE://td/*", PatternError::Id(IdError::WrongScheme)),
            ("td/*", PatternError::Id(IdError::WrongScheme)),
            ("", PatternError::Id(IdError::Empty)),
            (&too_long, PatternError::Id(IdError::TooLong)),
        ];
        for (input, expected) in cases {
            assert_eq!(
                IdMatcher::pattern(input).map(|m| m.to_string()),
                Err(expected.clone()),
                "pattern {input:?}"
            );
        }
    }

    #[test]
    fn pattern_error_messages_are_readable() {
        assert_eq!(
            PatternError::RecursiveWildcardNotLast.to_string(),
            "** is only allowed as the last path segment"
        );
        assert_eq!(
            PatternError::Id(IdError::TrailingSlash).to_string(),
            "path cannot have a trailing slash"
        );
    }

    #[test]
    fn any_of_matches_when_any_member_matches() {
        let matcher = IdMatcher::any_of([
            pattern("spiffe://example.org/ns/prod/**"),
            IdMatcher::exact(id("spiffe://example.net/admin")),
        ]);
        assert_matches(
            &matcher,
            &[
                "spiffe://example.org/ns/prod/api",
                "spiffe://example.net/admin",
            ],
            &[
                "spiffe://example.org/ns/dev/api",
                "spiffe://example.net/api",
            ],
        );
    }

    #[test]
    fn empty_any_of_matches_nothing() {
        assert_matches(&IdMatcher::any_of([]), &[], &["spiffe://example.org/a"]);
    }

    #[test]
    fn all_of_matches_only_when_every_member_matches() {
        let matcher = IdMatcher::all_of([
            pattern("spiffe://example.org/ns/*/sa/**"),
            pattern("spiffe://example.org/ns/prod/**"),
        ]);
        assert_matches(
            &matcher,
            &["spiffe://example.org/ns/prod/sa/api"],
            &[
                "spiffe://example.org/ns/dev/sa/api",
                "spiffe://example.org/ns/prod/x",
            ],
        );
    }

    #[test]
    fn empty_all_of_matches_nothing() {
        assert_matches(&IdMatcher::all_of([]), &[], &["spiffe://example.org/a"]);
    }

    #[test]
    fn not_inverts_its_matcher() {
        assert_matches(
            &IdMatcher::not(IdMatcher::exact(id("spiffe://example.org/a"))),
            &["spiffe://example.org/b", "spiffe://example.net/a"],
            &["spiffe://example.org/a"],
        );
    }

    #[test]
    fn trust_domain_except_one_id_excludes_only_that_id() {
        let matcher = IdMatcher::all_of([
            IdMatcher::trust_domain(td("example.org")),
            IdMatcher::not(IdMatcher::exact(id("spiffe://example.org/blocked"))),
        ]);
        assert_matches(
            &matcher,
            &["spiffe://example.org", "spiffe://example.org/api"],
            &["spiffe://example.org/blocked", "spiffe://example.net/api"],
        );
    }

    #[test]
    fn display_summarises_each_kind_of_matcher() {
        let cases = [
            (IdMatcher::any(), "any spiffe id"),
            (
                IdMatcher::exact(id("spiffe://example.org/a")),
                "spiffe://example.org/a",
            ),
            (
                IdMatcher::one_of([id("spiffe://example.org/b"), id("spiffe://example.org/a")]),
                "one of [spiffe://example.org/a, spiffe://example.org/b]",
            ),
            (
                IdMatcher::trust_domain(td("example.org")),
                "trust domain example.org",
            ),
            (pattern("spiffe://td/ns/*/sa/**"), "spiffe://td/ns/*/sa/**"),
            (
                IdMatcher::all_of([
                    IdMatcher::trust_domain(td("td")),
                    IdMatcher::not(pattern("spiffe://td/admin/**")),
                ]),
                "all of [trust domain td, not (spiffe://td/admin/**)]",
            ),
            (
                IdMatcher::any_of([IdMatcher::any_of([]), IdMatcher::one_of([])]),
                "any of [any of [], one of []]",
            ),
        ];
        for (matcher, expected) in cases {
            assert_eq!(matcher.to_string(), expected);
        }
    }

    #[test]
    fn display_of_large_one_of_is_truncated() {
        let matcher = IdMatcher::one_of((0..20).map(|i| id(&format!("spiffe://td/w{i:02}"))));
        let shown = matcher.to_string();
        assert!(shown.starts_with("one of [spiffe://td/w00, "), "{shown}");
        assert!(
            shown.ends_with("spiffe://td/w07, ... (12 more)]"),
            "{shown}"
        );
    }

    #[test]
    fn debug_wraps_the_display_summary() {
        assert_eq!(
            format!("{:?}", pattern("spiffe://td/*")),
            "IdMatcher(spiffe://td/*)"
        );
    }

    #[test]
    fn clone_matches_like_the_original() {
        let original = pattern("spiffe://example.org/ns/*/sa/**");
        let clone = original.clone();
        let candidate = id("spiffe://example.org/ns/a/sa/b");
        assert_eq!(clone.matches(&candidate), original.matches(&candidate));
        assert_eq!(clone.to_string(), original.to_string());
    }
}
