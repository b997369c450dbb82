//! What the fuzz targets in `fuzz/` call: each function takes arbitrary bytes, runs one
//! parser the network reaches, and panics only when a property fails. Not an API;
//! hidden from the docs, it may change with the targets.

#[cfg(feature = "redis")]
use bytes::Bytes;

#[cfg(feature = "redis")]
use crate::cluster::redis::wire;
use crate::destination::Pattern;
use crate::params;
use crate::transport::sockjs::frames;

/// The destination matcher against `reference`, for every grammar: `data` is a
/// pattern, a newline, a destination (short, with few `**`: the reference is
/// exponential in them).
pub fn destination(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let (pattern, destination) = text.split_once('\n').unwrap_or((&text, ""));
    let many = pattern.matches("**").count() + pattern.matches('#').count();
    if pattern.len() > 48 || destination.len() > 48 || many > 5 {
        return;
    }
    if let Some(p) = Pattern::subscription(pattern) {
        let expected = reference::matches(pattern, destination, true, false).is_some();
        assert_eq!(
            p.matches(destination),
            expected,
            "{pattern:?} {destination:?}"
        );
        if expected {
            let norm = |s: &str| s.replace('.', "/");
            assert!(norm(destination).starts_with(&norm(p.literal_prefix())));
        }
    }
    let captures = |p: &Pattern| {
        p.captures(destination)
            .map(|c| c.into_iter().map(|(_, v)| v.to_owned()).collect::<Vec<_>>())
    };
    if let Ok(p) = Pattern::rule(pattern) {
        let expected = reference::matches(p.as_str(), destination, true, true);
        assert_eq!(captures(&p), expected, "rule {pattern:?} {destination:?}");
    }
    let p = Pattern::path(pattern);
    let expected = reference::matches(p.as_str(), destination, false, true);
    assert_eq!(captures(&p), expected, "path {pattern:?} {destination:?}");
    let limits = crate::destination::Limits {
        max_length: 32,
        max_segments: 4,
        max_wildcards: 2,
    };
    let _ = limits.check(destination);
}

/// Query strings, form bodies and cookies: nothing panics, and what the form encoder
/// writes reads back.
pub fn params(data: &[u8]) {
    for name in ["d", "c", "user", "access_token", ""] {
        let _ = params::form_value(data, name);
    }
    let text = String::from_utf8_lossy(data);
    let _ = params::query_value(Some(&text), "user");
    if let Ok(v) = http::HeaderValue::from_bytes(data) {
        let mut headers = http::HeaderMap::new();
        headers.insert(http::header::COOKIE, v);
        for name in ["access_token", "JSESSIONID", ""] {
            let _ = params::cookie(&headers, name);
        }
    }
    let (name, value) = text.split_once('\n').unwrap_or(("k", &text));
    let query = form_urlencoded::Serializer::new(String::new())
        .append_pair("other", "x")
        .append_pair(name, value)
        .finish();
    if name != "other" {
        assert_eq!(
            params::query_value(Some(&query), name).as_deref(),
            Some(value)
        );
    }
}

/// SockJS client payloads (xhr_send, jsonp_send, websocket): what decodes is quoted
/// back into frames that parse to the same messages.
pub fn sockjs(data: &[u8]) {
    let from_form = params::form_value(data, "d").map(String::into_bytes);
    for payload in [Some(data.to_vec()), from_form].into_iter().flatten() {
        let Ok(messages) = frames::decode(&payload) else {
            continue;
        };
        let frame = frames::messages(&messages);
        let array = frame.strip_prefix('a').expect("an a-frame");
        let back: Vec<String> = serde_json::from_str(array).expect("a JSON array");
        assert_eq!(back, messages);
    }
    let _ = frames::valid_callback(&String::from_utf8_lossy(data));
}

/// The Redis bus's envelope and message codec: nothing panics on what Redis holds,
/// and a message that decodes encodes back to the same message.
#[cfg(feature = "redis")]
pub fn redis_wire(data: &[u8]) {
    let payload = match wire::split_published(data) {
        Some((_, _, payload)) => payload,
        None => data,
    };
    let Some((origin, m)) = wire::decode(payload) else {
        return;
    };
    let again = wire::encode(&m, &origin);
    let (origin2, m2) = wire::decode(&again).expect("what was encoded decodes");
    assert_eq!(origin, origin2);
    assert_eq!(
        (
            &m.id,
            m.kind,
            &m.key,
            &m.destination,
            &m.content_type,
            &m.headers,
            &m.body
        ),
        (
            &m2.id,
            m2.kind,
            &m2.key,
            &m2.destination,
            &m2.content_type,
            &m2.headers,
            &m2.body
        )
    );
    let _: Bytes = m.frame_for("0", None, herald_stomp::Version::V1_0).bytes;
}

/// The destination grammar written the obvious way: recursion over segment lists,
/// trying every split a `**` allows. Exponential, so only for short inputs; the
/// matcher's property tests and the fuzz target hold it against this.
pub mod reference {
    enum Tok<'a> {
        Lit(&'a str),
        One,
        Many,
        Cap,
    }

    /// Segments of `d`, each with whether it opens a `/` segment.
    fn segments(d: &str, dots: bool) -> Vec<(bool, &str)> {
        let mut out = Vec::new();
        for part in d.split('/') {
            if dots {
                for (i, s) in part.split('.').enumerate() {
                    out.push((i == 0, s));
                }
            } else {
                out.push((true, part));
            }
        }
        out
    }

    fn tokens(p: &str, dots: bool, captures: bool) -> Vec<Tok<'_>> {
        let mut out = Vec::new();
        for part in p.split('/') {
            if captures && part.len() > 2 && part.starts_with('{') && part.ends_with('}') {
                out.push(Tok::Cap);
                continue;
            }
            let segs: Vec<&str> = if dots {
                part.split('.').collect()
            } else {
                vec![part]
            };
            for s in segs {
                out.push(match s {
                    "*" => Tok::One,
                    "**" | "#" => Tok::Many,
                    s => Tok::Lit(s),
                });
            }
        }
        out
    }

    fn go(p: &[Tok], d: &[(bool, &str)], caps: &mut Vec<String>) -> bool {
        let Some((first, rest)) = p.split_first() else {
            return d.is_empty();
        };
        match first {
            Tok::Many => (0..=d.len()).any(|k| go(rest, &d[k..], caps)),
            Tok::One => !d.is_empty() && !d[0].1.is_empty() && go(rest, &d[1..], caps),
            Tok::Lit(l) => !d.is_empty() && d[0].1 == *l && go(rest, &d[1..], caps),
            Tok::Cap => {
                if d.is_empty() || !d[0].0 {
                    return false;
                }
                let k = 1 + d[1..].iter().take_while(|(opens, _)| !opens).count();
                let text = d[..k].iter().map(|(_, s)| *s).collect::<Vec<_>>().join(".");
                if text.is_empty() {
                    return false;
                }
                caps.push(text);
                if go(rest, &d[k..], caps) {
                    return true;
                }
                caps.pop();
                false
            }
        }
    }

    /// The captures of the first way `pattern` matches `d` (`dots`: `.` separates
    /// too; `captures`: `{name}` captures), if it matches.
    pub fn matches(pattern: &str, d: &str, dots: bool, captures: bool) -> Option<Vec<String>> {
        let mut caps = Vec::new();
        let toks = tokens(pattern, dots, captures);
        go(&toks, &segments(d, dots), &mut caps).then_some(caps)
    }
}
