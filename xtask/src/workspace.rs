//! The workspace's packages as `cargo metadata` describes them: names, versions, publishability,
//! dependencies and targets. Nothing here hard-codes a package name.

use std::{
    collections::{BTreeMap, BTreeSet},
    path::PathBuf,
};

use crate::json::Json;

/// One workspace member.
#[derive(Debug, Clone)]
pub(crate) struct Package {
    pub(crate) name: String,
    pub(crate) version: String,
    /// The directory holding its `Cargo.toml`.
    pub(crate) dir: PathBuf,
    /// False when the manifest says `publish = false`.
    pub(crate) publishable: bool,
    pub(crate) dependencies: Vec<Dependency>,
    pub(crate) targets: Vec<Target>,
}

/// One entry of a `[dependencies]`, `[dev-dependencies]` or `[build-dependencies]` table.
#[derive(Debug, Clone)]
pub(crate) struct Dependency {
    /// The package depended on.
    pub(crate) name: String,
    /// The name the code uses (`rename`, else the package name with `-` as `_`).
    pub(crate) crate_name: String,
    pub(crate) dev: bool,
    /// True for `path = ".."` without a version: cargo drops such dev-dependencies on publish.
    pub(crate) path_only: bool,
}

/// One build target (lib, test, example, bench, bin).
#[derive(Debug, Clone)]
pub(crate) struct Target {
    pub(crate) name: String,
    /// `lib`, `test`, `example`, `bench`, `bin`, ...
    pub(crate) kind: String,
    pub(crate) src_path: PathBuf,
}

/// Every workspace member, read with `cargo metadata --format-version 1 --no-deps`.
pub(crate) fn packages() -> Result<Vec<Package>, String> {
    let output = crate::cargo()
        .args([
            "metadata",
            "--format-version",
            "1",
            "--no-deps",
            "--offline",
        ])
        .output()
        .map_err(|e| format!("cargo metadata: {e}"))?;
    if !output.status.success() {
        return Err(format!(
            "cargo metadata failed: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        ));
    }
    let json = Json::parse(&String::from_utf8_lossy(&output.stdout))?;
    json.get("packages").items().iter().map(package).collect()
}

/// One element of the `packages` array.
fn package(json: &Json) -> Result<Package, String> {
    let text = |key: &str| {
        json.get(key)
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| format!("cargo metadata: a package without `{key}`"))
    };
    let manifest = PathBuf::from(text("manifest_path")?);
    Ok(Package {
        name: text("name")?,
        version: text("version")?,
        dir: manifest.parent().map(PathBuf::from).unwrap_or_default(),
        // `null` means "anywhere"; `[]` is how `publish = false` reads.
        publishable: json.get("publish") != &Json::Array(Vec::new()),
        dependencies: json
            .get("dependencies")
            .items()
            .iter()
            .map(dependency)
            .collect(),
        targets: json.get("targets").items().iter().map(target).collect(),
    })
}

/// One element of a package's `dependencies` array.
fn dependency(json: &Json) -> Dependency {
    let name = json.get("name").as_str().unwrap_or_default().to_owned();
    let crate_name = json
        .get("rename")
        .as_str()
        .unwrap_or(&name)
        .replace('-', "_");
    Dependency {
        crate_name,
        dev: json.get("kind").as_str() == Some("dev"),
        path_only: json.get("path").as_str().is_some() && json.get("req").as_str() == Some("*"),
        name,
    }
}

/// One element of a package's `targets` array (its first kind).
fn target(json: &Json) -> Target {
    Target {
        name: json.get("name").as_str().unwrap_or_default().to_owned(),
        kind: json
            .get("kind")
            .items()
            .first()
            .and_then(Json::as_str)
            .unwrap_or_default()
            .to_owned(),
        src_path: PathBuf::from(json.get("src_path").as_str().unwrap_or_default()),
    }
}

/// `packages` sorted so that each comes after the workspace members it depends on (by any kind of
/// dependency); ties by name. A cycle is an error.
pub(crate) fn dependency_order(packages: &[Package]) -> Result<Vec<Package>, String> {
    let names: BTreeSet<&str> = packages.iter().map(|p| p.name.as_str()).collect();
    let mut waiting: BTreeMap<&str, BTreeSet<&str>> = packages
        .iter()
        .map(|p| {
            let needs = p
                .dependencies
                .iter()
                .map(|d| d.name.as_str())
                .filter(|d| names.contains(d) && *d != p.name)
                .collect();
            (p.name.as_str(), needs)
        })
        .collect();
    let mut order = Vec::new();
    while !waiting.is_empty() {
        let ready: Vec<&str> = waiting
            .iter()
            .filter(|(_, needs)| needs.is_empty())
            .map(|(name, _)| *name)
            .collect();
        if ready.is_empty() {
            return Err(format!("dependency cycle among {:?}", waiting.keys()));
        }
        for name in ready {
            waiting.remove(name);
            waiting.values_mut().for_each(|needs| {
                needs.remove(name);
            });
            order.extend(packages.iter().find(|p| p.name == name).cloned());
        }
    }
    Ok(order)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(name: &str, deps: &[&str]) -> Package {
        Package {
            name: name.into(),
            version: "0.1.0".into(),
            dir: PathBuf::new(),
            publishable: true,
            dependencies: deps
                .iter()
                .map(|d| Dependency {
                    name: (*d).into(),
                    crate_name: d.replace('-', "_"),
                    dev: false,
                    path_only: false,
                })
                .collect(),
            targets: Vec::new(),
        }
    }

    #[test]
    fn dependencies_come_first() {
        let packages = [
            member("z-cache", &["a-core", "serde"]),
            member("a-core", &[]),
            member("m-lock", &["a-core", "z-cache"]),
        ];
        let order: Vec<String> = dependency_order(&packages)
            .unwrap()
            .into_iter()
            .map(|p| p.name)
            .collect();
        assert_eq!(order, ["a-core", "z-cache", "m-lock"]);
    }

    #[test]
    fn a_cycle_is_an_error() {
        let packages = [member("a", &["b"]), member("b", &["a"])];
        assert!(dependency_order(&packages).is_err());
    }
}
