//! `cargo xtask ci`: everything CI checks, in the order that fails fastest.

use crate::{
    install,
    shell::{Result, cargo, exec},
};

pub(crate) fn run(args: &[String]) -> Result {
    if let Some(unknown) = args.first() {
        return Err(format!("unknown argument {unknown:?}; `cargo xtask ci` takes none"));
    }
    install::run()?;
    exec(cargo().args(["fmt", "--all", "--check"]))?;
    exec(cargo().args(["clippy", "--workspace", "--all-targets", "--locked", "--", "-D", "warnings"]))?;
    // The core and the protocol must stay free of anything a browser lacks,
    // and the browser-only code (the wasm driver, the protocol's browser
    // decoder) gets the same lints.
    let wasm_clippy = |packages: &[&str], args: &[&str]| {
        let mut command = cargo();
        command.args(["clippy", "--locked", "--target", "wasm32-unknown-unknown"]).args(args);
        for package in packages {
            command.args(["-p", package]);
        }
        command.args(["--", "-D", "warnings"]);
        command
    };
    exec(&mut wasm_clippy(&["herald-core", "herald-protocol"], &["--lib"]))?;
    // The package's two builds of the driver (xtask/src/wasm.rs).
    exec(&mut wasm_clippy(&["herald-wasm"], &["--all-targets"]))?;
    exec(&mut wasm_clippy(&["herald-wasm"], &["--all-targets", "--features", "shared-tabs"]))?;
    exec(cargo().args(["test", "--workspace", "--locked"]))?;
    crate::package::check()?;
    crate::browser::test()?;
    crate::conformance::run(&[])?;
    crate::fuzz::ci()?;
    crate::soak::ci()?;
    Ok(())
}
