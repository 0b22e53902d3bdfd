//! Project tasks: `cargo xtask <task>`.
//!
//! - `ci`: install what the tests need (idempotently), then check formatting,
//!   lints and every test. The README's test command; `.ci/run` calls it.
//! - `demo`: the main job, for someone who just cloned the repo.
//! - `install`: only the install step of `ci`.
//! - `bench`: the benchmarks against Herald's server and the peers, into BENCHMARKS.md.

mod bench;
mod ci;
mod demo;
mod install;
mod shell;

use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let task = args.first().map(String::as_str).unwrap_or("help");
    let rest = &args[args.len().min(1)..];
    let result = match task {
        "ci" => ci::run(rest),
        "demo" => demo::run(rest),
        "install" => install::run(),
        "bench" => bench::run(rest),
        _ => {
            eprintln!("usage: cargo xtask <ci | demo | install | bench>");
            eprintln!("  ci       install test dependencies, then fmt, clippy and every test");
            eprintln!("  demo     show Herald working end to end");
            eprintln!("  install  only install what the tests need");
            eprintln!("  bench    benchmarks against Herald's server and the peers, into BENCHMARKS.md");
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
