//! `cargo xtask package`: every crate meant for crates.io, packaged as
//! `cargo publish` would package it, built from its package, and each binary
//! installed from its package, all offline.

use std::{
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
    /// Another published crate depends on it.
    dependency: bool,
}

impl Crate {
    /// Where `cargo package` unpacked its `.crate` to verify it.
    fn packaged(&self, packages: &Path) -> PathBuf {
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
    // Together, so that each is verified (built from its `.crate`) against
    // the others' `.crate`s through a temporary local registry, as if they
    // were published in dependency order.
    let mut package = cargo();
    package.args(["package", "--offline", "--locked"]);
    for krate in &crates {
        package.args(["-p", &krate.name]);
    }
    exec(&mut package)?;

    let packages = target_dir().join("package");
    let root = target_dir().join("package-install");
    for krate in crates.iter().filter(|krate| !krate.bins.is_empty()) {
        let mut install = cargo();
        // A debug build in the target directory the verification used: only
        // Herald's crates are built again, not their dependencies.
        install.args(["install", "--offline", "--locked", "--debug", "--force", "--path"]);
        install.arg(krate.packaged(&packages)).arg("--target-dir").arg(target_dir()).arg("--root").arg(&root);
        // The packaged manifest asks crates.io for the other Herald crates,
        // which are not published (at this version) yet: their packages stand in.
        for dependency in crates.iter().filter(|c| c.dependency) {
            let path = dependency.packaged(&packages).display().to_string();
            install.arg("--config").arg(format!("patch.crates-io.{}.path={path:?}", dependency.name));
        }
        exec(&mut install)?;
        for bin in &krate.bins {
            exec(Command::new(root.join("bin").join(bin)).arg("--version"))?;
        }
    }
    Ok(())
}

/// The workspace's packages without `publish = false`, from `cargo metadata`.
fn publishable() -> Result<Vec<Crate>> {
    let json = output(cargo().args(["metadata", "--format-version", "1", "--no-deps", "--offline", "--locked"]))
        .ok_or("`cargo metadata` failed")?;
    let metadata: Value = serde_json::from_str(&json).map_err(|e| format!("cargo metadata: {e}"))?;
    let published: Vec<&Value> = metadata["packages"]
        .as_array()
        .ok_or("cargo metadata lists no packages")?
        .iter()
        .filter(|package| package["publish"].as_array().is_none_or(|registries| !registries.is_empty()))
        .collect();
    let name = |package: &Value| package["name"].as_str().unwrap_or_default().to_owned();
    let depended_on = |wanted: &str| {
        published.iter().any(|package| {
            package["dependencies"].as_array().into_iter().flatten().any(|dependency| {
                dependency["name"] == wanted && dependency["kind"].is_null() && dependency["path"].is_string()
            })
        })
    };
    Ok(published
        .iter()
        .map(|package| Crate {
            name: name(package),
            version: package["version"].as_str().unwrap_or_default().to_owned(),
            bins: package["targets"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|target| target["kind"].as_array().is_some_and(|kinds| kinds.iter().any(|k| k == "bin")))
                .filter_map(|target| target["name"].as_str().map(str::to_owned))
                .collect(),
            dependency: depended_on(&name(package)),
        })
        .collect())
}
