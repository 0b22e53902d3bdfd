//! `cargo xtask ci`: everything CI checks, in the order that fails fastest.

use crate::{
    install,
    shell::{Result, cargo, exec, exec_quiet, nightly_cargo},
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
    let wasm_clippy = |packages: &[&str], targets: &str| {
        let mut command = cargo();
        command.args(["clippy", "--locked", "--target", "wasm32-unknown-unknown", targets]);
        for package in packages {
            command.args(["-p", package]);
        }
        command.args(["--", "-D", "warnings"]);
        command
    };
    exec(&mut wasm_clippy(&["herald-core", "herald-protocol"], "--lib"))?;
    exec(&mut wasm_clippy(&["herald-wasm"], "--all-targets"))?;
    exec(cargo().args(["test", "--workspace", "--locked"]))?;
    crate::package::check()?;
    crate::browser::test()?;
    fuzz()?;
    Ok(())
}

/// Builds the fuzz target and runs it briefly: a crash found here fails CI.
fn fuzz() -> Result {
    let fuzz = |args: &[&str]| {
        // cargo-fuzz (installed with stable cargo) passes nightly-only flags:
        // it runs on the pinned nightly, which `install::run` installed.
        let mut command = nightly_cargo();
        command.arg("fuzz").args(args);
        command
    };
    exec(&mut fuzz(&["build", "decode"]))?;
    // The first directory collects what the run finds (ignored by git);
    // the second holds the committed seed inputs.
    std::fs::create_dir_all(crate::shell::root().join("fuzz/corpus/decode")).map_err(|e| e.to_string())?;
    exec_quiet(
        &mut fuzz(&[
            "run",
            "decode",
            "fuzz/corpus/decode",
            "fuzz/seeds/decode",
            "--",
            "-max_total_time=20",
            "-max_len=4096",
        ]),
        3,
    )
}
