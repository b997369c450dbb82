//! Allowed origins for browser handshakes (Spring's `setAllowedOriginPatterns`).
//!
//! Without configured patterns the server's own origin (the `Host` the browser
//! connected to) and localhost on any port are allowed. A request without `Origin` is
//! not from a browser page and is allowed: origin checks protect browser users from
//! other sites, not the server from clients.

use axum::http::HeaderMap;

#[derive(Debug, Clone)]
pub struct Origins {
    patterns: Vec<String>,
}

impl Origins {
    pub fn new(patterns: &[String]) -> Origins {
        Origins {
            patterns: patterns.to_vec(),
        }
    }

    /// `Err` is the reason for a 403.
    pub fn check(&self, headers: &HeaderMap) -> Result<(), String> {
        let Some(origin) = headers.get("origin").and_then(|v| v.to_str().ok()) else {
            return Ok(());
        };
        let allowed = if self.patterns.is_empty() {
            let host = headers
                .get("host")
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default();
            let origin_host = origin.split_once("://").map_or(origin, |(_, rest)| rest);
            origin_host == host || is_localhost(origin_host)
        } else {
            self.patterns.iter().any(|p| glob(p, origin))
        };
        if allowed {
            Ok(())
        } else {
            Err(format!(
                "origin '{origin}' is not allowed (auth.allowed_origins)"
            ))
        }
    }
}

fn is_localhost(host_port: &str) -> bool {
    let host = match host_port.rsplit_once(':') {
        Some((h, port)) if port.chars().all(|c| c.is_ascii_digit()) => h,
        _ => host_port,
    };
    matches!(host, "localhost" | "127.0.0.1" | "[::1]")
}

/// `*` matches any run of characters.
fn glob(pattern: &str, text: &str) -> bool {
    match pattern.split_once('*') {
        None => pattern == text,
        Some((head, rest)) => {
            let Some(after) = text.strip_prefix(head) else {
                return false;
            };
            (0..=after.len()).any(|i| after.is_char_boundary(i) && glob(rest, &after[i..]))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(origin: &str, host: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert("origin", origin.parse().unwrap());
        h.insert("host", host.parse().unwrap());
        h
    }

    #[test]
    fn default_is_same_origin_and_localhost() {
        let o = Origins::new(&[]);
        assert!(
            o.check(&headers("https://chat.example.com", "chat.example.com"))
                .is_ok()
        );
        assert!(
            o.check(&headers("http://localhost:3000", "chat.example.com"))
                .is_ok()
        );
        let e = o
            .check(&headers("https://evil.example", "chat.example.com"))
            .unwrap_err();
        assert!(e.contains("evil.example"));
        assert!(o.check(&HeaderMap::new()).is_ok());
    }

    #[test]
    fn patterns() {
        let o = Origins::new(&["https://*.example.com".into(), "http://localhost:*".into()]);
        assert!(o.check(&headers("https://app.example.com", "x")).is_ok());
        assert!(o.check(&headers("http://localhost:5173", "x")).is_ok());
        assert!(o.check(&headers("https://example.org", "x")).is_err());
    }
}
