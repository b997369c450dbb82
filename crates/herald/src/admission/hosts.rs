//! The host names the HTTP listener answers to (`server.allowed_hosts`), against DNS
//! rebinding: a page of `rebind.evil.example`, once that name resolves to Herald's
//! address, reaches Herald as its own origin, with `Host: rebind.evil.example`.
//!
//! Always allowed: localhost names and IP literals — a rebinding page is served under
//! a name, never under the victim's IP address. Requests without `Host` (HTTP/1.0
//! tools) have nothing to rebind and pass.

use std::net::IpAddr;

#[derive(Debug, Clone)]
pub(crate) struct AllowedHosts {
    any: bool,
    /// Lowercase names; a leading '.' stands for "any subdomain of".
    names: Vec<String>,
}

impl AllowedHosts {
    pub(crate) fn new(configured: &[String]) -> AllowedHosts {
        let any = configured.iter().any(|h| h.trim() == "*");
        let names = configured
            .iter()
            .map(|h| {
                let h = h.trim().to_ascii_lowercase();
                h.strip_prefix('*').map(str::to_owned).unwrap_or(h)
            })
            .filter(|h| !h.is_empty())
            .collect();
        AllowedHosts { any, names }
    }

    /// Whether a `Host` header value (`name[:port]`) is served here.
    pub(crate) fn allows(&self, host_header: &str) -> bool {
        if self.any {
            return true;
        }
        let Some((host, _)) = split_host_port(host_header) else {
            return false;
        };
        let host = host.to_ascii_lowercase();
        if is_localhost(&host) || is_ip_literal(&host) {
            return true;
        }
        self.names.iter().any(|n| match n.strip_prefix('.') {
            Some(suffix) => host
                .strip_suffix(suffix)
                .is_some_and(|sub| sub.ends_with('.') && sub.len() > 1),
            None => *n == host,
        })
    }
}

/// `localhost`, a name under `.localhost`, `127.0.0.1` or `[::1]`.
pub(crate) fn is_localhost(host: &str) -> bool {
    let host = host.trim_end_matches('.').to_ascii_lowercase();
    host == "localhost"
        || host.ends_with(".localhost")
        || matches!(host.as_str(), "127.0.0.1" | "[::1]" | "::1")
}

fn is_ip_literal(host: &str) -> bool {
    parse_ip(host).is_some()
}

/// An IP address as a URL host writes it (`[::1]` with brackets).
fn parse_ip(host: &str) -> Option<IpAddr> {
    let bare = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    bare.parse().ok()
}

/// `name[:port]` or `[v6]:port` → (host, port); `None` when it is not one.
pub(crate) fn split_host_port(s: &str) -> Option<(&str, Option<u16>)> {
    let s = s.trim();
    let (host, port) = if s.starts_with('[') {
        let end = s.find(']')?;
        let (host, rest) = s.split_at(end + 1);
        match rest {
            "" => (host, None),
            _ => (host, Some(rest.strip_prefix(':')?)),
        }
    } else {
        match s.rsplit_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (s, None),
        }
    };
    let port = match port {
        Some(p) => Some(p.parse::<u16>().ok()?),
        None => None,
    };
    let valid = if host.starts_with('[') {
        host.len() > 2
            && host[1..host.len() - 1]
                .bytes()
                .all(|b| b.is_ascii_hexdigit() || b":.".contains(&b))
    } else {
        !host.is_empty()
            && host
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-._".contains(&b))
    };
    valid.then_some((host, port))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn localhost_and_ip_literals_always_pass() {
        let h = AllowedHosts::new(&[]);
        for ok in [
            "localhost",
            "localhost:8080",
            "LOCALHOST:1",
            "app.localhost",
            "127.0.0.1:8080",
            "[::1]:8080",
            "192.0.2.2",
            "[fd00::2]:80",
        ] {
            assert!(h.allows(ok), "{ok}");
        }
        for bad in [
            "rebind.evil.example",
            "rebind.evil.example:8080",
            "localhost.evil.example",
            "",
            "a b",
            "x:notaport",
        ] {
            assert!(!h.allows(bad), "{bad}");
        }
    }

    #[test]
    fn configured_names_and_subdomains() {
        let h = AllowedHosts::new(&["chat.example.com".into(), "*.herald.test".into()]);
        assert!(h.allows("chat.example.com"));
        assert!(h.allows("Chat.Example.com:443"));
        assert!(h.allows("a.herald.test"));
        assert!(!h.allows("herald.test"));
        assert!(!h.allows("evilherald.test"));
        assert!(!h.allows("example.com"));
        assert!(AllowedHosts::new(&["*".into()]).allows("anything.example"));
    }
}
