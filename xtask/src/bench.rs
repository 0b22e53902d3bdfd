//! `cargo xtask bench`: the same loads against Herald's server and the two
//! peers in `../shared/peers/`, one after the other in one run, then Herald
//! as a cluster on Redis, with the results written into BENCHMARKS.md
//! between its table markers.

mod cluster;

use std::{
    fmt::Write as _,
    net::TcpListener,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use serde_json::Value;

use crate::shell::{Result, cargo, exec, output, root, target_dir};

const START: &str = "<!-- bench:start -->";
const END: &str = "<!-- bench:end -->";

/// One load, run against every server.
struct Load {
    name: &'static str,
    args: &'static [&'static str],
}

const FANOUT: &[Load] = &[
    Load { name: "1 → 1, 100 events/s", args: &["--subscribers", "1", "--rate", "100", "--duration", "5"] },
    Load { name: "500 subscribers, 400 events/s", args: &["--subscribers", "500", "--rate", "400", "--duration", "5"] },
    Load {
        name: "500 subscribers, 2,000 events/s (1 M/s offered)",
        args: &["--subscribers", "500", "--rate", "2000", "--duration", "5"],
    },
    Load {
        name: "1,000 subscribers, 1,000 events/s (1 M/s offered)",
        args: &["--subscribers", "1000", "--rate", "1000", "--duration", "5"],
    },
    Load {
        name: "1,000 subscribers, 200 events/s published with POST /api/publish",
        args: &["--subscribers", "1000", "--rate", "200", "--duration", "5", "--publish", "http"],
    },
    Load {
        name: "10,000 subscribers, 10 events/s (100 k/s offered)",
        args: &["--subscribers", "10000", "--rate", "10", "--duration", "5"],
    },
    Load {
        name: "10,000 subscribers, 100 events/s (1 M/s offered)",
        args: &["--subscribers", "10000", "--rate", "100", "--duration", "5"],
    },
    Load {
        name: "10,000 subscribers, 200 events/s (2 M/s offered)",
        args: &["--subscribers", "10000", "--rate", "200", "--duration", "5"],
    },
];

const IDLE: &[&str] = &["--connections", "10000"];

/// Clients in the reconnect storm, and the server's advised spread.
const STORM_CLIENTS: usize = 10_000;
const STORM_SPREAD_SECS: u64 = 5;

struct Server {
    name: &'static str,
    child: Child,
    url: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        // SIGTERM first so servers shut down as they would in production.
        let _ = Command::new("kill").arg(self.child.id().to_string()).status();
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub(crate) fn run(args: &[String]) -> Result {
    let (mut quick, mut storm_only, mut cluster_only) = (false, false, false);
    for arg in args {
        match arg.as_str() {
            "--quick" => quick = true,
            // The restarts or the cluster alone, printed and not written
            // (their rows change without the rest).
            "--storm" => storm_only = true,
            "--cluster" => cluster_only = true,
            other => {
                return Err(format!("unknown argument {other:?}; `cargo xtask bench [--quick] [--storm] [--cluster]`"));
            }
        }
    }
    exec(cargo().args(["build", "--release", "-p", "herald-cli", "-p", "herald-bench"]))?;
    let herald = target_dir().join("release/herald");
    let generator = target_dir().join("release/herald-bench");
    if cluster_only {
        println!("{}", cluster::rows(&herald, &generator, quick)?);
        return Ok(());
    }
    exec(cargo().args(["build", "--release", "-p", "herald-server", "--example", "mounted"]))?;
    let peers = prepare_peers()?;
    let clients = if quick { 1000 } else { STORM_CLIENTS };
    if storm_only {
        println!("{}", storm(&herald, &generator, &peers, clients)?);
        return Ok(());
    }

    let loads = &FANOUT[..if quick { 2 } else { FANOUT.len() }];
    let idle: &[&str] = if quick { &["--connections", "1000"] } else { IDLE };
    let mut fanout = String::from(
        "| load | server | deliveries/s | p50 ms | p90 ms | p99 ms | max ms | lost | duplicates | errors |\n\
         |---|---|---:|---:|---:|---:|---:|---:|---:|---:|\n",
    );
    let mut idle_rows =
        String::from("| server | connections | handshakes/s | server memory per connection |\n|---|---:|---:|---:|\n");
    for load in loads {
        for kind in Kind::ALL {
            let name = kind.name();
            // A fresh server per load, so one load's leftovers do not skew the next.
            let server = start(kind, &herald, &peers)?;
            let json = bench(&generator, &["fanout", "--url", &server.url, "--json"], load.args)?;
            drop(server);
            let r: Value = serde_json::from_str(&json).map_err(|e| format!("bench output is not JSON: {e}"))?;
            let ms = |key: &str| r["latency"][key].as_f64().unwrap_or(f64::NAN) / 1000.0;
            writeln!(
                fanout,
                "| {} | {name} | {:.0} | {:.2} | {:.2} | {:.2} | {:.2} | {} | {} | {} |",
                load.name,
                r["deliveries_per_sec"].as_f64().unwrap_or(f64::NAN),
                ms("p50_us"),
                ms("p90_us"),
                ms("p99_us"),
                ms("max_us"),
                r["lost"],
                r["duplicates"],
                r["errors"],
            )
            .ok();
        }
    }
    for kind in Kind::IDLE {
        let name = kind.name();
        let server = start(kind, &herald, &peers)?;
        let pid = server.child.id().to_string();
        let json = bench(&generator, &["idle", "--url", &server.url, "--server-pid", &pid, "--json"], idle)?;
        drop(server);
        let r: Value = serde_json::from_str(&json).map_err(|e| format!("bench output is not JSON: {e}"))?;
        writeln!(
            idle_rows,
            "| {name} | {} | {:.0} | {:.2} KiB |",
            r["connections"],
            r["connects_per_sec"].as_f64().unwrap_or(f64::NAN),
            r["server_bytes_per_connection"].as_f64().unwrap_or(f64::NAN) / 1024.0,
        )
        .ok();
    }

    let storm_rows = storm(&herald, &generator, &peers, clients)?;
    let cluster_rows = cluster::rows(&herald, &generator, quick)?;

    let mut section = String::new();
    writeln!(section, "{}\n", machine()).ok();
    writeln!(section, "Reproduce with `cargo xtask bench{}`.\n", if quick { " --quick" } else { "" }).ok();
    writeln!(section, "### Fan-out (one publisher, over WebSocket unless the load says otherwise; publish-to-deliver latency)\n\n{fanout}").ok();
    writeln!(section, "### Idle subscribed connections\n\n{idle_rows}").ok();
    writeln!(section, "### Reconnect storm (herald only: the peers give no reconnect hints)\n\n{storm_rows}").ok();
    writeln!(section, "### A cluster: nodes on one Redis (herald only)\n\n{cluster_rows}").ok();
    write_benchmarks(&section)
}

/// The servers compared.
#[derive(Debug, Clone, Copy)]
enum Kind {
    Herald,
    /// Herald mounted in an axum app (`crates/herald-server/examples/mounted.rs`).
    Mounted,
    Node,
    Python,
}

impl Kind {
    const ALL: [Self; 3] = [Self::Herald, Self::Node, Self::Python];
    /// Idle connections cost what the server around Herald holds too, so
    /// Herald mounted in an app is measured beside its own listener.
    const IDLE: [Self; 4] = [Self::Herald, Self::Mounted, Self::Node, Self::Python];

    fn name(self) -> &'static str {
        match self {
            Self::Herald => "herald (Rust, axum)",
            Self::Mounted => "herald mounted in an axum app (axum::serve)",
            Self::Node => "node-ws (Node 20, ws)",
            Self::Python => "python-fastapi (uvicorn)",
        }
    }

    /// The WebSocket endpoint's path.
    fn path(self) -> &'static str {
        match self {
            Self::Mounted => "/realtime/ws",
            _ => "/ws",
        }
    }

    fn command(self, port: u16, herald: &Path, peers: &Path) -> Command {
        match self {
            Self::Herald => {
                let mut command = herald_command(herald, port);
                command
                    .args(["--shutdown-spread", &format!("{STORM_SPREAD_SECS}s")])
                    // The storm's replacement takes the port before the old process stops.
                    .arg("--reuse-port");
                command
            }
            Self::Mounted => {
                // Built beside `herald`, in the same profile's examples.
                let mut command = Command::new(herald.with_file_name("examples").join("mounted"));
                command.arg(format!("127.0.0.1:{port}")).env("RUST_LOG", "warn");
                command
            }
            Self::Node => {
                let mut command = Command::new("node");
                command.arg(peers.join("node-ws/server.js")).args(["--port", &port.to_string()]);
                command
            }
            Self::Python => {
                let mut command = Command::new(peers.join("python-fastapi/run.sh"));
                command.args(["--port", &port.to_string()]);
                command
            }
        }
    }
}

/// `herald serve --dev` on `port`, without the limits the load would hit.
fn herald_command(herald: &Path, port: u16) -> Command {
    let mut command = Command::new(herald);
    command
        .args(["serve", "--dev", "--addr", &format!("127.0.0.1:{port}")])
        // The peers have no rate limit, and the bench publishes up to
        // 2,000 events/s on one connection (Herald's default allows 1,000).
        .args(["--rate-limit", "0"])
        // The load comes from a few loopback addresses, up to 4,000 connections each.
        .args(["--max-connections-per-ip", "0"])
        .env("RUST_LOG", "warn");
    command
}

fn start(kind: Kind, herald: &Path, peers: &Path) -> Result<Server> {
    start_on(kind, free_port()?, herald, peers, None)
}

/// `kind` on `port`; Herald with `--data-dir data_dir` if given.
fn start_on(kind: Kind, port: u16, herald: &Path, peers: &Path, data_dir: Option<&Path>) -> Result<Server> {
    let mut command = kind.command(port, herald, peers);
    if let Some(dir) = data_dir {
        command.arg("--data-dir").arg(dir);
    }
    spawn_listening(kind.name(), command, port, format!("ws://127.0.0.1:{port}{}", kind.path()))
}

/// Runs `command`, returned once it accepts connections on `port`.
fn spawn_listening(name: &'static str, mut command: Command, port: u16, url: String) -> Result<Server> {
    let child = command
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("could not start {name}: {e}"))?;
    let server = Server { name, child, url };
    let deadline = Instant::now() + Duration::from_secs(120);
    while Instant::now() < deadline {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return Ok(server);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Err(format!("{} did not listen on port {port} within 120 s", server.name))
}

/// A Herald server on the `port` another one still listens on, returned once
/// it says it listens (a connect would reach the old one).
fn replacement(port: u16, herald: &Path, peers: &Path, data_dir: Option<&Path>) -> Result<Server> {
    let mut command = Kind::Herald.command(port, herald, peers);
    if let Some(dir) = data_dir {
        command.arg("--data-dir").arg(dir);
    }
    let mut child = command
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("could not start the replacement: {e}"))?;
    let stderr = child.stderr.take().ok_or("the replacement has no stderr")?;
    let server = Server { name: Kind::Herald.name(), child, url: format!("ws://127.0.0.1:{port}/ws") };
    let mut lines = std::io::BufRead::lines(std::io::BufReader::new(stderr));
    if !lines.by_ref().map_while(std::result::Result::ok).any(|line| line.contains("herald listening")) {
        return Err("the replacement server exited before listening".into());
    }
    // Keep reading, so the server never blocks on a full pipe.
    std::thread::spawn(move || lines.for_each(drop));
    Ok(server)
}

fn free_port() -> Result<u16> {
    let listener = TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    Ok(listener.local_addr().map_err(|e| e.to_string())?.port())
}

/// Runs `herald-bench ..` as its own process (its own file limit) and returns its JSON.
fn bench(generator: &Path, args: &[&str], load: &[&str]) -> Result<String> {
    let mut command = Command::new(generator);
    command.args(args).args(load);
    eprintln!("$ {}", crate::shell::describe(&command));
    let json = output(&mut command).ok_or_else(|| format!("`{}` failed", crate::shell::describe(&command)))?;
    eprintln!("  {}", json.trim());
    Ok(json)
}

/// Copies the peers out of the read-only shared folder and installs their dependencies.
fn prepare_peers() -> Result<PathBuf> {
    let source = root().join("../shared/peers");
    if !source.is_dir() {
        return Err(format!("{} is missing: the peers live in shared/ beside the repository", source.display()));
    }
    let target = root().join("target/peers");
    std::fs::create_dir_all(&target).map_err(|e| e.to_string())?;
    exec(Command::new("cp").args(["-rT"]).arg(&source).arg(&target))?;
    exec(Command::new("chmod").args(["-R", "u+w"]).arg(&target))?;
    crate::install::npm_ci("target/peers/node-ws")?;
    exec(Command::new(target.join("python-fastapi/run.sh")).arg("--install-only"))?;
    Ok(target)
}

fn machine() -> String {
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0);
    let memory = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| m.lines().find_map(|l| l.strip_prefix("MemTotal:")).map(|v| v.trim().to_owned()))
        .unwrap_or_else(|| "unknown".into());
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find_map(|l| l.strip_prefix("model name"))
                .map(|v| v.trim_start_matches([' ', '\t', ':']).to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let date = output(Command::new("date").args(["-u", "+%Y-%m-%d %H:%M UTC"])).unwrap_or_default();
    format!(
        "Measured {} on {cores} cores ({cpu}), {memory} memory, loopback; servers and the load generator share the machine.",
        date.trim()
    )
}

fn write_benchmarks(section: &str) -> Result {
    let path = root().join("BENCHMARKS.md");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|_| format!("# Benchmarks\n\n{START}\n{END}\n"));
    let (Some(start), Some(end)) = (text.find(START), text.find(END)) else {
        return Err(format!("{} lacks the {START} / {END} markers", path.display()));
    };
    let updated = format!("{}{START}\n{section}\n{}", &text[..start], &text[end..]);
    std::fs::write(&path, updated).map_err(|e| e.to_string())?;
    eprintln!("wrote {}", path.display());
    Ok(())
}

/// `herald-bench storm` against `herald serve`, restarted (a new process on
/// the same port, then SIGTERM to the old one) when the bench says it is
/// ready: first with a new history (every client resyncs), then as a deploy
/// with `--data-dir`, where the store passes from the old process to the new
/// one and the clients recover instead.
fn storm(herald: &Path, generator: &Path, peers: &Path, clients: usize) -> Result<String> {
    let mut rows = format!(
        "Clients honour the server's reconnect hints (spread over {STORM_SPREAD_SECS} s); the replacement process \
         listens on the same port before the old one stops (`--reuse-port`). Without `--data-dir` it has a new \
         history, so every client is told to resync; with it, the epoch and history pass to the new process \
         and the clients recover what they missed. Times in ms after the first client lost its connection.\n\n\
         | history | clients | reconnected | recovered | resynced | failed attempts | first back | p50 | p99 | \
         last back | busiest 100 ms | all receiving |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n"
    );
    let store = target_dir().join("bench-deploy");
    let _ = std::fs::remove_dir_all(&store);
    std::fs::create_dir_all(&store).map_err(|e| format!("{}: {e}", store.display()))?;
    for (history, data_dir) in [("new (no `--data-dir`)", None), ("kept (`--data-dir`)", Some(store.as_path()))] {
        let r = restart(herald, generator, peers, clients, data_dir)?;
        let ms = |key: &str| r[key].as_f64().unwrap_or(f64::NAN);
        let count = |key: &str| r[key].as_u64().unwrap_or(0);
        writeln!(
            rows,
            "| {history} | {} | {} | {} | {} | {} | {:.0} | {:.0} | {:.0} | {:.0} | {} | {:.0} |",
            r["clients"],
            r["reconnected"],
            count("reconnected").saturating_sub(count("resynced")),
            r["resynced"],
            r["failed_attempts"],
            ms("first_back_ms"),
            ms("p50_back_ms"),
            ms("p99_back_ms"),
            ms("last_back_ms"),
            r["busiest_100ms"],
            ms("all_receiving_ms"),
        )
        .ok();
    }
    let _ = std::fs::remove_dir_all(&store);
    Ok(rows)
}

/// One restart under `herald-bench storm`; the bench's JSON.
fn restart(herald: &Path, generator: &Path, peers: &Path, clients: usize, data_dir: Option<&Path>) -> Result<Value> {
    let port = free_port()?;
    let server = start_on(Kind::Herald, port, herald, peers, data_dir)?;
    let url = format!("ws://127.0.0.1:{port}/ws");
    let mut command = Command::new(generator);
    command.args(["storm", "--url", &url, "--clients", &clients.to_string(), "--json"]);
    eprintln!("$ {}", crate::shell::describe(&command));
    let mut bench = command
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("could not start the storm: {e}"))?;
    let stderr = bench.stderr.take().ok_or("the storm has no stderr")?;
    let mut lines = std::io::BufRead::lines(std::io::BufReader::new(stderr));
    let ready = lines.by_ref().map_while(std::result::Result::ok).any(|line| {
        eprintln!("  {line}");
        line.contains("ready")
    });
    if !ready {
        let _ = bench.kill();
        return Err("the storm ended before its clients were ready".into());
    }
    // As a zero-downtime restart does it: the new process listens first, then
    // the old one stops and its clients reconnect to the new one.
    let restarted = replacement(port, herald, peers, data_dir)?;
    drop(server);
    std::thread::spawn(move || lines.map_while(std::result::Result::ok).for_each(|line| eprintln!("  {line}")));
    let output = bench.wait_with_output().map_err(|e| e.to_string())?;
    drop(restarted);
    if !output.status.success() {
        return Err(format!("the storm failed ({})", output.status));
    }
    let json = String::from_utf8_lossy(&output.stdout).into_owned();
    eprintln!("  {}", json.trim());
    serde_json::from_str(&json).map_err(|e| format!("storm output is not JSON: {e}"))
}
