//! `cargo xtask package`: every crate meant for crates.io, packaged as
//! `cargo publish` would package it, built from its package against the
//! others' packages, and each binary installed from its package, offline.
//!
//! Not `cargo package`'s own verification: it resolves the crates to each
//! other through a temporary registry whose crates keep their version from
//! run to run, so cargo reuses what it unpacked and built in an earlier run
//! (in `CARGO_HOME` and `target/`) and checks a crate against its
//! dependencies' *old* packages. Unpacked into directories instead, the
//! packages are rebuilt whenever they change, like any path dependency.

use std::{
    collections::BTreeSet,
    path::{Path, PathBuf},
    process::Command,
};

use serde_json::Value;

use crate::shell::{Result, cargo, exec, output, target_dir};

/// A workspace package that may be published.
struct Crate {
    name: String,
    version: String,
    bins: Vec<String>,
    /// The workspace crates it depends on, dev-dependencies included.
    all_deps: Vec<String>,
    /// The same without dev-dependencies: what a dependent builds of it.
    build_deps: Vec<String>,
}

impl Crate {
    fn unpacked(&self, packages: &Path) -> PathBuf {
        packages.join(format!("{}-{}", self.name, self.version))
    }
}

/// For `cargo xtask package` alone: fetches what the offline steps need.
pub(crate) fn run() -> Result {
    exec(cargo().args(["fetch", "--locked"]))?;
    check()
}

/// The packaging step of `cargo xtask ci`, after the tests built (and so
/// fetched) everything.
pub(crate) fn check() -> Result {
    let crates = publishable()?;
    // Together, so that the lockfile of each package names the others at
    // their new versions, as if they were published in dependency order.
    let mut package = cargo();
    package.args(["package", "--offline", "--locked", "--no-verify"]);
    for krate in &crates {
        package.args(["-p", &krate.name]);
    }
    exec(&mut package)?;

    // Cargo looks for no workspace above a `target/package` directory, so
    // each unpacked package is a project of its own, as it is for a user.
    let packages = target_dir().join("package");
    for krate in &crates {
        let dir = krate.unpacked(&packages);
        if dir.exists() {
            std::fs::remove_dir_all(&dir).map_err(|e| format!("cannot remove {}: {e}", dir.display()))?;
        }
        let archive = packages.join(format!("{}-{}.crate", krate.name, krate.version));
        // -m: files dated now, not at the fixed date cargo stamps into every
        // package, so that cargo sees what changed since the last build.
        exec(Command::new("tar").arg("-xzmf").arg(archive).arg("-C").arg(&packages))?;
    }
    // Each built alone from its package, with its own features and
    // lockfile; no --locked, since the patches below change the lockfile's
    // Herald entries, and only those.
    for krate in &crates {
        let mut build = cargo();
        build.args(["build", "--offline", "--manifest-path"]).arg(krate.unpacked(&packages).join("Cargo.toml"));
        build.arg("--target-dir").arg(target_dir());
        patch(&mut build, &crates, krate, &packages);
        exec(&mut build)?;
    }
    // `cargo install` from the package, with what the build above left:
    // nothing is compiled again (a debug build, as the one above).
    let root = target_dir().join("package-install");
    for krate in crates.iter().filter(|krate| !krate.bins.is_empty()) {
        let mut install = cargo();
        install.args(["install", "--offline", "--locked", "--debug", "--force", "--path"]);
        install.arg(krate.unpacked(&packages)).arg("--target-dir").arg(target_dir()).arg("--root").arg(&root);
        patch(&mut install, &crates, krate, &packages);
        exec(&mut install)?;
        for bin in &krate.bins {
            exec(Command::new(root.join("bin").join(bin)).arg("--version"))?;
        }
    }
    Ok(())
}

/// Points the packaged manifest's crates.io dependencies on the other Herald
/// crates (not published yet, or not at this version) at their packages:
/// those that `krate`'s build resolves, since an unused patch is a warning.
fn patch(command: &mut Command, crates: &[Crate], krate: &Crate, packages: &Path) {
    let find = |name: &str| crates.iter().find(|c| c.name == name);
    let mut needed = BTreeSet::new();
    let mut pending: Vec<&str> = krate.all_deps.iter().map(String::as_str).collect();
    while let Some(name) = pending.pop() {
        if name != krate.name
            && let Some(dependency) = find(name)
            && needed.insert(name)
        {
            pending.extend(dependency.build_deps.iter().map(String::as_str));
        }
    }
    for dependency in needed.into_iter().filter_map(find) {
        let path = dependency.unpacked(packages).display().to_string();
        command.arg("--config").arg(format!("patch.crates-io.{}.path={path:?}", dependency.name));
    }
}

/// The workspace's packages without `publish = false`, from `cargo metadata`.
fn publishable() -> Result<Vec<Crate>> {
    let json = output(cargo().args(["metadata", "--format-version", "1", "--no-deps", "--offline", "--locked"]))
        .ok_or("`cargo metadata` failed")?;
    let metadata: Value = serde_json::from_str(&json).map_err(|e| format!("cargo metadata: {e}"))?;
    let packages = metadata["packages"].as_array().ok_or("cargo metadata lists no packages")?;
    let published: Vec<&Value> = packages
        .iter()
        .filter(|package| package["publish"].as_array().is_none_or(|registries| !registries.is_empty()))
        .collect();
    let text = |value: &Value| value.as_str().unwrap_or_default().to_owned();
    // The workspace's own crates, but not those named by path alone: cargo
    // package leaves those out.
    let deps = |package: &Value, dev: bool| -> Vec<String> {
        let list = package["dependencies"].as_array().into_iter().flatten();
        list.filter(|dependency| dependency["path"].is_string() && dependency["req"] != "*")
            .filter(|dependency| dev || dependency["kind"] != "dev")
            .map(|dependency| text(&dependency["name"]))
            .collect()
    };
    Ok(published
        .iter()
        .map(|package| Crate {
            name: text(&package["name"]),
            version: text(&package["version"]),
            bins: package["targets"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|target| target["kind"].as_array().is_some_and(|kinds| kinds.iter().any(|k| k == "bin")))
                .map(|target| text(&target["name"]))
                .collect(),
            all_deps: deps(package, true),
            build_deps: deps(package, false),
        })
        .collect())
}
