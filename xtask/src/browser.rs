//! The browser tests: the protocol's browser decoder against its corpus (in
//! Node), then `herald-testbed` (the reference server with a control API)
//! in the background and the wasm client's tests in headless Chromium
//! (wasm-bindgen-test) against it, then the npm package as `npm pack` makes
//! it: its own tests, and the apps of every bundler it is proven with.

use std::{
    io::{BufRead, BufReader},
    path::PathBuf,
    process::{Child, Command, Stdio},
};

use crate::shell::{Result, cargo, exec, output, root, target_dir};

/// The folders of `pkg/consumers/`, each with its pinned tools: the bundler
/// matrix and the README's test-runner recipes (`cargo xtask install` runs
/// `npm ci` in each).
pub(crate) const CONSUMERS: [&str; 8] = ["vite5", "vite6", "vite8", "webpack5", "esbuild", "next", "vitest", "jest"];

/// A running testbed; it exits when this is dropped (its stdin closes).
pub(crate) struct Testbed {
    child: Child,
    /// Its addresses, the JSON line it printed.
    pub(crate) addresses: String,
}

impl Testbed {
    pub(crate) fn start() -> Result<Self> {
        exec(cargo().args(["build", "--locked", "-p", "herald-testbed"]))?;
        let mut child = Command::new(target_dir().join("debug/herald-testbed"))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .map_err(|e| format!("could not start herald-testbed: {e}"))?;
        let stdout = child.stdout.take().ok_or("herald-testbed has no stdout")?;
        let mut addresses = String::new();
        BufReader::new(stdout).read_line(&mut addresses).map_err(|e| e.to_string())?;
        if addresses.trim().is_empty() {
            let _ = child.kill();
            return Err("herald-testbed exited without printing its addresses".into());
        }
        eprintln!("  herald-testbed: {}", addresses.trim());
        Ok(Self { child, addresses: addresses.trim().to_owned() })
    }
}

impl Drop for Testbed {
    fn drop(&mut self) {
        drop(self.child.stdin.take());
        let _ = self.child.wait();
    }
}

/// Chromium's settings (crates/herald-wasm/webdriver.json) plus trust in
/// the key of the testbed's TLS server, and in no other certificate that
/// does not check out: its certificate is made at each start.
fn trusting_the_testbed(testbed: &Testbed) -> Result<PathBuf> {
    let addresses: serde_json::Value = serde_json::from_str(&testbed.addresses).map_err(|e| e.to_string())?;
    let spki = addresses["tls_spki"].as_str().ok_or("herald-testbed printed no tls_spki")?;
    let path = root().join("crates/herald-wasm/webdriver.json");
    let text = std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut config: serde_json::Value = serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
    let args = config["goog:chromeOptions"]["args"].as_array_mut().ok_or("webdriver.json has no Chromium args")?;
    args.push(format!("--ignore-certificate-errors-spki-list={spki}").into());
    let out = target_dir().join("webdriver-testbed.json");
    std::fs::write(&out, config.to_string()).map_err(|e| format!("{}: {e}", out.display()))?;
    Ok(out)
}

pub(crate) fn test() -> Result {
    // The browser's decoder against the corpus the native decoder is held to (in Node).
    exec(cargo().args([
        "test",
        "--locked",
        "-p",
        "herald-protocol",
        "--target",
        "wasm32-unknown-unknown",
        "--test",
        "corpus",
    ]))?;
    let testbed = Testbed::start()?;
    exec(
        cargo()
            .args(["test", "--locked", "-p", "herald-wasm", "--target", "wasm32-unknown-unknown"])
            .args(["--features", "shared-tabs"])
            .env("HERALD_TESTBED", &testbed.addresses)
            .env("WASM_BINDGEN_TEST_WEBDRIVER_JSON", trusting_the_testbed(&testbed)?)
            .env("CHROMEDRIVER", "/usr/bin/chromedriver")
            .env("WASM_BINDGEN_TEST_TIMEOUT", "300"),
    )?;
    // The npm package as users get it: the release build, its types, the
    // React hooks in Chromium (after the wasm tests: both count the
    // testbed's connections).
    crate::wasm::build()?;
    let tarball = pack()?;
    let package_tests = |args: &[&str]| {
        let mut command = Command::new("npm");
        command.args(args).current_dir(root().join("pkg"));
        command.env("HERALD_TESTBED", &testbed.addresses).env("HERALD_TARBALL", &tarball);
        command
    };
    exec(&mut package_tests(&["test"]))?;
    exec(&mut package_tests(&["run", "test:consumers"]))?;
    drop(testbed);
    // The web demo as `cargo xtask demo --web` serves it, and against
    // examples/axum_service.rs, in Chromium.
    crate::demo::build_web_demo()?;
    exec(cargo().args(["build", "--locked", "-p", "herald-cli"]))?;
    exec(cargo().args(["build", "--locked", "--example", "axum_service"]))?;
    exec(
        Command::new("npm")
            .arg("test")
            .current_dir(root().join("web-demo"))
            .env("HERALD_BIN", target_dir().join("debug/herald"))
            .env("AXUM_SERVICE_BIN", target_dir().join("debug/examples/axum_service")),
    )
}

/// `npm pack` of `pkg/` into `target/npm/`; the tarball's path.
fn pack() -> Result<String> {
    let dir = target_dir().join("npm");
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let name = output(
        Command::new("npm").args(["pack", "--silent", "--pack-destination"]).arg(&dir).current_dir(root().join("pkg")),
    )
    .ok_or("npm pack failed in pkg/")?;
    Ok(dir.join(name.trim()).display().to_string())
}
