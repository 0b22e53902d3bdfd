//! `herald-bench`: load a server the way real traffic would, and measure it.

use std::{process::ExitCode, time::Duration};

use clap::{Args, Parser, Subcommand};
use herald_bench::{PublishVia, fanout, idle, storm};

/// Measure a server that speaks Herald's protocol (or its common subset).
///
/// Examples:
///   herald-bench fanout --url ws://127.0.0.1:8080/ws --subscribers 10000 --rate 100 --duration 5
///   herald-bench fanout --url ws://127.0.0.1:8080/ws --subscribers 1000 --rate 1000 --publish http
///   herald-bench fanout --url ws://127.0.0.1:8080/ws --url ws://127.0.0.1:8081/ws --subscribers 10 --rate 20000
///   herald-bench idle --url ws://127.0.0.1:8080/ws --connections 10000 --server-pid "$(pgrep -f 'herald serve')"
///   herald-bench storm --url ws://127.0.0.1:8080/ws --clients 10000   # then restart the server
#[derive(Debug, Parser)]
#[command(name = "herald-bench", version, about, long_about, verbatim_doc_comment)]
struct Cli {
    #[command(subcommand)]
    mode: Mode,
}

#[derive(Debug, Subcommand)]
enum Mode {
    /// N subscribers, one publisher per server at a fixed rate in all:
    /// deliveries per second, publish-to-deliver latency (p50/p90/p99/max),
    /// losses, duplicates.
    Fanout(FanoutArgs),
    /// N idle subscribed connections: handshakes per second and the server's
    /// memory per connection.
    Idle(IdleArgs),
    /// N real clients connected and subscribed; restart the server when it
    /// says "ready": how the clients came back (spread, time until every
    /// one receives again, resyncs, failed attempts).
    Storm(StormArgs),
}

#[derive(Debug, Args)]
struct StormArgs {
    /// The server's WebSocket URL. Client n uses token `bench-<n>`.
    #[arg(long, default_value = "ws://127.0.0.1:8080/ws")]
    url: String,
    /// Clients to connect.
    #[arg(long, default_value_t = 1000)]
    clients: usize,
    /// Topics `bench:0..N`; client i takes topic i mod N.
    #[arg(long, default_value_t = 100)]
    topics: usize,
    /// Seconds each phase may take (connecting, waiting for the restart, coming back).
    #[arg(long, default_value_t = 120.0)]
    timeout: f64,
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
struct FanoutArgs {
    /// The server's WebSocket URL. Each connection adds `token=bench-<n>`.
    /// Repeat it for the nodes of a cluster: subscriber i connects to the
    /// (i mod N)th, and each gets a publisher with an equal share of --rate.
    #[arg(long = "url", default_value = "ws://127.0.0.1:8080/ws")]
    urls: Vec<String>,
    /// Subscribing connections (spread over 127.0.0.x source addresses when many).
    #[arg(long, default_value_t = 100)]
    subscribers: usize,
    /// Topics `bench:0..N`; subscriber i takes topic i mod N.
    #[arg(long, default_value_t = 1)]
    topics: usize,
    /// Events published per second, over all topics.
    #[arg(long, default_value_t = 100)]
    rate: u64,
    /// Seconds to publish for.
    #[arg(long, default_value_t = 5.0)]
    duration: f64,
    /// Publish over the WebSocket protocol, or with `POST /api/publish` on the same host and port.
    #[arg(long, value_enum, default_value_t = Via::Ws)]
    publish: Via,
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
}

/// How the fan-out publishes.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum Via {
    /// `{"type":"publish"}` frames, acked by the server.
    Ws,
    /// `POST /api/publish`, one request at a time on a keep-alive connection.
    Http,
}

#[derive(Debug, Args)]
struct IdleArgs {
    /// The server's WebSocket URL. Each connection adds `token=bench-<n>`.
    #[arg(long, default_value = "ws://127.0.0.1:8080/ws")]
    url: String,
    /// Connections to open, subscribe and hold.
    #[arg(long, default_value_t = 1000)]
    connections: usize,
    /// Topics `bench:0..N` the connections subscribe to.
    #[arg(long, default_value_t = 100)]
    topics: usize,
    /// Seconds to hold the connections before measuring.
    #[arg(long, default_value_t = 2.0)]
    hold: f64,
    /// The server's process id, to read its resident memory (Linux /proc).
    #[arg(long)]
    server_pid: Option<u32>,
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
}

fn seconds(value: f64, flag: &str) -> Result<Duration, String> {
    Duration::try_from_secs_f64(value).map_err(|_| format!("--{flag} {value}: give a positive number of seconds"))
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("error: {message}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> Result<(), String> {
    let runtime = tokio::runtime::Runtime::new().map_err(|e| format!("cannot start the runtime: {e}"))?;
    match cli.mode {
        Mode::Fanout(a) => {
            let mut urls = a.urls.into_iter();
            let mut options = fanout::FanoutOptions::new(urls.next().unwrap_or_default());
            options.urls.extend(urls);
            options.subscribers = a.subscribers;
            options.topics = a.topics;
            options.rate = a.rate;
            options.duration = seconds(a.duration, "duration")?;
            options.publish = match a.publish {
                Via::Ws => PublishVia::WebSocket,
                Via::Http => PublishVia::Http,
            };
            let report = runtime.block_on(fanout::run(&options)).map_err(|e| e.to_string())?;
            print(a.json, &report, report.table())
        }
        Mode::Idle(a) => {
            let mut options = idle::IdleOptions::new(a.url);
            options.connections = a.connections;
            options.topics = a.topics;
            options.hold = seconds(a.hold, "hold")?;
            options.server_pid = a.server_pid;
            let report = runtime.block_on(idle::run(&options)).map_err(|e| e.to_string())?;
            print(a.json, &report, report.table())
        }
        Mode::Storm(a) => {
            let mut options = storm::StormOptions::new(a.url);
            options.clients = a.clients;
            options.topics = a.topics;
            options.timeout = seconds(a.timeout, "timeout")?;
            let clients = options.clients;
            let ready = move || eprintln!("storm: ready: {clients} clients connected; restart the server now");
            let report = runtime.block_on(storm::run(&options, ready)).map_err(|e| e.to_string())?;
            print(a.json, &report, report.table())
        }
    }
}

fn print(json: bool, report: &impl serde::Serialize, table: String) -> Result<(), String> {
    if json {
        println!("{}", serde_json::to_string(report).map_err(|e| e.to_string())?);
    } else {
        println!("{table}");
    }
    Ok(())
}
