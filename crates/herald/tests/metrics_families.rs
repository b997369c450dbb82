//! Metrics from the first scrape: every family `ops/metrics.rs` declares is on a fresh
//! server's `/metrics` with its HELP text and at 0, and every metric the Grafana
//! dashboard (`deploy/grafana/herald.json`) queries exists there. Its own test binary:
//! no other test's traffic moves the counters.

mod common;

use std::collections::BTreeSet;
use std::path::Path;

use common::*;
use serde_json::Value;

/// Every `herald_*` name `ops/metrics.rs` declares as a constant.
fn declared_families() -> BTreeSet<String> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/ops/metrics.rs");
    let text = std::fs::read_to_string(src).unwrap();
    let names: BTreeSet<String> = text
        .lines()
        .filter(|l| l.trim_start().starts_with("pub(crate) const ") && l.contains("&str"))
        .filter_map(|l| l.split('"').nth(1))
        .filter(|n| n.starts_with("herald_"))
        .map(str::to_owned)
        .collect();
    assert!(names.len() > 40, "the declarations went unread: {names:?}");
    names
}

async fn scrape(server: &TestServer) -> String {
    let (status, body) = server.http_get("/metrics").await;
    assert_eq!(status, 200);
    String::from_utf8(body).unwrap()
}

/// The families of an exposition, from their `# TYPE` lines.
fn exported(text: &str) -> BTreeSet<String> {
    text.lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split(' ').next())
        .map(str::to_owned)
        .collect()
}

#[tokio::test]
async fn a_fresh_server_exports_every_family_at_zero_with_help() {
    let server = TestServer::start().await;
    let text = scrape(&server).await;
    for family in declared_families() {
        assert!(
            text.contains(&format!("# HELP {family} ")),
            "{family}: no HELP on the first scrape:\n{text}"
        );
        assert!(
            text.contains(&format!("# TYPE {family} ")),
            "{family}: not exported on the first scrape:\n{text}"
        );
        let samples: Vec<&str> = text
            .lines()
            .filter(|l| l.starts_with(family.as_str()) && !l.starts_with('#'))
            .collect();
        assert!(!samples.is_empty(), "{family}: no sample:\n{text}");
        // Nothing happened yet: counters and histograms read 0 (gauges may not: the
        // scrape's own connection and the runtime's tasks are live).
        if family.ends_with("_total") || family.ends_with("_seconds") {
            for sample in samples {
                let value = sample.rsplit(' ').next().unwrap();
                assert_eq!(value.parse::<f64>().unwrap(), 0.0, "{sample}");
            }
        }
    }
    // Labelled families list every label value.
    for sample in [
        "herald_error_frames_total{reason=\"slow_consumer\"} 0",
        "herald_messages_delivered_total{kind=\"queue\"} 0",
        "herald_connections{transport=\"sockjs\"} 0",
        "herald_frames_in_total{command=\"SEND\"} 0",
        "herald_database_seconds_count{operation=\"insert\"} 0",
    ] {
        assert!(text.contains(sample), "{sample}:\n{text}");
    }
}

/// Every string under an `expr` key of a dashboard.
fn exprs(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Object(map) => {
            for (k, v) in map {
                match (k.as_str(), v) {
                    ("expr", Value::String(e)) => out.push(e.clone()),
                    _ => exprs(v, out),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|v| exprs(v, out)),
        _ => {}
    }
}

#[tokio::test]
async fn the_grafana_dashboard_queries_only_metrics_a_fresh_server_exports() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/grafana/herald.json");
    let dashboard: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    // What an import needs: a title, a uid, panels placed on the grid with a
    // Prometheus query each, the data source as a variable (no import prompt).
    assert!(dashboard["title"].is_string() && dashboard["uid"].is_string());
    let vars = dashboard["templating"]["list"].as_array().unwrap();
    assert!(
        vars.iter()
            .any(|v| v["type"] == "datasource" && v["query"] == "prometheus")
    );
    let panels = dashboard["panels"].as_array().unwrap();
    assert!(panels.len() >= 8);
    let mut ids = BTreeSet::new();
    for p in panels {
        assert!(ids.insert(p["id"].as_u64().unwrap()), "duplicate panel id");
        assert!(p["gridPos"]["w"].as_u64().is_some(), "{}", p["title"]);
        assert_eq!(p["datasource"]["uid"], "${datasource}", "{}", p["title"]);
        assert!(
            !p["targets"].as_array().unwrap().is_empty(),
            "{}",
            p["title"]
        );
    }

    let server = TestServer::start().await;
    let families = exported(&scrape(&server).await);
    let mut queries = Vec::new();
    exprs(&dashboard, &mut queries);
    let mut queried = BTreeSet::new();
    for q in &queries {
        for (i, _) in q.match_indices("herald_") {
            let name: String = q[i..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            queried.insert(name);
        }
    }
    assert!(queried.len() > 15, "{queried:?}");
    for name in &queried {
        let family = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|s| name.strip_suffix(s).filter(|f| families.contains(*f)))
            .unwrap_or(name);
        assert!(
            families.contains(family),
            "the dashboard queries {name}, which a fresh server does not export"
        );
    }
    // The panels the operators' guide promises.
    for family in [
        "herald_connections",
        "herald_messages_published_total",
        "herald_messages_delivered_total",
        "herald_error_frames_total",
        "herald_slow_consumer_closes_total",
        "herald_bus_publish_seconds",
        "herald_bus_publish_errors_total",
        "herald_database_seconds",
    ] {
        assert!(
            queried.iter().any(|q| q.starts_with(family)),
            "the dashboard has no panel on {family}"
        );
    }
}
