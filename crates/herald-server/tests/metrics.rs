//! `/metrics` serves every series docs/operations.md documents, and each
//! moves when what it counts happens.

use std::{collections::BTreeMap, time::Duration};

use herald_protocol::close;
use herald_test_support::*;
use serde_json::json;

/// The series names in docs/operations.md's table, with whether they are a
/// cluster's only or a data directory's only.
fn documented() -> Vec<(String, Only)> {
    let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/operations.md")).unwrap();
    let rows = doc.lines().filter_map(|line| line.strip_prefix("| `herald_")?.split_once('`'));
    let only = |name: &str| match name {
        _ if name.starts_with("cluster_") => Only::Cluster,
        _ if name.starts_with("store_") => Only::DataDir,
        _ => Only::Every,
    };
    rows.map(|(name, _)| (format!("herald_{name}"), only(name))).collect()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Only {
    Every,
    Cluster,
    DataDir,
}

/// Each series' value, summed over its labels (a histogram by its count).
async fn scrape(server: &ServerHandle) -> (String, BTreeMap<String, f64>) {
    let (status, text) = http(server, "GET", "/metrics", &[], "").await;
    assert_eq!(status, 200);
    let mut values = BTreeMap::new();
    for line in text.lines().filter(|line| !line.starts_with('#')) {
        let Some((series, value)) = line.rsplit_once(' ') else { continue };
        let name = series.split('{').next().unwrap();
        let name = name.strip_suffix("_count").unwrap_or(name);
        *values.entry(name.to_owned()).or_default() += value.parse::<f64>().unwrap_or(0.0);
    }
    (text, values)
}

fn value(values: &BTreeMap<String, f64>, series: &str) -> f64 {
    values.get(series).copied().unwrap_or(f64::NAN)
}

#[tokio::test]
async fn every_documented_series_is_served_and_moves() {
    let mut builder = Server::builder().secret(SECRET);
    builder.config_mut().max_connections_per_user = 1;
    builder.config_mut().read_buffer_size = 1024;
    let server = builder.bind("127.0.0.1:0").await.unwrap();
    let (_, before) = scrape(&server).await;

    let mut reader = Client::authed(&server, &token("reader")).await;
    reader.subscribe(&["doc:1"]).await;
    let mut sluggard = Client::authed(&server, &token("sluggard")).await;
    sluggard.subscribe(&["doc:1"]).await;
    let backend = mint_token(SECRET, &Claims::new("backend", 600).publish(["doc:*"])).unwrap();
    let body = r#"{"topic":"doc:1","event":"UPDATED","data":{"entity_id":"1"},"id":"p-1"}"#;
    assert_eq!(post_publish(&server, &backend, body).await.0, 200);
    assert_eq!(reader.recv().await["seq"], 1);
    // The sluggard reads nothing: frames queue up behind its socket.
    let payload = json!("y".repeat(40_000));
    let (during, mut values) = loop {
        server.publish("doc:1", "UPDATED", "1", &payload).await.unwrap();
        reader.recv().await;
        let scraped = scrape(&server).await;
        if value(&scraped.1, "herald_queued_frames") > 0.0 {
            break scraped;
        }
    };
    // Refusals and auth failures, and a close by code.
    let mut second = Client::connect(&format!("{}?token={}", server.ws_url(), token("reader"))).await;
    assert_eq!(second.closed().await.0, close::RATE_LIMITED);
    assert_eq!(post_publish(&server, "forged", body).await.0, 401);
    server.disconnect_all(close::TOO_SLOW);
    eventually("every connection to be gone", || server.metrics().connections == 0).await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    let (after, last) = scrape(&server).await;
    values.extend(last.into_iter().filter(|(name, _)| {
        ["herald_refusals", "herald_auth_failures", "herald_closes", "herald_slow_consumer_closes"]
            .iter()
            .any(|moved_late| name.starts_with(moved_late))
    }));

    let documented = documented();
    assert!(documented.len() >= 15, "the table was read: {documented:?}");
    for (series, only) in documented {
        if only != Only::Every {
            assert!(!after.contains(&series), "{series} is a cluster's or a data directory's only");
            continue;
        }
        // OpenMetrics names a counter's family without its `_total`.
        let family = series.strip_suffix("_total").unwrap_or(&series);
        assert!(after.contains(&format!("# TYPE {family} ")), "{series} is not served:\n{after}");
        let (was, is) = (value(&before, &series), value(&values, &series));
        // TLS handshakes move in tests/tls.rs, on a server with TLS.
        if series.starts_with("herald_tls_") {
            continue;
        }
        assert!(is > was || (was.is_nan() && is > 0.0), "{series} did not move: {was} -> {is}\n{during}\n{after}");
    }
}

#[tokio::test]
async fn the_store_series_are_served_with_a_data_dir_and_move() {
    let dir = TempDir::new();
    let mut builder = Server::builder().dev(true);
    builder.config_mut().data_dir = Some(dir.path().to_owned());
    let server = builder.bind("127.0.0.1:0").await.unwrap();
    let (_, before) = scrape(&server).await;
    // Enough to grow the file past what redb allocates up front.
    let payload = json!("z".repeat(40_000));
    for n in 0..200 {
        server.publish(&format!("doc:{n}"), "UPDATED", "1", &payload).await.unwrap();
    }
    let (after, values) = scrape(&server).await;
    let store_series: Vec<_> = documented().into_iter().filter(|(_, only)| *only == Only::DataDir).collect();
    assert!(!store_series.is_empty(), "the table lists the store's series");
    for (series, _) in store_series {
        assert!(after.contains(&format!("# TYPE {series} ")), "{series} is not served:\n{after}");
        let (was, is) = (value(&before, &series), value(&values, &series));
        assert!(is > was, "{series} did not move: {was} -> {is}");
    }
}

#[test]
fn the_grafana_dashboard_uses_only_documented_series() {
    let dashboard = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/grafana-dashboard.json"));
    let dashboard: serde_json::Value = serde_json::from_str(&dashboard.unwrap()).expect("the dashboard is JSON");
    let documented: Vec<String> = documented().into_iter().map(|(name, _)| name).collect();
    let mut used = 0;
    for panel in dashboard["panels"].as_array().unwrap() {
        for target in panel["targets"].as_array().unwrap() {
            let expr = target["expr"].as_str().unwrap();
            for word in expr.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')) {
                let Some(name) = word.strip_prefix("herald_") else { continue };
                let series = format!("herald_{}", name.trim_end_matches("_bucket"));
                assert!(documented.contains(&series), "{series} in {expr:?} is not in docs/operations.md");
                used += 1;
            }
        }
    }
    assert!(used >= documented.len(), "the dashboard shows the documented series ({used} uses)");
}
