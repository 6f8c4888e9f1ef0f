//! `cargo xtask tidy`: the layout rules of `docs/architecture.md`, checked.
//!
//! - Lua lives only in `.lua` files under a crate's `src/scripts/`, never in Rust strings.
//! - Every pattern crate has `src/error.rs`, `src/config.rs` and `src/scripts/mod.rs`.
//! - Integration-test helpers live in `tests/support/`.
//! - No source file under a crate's (or the xtask's) `src/` is longer than [`MAX_LINES`].
//! - A pattern crate depends on `redis-patterns-core` for Redis, never on `redis` directly nor
//!   on another pattern crate.
//!
//! It also runs as a test (`cargo test -p xtask`), so the suite fails on a broken rule.

use std::{
    fmt,
    path::{Path, PathBuf},
};

/// The longest a source file may be, in-file unit tests included.
pub(crate) const MAX_LINES: usize = 600;

/// Crates under `crates/` that are not patterns: the foundation, test and demo support, tools.
const NOT_PATTERNS: &[&str] = &[
    "redis-patterns-core",
    "redis-test-support",
    "redis-patterns-demo",
    "redis-patterns-cli",
];

/// Files every pattern crate has.
const PATTERN_FILES: &[&str] = &["src/error.rs", "src/config.rs", "src/scripts/mod.rs"];

/// One broken rule, naming the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Violation {
    pub(crate) path: PathBuf,
    pub(crate) rule: String,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path.display(), self.rule)
    }
}

/// Checks the workspace at `root` and returns every broken rule (empty when tidy).
pub(crate) fn check(root: &Path) -> Result<Vec<Violation>, String> {
    let mut violations = Vec::new();
    let crates_dir = root.join("crates");
    let mut crates: Vec<PathBuf> = read_dir(&crates_dir)?
        .into_iter()
        .filter(|p| p.join("Cargo.toml").is_file())
        .collect();
    crates.sort();
    let patterns: Vec<String> = crates
        .iter()
        .filter_map(|c| dir_name(c))
        .filter(|name| !NOT_PATTERNS.contains(&name.as_str()))
        .collect();

    for krate in &crates {
        let Some(name) = dir_name(krate) else {
            continue;
        };
        let is_pattern = patterns.contains(&name);
        for file in rust_files(&krate.join("src"))? {
            check_source(root, &file, &mut violations)?;
        }
        for file in files_with_extension(krate, "lua")? {
            let under_scripts = file.strip_prefix(krate.join("src").join("scripts")).is_ok();
            if !under_scripts {
                violations.push(violation(
                    root,
                    &file,
                    "Lua files belong in the crate's src/scripts/".to_owned(),
                ));
            }
        }
        check_test_helpers(root, krate, &mut violations)?;
        if is_pattern {
            for required in PATTERN_FILES {
                let path = krate.join(required);
                if !path.is_file() {
                    violations.push(violation(
                        root,
                        &path,
                        format!("every pattern crate has {required}"),
                    ));
                }
            }
            check_dependencies(root, krate, &patterns, &mut violations)?;
        }
    }
    for file in rust_files(&root.join("xtask").join("src"))? {
        check_length(
            root,
            &file,
            &std::fs::read_to_string(&file).map_err(io(&file))?,
            &mut violations,
        );
    }
    Ok(violations)
}

/// Length, and no Lua in Rust strings (outside comments).
fn check_source(root: &Path, file: &Path, violations: &mut Vec<Violation>) -> Result<(), String> {
    let text = std::fs::read_to_string(file).map_err(io(file))?;
    check_length(root, file, &text, violations);
    for (number, line) in text.lines().enumerate() {
        let code = line.trim_start();
        if code.starts_with("//") {
            continue;
        }
        if code.contains("redis.call(") || code.contains("redis.pcall(") {
            violations.push(violation(
                root,
                file,
                format!(
                    "line {}: Lua in a Rust string; put it in a .lua file under src/scripts/",
                    number + 1
                ),
            ));
            break;
        }
    }
    Ok(())
}

fn check_length(root: &Path, file: &Path, text: &str, violations: &mut Vec<Violation>) {
    let lines = text.lines().count();
    if lines > MAX_LINES {
        violations.push(violation(
            root,
            file,
            format!("{lines} lines, over the limit of {MAX_LINES}: split it by role"),
        ));
    }
}

/// Subfolders of `tests/` are only `support/`.
fn check_test_helpers(
    root: &Path,
    krate: &Path,
    violations: &mut Vec<Violation>,
) -> Result<(), String> {
    let tests = krate.join("tests");
    if !tests.is_dir() {
        return Ok(());
    }
    for entry in read_dir(&tests)? {
        if entry.is_dir() && dir_name(&entry).as_deref() != Some("support") {
            violations.push(violation(
                root,
                &entry,
                "test helpers live in tests/support/".to_owned(),
            ));
        }
        let stem = entry.file_stem().map(|s| s.to_string_lossy().into_owned());
        if entry.is_file()
            && matches!(
                stem.as_deref(),
                Some("common" | "helpers" | "util" | "utils")
            )
        {
            violations.push(violation(
                root,
                &entry,
                "test helpers live in tests/support/mod.rs".to_owned(),
            ));
        }
    }
    Ok(())
}

/// A pattern crate reaches Redis through core only and never depends on another pattern crate.
fn check_dependencies(
    root: &Path,
    krate: &Path,
    patterns: &[String],
    violations: &mut Vec<Violation>,
) -> Result<(), String> {
    let manifest = krate.join("Cargo.toml");
    let text = std::fs::read_to_string(&manifest).map_err(io(&manifest))?;
    let own = dir_name(krate).unwrap_or_default();
    for dependency in dependencies(&text) {
        if dependency == "redis" {
            violations.push(violation(
                root,
                &manifest,
                "depends on `redis` directly; use the re-export `redis_core::redis`".to_owned(),
            ));
        } else if dependency != own && patterns.contains(&dependency) {
            violations.push(violation(
                root,
                &manifest,
                format!(
                    "depends on the pattern crate `{dependency}`; shared code belongs in redis-patterns-core"
                ),
            ));
        }
    }
    Ok(())
}

/// Package names in every `[*dependencies]` table of a manifest (also `[target.*.dependencies]`).
pub(crate) fn dependencies(manifest: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut in_table = false;
    for line in manifest.lines() {
        let line = line.trim();
        if line.starts_with('[') {
            let table = line.trim_matches(|c| c == '[' || c == ']');
            in_table = table.ends_with("dependencies");
            // `[dependencies.foo]` names the package in the header.
            if let Some(name) = table
                .split_once("dependencies.")
                .map(|(_, name)| name.trim().to_owned())
            {
                names.push(name);
                in_table = false;
            }
            continue;
        }
        if !in_table || line.is_empty() || line.starts_with('#') {
            continue;
        }
        let key = line.split(['=', '.']).next().unwrap_or("").trim();
        let key = key.trim_matches('"');
        if !key.is_empty() {
            // `package = "..."` renames: the real name is what matters.
            let renamed = ["package =", "package="]
                .iter()
                .find_map(|marker| line.split_once(marker))
                .and_then(|(_, rest)| rest.split('"').nth(1));
            names.push(renamed.unwrap_or(key).to_owned());
        }
    }
    names
}

fn violation(root: &Path, path: &Path, rule: String) -> Violation {
    Violation {
        path: path.strip_prefix(root).unwrap_or(path).to_path_buf(),
        rule,
    }
}

fn dir_name(path: &Path) -> Option<String> {
    path.file_name().map(|n| n.to_string_lossy().into_owned())
}

fn io(path: &Path) -> impl Fn(std::io::Error) -> String + '_ {
    move |e| format!("{}: {e}", path.display())
}

fn read_dir(dir: &Path) -> Result<Vec<PathBuf>, String> {
    let entries = std::fs::read_dir(dir).map_err(io(dir))?;
    let mut paths: Vec<PathBuf> = entries.flatten().map(|e| e.path()).collect();
    paths.sort();
    Ok(paths)
}

/// Every `*.rs` file below `dir` (none when it does not exist).
fn rust_files(dir: &Path) -> Result<Vec<PathBuf>, String> {
    files_with_extension(dir, "rs")
}

fn files_with_extension(dir: &Path, extension: &str) -> Result<Vec<PathBuf>, String> {
    let mut found = Vec::new();
    if !dir.is_dir() {
        return Ok(found);
    }
    let mut stack = vec![dir.to_path_buf()];
    while let Some(current) = stack.pop() {
        for path in read_dir(&current)? {
            if path.is_dir() {
                if dir_name(&path).as_deref() != Some("target") {
                    stack.push(path);
                }
            } else if path.extension().is_some_and(|e| e == extension) {
                found.push(path);
            }
        }
    }
    found.sort();
    Ok(found)
}

/// Runs the checks and turns violations into one error listing them.
pub(crate) fn run(root: &Path) -> Result<(), String> {
    let violations = check(root)?;
    if violations.is_empty() {
        println!("tidy: the layout rules hold");
        return Ok(());
    }
    let list: Vec<String> = violations.iter().map(ToString::to_string).collect();
    Err(format!(
        "tidy: {} rule(s) broken (see docs/architecture.md):\n  {}",
        violations.len(),
        list.join("\n  ")
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_workspace_is_tidy() {
        let root = crate::root();
        let violations = check(&root).expect("tidy reads the workspace");
        assert!(
            violations.is_empty(),
            "{}",
            violations
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("\n")
        );
    }

    #[test]
    fn dependencies_are_read_from_every_table() {
        let manifest = r#"
[package]
name = "redis-x"

[dependencies]
redis-patterns-core.workspace = true
serde = { workspace = true }
"redis" = "1"

[dev-dependencies]
redis-patterns-lock = { path = "../redis-patterns-lock" }
renamed = { package = "redis-patterns-cache", version = "0.1" }

[target.'cfg(unix)'.dependencies]
tokio.workspace = true

[dependencies.rand]
version = "0.10"

[features]
default = []
"#;
        assert_eq!(
            dependencies(manifest),
            [
                "redis-patterns-core",
                "serde",
                "redis",
                "redis-patterns-lock",
                "redis-patterns-cache",
                "tokio",
                "rand"
            ]
        );
    }

    #[test]
    fn broken_rules_are_reported_with_the_file() {
        let dir = std::env::temp_dir().join(format!("xtask-tidy-{}", std::process::id()));
        let krate = dir.join("crates").join("redis-bad");
        std::fs::create_dir_all(krate.join("src")).unwrap();
        std::fs::create_dir_all(krate.join("tests").join("common")).unwrap();
        std::fs::create_dir_all(dir.join("xtask").join("src")).unwrap();
        std::fs::write(
            krate.join("Cargo.toml"),
            "[package]\nname = \"redis-bad\"\n[dependencies]\nredis = \"1\"\nredis-good = \"0.1\"\n",
        )
        .unwrap();
        std::fs::write(
            krate.join("src").join("lib.rs"),
            "const S: &str = \"return redis.call('GET', KEYS[1])\";\n".repeat(MAX_LINES + 1),
        )
        .unwrap();
        std::fs::write(krate.join("src").join("stray.lua"), "return 1").unwrap();
        let good = dir.join("crates").join("redis-good");
        std::fs::create_dir_all(good.join("src")).unwrap();
        std::fs::write(
            good.join("Cargo.toml"),
            "[package]\nname = \"redis-good\"\n",
        )
        .unwrap();

        let violations = check(&dir).unwrap();
        let text: Vec<String> = violations.iter().map(ToString::to_string).collect();
        let has = |needle: &str| text.iter().any(|v| v.contains(needle));
        assert!(has("crates/redis-bad/src/lib.rs: 601 lines"), "{text:#?}");
        assert!(
            has("crates/redis-bad/src/lib.rs: line 1: Lua in a Rust string"),
            "{text:#?}"
        );
        assert!(
            has("crates/redis-bad/src/stray.lua: Lua files belong"),
            "{text:#?}"
        );
        assert!(
            has("crates/redis-bad/tests/common: test helpers live"),
            "{text:#?}"
        );
        assert!(
            has("crates/redis-bad/src/error.rs: every pattern crate"),
            "{text:#?}"
        );
        assert!(
            has("crates/redis-bad/src/scripts/mod.rs: every pattern crate"),
            "{text:#?}"
        );
        assert!(has("depends on `redis` directly"), "{text:#?}");
        assert!(
            has("depends on the pattern crate `redis-good`"),
            "{text:#?}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
