//! The destination grammar: how a pattern reads and what it matches, for everyone who
//! matches destinations — the broker's wildcard subscriptions, the auth rules, the
//! Redis bus's pattern channels — and for application paths.
//!
//! - Segments: `/` and `.` both separate the segments of a destination
//!   (`/topic/chat.room` ≡ `/topic/chat/room`); application paths split on `/` only.
//! - `*` is one non-empty segment; `**` (or RabbitMQ's `#`) any number of segments,
//!   none included, anywhere in the pattern; repeated `**` collapse when parsed.
//! - `{name}` (rules and application paths) captures a whole `/` segment, dots and all,
//!   so `/user/{user}/**` reads `alice@example.com` out of `/user/alice@example.com/q`.
//! - A wildcard is a whole segment: `a*b` and `x#` are literal.
//!
//! Matching is one pass that, on a mismatch, only ever widens the last `**`: at most
//! pattern × destination segment steps, no recursion, no allocation. Nothing here
//! knows about sessions or Redis; the bus turns [`Pattern::literal_prefix`] into its
//! glob itself.

use std::collections::HashMap;
use std::fmt;

use memchr::{memchr, memchr2};

/// What separates segments.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Separators {
    /// `/` and `.`: destinations.
    Both,
    /// `/` only: application paths.
    Slash,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Token {
    Literal(Box<str>),
    /// `*`
    One,
    /// `**` or `#`
    Many,
    /// `{name}`, a whole `/` segment; the second field numbers the captures.
    Capture(Box<str>, usize),
}

/// A parsed destination or path pattern.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Pattern {
    source: Box<str>,
    tokens: Box<[Token]>,
    separators: Separators,
    /// `source[..literal]` is a prefix of everything the pattern matches.
    literal: usize,
    captures: usize,
}

/// A pattern that cannot be parsed (only rule patterns can fail).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("pattern '{pattern}': {problem}")]
pub(crate) struct PatternError {
    pattern: String,
    problem: &'static str,
}

impl Pattern {
    /// A subscription's destination: `*`, `**`, `#`; `{...}` is literal. `None` when
    /// it has no wildcard (an exact subscription, kept in the broker's hash map).
    pub(crate) fn subscription(destination: &str) -> Option<Pattern> {
        if !is_wildcard(destination) {
            return None;
        }
        Pattern::build(destination, Separators::Both, false).ok()
    }

    /// An access rule's pattern: the destination grammar with `{name}` captures. A
    /// capture that is not a whole `/` segment (`/x/{a}.b`) is an error.
    pub(crate) fn rule(pattern: &str) -> Result<Pattern, PatternError> {
        Pattern::build(&with_slash(pattern), Separators::Both, true)
    }

    /// An application path (`/chat/rooms/{id}/send`, `/orders/**`): segments split on
    /// `/` only, so `/chat.send` is one segment.
    pub(crate) fn path(pattern: &str) -> Pattern {
        Pattern::build(&with_slash(pattern), Separators::Slash, true)
            .expect("a path pattern always parses")
    }

    fn build(
        source: &str,
        separators: Separators,
        captures: bool,
    ) -> Result<Pattern, PatternError> {
        let error = |problem| PatternError {
            pattern: source.to_owned(),
            problem,
        };
        let mut tokens: Vec<Token> = Vec::new();
        let mut literal = None;
        let mut slash_start: usize = 0;
        let mut captures_seen = 0;
        for slash_part in source.split('/') {
            if let Some(name) = capture_name(slash_part).filter(|_| captures) {
                literal.get_or_insert(slash_start.saturating_sub(1));
                tokens.push(Token::Capture(name.into(), captures_seen));
                captures_seen += 1;
            } else {
                let mut start = slash_start;
                for seg in split(slash_part, separators) {
                    let token = match seg {
                        "*" => Token::One,
                        "**" | "#" => Token::Many,
                        s if captures && capture_name(s).is_some() => {
                            return Err(error("a {name} capture must be a whole '/' segment"));
                        }
                        s => Token::Literal(s.into()),
                    };
                    if !matches!(token, Token::Literal(_)) {
                        literal.get_or_insert(start.saturating_sub(1));
                    }
                    start += seg.len() + 1;
                    if token == Token::Many && tokens.last() == Some(&Token::Many) {
                        continue;
                    }
                    tokens.push(token);
                }
            }
            slash_start += slash_part.len() + 1;
        }
        Ok(Pattern {
            literal: literal.unwrap_or(source.len()),
            source: source.into(),
            tokens: tokens.into(),
            separators,
            captures: captures_seen,
        })
    }

    pub(crate) fn as_str(&self) -> &str {
        &self.source
    }

    /// The text before the first wildcard, without the separator in front of it: every
    /// destination the pattern matches starts with it, up to `/` ≡ `.`
    /// (`/topic/a/**` matches `/topic/a` and `/topic/a.b`: its prefix is `/topic/a`).
    pub(crate) fn literal_prefix(&self) -> &str {
        &self.source[..self.literal]
    }

    pub(crate) fn matches(&self, destination: &str) -> bool {
        self.run(destination, &mut [])
    }

    /// The `{name}` captures when `destination` matches.
    pub(crate) fn captures<'d>(&self, destination: &'d str) -> Option<Vec<(&str, &'d str)>> {
        let mut spans = vec![(0, 0); self.captures];
        if !self.run(destination, &mut spans) {
            return None;
        }
        let names = self.tokens.iter().filter_map(|t| match t {
            Token::Capture(name, _) => Some(&**name),
            _ => None,
        });
        Some(
            names
                .zip(spans)
                .map(|(name, (from, to))| (name, &destination[from..to]))
                .collect(),
        )
    }

    /// The captures as the map application handlers receive.
    pub(crate) fn params(&self, path: &str) -> Option<HashMap<String, String>> {
        self.captures(path).map(|c| {
            c.into_iter()
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .collect()
        })
    }

    /// Walks pattern and destination together. A position in the destination is the
    /// byte offset where a segment starts; `len + 1` means all segments are used. When
    /// a token fails, the last `**` takes one more segment and the tokens after it are
    /// tried again from there: earlier tokens matched as early as they could, so they
    /// never need to move, and each retry starts one segment further on.
    fn run(&self, d: &str, spans: &mut [(usize, usize)]) -> bool {
        if !self.may_match(d) {
            return false;
        }
        let tokens = &self.tokens;
        let end = d.len() + 1;
        let (mut t, mut at) = (0, 0);
        // (token after the last `**`, where the segments it took end)
        let mut widen: Option<(usize, usize)> = None;
        loop {
            if t < tokens.len() {
                if tokens[t] == Token::Many {
                    widen = Some((t + 1, at));
                    t += 1;
                    continue;
                }
                if at < end
                    && let Some(next) = self.step(&tokens[t], d, at, spans)
                {
                    t += 1;
                    at = next;
                    continue;
                }
            } else if at == end {
                return true;
            }
            match widen {
                Some((after, from)) if from < end => {
                    let next = self.segment_end(d, from) + 1;
                    widen = Some((after, next));
                    (t, at) = (after, next);
                }
                _ => return false,
            }
        }
    }

    /// Matches one token at segment start `at`; the start of the next segment.
    fn step(
        &self,
        token: &Token,
        d: &str,
        at: usize,
        spans: &mut [(usize, usize)],
    ) -> Option<usize> {
        match token {
            Token::Literal(l) => {
                let e = self.segment_end(d, at);
                (d[at..e] == **l).then_some(e + 1)
            }
            Token::One => {
                let e = self.segment_end(d, at);
                (e > at).then_some(e + 1)
            }
            Token::Capture(_, slot) => {
                if at > 0 && d.as_bytes()[at - 1] != b'/' {
                    return None;
                }
                let e = memchr(b'/', &d.as_bytes()[at..]).map_or(d.len(), |i| at + i);
                if e == at {
                    return None;
                }
                if let Some(span) = spans.get_mut(*slot) {
                    *span = (at, e);
                }
                Some(e + 1)
            }
            Token::Many => unreachable!("`**` widens, it is never stepped"),
        }
    }

    /// Whether `d` starts with the literal prefix (`/` and `.` alike where both
    /// separate). Most patterns a destination is held against (access rules, wildcard
    /// subscriptions) fail here, in one short comparison, before any segment is walked.
    fn may_match(&self, d: &str) -> bool {
        let (p, d) = (self.literal_prefix().as_bytes(), d.as_bytes());
        d.len() >= p.len()
            && p.iter().zip(d).all(|(a, b)| {
                a == b
                    || (self.separators == Separators::Both
                        && matches!((a, b), (b'/', b'.') | (b'.', b'/')))
            })
    }

    fn segment_end(&self, d: &str, at: usize) -> usize {
        let rest = &d.as_bytes()[at..];
        let found = match self.separators {
            Separators::Both => memchr2(b'/', b'.', rest),
            Separators::Slash => memchr(b'/', rest),
        };
        found.map_or(d.len(), |i| at + i)
    }
}

impl fmt::Display for Pattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.source)
    }
}

/// Whether a destination has a wildcard segment (`*`, `**` or `#`).
pub(crate) fn is_wildcard(destination: &str) -> bool {
    split(destination, Separators::Both).any(is_wildcard_segment)
}

fn is_wildcard_segment(s: &str) -> bool {
    matches!(s, "*" | "**" | "#")
}

fn split(s: &str, separators: Separators) -> std::str::Split<'_, &'static [char]> {
    match separators {
        Separators::Both => s.split(&['/', '.'][..]),
        Separators::Slash => s.split(&['/'][..]),
    }
}

/// `name` of a `{name}` segment.
fn capture_name(segment: &str) -> Option<&str> {
    segment
        .strip_prefix('{')
        .and_then(|s| s.strip_suffix('}'))
        .filter(|name| !name.is_empty())
}

/// Rule and path patterns read with or without their leading `/`.
fn with_slash(pattern: &str) -> String {
    format!("/{}", pattern.trim_start_matches('/'))
}

/// What a client may name: destination length, segments, wildcards (`[broker]`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    pub max_length: usize,
    pub max_segments: usize,
    pub max_wildcards: usize,
}

/// Which limit a destination is over; the text names the setting.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LimitError {
    Length { length: usize, limit: usize },
    Segments { segments: usize, limit: usize },
    Wildcards { wildcards: usize, limit: usize },
}

impl LimitError {
    /// A short label for metrics.
    pub fn limit(&self) -> &'static str {
        match self {
            LimitError::Length { .. } => "length",
            LimitError::Segments { .. } => "segments",
            LimitError::Wildcards { .. } => "wildcards",
        }
    }
}

impl fmt::Display for LimitError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            LimitError::Length { length, limit } => write!(
                f,
                "destination too long: {length} bytes (limit broker.max_destination_length = {limit})"
            ),
            LimitError::Segments { segments, limit } => write!(
                f,
                "destination has too many segments: {segments} (limit broker.max_destination_segments = {limit})"
            ),
            LimitError::Wildcards { wildcards, limit } => write!(
                f,
                "destination has too many wildcards: {wildcards} (limit broker.max_wildcards = {limit})"
            ),
        }
    }
}

impl Limits {
    /// Checks a destination a client gave (SUBSCRIBE, SEND, REST). Segments are
    /// counted as the grammar reads them, a leading separator opening none:
    /// `/topic/a.b` has 3. Wildcards count as written, before `**` collapse.
    pub fn check(&self, destination: &str) -> Result<(), LimitError> {
        let length = destination.len();
        if length > self.max_length {
            return Err(LimitError::Length {
                length,
                limit: self.max_length,
            });
        }
        // One pass over the bytes: this runs for every SEND.
        let bytes = destination.as_bytes();
        let (mut segments, mut wildcards, mut start) = (0, 0, 0);
        for i in 0..=bytes.len() {
            if i < bytes.len() && bytes[i] != b'/' && bytes[i] != b'.' {
                continue;
            }
            if i > 0 {
                segments += 1;
                wildcards += usize::from(matches!(&bytes[start..i], b"*" | b"**" | b"#"));
            }
            start = i + 1;
        }
        if segments > self.max_segments {
            return Err(LimitError::Segments {
                segments,
                limit: self.max_segments,
            });
        }
        if wildcards > self.max_wildcards {
            return Err(LimitError::Wildcards {
                wildcards,
                limit: self.max_wildcards,
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(p: &str, d: &str) -> bool {
        Pattern::subscription(p).expect("wildcard").matches(d)
    }

    #[test]
    fn single_and_multi_segment_wildcards() {
        assert!(m("/topic/*", "/topic/a"));
        assert!(!m("/topic/*", "/topic/a/b"));
        assert!(!m("/topic/*", "/topic/"));
        assert!(m("/topic/**", "/topic/a/b.c"));
        assert!(m("/topic/**", "/topic"));
        assert!(m("/topic/chat.*", "/topic/chat.room"));
        assert!(m("/topic/chat.*", "/topic/chat/room"));
        assert!(m("/topic/*/price", "/topic/aapl/price"));
        assert!(!m("/topic/*/price", "/topic/aapl/volume"));
        assert!(m("/topic/#.price", "/topic/us.aapl.price"));
        assert!(m("/topic/**/price", "/topic/price"));
        assert!(m("/topic/a/**/b/**/c", "/topic/a/x/b/y/z/c"));
        assert!(!m("/topic/a/**/b/**/c", "/topic/a/x/c/y/b"));
        assert!(!m("/queue/*", "/topic/a"));
        assert!(m("/topic/a*b/*", "/topic/a*b/x"));
        assert!(!m("/topic/a*b/*", "/topic/axb/x"));
        assert!(Pattern::subscription("/topic/a").is_none());
        assert!(Pattern::subscription("/topic/{x}").is_none());
    }

    #[test]
    fn repeated_many_collapses_and_stays_linear() {
        let p = Pattern::subscription("/topic/**/**/#/**/zzz").unwrap();
        assert_eq!(p.tokens.len(), 4);
        let attack = format!("/topic/**{}/zzz", "/**".repeat(40));
        let p = Pattern::subscription(&attack).unwrap();
        let long = format!("/topic{}", "/a".repeat(2000));
        assert!(!p.matches(&long));
        let alternating = format!("/topic{}/zzz", "/**/*".repeat(30));
        assert!(!Pattern::subscription(&alternating).unwrap().matches(&long));
    }

    #[test]
    fn literal_prefix_stops_before_the_wildcard_separator() {
        let prefix = |p: &str| {
            Pattern::subscription(p)
                .unwrap()
                .literal_prefix()
                .to_owned()
        };
        assert_eq!(prefix("/topic/a/**"), "/topic/a");
        assert_eq!(prefix("/topic/chat.*"), "/topic/chat");
        assert_eq!(prefix("/topic/a*b/#/c"), "/topic/a*b");
        assert_eq!(prefix("**"), "");
        assert!(m("/topic/a/**", "/topic/a"));
        assert!(m("/topic/a/**", "/topic/a.b"));
    }

    #[test]
    fn rule_captures_span_dots_within_a_slash_segment() {
        let p = Pattern::rule("/user/{user}/**").unwrap();
        assert_eq!(
            p.captures("/user/a.b@example.com/queue/x"),
            Some(vec![("user", "a.b@example.com")])
        );
        assert_eq!(p.captures("/user/bob"), Some(vec![("user", "bob")]));
        assert_eq!(p.captures("/user//x"), None);
        assert!(
            Pattern::rule("/topic/admin/**")
                .unwrap()
                .matches("/topic/admin.evil")
        );
        assert!(
            Pattern::rule("user/{user}/**")
                .unwrap()
                .matches("/user/x/q")
        );
        assert!(Pattern::rule("/x/{a}.b").is_err());
        assert_eq!(
            Pattern::rule("/{a.b}").unwrap().captures("/q.r"),
            Some(vec![("a.b", "q.r")])
        );
    }

    #[test]
    fn application_paths_split_on_slashes_only() {
        let p = Pattern::path("/chat/rooms/{id}/send");
        assert_eq!(p.params("/chat/rooms/7/send").unwrap()["id"], "7");
        assert!(p.params("/chat/rooms//send").is_none());
        assert!(p.params("/chat/rooms/7/send/x").is_none());
        assert!(Pattern::path("/chat.send").matches("/chat.send"));
        assert!(!Pattern::path("/chat.send").matches("/chat/send"));
        assert!(!Pattern::path("/chat.*").matches("/chat.send"));
        assert!(Pattern::path("/**").matches("/any/thing"));
        assert!(Pattern::path("/orders/*").matches("/orders/1"));
        assert!(!Pattern::path("/orders/**/x").matches("/orders/a/b"));
        assert!(Pattern::path("/orders/**/x").matches("/orders/a/b/x"));
        assert_eq!(Pattern::path("hello").to_string(), "/hello");
    }

    #[test]
    fn limits_name_their_setting() {
        let l = Limits {
            max_length: 20,
            max_segments: 3,
            max_wildcards: 1,
        };
        assert_eq!(l.check("/topic/a.b"), Ok(()));
        let e = l.check("/topic/a/b/c").unwrap_err();
        assert_eq!(e.limit(), "segments");
        assert!(
            e.to_string()
                .contains("4 (limit broker.max_destination_segments = 3)"),
            "{e}"
        );
        let e = l.check("/topic/*/**").unwrap_err().to_string();
        assert!(
            e.contains("too many wildcards: 2 (limit broker.max_wildcards = 1)"),
            "{e}"
        );
        let e = l.check(&"/topic/".repeat(5)).unwrap_err().to_string();
        assert!(
            e.contains("35 bytes (limit broker.max_destination_length = 20)"),
            "{e}"
        );
    }

    mod props {
        use super::super::Pattern;
        use crate::fuzzing::reference;
        use proptest::prelude::*;

        fn joined(parts: &'static [&'static str], max: usize) -> impl Strategy<Value = String> {
            proptest::collection::vec(
                (
                    prop::sample::select(parts),
                    prop::sample::select(&["/", "."][..]),
                ),
                0..max,
            )
            .prop_map(|v| v.into_iter().map(|(s, sep)| format!("{sep}{s}")).collect())
        }

        fn pattern() -> impl Strategy<Value = String> {
            joined(&["a", "b", "", "*", "**", "#", "{u}", "{v}", "a*"], 8)
        }

        fn destination() -> impl Strategy<Value = String> {
            joined(&["a", "b", "", "*", "#", "ab"], 9)
        }

        fn ours(p: &Pattern, d: &str) -> Option<Vec<String>> {
            p.captures(d)
                .map(|c| c.into_iter().map(|(_, v)| v.to_owned()).collect())
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(4000))]

            #[test]
            fn subscriptions_match_like_the_reference(p in pattern(), d in destination()) {
                if let Some(pat) = Pattern::subscription(&p) {
                    let expected = reference::matches(&p, &d, true, false).is_some();
                    prop_assert_eq!(pat.matches(&d), expected, "pattern {:?} destination {:?}", p, d);
                }
            }

            #[test]
            fn rules_match_and_capture_like_the_reference(p in pattern(), d in destination()) {
                if let Ok(pat) = Pattern::rule(&p) {
                    let expected = reference::matches(pat.as_str(), &d, true, true);
                    prop_assert_eq!(ours(&pat, &d), expected, "pattern {:?} destination {:?}", p, d);
                }
            }

            #[test]
            fn paths_match_and_capture_like_the_reference(p in pattern(), d in destination()) {
                let pat = Pattern::path(&p);
                let expected = reference::matches(pat.as_str(), &d, false, true);
                prop_assert_eq!(ours(&pat, &d), expected, "pattern {:?} destination {:?}", p, d);
            }

            #[test]
            fn the_literal_prefix_covers_every_match(p in pattern(), d in destination()) {
                if let Some(pat) = Pattern::subscription(&p) && pat.matches(&d) {
                    let norm = |s: &str| s.replace('.', "/");
                    prop_assert!(norm(&d).starts_with(&norm(pat.literal_prefix())),
                        "pattern {:?} prefix {:?} destination {:?}", p, pat.literal_prefix(), d);
                }
            }
        }
    }
}
