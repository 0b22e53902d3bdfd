//! Project tasks: `cargo xtask <task>`.
//!
//! - `ci`: install what the tests need (idempotently), then check formatting,
//!   lints, every test and the crates as published. The README's test
//!   command; `.ci/run` calls it.
//! - `demo`: the main job, for someone who just cloned the repo (`--web`: in a browser).
//! - `install`: only the install step of `ci`.
//! - `fuzz`: every fuzz target, `--minutes N` in all (docs/reliability.md has the figures).
//! - `conformance`: the Autobahn cases against the server's and the client's WebSocket stacks.
//! - `soak`: the chaos soak, `--minutes N` (docs/reliability.md has the figures).
//! - `bench`: the benchmarks against Herald's server and the peers, and of a cluster, into BENCHMARKS.md.
//! - `package`: only the packaging step of `ci` (the crates as published, and `cargo install`).
//! - `wasm`: the browser client, built into the npm package in `pkg/`.
//! - `browser`: only the browser tests (headless Chromium against `herald-testbed`).

mod bench;
mod browser;
mod ci;
mod conformance;
mod demo;
mod fuzz;
mod install;
mod package;
mod shell;
mod soak;
mod wasm;

use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let task = args.first().map(String::as_str).unwrap_or("help");
    let rest = &args[args.len().min(1)..];
    let result = match task {
        "ci" => ci::run(rest),
        "demo" => demo::run(rest),
        "install" => install::run(),
        "fuzz" => fuzz::run(rest),
        "conformance" => conformance::run(rest),
        "soak" => soak::run(rest),
        "bench" => bench::run(rest),
        "package" => package::run(),
        "wasm" => wasm::run(rest),
        "browser" => install::run().and_then(|()| browser::test()),
        _ => {
            eprintln!(
                "usage: cargo xtask <ci | demo | install | fuzz | conformance | soak | bench | package | wasm | browser>"
            );
            eprintln!("  ci       install test dependencies, then fmt, clippy, every test and the packages");
            eprintln!("  demo     show Herald working end to end (--web: in a browser, on http://127.0.0.1:8080)");
            eprintln!("  install  only install what the tests need");
            eprintln!("  fuzz     every fuzz target, --minutes N in all (default 10), with what each run did");
            eprintln!(
                "  conformance  the Autobahn cases (kosoku) against the server's and the client's WebSocket stacks"
            );
            eprintln!("  soak     the chaos soak, --minutes N (default 5) with --clients N (default 1000)");
            eprintln!("  bench    benchmarks against Herald's server and the peers, into BENCHMARKS.md");
            eprintln!("  package  package the crates for crates.io, build them and install the CLI from the packages");
            eprintln!("  wasm     build the browser client into the npm package in pkg/");
            eprintln!("  browser  only the browser tests, in headless Chromium");
            return if task == "help" || task == "--help" { ExitCode::SUCCESS } else { ExitCode::from(2) };
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("xtask {task}: {error}");
            ExitCode::FAILURE
        }
    }
}
