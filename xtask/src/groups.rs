//! The two groups of tests, for `cargo xtask test --shared-only`.
//!
//! The rule (also in the usage text): a test belongs to the **local-binaries** group, which starts
//! its own `redis-server` processes (clusters, Sentinel groups, fault proxies, servers it kills,
//! restarts or reconfigures), when
//!
//! - its test binary (the file name under `tests/`) is one of [`LOCAL_BINARIES`], alone or as the
//!   first word of the name: `cluster.rs`, `sentinel.rs`, `failures.rs`, `cluster_tags.rs`; or
//! - it sits in a module named [`LOCAL_MODULE`] in any other binary (`mod local { .. }`), so mixed
//!   files keep their shared tests where they are.
//!
//! Every other test is in the **shared** group: it needs nothing but the server at `REDIS_URL`
//! (`TestContext::new()`), which may be any Redis or Valkey the CI matrix names.
//!
//! The rule is by name so that nextest can apply it before anything runs. A source scan
//! ([`rule_breakers`]) backs it up: a test outside the local group whose body (or a helper in its
//! file) spawns servers is named, and left out of the shared run with a warning, until it is
//! renamed or moved to follow the rule.

use std::{fs, path::Path};

use crate::workspace::{Package, Target};

/// Test binary names, or first words of names, that mark a local-binaries test binary.
pub(crate) const LOCAL_BINARIES: &[&str] = &[
    "cluster", "sentinel", "failover", "failure", "failures", "fault", "faults", "soak", "redlock",
    "tls", "local",
];

/// The module that holds local-binaries tests inside an otherwise shared test binary.
pub(crate) const LOCAL_MODULE: &str = "local";

/// Calls that start or take over servers of their own.
const SPAWN_MARKERS: &[&str] = &[
    "TestCluster::",
    "TestSentinel::",
    "TestMasters::",
    "TestServer::",
    "FaultProxy::",
    "TestContext::private",
];

/// A test that needs local servers but does not follow the naming rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RuleBreaker {
    /// nextest's binary id: `<package>` for unit tests, `<package>::<test target>` otherwise.
    pub(crate) binary_id: String,
    /// nextest's test name: the module path inside the binary and the function name.
    pub(crate) test: String,
}

/// The nextest filter expression of the local-binaries group, by the naming rule alone.
pub(crate) fn local_by_rule() -> String {
    format!(
        "binary(/^({})(_.*)?$/) | test(/(^|::){LOCAL_MODULE}::/)",
        LOCAL_BINARIES.join("|")
    )
}

/// True when a test binary named `name` is in the local-binaries group by the rule.
pub(crate) fn is_local_binary(name: &str) -> bool {
    LOCAL_BINARIES
        .iter()
        .any(|kind| name == *kind || name.strip_prefix(kind).is_some_and(|r| r.starts_with('_')))
}

/// Tests that spawn servers (as far as a line-based scan of their sources can tell) but are in the
/// shared group by name.
pub(crate) fn rule_breakers(packages: &[Package]) -> Vec<RuleBreaker> {
    let mut found = Vec::new();
    for package in packages {
        for target in &package.targets {
            let (binary_id, files) = match target.kind.as_str() {
                "test" if !is_local_binary(&target.name) => (
                    format!("{}::{}", package.name, target.name),
                    vec![(target.src_path.clone(), String::new())],
                ),
                "lib" => (package.name.clone(), module_files(target)),
                _ => continue,
            };
            for (file, module) in files {
                let Ok(text) = fs::read_to_string(&file) else {
                    continue;
                };
                found.extend(
                    spawning_tests(&text, &module)
                        .into_iter()
                        .filter(|t| !t.starts_with(&format!("{LOCAL_MODULE}::")))
                        .filter(|t| !t.contains(&format!("::{LOCAL_MODULE}::")))
                        .map(|test| RuleBreaker {
                            binary_id: binary_id.clone(),
                            test,
                        }),
                );
            }
        }
    }
    found
}

/// Every `.rs` file under a library's source directory with its module path (`engine::read::`).
fn module_files(lib: &Target) -> Vec<(std::path::PathBuf, String)> {
    let Some(src) = lib.src_path.parent() else {
        return Vec::new();
    };
    let mut files = Vec::new();
    let mut pending = vec![src.to_path_buf()];
    while let Some(dir) = pending.pop() {
        for path in fs::read_dir(&dir)
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.path())
        {
            if path.is_dir() {
                pending.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let module = module_path(src, &path);
                files.push((path, module));
            }
        }
    }
    files
}

/// `src/engine/read.rs` → `engine::read::`; `lib.rs`, `main.rs` and `mod.rs` name their directory.
fn module_path(src: &Path, file: &Path) -> String {
    let relative = file.strip_prefix(src).unwrap_or(file).with_extension("");
    let mut parts: Vec<String> = relative
        .iter()
        .map(|p| p.to_string_lossy().into_owned())
        .collect();
    if parts
        .last()
        .is_some_and(|l| matches!(l.as_str(), "lib" | "main" | "mod"))
    {
        parts.pop();
    }
    parts.iter().map(|p| format!("{p}::")).collect()
}

/// One function of a scanned file.
#[derive(Debug)]
struct Function {
    /// Module path and name, as nextest shows a test.
    path: String,
    name: String,
    is_test: bool,
    body: String,
}

/// Names (with `module` and inline modules prefixed) of the tests in `text` that spawn servers,
/// directly or through a function of the same file.
fn spawning_tests(text: &str, module: &str) -> Vec<String> {
    let functions = functions(text, module);
    let mut spawning: Vec<&str> = Vec::new();
    // Helpers calling helpers: repeat until nothing new turns up.
    loop {
        let before = spawning.len();
        for f in &functions {
            let spawns = SPAWN_MARKERS.iter().any(|m| f.body.contains(m))
                || spawning.iter().any(|h| calls(&f.body, h));
            if spawns && !spawning.contains(&f.name.as_str()) {
                spawning.push(&f.name);
            }
        }
        if spawning.len() == before {
            break;
        }
    }
    functions
        .iter()
        .filter(|f| f.is_test && spawning.contains(&f.name.as_str()))
        .map(|f| f.path.clone())
        .collect()
}

/// True when `body` calls a function `name` (`name(` not preceded by an identifier character).
fn calls(body: &str, name: &str) -> bool {
    body.match_indices(&format!("{name}(")).any(|(at, _)| {
        !body[..at]
            .chars()
            .next_back()
            .is_some_and(|c| c.is_alphanumeric() || c == '_')
    })
}

/// The functions of a file, split at each `fn` line; inline `mod x {` blocks extend the path.
fn functions(text: &str, module: &str) -> Vec<Function> {
    let mut functions: Vec<Function> = Vec::new();
    let mut modules: Vec<(String, usize)> = Vec::new();
    let mut test_attribute = false;
    for line in text.lines() {
        let indent = line.len() - line.trim_start().len();
        let code = strip_visibility(line.trim());
        if code == "}" && modules.last().is_some_and(|(_, i)| *i == indent) {
            modules.pop();
        } else if let Some(name) = code.strip_prefix("mod ").and_then(|r| r.strip_suffix(" {")) {
            modules.push((name.trim().to_owned(), indent));
        } else if code.starts_with("#[test]") || code.starts_with("#[tokio::test") {
            test_attribute = true;
        } else if let Some(name) = fn_name(code) {
            let inline: String = modules.iter().map(|(m, _)| format!("{m}::")).collect();
            functions.push(Function {
                path: format!("{module}{inline}{name}"),
                name: name.to_owned(),
                is_test: test_attribute,
                body: String::new(),
            });
            test_attribute = false;
        }
        if let Some(f) = functions.last_mut() {
            f.body.push_str(line);
            f.body.push('\n');
        }
    }
    functions
}

/// `code` without a leading `pub`, `pub(crate)` or `pub(super)`.
fn strip_visibility(code: &str) -> &str {
    ["pub(crate) ", "pub(super) ", "pub "]
        .iter()
        .find_map(|p| code.strip_prefix(p))
        .unwrap_or(code)
}

/// The name in `fn name(..` or `async fn name(..`.
fn fn_name(code: &str) -> Option<&str> {
    let rest = code
        .strip_prefix("async ")
        .unwrap_or(code)
        .strip_prefix("fn ")?;
    let end = rest.find(|c: char| !(c.is_alphanumeric() || c == '_'))?;
    Some(&rest[..end])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binaries_are_local_by_name_or_first_word() {
        for name in ["cluster", "sentinel", "failures", "cluster_tags", "soak"] {
            assert!(is_local_binary(name), "{name}");
        }
        for name in ["lock", "clusters", "tags_cluster", "streams"] {
            assert!(!is_local_binary(name), "{name}");
        }
    }

    #[test]
    fn tests_that_spawn_directly_or_through_a_helper_are_found() {
        let text = "\
use redis_test_support::{TestContext, TestServer};

async fn killable() -> TestContext {
    TestContext::private().await
}

#[tokio::test]
async fn shared_only() {
    let ctx = TestContext::new().await;
}

#[tokio::test(flavor = \"multi_thread\")]
async fn via_helper() {
    let ctx = killable().await;
}

#[test]
fn direct() {
    let s = TestServer::spawn();
}

mod local {
    #[tokio::test]
    async fn inside() {
        let s = TestServer::spawn();
    }
}

#[tokio::test]
async fn after_the_module() {
    let ctx = TestContext::new().await;
}
";
        assert_eq!(
            spawning_tests(text, "m::"),
            ["m::via_helper", "m::direct", "m::local::inside"]
        );
    }

    #[test]
    fn module_paths_follow_the_files() {
        let src = Path::new("/c/src");
        assert_eq!(module_path(src, Path::new("/c/src/lib.rs")), "");
        assert_eq!(
            module_path(src, Path::new("/c/src/engine/read.rs")),
            "engine::read::"
        );
        assert_eq!(
            module_path(src, Path::new("/c/src/store/mod.rs")),
            "store::"
        );
    }

    #[test]
    fn the_usage_text_states_the_rule_as_coded() {
        assert!(crate::USAGE.contains(&LOCAL_BINARIES.join(" ")));
        assert!(crate::USAGE.contains(&format!("mod {LOCAL_MODULE} {{ .. }}")));
    }

    #[test]
    fn the_rule_is_one_nextest_expression() {
        let expr = local_by_rule();
        assert!(expr.starts_with("binary(/^(cluster|sentinel|"), "{expr}");
        assert!(expr.ends_with("test(/(^|::)local::/)"), "{expr}");
    }
}
