//! `cargo xtask wasm`: builds the browser client into the npm package in
//! `pkg/` (wasm-bindgen's ESM output plus wasm-opt), and reports its size.

use std::{io::Write as _, path::Path, process::Command};

use crate::{
    install,
    shell::{Result, cargo, exec, root},
};

/// Where the generated files go, inside the package.
const OUT_DIR: &str = "pkg/dist";

pub(crate) fn run(args: &[String]) -> Result {
    if let Some(unknown) = args.first() {
        return Err(format!("unknown argument {unknown:?}; `cargo xtask wasm` takes none"));
    }
    install::wasm_tools()?;
    build()?;
    Ok(())
}

/// Builds `pkg/dist/herald.js` + `herald_bg.wasm`; returns the gzipped size
/// of the two together, in bytes.
pub(crate) fn build() -> Result<usize> {
    exec(cargo().args([
        "build",
        "--locked",
        "-p",
        "herald-wasm",
        "--target",
        "wasm32-unknown-unknown",
        "--profile",
        "wasm-release",
    ]))?;
    let out = root().join(OUT_DIR);
    let built = root().join("target/wasm32-unknown-unknown/wasm-release/herald_wasm.wasm");
    exec(
        Command::new("wasm-bindgen")
            .args(["--target", "web", "--out-name", "herald", "--no-typescript", "--out-dir"])
            .arg(&out)
            .arg(&built),
    )?;
    let wasm = out.join("herald_bg.wasm");
    exec(
        Command::new(root().join("pkg/node_modules/.bin/wasm-opt"))
            // -Os: a little larger than -Oz, but smaller once gzipped, which is what is sent.
            .args(["-Os", "--strip-debug", "--strip-producers"])
            .arg(&wasm)
            .arg("-o")
            .arg(&wasm),
    )?;
    // npm ships license files found beside package.json.
    for license in ["LICENSE-MIT", "LICENSE-APACHE"] {
        std::fs::copy(root().join(license), root().join("pkg").join(license)).map_err(|e| format!("{license}: {e}"))?;
    }
    let glue = out.join("herald.js");
    let (wasm_gz, glue_gz) = (gzipped(&wasm)?, gzipped(&glue)?);
    eprintln!(
        "\nbrowser package: herald_bg.wasm {} B ({} B gzipped) + herald.js {} B ({} B gzipped) = {:.1} KiB gzipped",
        size(&wasm)?,
        wasm_gz,
        size(&glue)?,
        glue_gz,
        (wasm_gz + glue_gz) as f64 / 1024.0
    );
    Ok(wasm_gz + glue_gz)
}

fn size(path: &Path) -> Result<usize> {
    Ok(std::fs::metadata(path).map_err(|e| format!("{}: {e}", path.display()))?.len() as usize)
}

/// The size after `gzip -9`, as a web server would send it.
fn gzipped(path: &Path) -> Result<usize> {
    let bytes = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut gzip = Command::new("gzip")
        .args(["-9", "-c"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .map_err(|e| format!("could not start gzip: {e}"))?;
    gzip.stdin.take().ok_or("gzip has no stdin")?.write_all(&bytes).map_err(|e| e.to_string())?;
    let output = gzip.wait_with_output().map_err(|e| e.to_string())?;
    Ok(output.stdout.len())
}
