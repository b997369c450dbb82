//! Where the Redis bus connects: `cluster.redis_url` read as one server, a Redis
//! Cluster, or a master watched by Sentinels.
//!
//! - `redis://[user:pass@]host:6379[/db]` (or `rediss://`, `redis+unix://`): one
//!   server, as the `redis` crate reads it.
//! - `redis+cluster://[user:pass@]h1:7000,h2:7001` (`rediss+cluster://` for TLS):
//!   seed nodes of a Redis Cluster; one reachable seed is enough, the rest of the
//!   topology is asked of it. The credentials are every node's.
//! - `redis+sentinel://[user:pass@]s1:26379,s2:26379/mymaster[/db]`
//!   (`rediss+sentinel://`): Sentinels and the name of the master they watch, the
//!   way most clients spell it (go-redis, Lettuce). The credentials and db are the
//!   master's; the Sentinels are asked without credentials.

/// `cluster.redis_url`, parsed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RedisTarget {
    /// One server: the URL as given.
    Single(String),
    /// Seed nodes of a Redis Cluster, each a `redis://` URL with the credentials.
    Cluster(Vec<String>),
    /// Sentinel addresses (`redis://host:port`), the master's name, and the
    /// master's URL settings: scheme (`redis`/`rediss`), credentials, db.
    Sentinel {
        sentinels: Vec<String>,
        master: String,
        tls: bool,
        user: Option<String>,
        password: Option<String>,
        db: i64,
    },
}

const KEY: &str = "cluster.redis_url";

impl RedisTarget {
    /// Reads `url`; the error names the setting and the form it expects.
    pub fn parse(url: &str) -> Result<RedisTarget, String> {
        let Some((scheme, rest)) = url.split_once("://") else {
            return Err(format!("{KEY}: '{url}' is not a URL (redis://host:6379)"));
        };
        let (tls, kind) = match scheme {
            "redis" | "rediss" | "redis+unix" | "unix" => {
                return Ok(RedisTarget::Single(url.to_owned()));
            }
            "redis+cluster" => (false, "cluster"),
            "rediss+cluster" => (true, "cluster"),
            "redis+sentinel" => (false, "sentinel"),
            "rediss+sentinel" => (true, "sentinel"),
            other => {
                return Err(format!(
                    "{KEY}: unknown scheme '{other}': use redis://, rediss://, redis+cluster:// or redis+sentinel://"
                ));
            }
        };
        let (authority, path) = match rest.find(['/', '?']) {
            Some(i) => rest.split_at(i),
            None => (rest, ""),
        };
        let (userinfo, hosts) = match authority.rsplit_once('@') {
            Some((u, h)) => (Some(u), h),
            None => (None, authority),
        };
        let default_port = if kind == "cluster" { 6379 } else { 26379 };
        let mut addrs = Vec::new();
        for h in hosts.split(',') {
            addrs.push(host_port(h, default_port)?);
        }
        let base = if tls { "rediss" } else { "redis" };
        if kind == "cluster" {
            if !path.is_empty() && path != "/" && path != "/0" {
                return Err(format!(
                    "{KEY}: a Redis Cluster has only database 0; drop '{path}' from the URL"
                ));
            }
            let auth = userinfo.map(|u| format!("{u}@")).unwrap_or_default();
            return Ok(RedisTarget::Cluster(
                addrs
                    .into_iter()
                    .map(|a| format!("{base}://{auth}{a}"))
                    .collect(),
            ));
        }
        let mut parts = path.trim_start_matches('/').splitn(2, '/');
        let master = parts.next().unwrap_or("");
        if master.is_empty() || master.contains('?') {
            return Err(format!(
                "{KEY}: a redis+sentinel:// URL names the master after the Sentinels: redis+sentinel://host:26379,host2:26379/mymaster"
            ));
        }
        let db = match parts.next().filter(|d| !d.is_empty()) {
            None => 0,
            Some(d) => d.parse::<i64>().map_err(|_| {
                format!("{KEY}: '{d}' after the master's name is not a database number")
            })?,
        };
        let (user, password) = match userinfo {
            None => (None, None),
            Some(u) => match u.split_once(':') {
                Some((user, pw)) => (
                    Some(user.to_owned()).filter(|u| !u.is_empty()),
                    Some(pw.to_owned()),
                ),
                None => (Some(u.to_owned()), None),
            },
        };
        Ok(RedisTarget::Sentinel {
            sentinels: addrs.into_iter().map(|a| format!("redis://{a}")).collect(),
            master: master.to_owned(),
            tls,
            user,
            password,
            db,
        })
    }
}

/// `host:port` (or `[v6]:port`, or a bare host with `default_port`), checked.
fn host_port(h: &str, default_port: u16) -> Result<String, String> {
    let h = h.trim();
    let (host, port) = if let Some(v6) = h.strip_prefix('[') {
        match v6.split_once(']') {
            Some((addr, "")) => (format!("[{addr}]"), None),
            Some((addr, p)) => (format!("[{addr}]"), Some(p.trim_start_matches(':'))),
            None => return Err(format!("{KEY}: '{h}' is not a host:port address")),
        }
    } else {
        match h.rsplit_once(':') {
            Some((host, p)) => (host.to_owned(), Some(p)),
            None => (h.to_owned(), None),
        }
    };
    if host.is_empty() || host.contains(['/', '@', ' ']) {
        return Err(format!(
            "{KEY}: '{h}' is not a host:port address (several are separated by commas)"
        ));
    }
    let port = match port {
        None => default_port,
        Some(p) => p
            .parse::<u16>()
            .ok()
            .filter(|p| *p > 0)
            .ok_or_else(|| format!("{KEY}: '{p}' in '{h}' is not a port"))?,
    };
    Ok(format!("{host}:{port}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_three_forms() {
        assert_eq!(
            RedisTarget::parse("redis://h:6379/2").unwrap(),
            RedisTarget::Single("redis://h:6379/2".into())
        );
        assert_eq!(
            RedisTarget::parse("redis+cluster://:pw@h1:7000,h2:7001,[::1]:7002").unwrap(),
            RedisTarget::Cluster(vec![
                "redis://:pw@h1:7000".into(),
                "redis://:pw@h2:7001".into(),
                "redis://:pw@[::1]:7002".into(),
            ])
        );
        assert_eq!(
            RedisTarget::parse("rediss+sentinel://u:pw@s1,s2:26380/main/3").unwrap(),
            RedisTarget::Sentinel {
                sentinels: vec!["redis://s1:26379".into(), "redis://s2:26380".into()],
                master: "main".into(),
                tls: true,
                user: Some("u".into()),
                password: Some("pw".into()),
                db: 3,
            }
        );
    }

    #[test]
    fn bad_urls_name_the_setting() {
        for (url, says) in [
            ("h:6379", "is not a URL"),
            ("http://h", "unknown scheme 'http'"),
            ("redis+cluster://h1:7000,,h2", "is not a host:port"),
            ("redis+cluster://h1:70000", "is not a port"),
            ("redis+cluster://h1:7000/2", "only database 0"),
            ("redis+sentinel://s1:26379", "names the master"),
            ("redis+sentinel://s1:26379/m/x", "not a database number"),
        ] {
            let e = RedisTarget::parse(url).unwrap_err();
            assert!(e.starts_with("cluster.redis_url: "), "{e}");
            assert!(e.contains(says), "{url}: {e}");
        }
    }
}
