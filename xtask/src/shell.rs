//! Running commands with their output shown, from the workspace root.

use std::{
    path::{Path, PathBuf},
    process::Command,
    time::Instant,
};

pub(crate) type Result<T = (), E = String> = std::result::Result<T, E>;

/// The workspace root (xtask's parent directory).
pub(crate) fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("xtask lives inside the workspace").to_path_buf()
}

/// Where cargo puts what it builds: `CARGO_TARGET_DIR` when set (relative
/// to the workspace root, where [`cargo`] runs), else `target/`.
pub(crate) fn target_dir() -> PathBuf {
    root().join(std::env::var_os("CARGO_TARGET_DIR").unwrap_or_else(|| "target".into()))
}

/// `cargo` as invoked us (respects rustup's toolchain choice).
pub(crate) fn cargo() -> Command {
    let mut command = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    command.current_dir(root());
    command
}

/// `cargo` of the pinned nightly ([`crate::install::NIGHTLY`]), for the builds
/// that need unstable flags. `rustup run` picks the toolchain whatever the
/// stable cargo that started xtask set (`RUSTUP_TOOLCHAIN`, `CARGO`); `RUSTC`
/// and `RUSTDOC`, which would still point cargo and cargo-fuzz at another
/// compiler, are dropped.
pub(crate) fn nightly_cargo() -> Command {
    let mut command = Command::new("rustup");
    command.args(["run", crate::install::NIGHTLY, "cargo"]).env_remove("RUSTC").env_remove("RUSTDOC");
    command.current_dir(root());
    command
}

/// Runs a command to completion, failing with its command line on a non-zero exit.
pub(crate) fn exec(command: &mut Command) -> Result {
    let line = describe(command);
    eprintln!("\n$ {line}");
    let started = Instant::now();
    let status = command.status().map_err(|e| format!("could not start `{line}`: {e}"))?;
    eprintln!("  ({:.1} s)", started.elapsed().as_secs_f64());
    if status.success() { Ok(()) } else { Err(format!("`{line}` failed ({status})")) }
}

/// Runs a command and returns its standard output, or `None` if it fails or
/// does not exist.
pub(crate) fn output(command: &mut Command) -> Option<String> {
    let output = command.output().ok()?;
    output.status.success().then(|| String::from_utf8_lossy(&output.stdout).into_owned())
}

pub(crate) fn describe(command: &Command) -> String {
    let program = Path::new(command.get_program());
    let mut line = program.file_name().unwrap_or(program.as_os_str()).to_string_lossy().into_owned();
    for arg in command.get_args() {
        line.push(' ');
        line.push_str(&arg.to_string_lossy());
    }
    line
}

/// Whether `program` is on PATH.
pub(crate) fn has(program: &str) -> bool {
    std::env::var_os("PATH").is_some_and(|path| std::env::split_paths(&path).any(|dir| dir.join(program).is_file()))
}
