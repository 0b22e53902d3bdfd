//! The cluster rows of `cargo xtask bench`: one, two and three `herald serve
//! --redis` nodes on one real `redis-server`, beside a single node without
//! Redis, under the same ladder of offered publish rates.

use std::{fmt::Write as _, path::Path, process::Command};

use serde_json::Value;

use super::{Server, bench, free_port, herald_command, spawn_listening};
use crate::shell::Result;

/// Subscribers, spread round-robin over the nodes.
const SUBSCRIBERS: usize = 10;

/// Offered publishes per second: low rungs to find where each setup stops
/// holding p99 ≤ 100 ms, and a last one more than any setup takes here, so
/// its row is what each delivers at saturation.
const RATES: [u64; 4] = [5_000, 10_000, 20_000, 100_000];

/// The latency a row must hold to count as keeping up.
const P99_LIMIT_MS: f64 = 100.0;

/// Nodes per setup; 0 is a single node without Redis.
const SETUPS: [usize; 4] = [0, 1, 2, 3];

/// The cluster table. Each node gets its share of the subscribers and a
/// WebSocket publisher with its share of the rate, as a load balancer would
/// spread both: every node then runs its own publishes through Redis and
/// receives every event back, which is the work a cluster adds.
pub(super) fn rows(herald: &Path, generator: &Path, quick: bool) -> Result<String> {
    let duration = if quick { "1" } else { "5" };
    let mut rows = format!(
        "{SUBSCRIBERS} subscribers and one WebSocket publisher per node (each node gets its share of both), \
         {duration} s per row; a fresh `redis-server` and fresh nodes per row. Publishes/s is deliveries/s \
         over the {SUBSCRIBERS} subscribers.\n\n\
         | offered publishes/s | setup | publishes/s delivered | p50 ms | p99 ms | p99 ≤ {P99_LIMIT_MS:.0} ms | \
         lost | duplicates | errors |\n|---:|---|---:|---:|---:|---|---:|---:|---:|\n"
    );
    // Rate by rate, the setups side by side: the machine's speed drifts, so
    // the rows to compare run close together.
    for rate in RATES {
        for nodes in SETUPS {
            let redis = if nodes == 0 { None } else { Some(redis()?) };
            let servers = (0..nodes.max(1)).map(|_| node(herald, redis.as_ref())).collect::<Result<Vec<_>>>()?;
            let mut args = vec!["fanout", "--json"];
            for server in &servers {
                args.extend(["--url", server.url.as_str()]);
            }
            let (subscribers, rate) = (SUBSCRIBERS.to_string(), rate.to_string());
            let json =
                bench(generator, &args, &["--subscribers", &subscribers, "--rate", &rate, "--duration", duration])?;
            drop(servers);
            drop(redis);
            let r: Value = serde_json::from_str(&json).map_err(|e| format!("bench output is not JSON: {e}"))?;
            let ms = |key: &str| r["latency"][key].as_f64().unwrap_or(f64::NAN) / 1000.0;
            let setup = match nodes {
                0 => "single node, no Redis".to_owned(),
                1 => "1 node + Redis".to_owned(),
                n => format!("{n} nodes + Redis"),
            };
            writeln!(
                rows,
                "| {rate} | {setup} | {:.0} | {:.2} | {:.2} | {} | {} | {} | {} |",
                r["deliveries_per_sec"].as_f64().unwrap_or(f64::NAN) / SUBSCRIBERS as f64,
                ms("p50_us"),
                ms("p99_us"),
                if ms("p99_us") <= P99_LIMIT_MS { "yes" } else { "no" },
                r["lost"],
                r["duplicates"],
                r["errors"],
            )
            .ok();
        }
    }
    Ok(rows)
}

/// A `redis-server` on a free port that keeps nothing on disk.
fn redis() -> Result<Server> {
    let port = free_port()?;
    let mut command = Command::new("redis-server");
    command.args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]);
    spawn_listening(
        "redis-server (`cargo xtask install` installs it)",
        command,
        port,
        format!("redis://127.0.0.1:{port}"),
    )
}

/// `herald serve`, a node of the cluster on `redis` if given.
fn node(herald: &Path, redis: Option<&Server>) -> Result<Server> {
    let port = free_port()?;
    let mut command = herald_command(herald, port);
    if let Some(redis) = redis {
        command.args(["--redis", &redis.url]);
    }
    spawn_listening("herald serve", command, port, format!("ws://127.0.0.1:{port}/ws"))
}
