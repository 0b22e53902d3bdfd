//! `cargo xtask wasm`: builds the browser client into the npm package in
//! `pkg/` (wasm-bindgen's ESM output, wasm-opt, the glue minified), twice:
//! without and with the tabs' shared connection. Reports the size of each
//! and fails when one exceeds its budget.

use std::{io::Write as _, path::Path, process::Command};

use crate::{
    install,
    shell::{Result, exec, nightly_cargo, root, target_dir},
};

/// Where the generated files go, inside the package.
const OUT_DIR: &str = "pkg/dist";

/// One build of the wasm that the package ships: its files' name, its cargo
/// features and the most its `.wasm` and JS glue may weigh together,
/// gzipped. A page downloads one of them, picked by the client's options.
struct Build {
    out_name: &'static str,
    features: &'static str,
    budget: usize,
}

/// Every client but one with `shareAcrossTabs`: what a page downloads by
/// default. Its budget is what it weighed (58,139 B, since the tabs'
/// rules moved to their own build, presence metadata stayed a JavaScript
/// object, the options are checked once, in `index.js`, the browser
/// decoder's errors stopped describing the value found and a published
/// payload is no longer parsed back; 58,321 B now, with the subscribers'
/// join rules in the core) plus the byte
/// budgets BENCHMARKS.md's "Browser package size" gives the features still
/// to come, so that growth is a decision rather than an accident. That
/// section says what the bytes are, what was cut to get here, and why
/// [`TARGET_GZIPPED`] is not met yet.
const DEFAULT: Build = Build { out_name: "herald", features: "", budget: 58_415 };

/// The same client plus `SharedTabs`, loaded only by a client with
/// `shareAcrossTabs` (68,902 B now; the same headroom as the default build had at 68,811 B).
const TABS: Build = Build { out_name: "herald_tabs", features: "shared-tabs", budget: 69_083 };

/// Issue 14's target, 35 KB, for the default build: reported, not enforced
/// (see [`DEFAULT`]).
const TARGET_GZIPPED: usize = 35 * 1024;

pub(crate) fn run(args: &[String]) -> Result {
    if let Some(unknown) = args.first() {
        return Err(format!("unknown argument {unknown:?}; `cargo xtask wasm` takes none"));
    }
    install::wasm_tools()?;
    build()
}

/// Builds `pkg/dist`: `herald.js` + `herald_bg.wasm` and `herald_tabs.js` +
/// `herald_tabs_bg.wasm`; fails when either is over its budget.
pub(crate) fn build() -> Result {
    let mut sizes = Vec::new();
    // The default build last, so that the wasm left in target/ is the one
    // BENCHMARKS.md's "Reproduce" takes apart.
    for build in [TABS, DEFAULT] {
        sizes.push((compile(&build)?, build));
    }
    // npm ships license files found beside package.json.
    for license in ["LICENSE-MIT", "LICENSE-APACHE"] {
        std::fs::copy(root().join(license), root().join("pkg").join(license)).map_err(|e| format!("{license}: {e}"))?;
    }
    eprintln!();
    for (total, build) in &sizes {
        eprintln!(
            "browser package, {}: {total} B ({:.1} KiB) gzipped; budget {} B{}",
            build.out_name,
            *total as f64 / 1024.0,
            build.budget,
            if build.features.is_empty() {
                match total.checked_sub(TARGET_GZIPPED) {
                    Some(over) => format!("; target {TARGET_GZIPPED} B ({over} B over)"),
                    None => format!("; target {TARGET_GZIPPED} B (met)"),
                }
            } else {
                String::new()
            },
        );
    }
    for (total, build) in sizes {
        if total > build.budget {
            return Err(format!(
                "the browser package's {} build is {total} B gzipped, over its budget of {} B (xtask/src/wasm.rs) by \
                 {} B: find what grew (`twiggy top` on the wasm before wasm-opt, see BENCHMARKS.md, \
                 \"Browser package size\") and cut it, or raise the budget on purpose and say why there",
                build.out_name,
                build.budget,
                total - build.budget
            ));
        }
    }
    Ok(())
}

/// Builds one of the package's wasm builds into [`OUT_DIR`]; returns the
/// gzipped size of its `.wasm` and glue together, in bytes.
fn compile(build: &Build) -> Result<usize> {
    // The standard library is rebuilt for size, and with panics that abort
    // without formatting a message (whose machinery would otherwise ship):
    // unstable cargo flags, so this one build runs on the pinned nightly, with
    // its rust-src, both from `install::wasm_tools`. Panic locations (file
    // paths) are left out too.
    exec(
        nightly_cargo()
            .args(["build", "--locked", "-p", "herald-wasm", "--target", "wasm32-unknown-unknown"])
            .args(["--features", build.features])
            .args(["--profile", "wasm-release", "-Zbuild-std=std,panic_abort"])
            .args(["-Zbuild-std-features=optimize_for_size", "-Zpanic-immediate-abort", "-Zprofile-rustflags"])
            .args(["--config", "profile.wasm-release.panic='immediate-abort'"])
            .args(["--config", "profile.wasm-release.rustflags=['-Zlocation-detail=none']"]),
    )?;
    let out = root().join(OUT_DIR);
    let built = target_dir().join("wasm32-unknown-unknown/wasm-release/herald_wasm.wasm");
    exec(
        Command::new("wasm-bindgen")
            .args(["--target", "web", "--out-name", build.out_name, "--no-typescript", "--out-dir"])
            .arg(&out)
            .arg(&built),
    )?;
    let wasm = out.join(format!("{}_bg.wasm", build.out_name));
    let glue = out.join(format!("{}.js", build.out_name));
    optimize(&wasm, &glue)?;
    exec(
        Command::new(root().join("pkg/node_modules/.bin/esbuild"))
            .arg(&glue)
            .args(["--minify", "--format=esm", "--log-level=warning", "--allow-overwrite"])
            .arg(format!("--outfile={}", glue.display())),
    )?;
    let (wasm_gz, glue_gz) = (gzipped(&wasm)?, gzipped(&glue)?);
    eprintln!(
        "\n{}_bg.wasm {} B ({wasm_gz} B gzipped) + {}.js {} B ({glue_gz} B gzipped)",
        build.out_name,
        size(&wasm)?,
        build.out_name,
        size(&glue)?,
    );
    Ok(wasm_gz + glue_gz)
}

/// wasm-opt, which also renames every import and export to a short name
/// (wasm-bindgen's are long and hashed, and both files carry them): the glue
/// is rewritten to match, from the mapping wasm-opt prints.
fn optimize(wasm: &Path, glue: &Path) -> Result {
    let mut command = Command::new(root().join("pkg/node_modules/.bin/wasm-opt"));
    // -Os: a little larger than -Oz, but smaller once gzipped, which is what is sent.
    command.args(["-Os", "--strip-debug", "--strip-producers", "--minify-imports-and-exports-and-modules"]);
    command.arg(wasm).arg("-o").arg(wasm);
    let line = crate::shell::describe(&command);
    eprintln!("\n$ {line}");
    let run = command.output().map_err(|e| format!("could not start `{line}`: {e}"))?;
    if !run.status.success() {
        return Err(format!("`{line}` failed ({}): {}", run.status, String::from_utf8_lossy(&run.stderr)));
    }
    let map: serde_json::Value =
        serde_json::from_slice(&run.stdout).map_err(|e| format!("wasm-opt printed no name mapping: {e}"))?;
    let pairs = |section: &str| -> Result<Vec<Vec<String>>> {
        serde_json::from_value(map[section].clone()).map_err(|e| format!("wasm-opt's {section} mapping: {e}"))
    };
    let mut js = std::fs::read_to_string(glue).map_err(|e| format!("{}: {e}", glue.display()))?;
    let mut modules = Vec::new();
    for import in pairs("imports")? {
        let [module, name, short] = import.as_slice() else { return Err(format!("odd import mapping {import:?}")) };
        // A key of the glue's imports object.
        js = rename(&js, &format!("{name}:"), &format!("{short}:"), Some(1))?;
        if !modules.contains(module) {
            modules.push(module.clone());
        }
    }
    // Binaryen merges every module into one, named `a`.
    for module in modules {
        js = rename(&js, &format!("\"{module}\":"), "\"a\":", Some(1))?;
    }
    for export in pairs("exports")? {
        let [name, short] = export.as_slice() else { return Err(format!("odd export mapping {export:?}")) };
        js = rename(&js, &format!("wasm.{name}"), &format!("wasm.{short}"), None)?;
    }
    std::fs::write(glue, js).map_err(|e| format!("{}: {e}", glue.display()))
}

/// `text` with every `from` that is not part of a longer identifier
/// replaced by `to`; fails unless it occurs `expected` times, when given (a
/// glue that wasm-bindgen shaped differently must not be rewritten blindly).
fn rename(text: &str, from: &str, to: &str, expected: Option<usize>) -> Result<String> {
    let word = |c: Option<char>| c.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_' || c == '$');
    let (starts_word, ends_word) = (word(from.chars().next()), word(from.chars().next_back()));
    let (mut out, mut rest, mut count) = (String::with_capacity(text.len()), text, 0);
    while let Some(at) = rest.find(from) {
        // Part of a longer identifier when a word character continues it.
        let inside = (starts_word && word(rest[..at].chars().next_back()))
            || (ends_word && word(rest[at + from.len()..].chars().next()));
        out.push_str(&rest[..at]);
        out.push_str(if inside { from } else { to });
        count += usize::from(!inside);
        rest = &rest[at + from.len()..];
    }
    out.push_str(rest);
    match expected {
        Some(expected) if count != expected => {
            Err(format!("the wasm-bindgen glue has {count} occurrences of `{from}`, not {expected}: its shape changed"))
        }
        _ => Ok(out),
    }
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
