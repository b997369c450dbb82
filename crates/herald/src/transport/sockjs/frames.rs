//! SockJS frames and the small text formats around them: `o`, `h`, `a[...]`,
//! `c[code,"reason"]`, the JSON escaping SockJS asks of servers, client payload
//! decoding, callbacks and the static pages (query strings and forms: `crate::params`).

use std::fmt::Write;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

pub(crate) const OPEN: &str = "o";
pub(crate) const HEARTBEAT: &str = "h";

/// `c[code,"reason"]`.
pub(crate) fn close(code: u16, reason: &str) -> String {
    format!("c[{code},{}]", quote(reason))
}

/// `a[...]`: messages as one JSON array.
pub(crate) fn messages<S: AsRef<str>>(msgs: &[S]) -> String {
    let mut out =
        String::with_capacity(3 + msgs.iter().map(|m| m.as_ref().len() + 3).sum::<usize>());
    out.push_str("a[");
    for (i, m) in msgs.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(&quote(m.as_ref()));
    }
    out.push(']');
    out
}

/// A JSON string literal, with the characters SockJS servers must escape because
/// browsers or proxies mangle them: controls, zero-width and bidi marks, line and
/// paragraph separators, invisible operators, and U+FFF0..U+FFFF.
pub(crate) fn quote(s: &str) -> String {
    let json = serde_json::to_string(s).expect("a string serializes");
    if !json.chars().any(must_escape) {
        return json;
    }
    let mut out = String::with_capacity(json.len() + 16);
    for c in json.chars() {
        if must_escape(c) {
            let _ = write!(out, "\\u{:04x}", c as u32);
        } else {
            out.push(c);
        }
    }
    out
}

fn must_escape(c: char) -> bool {
    matches!(c as u32,
        0x200c..=0x200f | 0x2028..=0x202f | 0x2060..=0x206f | 0xfff0..=0xffff)
}

#[derive(Debug, PartialEq, Eq)]
pub(crate) enum PayloadError {
    /// "Payload expected."
    Empty,
    /// "Broken JSON encoding."
    Broken,
}

impl PayloadError {
    pub(crate) fn message(&self) -> &'static str {
        match self {
            PayloadError::Empty => "Payload expected.",
            PayloadError::Broken => "Broken JSON encoding.",
        }
    }
}

/// A client's messages: a JSON array of strings, or (websocket) one JSON string.
pub(crate) fn decode(payload: &[u8]) -> Result<Vec<String>, PayloadError> {
    if payload.iter().all(u8::is_ascii_whitespace) {
        return Err(PayloadError::Empty);
    }
    match serde_json::from_slice::<Messages>(payload) {
        Ok(Messages::Many(v)) => Ok(v),
        Ok(Messages::One(s)) => Ok(vec![s]),
        Err(_) => Err(PayloadError::Broken),
    }
}

#[derive(serde::Deserialize)]
#[serde(untagged)]
enum Messages {
    Many(Vec<String>),
    One(String),
}

/// A JSONP callback name: letters, digits, `_`, `-` and `.` only.
pub(crate) fn valid_callback(c: &str) -> bool {
    !c.is_empty()
        && c.len() <= 256
        && c.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
}

/// The page iframe-based transports load: it bootstraps sockjs-client from `client_url`.
pub(crate) fn iframe_page(client_url: &str) -> String {
    format!(
        r#"<!DOCTYPE html>
<html>
<head>
  <meta http-equiv="X-UA-Compatible" content="IE=edge" />
  <meta http-equiv="Content-Type" content="text/html; charset=UTF-8" />
  <script src="{}"></script>
  <script>
    document.domain = document.domain;
    SockJS.bootstrap_iframe();
  </script>
</head>
<body>
  <h2>Don't panic!</h2>
  <p>This is a SockJS hidden iframe. It's used for cross domain magic.</p>
</body>
</html>"#,
        html_attr(client_url)
    )
}

fn html_attr(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('"', "&quot;")
        .replace('<', "&lt;")
}

/// The start of an htmlfile response for `callback`, padded past 1 KiB so that
/// old browsers start rendering it.
pub(crate) fn htmlfile_head(callback: &str) -> String {
    let mut page = format!(
        r#"<!doctype html>
<html><head>
  <meta http-equiv="X-UA-Compatible" content="IE=edge" />
  <meta http-equiv="Content-Type" content="text/html; charset=UTF-8" />
</head><body><h2>Don't panic!</h2>
  <script>
    document.domain = document.domain;
    var c = parent.{callback};
    c.start();
    function p(d) {{c.message(d);}};
    window.onload = function() {{c.stop();}};
  </script>"#
    );
    let pad = 1024usize.saturating_sub(page.len()) + 14;
    page.extend(std::iter::repeat_n(' ', pad));
    page.push_str("\r\n\r\n");
    page
}

/// An HTTP date (RFC 7231 IMF-fixdate) `ahead` of now, for `Expires`.
pub(crate) fn http_date(ahead: Duration) -> String {
    let secs = (SystemTime::now() + ahead)
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let weekday = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"][(days % 7) as usize];
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    let months = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    format!(
        "{weekday}, {day:02} {} {year} {:02}:{:02}:{:02} GMT",
        months[(month - 1) as usize],
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames() {
        assert_eq!(close(3000, "Go away!"), r#"c[3000,"Go away!"]"#);
        assert_eq!(messages(&["a", "b\"\n"]), r#"a["a","b\"\n"]"#);
        assert_eq!(messages::<&str>(&[]), "a[]");
        assert_eq!(quote("\u{2028}x\u{ffff}\u{0}"), r#""\u2028x\uffff\u0000""#);
    }

    #[test]
    fn payloads() {
        assert_eq!(decode(br#"["a","b"]"#).unwrap(), vec!["a", "b"]);
        assert_eq!(decode(br#""a""#).unwrap(), vec!["a"]);
        assert_eq!(decode(b"[]").unwrap(), Vec::<String>::new());
        assert_eq!(decode(b""), Err(PayloadError::Empty));
        assert_eq!(decode(br#"["a"#), Err(PayloadError::Broken));
        assert_eq!(decode(b"[1]"), Err(PayloadError::Broken));
    }

    #[test]
    fn callbacks() {
        assert!(valid_callback("jQuery_1.2-x"));
        assert!(!valid_callback("abc(") && !valid_callback(" ") && !valid_callback(""));
    }

    #[test]
    fn pages() {
        assert!(htmlfile_head("cb").len() > 1024);
        assert!(iframe_page("/sockjs.js").contains(r#"<script src="/sockjs.js">"#));
        let d = http_date(Duration::ZERO);
        assert!(d.ends_with(" GMT") && d.len() == 29, "{d}");
    }
}
