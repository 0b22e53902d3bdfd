//! `cargo xtask demo`: Herald end to end, in one terminal.

use crate::shell::{Result, cargo, exec};

pub(crate) fn run(args: &[String]) -> Result {
    exec(cargo().args(["run", "--quiet", "--release", "-p", "herald-cli", "--", "demo"]).args(args))
}
