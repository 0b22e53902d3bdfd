//! `cargo xtask demo`: Herald end to end, in one terminal; with `--web`, in
//! a browser (it builds the npm package and the React app first).

use std::process::Command;

use crate::{
    install,
    shell::{Result, cargo, exec, root},
};

pub(crate) fn run(args: &[String]) -> Result {
    if args.iter().any(|arg| arg == "--web") {
        build_web_demo()?;
    }
    exec(cargo().args(["run", "--quiet", "--release", "-p", "herald-cli", "--", "demo"]).args(args))
}

/// `web-demo/dist`: the package from a fresh wasm build, then the app.
pub(crate) fn build_web_demo() -> Result {
    install::wasm_tools()?;
    crate::wasm::build()?;
    install::npm_ci("web-demo")?;
    exec(Command::new("npm").args(["run", "build"]).current_dir(root().join("web-demo")))
}
