//! Request parameters — query strings, `application/x-www-form-urlencoded` bodies and
//! cookies — read one way for the whole server: percent-decoding and `+` as a space
//! by the URL Standard's rules (the `form_urlencoded` crate), invalid UTF-8 replaced,
//! never a panic. Cookie values are taken as sent (RFC 6265 does not percent-encode).

use http::HeaderMap;

/// The first value of `name` in a query string or form body.
pub(crate) fn form_value(input: &[u8], name: &str) -> Option<String> {
    form_urlencoded::parse(input)
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

/// The first value of `name` in a request's query string, if it has one.
pub(crate) fn query_value(query: Option<&str>, name: &str) -> Option<String> {
    form_value(query?.as_bytes(), name)
}

/// The first cookie called `name` in the request's `Cookie` headers, without the
/// quotes RFC 6265 allows around a value.
pub(crate) fn cookie<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers
        .get_all(http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| k.trim() == name)
        .map(|(_, v)| {
            let v = v.trim();
            v.strip_prefix('"')
                .and_then(|v| v.strip_suffix('"'))
                .unwrap_or(v)
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plus_and_percent_20_are_both_spaces() {
        let q = Some("a=x+y&b=x%20y&c=x%2By&d=100%&e=%zz&f=%a");
        assert_eq!(query_value(q, "a").as_deref(), Some("x y"));
        assert_eq!(query_value(q, "b").as_deref(), Some("x y"));
        assert_eq!(query_value(q, "c").as_deref(), Some("x+y"));
        assert_eq!(query_value(q, "d").as_deref(), Some("100%"));
        assert_eq!(query_value(q, "e").as_deref(), Some("%zz"));
        assert_eq!(query_value(q, "f").as_deref(), Some("%a"));
        assert_eq!(query_value(Some("a+b=1"), "a b").as_deref(), Some("1"));
        assert_eq!(query_value(None, "a"), None);
        assert_eq!(query_value(Some("flag"), "flag").as_deref(), Some(""));
    }

    #[test]
    fn bad_escapes_before_multibyte_text_do_not_panic() {
        assert_eq!(
            query_value(Some("user=%a\u{e9}"), "user").as_deref(),
            Some("%a\u{e9}")
        );
        assert_eq!(
            form_value(b"d=%\xff%e9", "d").as_deref(),
            Some("%\u{fffd}\u{fffd}")
        );
    }

    #[test]
    fn cookies() {
        let mut h = HeaderMap::new();
        h.append("cookie", "a=1; access_token=tok; b=2".parse().unwrap());
        h.append("cookie", "JSESSIONID=\"xyz\"".parse().unwrap());
        assert_eq!(cookie(&h, "access_token"), Some("tok"));
        assert_eq!(cookie(&h, "JSESSIONID"), Some("xyz"));
        assert_eq!(cookie(&h, "missing"), None);
    }
}
