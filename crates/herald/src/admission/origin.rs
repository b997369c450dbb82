//! Allowed origins for browser requests (Spring's `setAllowedOriginPatterns`), matched
//! exactly: scheme, host and port.
//!
//! Without configured patterns only the server's own origin is allowed: the Origin's
//! host and port are the request's `Host` (which `hosts.rs` has already allowed, so a
//! rebound name is refused before it gets here), and in protected mode localhost on
//! any port. (The scheme of the request itself is not visible behind a TLS-terminating
//! proxy; host and port name the listener, so an `http` or `https` Origin is taken as
//! it comes.) A request without `Origin` is either no browser's (origin checks protect
//! browser users from other sites, not the server from clients) or a browser's
//! navigation or subresource load, which says where it came from in `Sec-Fetch-Site`:
//! such a request from another site is refused, as a page of any site can make one.

use axum::http::HeaderMap;

use super::hosts::{is_localhost, split_host_port};

#[derive(Debug, Clone)]
pub(crate) struct Origins {
    patterns: Vec<Pattern>,
}

/// A parsed `Origin`: scheme, host and port (the scheme's default when not written).
#[derive(Debug, PartialEq, Eq)]
struct Origin<'a> {
    scheme: &'a str,
    host: &'a str,
    port: Option<u16>,
}

#[derive(Debug, Clone)]
enum Pattern {
    Any,
    Exact {
        scheme: String,
        host: HostPattern,
        port: PortPattern,
    },
}

#[derive(Debug, Clone)]
enum HostPattern {
    Any,
    Name(String),
    /// `*.example.com`: stored as `.example.com`.
    SubdomainOf(String),
}

#[derive(Debug, Clone)]
enum PortPattern {
    Any,
    Is(Option<u16>),
}

impl Origins {
    /// `Err` names a pattern that is not `scheme://host[:port]`, `*`, `*.` hosts and
    /// `*` ports allowed.
    pub(crate) fn new(patterns: &[String]) -> Result<Origins, String> {
        let patterns = patterns
            .iter()
            .map(|p| {
                Pattern::parse(p).ok_or_else(|| {
                    format!(
                        "auth.allowed_origins: '{p}' is not an origin pattern like \"https://app.example.com\", \"https://*.example.com\" or \"http://localhost:*\""
                    )
                })
            })
            .collect::<Result<_, _>>()?;
        Ok(Origins { patterns })
    }

    /// Whether the request may come from where it says. `localhost` allows localhost
    /// origins on any port (protected mode). `Err` is the reason for a 403.
    pub(crate) fn check(&self, headers: &HeaderMap, localhost: bool) -> Result<(), String> {
        let Some(origin) = headers.get("origin") else {
            return match headers.get("sec-fetch-site").map(|v| v.as_bytes()) {
                None | Some(b"same-origin") | Some(b"none") => Ok(()),
                Some(_) => Err(
                    "a request from another site without an Origin header (Sec-Fetch-Site) is refused"
                        .to_owned(),
                ),
            };
        };
        let origin = origin.to_str().unwrap_or("(not text)");
        if self.allows(origin, headers, localhost) {
            Ok(())
        } else {
            Err(format!(
                "origin '{origin}' is not allowed (auth.allowed_origins)"
            ))
        }
    }

    /// Whether `origin` (an `Origin` header's value) may use this server.
    pub(crate) fn allows(&self, origin: &str, headers: &HeaderMap, localhost: bool) -> bool {
        let Some(o) = Origin::parse(origin) else {
            return self.patterns.iter().any(|p| matches!(p, Pattern::Any));
        };
        if self.patterns.is_empty() {
            let same = headers
                .get("host")
                .and_then(|v| v.to_str().ok())
                .and_then(split_host_port)
                .is_some_and(|(host, port)| {
                    matches!(o.scheme, "http" | "https")
                        && host.eq_ignore_ascii_case(o.host)
                        && port.or(default_port(o.scheme)) == o.port
                });
            same || (localhost && is_localhost(o.host))
        } else {
            self.patterns.iter().any(|p| p.matches(&o))
        }
    }
}

impl<'a> Origin<'a> {
    fn parse(s: &'a str) -> Option<Origin<'a>> {
        let (scheme, rest) = s.split_once("://")?;
        if scheme.is_empty()
            || !scheme
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"+-.".contains(&b))
        {
            return None;
        }
        let (host, port) = split_host_port(rest)?;
        if rest.trim() != rest {
            return None;
        }
        Some(Origin {
            scheme,
            host,
            port: port.or(default_port(scheme)),
        })
    }
}

impl Pattern {
    fn parse(p: &str) -> Option<Pattern> {
        let p = p.trim();
        if p == "*" {
            return Some(Pattern::Any);
        }
        let (scheme, rest) = p.split_once("://")?;
        // `*` and `*.` hosts are checked as if they were names.
        let (wildcard, named) = match rest.strip_prefix('*') {
            Some(r) if r.is_empty() || r.starts_with(':') => (Some(""), format!("any{r}")),
            Some(r) if r.starts_with('.') => (Some(r), format!("any{r}")),
            Some(_) => return None,
            None => (None, rest.to_owned()),
        };
        let (name, port) = match named.rsplit_once(':') {
            Some((h, "*")) => (split_host_port(h)?.0, PortPattern::Any),
            _ => {
                let (h, port) = split_host_port(&named)?;
                (h, PortPattern::Is(port.or(default_port(scheme))))
            }
        };
        let host = match wildcard {
            Some("") => HostPattern::Any,
            Some(_) => HostPattern::SubdomainOf(name["any".len()..].to_ascii_lowercase()),
            None => HostPattern::Name(name.to_ascii_lowercase()),
        };
        if scheme.is_empty() || scheme.contains('*') {
            return None;
        }
        Some(Pattern::Exact {
            scheme: scheme.to_ascii_lowercase(),
            host,
            port,
        })
    }

    fn matches(&self, o: &Origin<'_>) -> bool {
        let Pattern::Exact { scheme, host, port } = self else {
            return true;
        };
        let host_ok = match host {
            HostPattern::Any => true,
            HostPattern::Name(n) => n.eq_ignore_ascii_case(o.host),
            HostPattern::SubdomainOf(suffix) => {
                let h = o.host.to_ascii_lowercase();
                h.strip_suffix(suffix.as_str())
                    .is_some_and(|sub| !sub.is_empty() && !sub.ends_with('.'))
            }
        };
        let port_ok = match port {
            PortPattern::Any => true,
            PortPattern::Is(p) => *p == o.port,
        };
        scheme.eq_ignore_ascii_case(o.scheme) && host_ok && port_ok
    }
}

fn default_port(scheme: &str) -> Option<u16> {
    match scheme.to_ascii_lowercase().as_str() {
        "http" => Some(80),
        "https" => Some(443),
        _ => None,
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
    fn default_is_the_same_scheme_host_and_port() {
        let o = Origins::new(&[]).unwrap();
        for (origin, host) in [
            ("https://chat.example.com", "chat.example.com"),
            ("https://chat.example.com", "chat.example.com:443"),
            ("http://chat.example.com:8080", "chat.example.com:8080"),
            ("http://127.0.0.1:8080", "127.0.0.1:8080"),
        ] {
            assert!(
                o.check(&headers(origin, host), false).is_ok(),
                "{origin} {host}"
            );
        }
        for (origin, host) in [
            ("https://evil.example", "chat.example.com"),
            ("http://chat.example.com:8081", "chat.example.com:8080"),
            ("http://chat.example.com", "chat.example.com:8080"),
            ("ftp://chat.example.com:8080", "chat.example.com:8080"),
            ("http://chat.example.com.evil:8080", "chat.example.com:8080"),
            ("null", "chat.example.com"),
            ("http://localhost:3000", "chat.example.com"),
        ] {
            let e = o.check(&headers(origin, host), false).unwrap_err();
            assert!(e.contains(origin), "{e}");
        }
        assert!(o.check(&HeaderMap::new(), false).is_ok());
    }

    #[test]
    fn localhost_only_in_protected_mode() {
        let o = Origins::new(&[]).unwrap();
        for origin in [
            "http://localhost:3000",
            "https://127.0.0.1:1",
            "http://[::1]:5173",
        ] {
            assert!(o.check(&headers(origin, "127.0.0.1:8080"), true).is_ok());
            assert!(o.check(&headers(origin, "127.0.0.1:8080"), false).is_err());
        }
    }

    #[test]
    fn requests_from_another_site_need_an_origin() {
        let o = Origins::new(&[]).unwrap();
        let mut h = HeaderMap::new();
        for ok in ["same-origin", "none"] {
            h.insert("sec-fetch-site", ok.parse().unwrap());
            assert!(o.check(&h, false).is_ok());
        }
        for bad in ["cross-site", "same-site"] {
            h.insert("sec-fetch-site", bad.parse().unwrap());
            assert!(o.check(&h, true).unwrap_err().contains("Sec-Fetch-Site"));
        }
    }

    #[test]
    fn patterns_match_scheme_host_and_port() {
        let o = Origins::new(&[
            "https://*.example.com".into(),
            "http://localhost:*".into(),
            "https://app.test:8443".into(),
        ])
        .unwrap();
        for ok in [
            "https://app.example.com",
            "https://a.b.example.com:443",
            "http://localhost:5173",
            "https://app.test:8443",
        ] {
            assert!(o.check(&headers(ok, "x"), false).is_ok(), "{ok}");
        }
        for bad in [
            "https://example.com",
            "http://app.example.com",
            "https://app.example.com:8443",
            "https://evil.com?.example.com",
            "https://app.test",
            "https://localhost:5173",
            "null",
        ] {
            assert!(o.check(&headers(bad, "x"), false).is_err(), "{bad}");
        }
        assert!(
            Origins::new(&["*".into()])
                .unwrap()
                .check(&headers("null", "x"), false)
                .is_ok()
        );
        assert!(Origins::new(&["https://a*b.com".into()]).is_err());
        assert!(Origins::new(&["app.example.com".into()]).is_err());
    }
}
