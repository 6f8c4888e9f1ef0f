//! `cargo xtask package`: every publishable crate packaged in dependency order and checked from
//! its own tarball, as a crates.io user would get it.
//!
//! 1. `cargo package -p <each publishable member>`: cargo packs them in dependency order and
//!    verifies that each library builds from its tarball against the tarballs of the others (a
//!    local registry overlay).
//! 2. The tarballs are unpacked into `target/package-check/` as one throw-away workspace whose
//!    `[patch.crates-io]` points every internal crate at its unpacked tarball.
//! 3. Each shipped source file is searched for crates that cargo drops on publish (path-only
//!    dev-dependencies such as the unpublished test-support crate). A shipped test, example or
//!    bench that uses one cannot build from the tarball: the crate's manifest must leave it out
//!    (`exclude`), and the command prints exactly which entries.
//! 4. `cargo check` of every shipped target that can build: the library, binaries, examples and
//!    benches always; unit tests and integration tests unless step 3 already condemned them.
//!
//! Arguments after `--` go to `cargo package` (e.g. `--allow-dirty` on a work-in-progress tree).

use std::{
    collections::BTreeMap,
    fmt::Write as _,
    fs,
    path::{Path, PathBuf},
    process::Command,
};

use crate::workspace::{self, Package};

/// What a package needs before it builds completely from its tarball.
#[derive(Debug, Default)]
struct Findings {
    /// Shipped files (relative to the package root) using a crate dropped on publish, by crate.
    dropped_uses: BTreeMap<String, Vec<String>>,
    /// Every shipped `.rs` file, relative to the package root.
    shipped: Vec<String>,
    /// Targets that failed `cargo check` from the tarball.
    failed: Vec<String>,
}

/// Where `cargo package` builds and leaves the tarballs (`package/` inside it).
fn verify_target() -> PathBuf {
    crate::root().join("target").join("package-verify")
}

/// Removes what earlier runs left of our own packages, so each run verifies today's sources.
///
/// `cargo package` verifies each crate against the tarballs of the others through a local
/// registry in `target/package-verify/package/`, unpacks those tarballs under
/// `$CARGO_HOME/registry/src/` in a folder named for the overlay, and builds them as registry
/// crates, which cargo never rebuilds for the same name and version. Without this a later run
/// would verify against an earlier run's sources. `target/package/` (where a plain `cargo
/// package` puts them) goes whole; under `$CARGO_HOME`, only our own packages and only in local
/// overlays (folders whose name starts with `-`; crates.io's start with its host).
fn forget_unpacked_overlays(packages: &[Package]) -> Result<(), String> {
    let previous = crate::root().join("target").join("package");
    if previous.is_dir() {
        fs::remove_dir_all(&previous).map_err(|e| format!("{}: {e}", previous.display()))?;
    }
    let cargo_home = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".cargo")));
    let Some(sources) = cargo_home.map(|home| home.join("registry").join("src")) else {
        return Ok(());
    };
    let Ok(overlays) = fs::read_dir(&sources) else {
        return Ok(());
    };
    for overlay in overlays.flatten().map(|e| e.path()) {
        if !overlay
            .file_name()
            .is_some_and(|n| n.to_string_lossy().starts_with('-'))
        {
            continue;
        }
        for package in packages {
            let unpacked = overlay.join(unpacked_name(package));
            if unpacked.is_dir() {
                fs::remove_dir_all(&unpacked)
                    .map_err(|e| format!("{}: {e}", unpacked.display()))?;
            }
        }
    }
    Ok(())
}

/// Runs the whole command.
pub(crate) fn run(extra: &[String]) -> Result<(), String> {
    let all = workspace::packages()?;
    let (publishable, private): (Vec<Package>, Vec<Package>) =
        all.into_iter().partition(|p| p.publishable);
    let order = workspace::dependency_order(&publishable)?;
    println!(
        "publishable, in dependency order: {}",
        names(&order).join(" → ")
    );
    println!(
        "not published (publish = false): {}",
        names(&private).join(", ")
    );

    forget_unpacked_overlays(&order)?;
    // A target directory of its own, emptied first: cargo builds the other tarballs as registry
    // crates, which it never rebuilds for the same name and version.
    let verify_target = verify_target();
    if verify_target.is_dir() {
        fs::remove_dir_all(&verify_target)
            .map_err(|e| format!("{}: {e}", verify_target.display()))?;
    }
    let mut cmd = crate::cargo();
    cmd.args(["package", "--locked", "--target-dir"])
        .arg(&verify_target);
    for package in &order {
        cmd.args(["-p", &package.name]);
    }
    cmd.args(extra);
    crate::run(cmd)?;

    let check_root = crate::root().join("target").join("package-check");
    unpack(&order, &check_root)?;
    let mut report = BTreeMap::new();
    for package in &order {
        let unpacked = check_root.join(unpacked_name(package));
        let shipped = rust_files(&unpacked)?;
        let mut findings = Findings {
            dropped_uses: dropped_uses(package, &unpacked, &shipped)?,
            shipped: shipped.iter().map(|f| relative(&unpacked, f)).collect(),
            failed: Vec::new(),
        };
        findings.failed = check_targets(package, &check_root, &findings);
        report.insert(package.name.clone(), findings);
    }
    summarize(&report)
}

fn names(packages: &[Package]) -> Vec<&str> {
    packages.iter().map(|p| p.name.as_str()).collect()
}

/// `<name>-<version>`, the directory a `.crate` unpacks into.
fn unpacked_name(package: &Package) -> String {
    format!("{}-{}", package.name, package.version)
}

/// Unpacks every tarball into `into` and writes the workspace manifest that ties them together.
fn unpack(order: &[Package], into: &Path) -> Result<(), String> {
    let _ = fs::remove_dir_all(into);
    fs::create_dir_all(into).map_err(|e| format!("{}: {e}", into.display()))?;
    let tarballs = verify_target().join("package");
    let mut manifest = String::from(
        "# Written by `cargo xtask package`: the packaged crates, resolved against each other.\n\
         [workspace]\nresolver = \"3\"\nmembers = [\n",
    );
    let mut patch = String::from("\n[patch.crates-io]\n");
    for package in order {
        let dir = unpacked_name(package);
        let tarball = tarballs.join(format!("{dir}.crate"));
        let mut tar = Command::new("tar");
        tar.arg("xzf").arg(&tarball).arg("-C").arg(into);
        crate::run(tar)?;
        let _ = writeln!(manifest, "    \"{dir}\",");
        let _ = writeln!(patch, "{} = {{ path = \"{dir}\" }}", package.name);
    }
    manifest.push_str("]\n");
    manifest.push_str(&patch);
    let write = |name: &str, text: &str| {
        fs::write(into.join(name), text).map_err(|e| format!("{name}: {e}"))
    };
    write("Cargo.toml", &manifest)?;
    // Start from the workspace's lock file so the check uses the versions CI tests with.
    let lock = fs::read_to_string(crate::root().join("Cargo.lock")).unwrap_or_default();
    write("Cargo.lock", &lock)
}

/// `file` relative to `dir`, with `/` separators.
fn relative(dir: &Path, file: &Path) -> String {
    file.strip_prefix(dir)
        .unwrap_or(file)
        .to_string_lossy()
        .replace('\\', "/")
}

/// The `shipped` files of `package` (unpacked at `dir`) that use a crate cargo drops on publish,
/// by crate name.
fn dropped_uses(
    package: &Package,
    dir: &Path,
    shipped: &[PathBuf],
) -> Result<BTreeMap<String, Vec<String>>, String> {
    let mut found = BTreeMap::new();
    let dropped: Vec<&str> = package
        .dependencies
        .iter()
        .filter(|d| d.dev && d.path_only)
        .map(|d| d.crate_name.as_str())
        .collect();
    for file in shipped {
        let text = fs::read_to_string(file).map_err(|e| format!("{}: {e}", file.display()))?;
        for name in dropped.iter().filter(|name| uses_crate(&text, name)) {
            found
                .entry((*name).to_owned())
                .or_insert_with(Vec::new)
                .push(relative(dir, file));
        }
    }
    Ok(found)
}

/// True when `text` names the crate `name` as a path root (`name::`, `use name`, `extern crate`).
fn uses_crate(text: &str, name: &str) -> bool {
    text.match_indices(name).any(|(at, _)| {
        let before = text[..at].chars().next_back();
        let after = &text[at + name.len()..];
        !before.is_some_and(|c| c.is_alphanumeric() || c == '_')
            && (after.starts_with("::") || after.starts_with(';') || after.starts_with(" as "))
    })
}

/// Every `.rs` file under `dir`, recursively, sorted.
fn rust_files(dir: &Path) -> Result<Vec<PathBuf>, String> {
    let mut files = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(dir) = pending.pop() {
        let entries = fs::read_dir(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        for path in entries.flatten().map(|e| e.path()) {
            if path.is_dir() {
                pending.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                files.push(path);
            }
        }
    }
    files.sort();
    Ok(files)
}

/// `cargo check` of each target of `package` in the unpacked workspace; returns the targets that
/// failed. Targets whose sources use a dropped crate are not tried: they cannot build.
fn check_targets(package: &Package, check_root: &Path, findings: &Findings) -> Vec<String> {
    let condemned: Vec<&str> = findings
        .dropped_uses
        .values()
        .flatten()
        .map(String::as_str)
        .collect();
    let src_condemned = condemned.iter().any(|f| f.starts_with("src/"));
    // A binary-only package (the command-line tool) has no `--lib` to check.
    let has_lib = package.targets.iter().any(|t| t.kind == "lib");
    let units = if has_lib { "--lib" } else { "--bins" };
    let shipped = ["--lib", "--bins", "--examples", "--benches"]
        .into_iter()
        .filter(|flag| has_lib || *flag != "--lib")
        .map(String::from)
        .collect();
    let mut groups: Vec<(String, Vec<String>)> =
        vec![("lib, bins, examples, benches".to_owned(), shipped)];
    if !src_condemned {
        groups.push((
            "unit tests".to_owned(),
            [units, "--profile", "test"].map(String::from).to_vec(),
        ));
    }
    for target in package.targets.iter().filter(|t| t.kind == "test") {
        let file = target
            .src_path
            .strip_prefix(&package.dir)
            .unwrap_or(&target.src_path);
        let file = file.to_string_lossy().replace('\\', "/");
        if !condemned.contains(&file.as_str())
            && check_root.join(unpacked_name(package)).join(&file).exists()
        {
            groups.push((
                format!("test `{}`", target.name),
                vec!["--test".to_owned(), target.name.clone()],
            ));
        }
    }
    let mut failed = Vec::new();
    for (what, args) in groups {
        let mut cmd = crate::cargo();
        cmd.current_dir(check_root)
            .args(["check", "--all-features", "-p", &package.name])
            .args(&args);
        if let Err(e) = crate::run(cmd) {
            println!(
                "{}: {what} do not build from the tarball ({e})",
                package.name
            );
            failed.push(what);
        }
    }
    failed
}

/// Prints what each package needs; an error when any package needs something.
fn summarize(report: &BTreeMap<String, Findings>) -> Result<(), String> {
    println!("\n== packaging report");
    let mut needs_work = 0;
    for (name, findings) in report {
        if findings.dropped_uses.is_empty() && findings.failed.is_empty() {
            println!("{name}: ok (packaged; every shipped target builds from the tarball)");
            continue;
        }
        needs_work += 1;
        println!("{name}:");
        for (dropped, files) in &findings.dropped_uses {
            print_remedy(dropped, files, &findings.shipped);
        }
        for target in &findings.failed {
            println!("  - `cargo check` from the tarball failed for: {target}");
        }
    }
    if needs_work == 0 {
        Ok(())
    } else {
        Err(format!(
            "{needs_work} package(s) ship targets that cannot build from their tarball (see above)"
        ))
    }
}

/// The manifest (or source) change that stops shipping `files`, which use the dropped `krate`.
fn print_remedy(krate: &str, files: &[String], shipped: &[String]) {
    println!("  uses `{krate}`, which cargo drops on publish (path-only dev-dependency), in:");
    for file in files {
        println!("    {file}");
    }
    let (in_src, elsewhere): (Vec<&String>, Vec<&String>) =
        files.iter().partition(|f| f.starts_with("src/"));
    let excluded = exclude_entries(&elsewhere, shipped);
    if !excluded.is_empty() {
        println!(
            "  manifest: add to [package]  exclude = [{}]",
            excluded
                .iter()
                .map(|e| format!("\"{e}\""))
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    if !in_src.is_empty() {
        println!(
            "  source: unit tests under src/ cannot be excluded by the manifest; move the tests \
             that use `{krate}` into tests/ (which the manifest then excludes)"
        );
    }
}

/// Exclude entries for `files`: a whole top-level directory (`/tests/`, `/benches/`, `/examples/`)
/// when every shipped `.rs` file directly in it (each a target of its own) is listed, which takes
/// their support modules along; else the files one by one.
fn exclude_entries(files: &[&String], shipped: &[String]) -> Vec<String> {
    let mut by_dir: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for file in files {
        let dir = file.split_once('/').map_or("", |(dir, _)| dir);
        by_dir.entry(dir).or_default().push(file.as_str());
    }
    let mut entries = Vec::new();
    for (dir, listed) in by_dir {
        let prefix = format!("{dir}/");
        let whole = !dir.is_empty()
            && shipped
                .iter()
                .filter(|f| f.strip_prefix(&prefix).is_some_and(|f| !f.contains('/')))
                .all(|f| listed.contains(&f.as_str()));
        // Anchored with a leading `/`: cargo reads gitignore patterns, and a bare `tests/` would
        // also drop any `tests/` directory deeper in the package.
        if whole {
            entries.push(format!("/{prefix}"));
        } else {
            entries.extend(listed.iter().map(|f| format!("/{f}")));
        }
    }
    entries
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crate_uses_are_found_as_path_roots_only() {
        assert!(uses_crate(
            "use redis_test_support::TestContext;",
            "redis_test_support"
        ));
        assert!(uses_crate(
            "let c = redis_test_support::TestContext::new();",
            "redis_test_support"
        ));
        assert!(uses_crate(
            "extern crate redis_test_support;",
            "redis_test_support"
        ));
        assert!(!uses_crate(
            "use my_redis_test_support::X;",
            "redis_test_support"
        ));
        assert!(!uses_crate(
            "// see redis_test_support docs",
            "redis_test_support"
        ));
    }

    #[test]
    fn a_directory_is_excluded_whole_when_all_its_targets_are_listed() {
        let shipped: Vec<String> = [
            "src/lib.rs",
            "tests/a.rs",
            "tests/b.rs",
            "tests/support/mod.rs",
            "benches/b.rs",
            "benches/c.rs",
        ]
        .map(String::from)
        .to_vec();
        // `tests/support/mod.rs` does not use the crate itself: it goes with `tests/`.
        let listed: Vec<String> = ["tests/a.rs", "tests/b.rs", "benches/b.rs"]
            .map(String::from)
            .to_vec();
        let listed: Vec<&String> = listed.iter().collect();
        assert_eq!(
            exclude_entries(&listed, &shipped),
            ["/benches/b.rs", "/tests/"]
        );
    }
}
