//! Reading a server's Prometheus text exposition (`GET /metrics`) for the few
//! series a scenario watches, over one kept-alive HTTP connection.

use anyhow::{Context, Result, bail};
use http::Uri;

use crate::client::url_addr;
use crate::http::HttpConn;

pub(crate) struct Scraper {
    pub url: String,
    path: String,
    conn: HttpConn,
}

impl Scraper {
    /// `url`: `http://HOST:PORT/PATH`, on loopback.
    pub(crate) fn new(url: &str) -> Result<Scraper> {
        let uri: Uri = url.parse().with_context(|| format!("invalid URL {url}"))?;
        if uri.scheme_str() != Some("http") {
            bail!("metrics URL {url}: only http:// on loopback");
        }
        let addr = url_addr(&uri, url)?;
        let path = uri
            .path_and_query()
            .map_or("/metrics".to_owned(), |p| p.as_str().to_owned());
        Ok(Scraper {
            url: url.to_owned(),
            path,
            conn: HttpConn::new(addr, addr.to_string()),
        })
    }

    /// Fetches the exposition; a kept-alive connection the server closed meanwhile
    /// is retried once on a new one.
    pub(crate) async fn scrape(&mut self) -> Result<Exposition> {
        let r = match self.conn.get(&self.path).await {
            Ok(r) => r,
            Err(_) => self.conn.get(&self.path).await?,
        };
        if r.status != 200 {
            bail!("GET {} answered {}", self.url, r.status);
        }
        let text =
            String::from_utf8(r.body).with_context(|| format!("{} is not UTF-8", self.url))?;
        Ok(Exposition(text))
    }
}

/// One scraped exposition.
pub(crate) struct Exposition(String);

impl Exposition {
    /// The sum of every sample of the metric `name`, whatever its labels; `None`
    /// when the server exports no such metric.
    pub(crate) fn sum(&self, name: &str) -> Option<f64> {
        let mut found = None;
        for line in self.0.lines() {
            let Some(rest) = line.strip_prefix(name) else {
                continue;
            };
            let value = if rest.starts_with('{') {
                rest.rfind('}').map(|end| &rest[end + 1..])
            } else if rest.starts_with(' ') {
                Some(rest)
            } else {
                None // another metric whose name starts with this one
            };
            if let Some(v) = value.and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok()) {
                *found.get_or_insert(0.0) += v;
            }
        }
        found
    }
}

#[cfg(test)]
mod tests {
    use super::Exposition;

    #[test]
    fn sums_a_metric_over_its_labels() {
        let e = Exposition(
            "# HELP herald_connections Open connections\n\
             # TYPE herald_connections gauge\n\
             herald_connections{transport=\"websocket\"} 3\n\
             herald_connections{transport=\"tcp\"} 2\n\
             herald_connections_opened_total{transport=\"tcp\"} 90\n\
             herald_runtime_tasks 17\n"
                .into(),
        );
        assert_eq!(e.sum("herald_connections"), Some(5.0));
        assert_eq!(e.sum("herald_runtime_tasks"), Some(17.0));
        assert_eq!(e.sum("herald_sessions"), None);
    }
}
