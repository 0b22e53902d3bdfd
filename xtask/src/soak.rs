//! `cargo xtask soak [--minutes N] [--clients N]`: the chaos soak
//! (`herald-soak` of herald-testbed: faults through a proxy, server restarts,
//! a single node then a two-node cluster on Redis), N minutes (5 by default)
//! with N clients (1,000 by default); prints its figures, which
//! docs/reliability.md records, and fails if an event was lost or
//! duplicated, or a task, file descriptor or memory leaked. `cargo xtask
//! ci` runs a short one ([`ci`]).

use crate::shell::{Result, cargo, exec, target_dir};

pub(crate) fn run(args: &[String]) -> Result {
    let mut minutes = 5;
    let mut clients = 1_000;
    let mut rest = args.iter();
    while let Some(flag) = rest.next() {
        let value = rest.next().and_then(|v| v.parse::<u64>().ok());
        match (flag.as_str(), value) {
            ("--minutes", Some(n)) => minutes = n,
            ("--clients", Some(n)) => clients = n,
            _ => return Err("usage: cargo xtask soak [--minutes N] [--clients N]".into()),
        }
    }
    soak(minutes * 60, clients)
}

/// A minute and a half with 200 clients: each fault and both topologies
/// come up several times.
pub(crate) fn ci() -> Result {
    soak(90, 200)
}

fn soak(seconds: u64, clients: u64) -> Result {
    // The cluster phase runs its own Redis server.
    crate::install::apt(&["redis-server"])?;
    exec(cargo().args(["build", "--locked", "-p", "herald-testbed", "--bin", "herald-soak"]))?;
    exec(std::process::Command::new(target_dir().join("debug/herald-soak")).args([
        "--seconds",
        &seconds.to_string(),
        "--clients",
        &clients.to_string(),
    ]))
}
