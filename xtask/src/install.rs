//! Installs what the tests need on a fresh machine. Every step checks first,
//! so running it again costs a few milliseconds.

use std::{path::PathBuf, process::Command};

use crate::shell::{Result, cargo, exec, has, output, target_dir};

/// cargo-fuzz builds the fuzz targets in CI; pinned so CI is reproducible.
pub(crate) const CARGO_FUZZ_VERSION: &str = "0.13.1";

/// kosoku runs the Autobahn cases without Docker (`cargo xtask
/// conformance`); pinned so that the cases and their verdicts change only
/// when this line does.
pub(crate) const KOSOKU_VERSION: &str = "0.1.0";

/// The one nightly toolchain, for the two builds that need unstable flags:
/// the browser package (`cargo xtask wasm`: the standard library rebuilt for
/// size, panics that abort without a message) and the fuzz targets (cargo-fuzz
/// passes `-Zsanitizer`). Everything else builds on stable. Pinned to a date
/// so that unstable flags, and the package's size, change only when this
/// line does; moving it means rerunning `cargo xtask wasm` and `cargo xtask
/// ci` and noting the new size in BENCHMARKS.md.
pub(crate) const NIGHTLY: &str = "nightly-2026-10-01";

pub(crate) fn run() -> Result {
    rust_target("wasm32-unknown-unknown")?;
    rust_components(&["rustfmt", "clippy"])?;
    fuzz_tools()?;
    // The seed-style server the CLI's interop tests run against.
    npm_ci("tests/seed-server")?;
    wasm_tools()?;
    npm_ci("web-demo")?;
    // The bundlers and test runners the package is proven with, each pinned in its folder.
    for consumer in crate::browser::CONSUMERS {
        npm_ci(&format!("pkg/consumers/{consumer}"))?;
    }
    // The browser tests: Debian's Chromium and its driver (no browser downloads).
    apt(&["chromium", "chromium-driver"])?;
    apt(&["redis-server"])?; // herald-server's cluster tests run their own Redis servers
    kosoku()?;
    Ok(())
}

/// [`KOSOKU_VERSION`] in a virtual environment under the target directory
/// (no system packages touched); returns its Python.
pub(crate) fn kosoku() -> Result<PathBuf> {
    let venv = target_dir().join("kosoku");
    let python = venv.join("bin/python");
    let check = "import importlib.metadata as m; print(m.version('kosoku'))";
    if output(Command::new(&python).args(["-c", check])).is_some_and(|v| v.trim() == KOSOKU_VERSION) {
        return Ok(python);
    }
    if !python.exists() && exec(Command::new("python3").arg("-m").arg("venv").arg(&venv)).is_err() {
        // Debian's Python leaves venv out of its main package.
        apt(&["python3-venv"])?;
        exec(Command::new("python3").arg("-m").arg("venv").arg("--clear").arg(&venv))?;
    }
    let package = format!("kosoku=={KOSOKU_VERSION}");
    exec(Command::new(&python).args(["-m", "pip", "install", "--quiet", "--disable-pip-version-check", &package]))?;
    Ok(python)
}

/// What `cargo xtask fuzz` needs: the pinned nightly and cargo-fuzz.
pub(crate) fn fuzz_tools() -> Result {
    nightly()?;
    cargo_tool("cargo-fuzz", "cargo-fuzz", CARGO_FUZZ_VERSION)
}

/// What `cargo xtask wasm` needs: the pinned nightly with the target and the
/// standard library's source (it is rebuilt for size), wasm-bindgen-cli at
/// the version of the wasm-bindgen crate in Cargo.lock (they must match), and
/// the package's npm tools (wasm-opt from binaryen, esbuild).
pub(crate) fn wasm_tools() -> Result {
    nightly()?;
    let version = locked_version("wasm-bindgen")?;
    cargo_tool("wasm-bindgen-cli", "wasm-bindgen", &version)?;
    npm_ci("pkg")
}

/// The version of `package` that Cargo.lock pins.
pub(crate) fn locked_version(package: &str) -> Result<String> {
    let lock = std::fs::read_to_string(crate::shell::root().join("Cargo.lock")).map_err(|e| e.to_string())?;
    let entry = format!("name = \"{package}\"\nversion = \"");
    let start = lock.find(&entry).ok_or_else(|| format!("Cargo.lock has no {package}"))? + entry.len();
    let len = lock[start..].find('"').ok_or("Cargo.lock is malformed")?;
    Ok(lock[start..start + len].to_owned())
}

/// [`NIGHTLY`] with the minimal profile, `rust-src` and the wasm target (for
/// the browser package; the fuzz target needs nothing more), unless all are
/// there already.
fn nightly() -> Result {
    let installed = |list: &str| {
        output(Command::new("rustup").args([list, "list", "--installed", "--toolchain", NIGHTLY])).unwrap_or_default()
    };
    let has_src = installed("component").lines().any(|line| line.trim() == "rust-src");
    if has_src && installed("target").lines().any(|line| line.trim() == "wasm32-unknown-unknown") {
        return Ok(());
    }
    // Adds what is missing when the toolchain is already there.
    exec(Command::new("rustup").args(["toolchain", "install", NIGHTLY, "--profile", "minimal"]).args([
        "--component",
        "rust-src",
        "--target",
        "wasm32-unknown-unknown",
    ]))
}

fn rust_target(target: &str) -> Result {
    let installed = output(Command::new("rustup").args(["target", "list", "--installed"])).unwrap_or_default();
    if installed.lines().any(|line| line.trim() == target) {
        return Ok(());
    }
    exec(Command::new("rustup").args(["target", "add", target]))
}

fn rust_components(components: &[&str]) -> Result {
    let installed = output(Command::new("rustup").args(["component", "list", "--installed"])).unwrap_or_default();
    let missing: Vec<&str> =
        components.iter().copied().filter(|c| !installed.lines().any(|line| line.starts_with(c))).collect();
    if missing.is_empty() {
        return Ok(());
    }
    exec(Command::new("rustup").args(["component", "add"]).args(missing))
}

/// Installs Debian packages that are missing (needs root, as on CI).
pub(crate) fn apt(packages: &[&str]) -> Result {
    let missing: Vec<&str> = packages
        .iter()
        .copied()
        .filter(|p| {
            output(Command::new("dpkg-query").args(["-W", "-f=${Status}", p]))
                .is_none_or(|status| !status.contains("install ok installed"))
        })
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    exec(Command::new("apt-get").arg("update").arg("-qq"))?;
    exec(
        Command::new("apt-get")
            .args(["install", "-y", "-qq", "--no-install-recommends"])
            .args(&missing)
            .env("DEBIAN_FRONTEND", "noninteractive"),
    )
}

/// Installs crate `name` at exactly `version` unless `binary --version`
/// reports it already (`cargo-x` tools answer as `cargo x --version`).
pub(crate) fn cargo_tool(name: &str, binary: &str, version: &str) -> Result {
    let reported = match binary.strip_prefix("cargo-") {
        Some(subcommand) => output(cargo().args([subcommand, "--version"])),
        None => output(Command::new(binary).arg("--version")),
    };
    if reported.is_some_and(|v| v.split_whitespace().any(|word| word == version)) {
        return Ok(());
    }
    // No --locked: the registry may lack a version the tool's lock file pins.
    exec(cargo().args(["install", name, "--version", version]))
}

/// The oldest Node.js the tests run on (`node --test --test-concurrency`, `import.meta.resolve`).
const NODE_MAJOR: u32 = 20;

/// Node.js and npm: Debian's packages when missing; an older Node is refused
/// with what to do, rather than failing later in a test runner.
fn node() -> Result {
    if !has("node") || !has("npm") {
        apt(&["nodejs", "npm"])?;
    }
    let version = output(Command::new("node").arg("--version")).unwrap_or_default();
    let major = version.trim().trim_start_matches('v').split('.').next().and_then(|m| m.parse::<u32>().ok());
    match major {
        Some(major) if major >= NODE_MAJOR => Ok(()),
        _ => Err(format!(
            "Node.js {NODE_MAJOR} or newer is needed (found {:?}); install it from nodejs.org or your distribution",
            version.trim()
        )),
    }
}

/// `npm ci` in `dir` (relative to the root) unless `node_modules` is current.
pub(crate) fn npm_ci(dir: &str) -> Result {
    node()?;
    let root = crate::shell::root().join(dir);
    let lock = root.join("package-lock.json");
    let stamp = root.join("node_modules/.package-lock.json");
    let current = match (std::fs::metadata(&lock), std::fs::metadata(&stamp)) {
        (Ok(lock), Ok(stamp)) => stamp.modified().ok() >= lock.modified().ok(),
        _ => false,
    };
    if current {
        return Ok(());
    }
    exec(Command::new("npm").args(["ci", "--no-audit", "--no-fund"]).current_dir(root))
}
