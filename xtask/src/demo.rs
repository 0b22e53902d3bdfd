//! `cargo xtask demo`: Herald working end to end.

use crate::shell::{Result, cargo, exec};

pub(crate) fn run(args: &[String]) -> Result {
    exec(cargo().args(["run", "--quiet", "-p", "herald-core", "--example", "simulate", "--"]).args(args))
}
