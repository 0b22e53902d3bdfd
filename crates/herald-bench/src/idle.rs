//! Idle connections: how fast they open, and what each costs the server.

use std::time::{Duration, Instant};

use futures::{StreamExt, stream};
use serde::Serialize;

use crate::{BenchError, connect::Target};

/// What to run.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct IdleOptions {
    /// The server's WebSocket URL.
    pub url: String,
    /// Connections to open and hold. Default 1000.
    pub connections: usize,
    /// Topics `bench:0..topics` the connections subscribe to. Default 100.
    pub topics: usize,
    /// Connections opened at once. Default 512.
    pub connect_concurrency: usize,
    /// How long to hold them before measuring memory. Default 2 s.
    pub hold: Duration,
    /// The server's process id, to read its resident memory from `/proc`.
    pub server_pid: Option<u32>,
}

impl IdleOptions {
    /// Defaults against `url`.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            connections: 1000,
            topics: 100,
            connect_concurrency: 512,
            hold: Duration::from_secs(2),
            server_pid: None,
        }
    }
}

/// What an idle run measured.
#[derive(Debug, Clone, Serialize)]
pub struct IdleReport {
    /// Connections held.
    pub connections: usize,
    /// Authenticated WebSocket handshakes per second (subscribing excluded).
    pub connects_per_sec: f64,
    /// Seconds to open every connection.
    pub connect_secs: f64,
    /// Seconds to subscribe every connection, after opening.
    pub subscribe_secs: f64,
    /// The server's resident memory before, in KiB.
    pub server_rss_before_kib: Option<u64>,
    /// The server's resident memory with every connection held, in KiB.
    pub server_rss_after_kib: Option<u64>,
    /// (after - before) / connections, in bytes.
    pub server_bytes_per_connection: Option<f64>,
}

impl IdleReport {
    /// A table for people.
    pub fn table(&self) -> String {
        let memory = match (self.server_rss_before_kib, self.server_rss_after_kib, self.server_bytes_per_connection) {
            (Some(before), Some(after), Some(per)) => {
                format!("server RSS {before} KiB -> {after} KiB: {:.2} KiB per connection", per / 1024.0)
            }
            _ => "server memory not measured (pass the server's pid)".to_owned(),
        };
        format!(
            "connections {:>8}   opened in {:.2} s ({:.0}/s)   subscribed in {:.2} s\n{memory}",
            self.connections, self.connect_secs, self.connects_per_sec, self.subscribe_secs
        )
    }
}

/// Resident memory of `pid` in KiB, from `/proc/<pid>/status`.
pub fn resident_kib(pid: u32) -> Result<u64, BenchError> {
    let fail = |message: String| BenchError::Memory { pid, message };
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).map_err(|e| fail(e.to_string()))?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .ok_or_else(|| fail("no VmRSS line".into()))
}

/// Runs the idle benchmark: open, subscribe, hold, measure, close.
pub async fn run(options: &IdleOptions) -> Result<IdleReport, BenchError> {
    let topics = options.topics.max(1);
    let target = Target::new(&options.url, options.connections).await?;
    let before = options.server_pid.map(resident_kib).transpose()?;

    let started = Instant::now();
    let opened: Vec<_> = stream::iter(0..options.connections)
        .map(|i| {
            let target = &target;
            async move { target.open(i).await }
        })
        .buffer_unordered(options.connect_concurrency.max(1))
        .collect()
        .await;
    let connect_secs = started.elapsed().as_secs_f64();
    let mut connections = Vec::with_capacity(opened.len());
    for ws in opened {
        connections.push(ws?);
    }

    let started = Instant::now();
    let subscribed: Vec<_> = stream::iter(connections.into_iter().enumerate())
        .map(|(i, ws)| {
            let target = &target;
            async move { target.subscribe(ws, i, &format!("bench:{}", i % topics)).await }
        })
        .buffer_unordered(options.connect_concurrency.max(1))
        .collect()
        .await;
    let subscribe_secs = started.elapsed().as_secs_f64();
    let mut held = Vec::with_capacity(subscribed.len());
    for ws in subscribed {
        held.push(ws?);
    }

    tokio::time::sleep(options.hold).await;
    let after = options.server_pid.map(resident_kib).transpose()?;
    drop(held);
    let per_connection = match (before, after) {
        (Some(b), Some(a)) if options.connections > 0 => {
            Some(a.saturating_sub(b) as f64 * 1024.0 / options.connections as f64)
        }
        _ => None,
    };
    Ok(IdleReport {
        connections: options.connections,
        connects_per_sec: options.connections as f64 / connect_secs.max(1e-9),
        connect_secs,
        subscribe_secs,
        server_rss_before_kib: before,
        server_rss_after_kib: after,
        server_bytes_per_connection: per_connection,
    })
}
