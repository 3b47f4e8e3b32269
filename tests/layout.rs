//! The dependency rule, read from `cargo metadata`: a plugin crate (a
//! folder named `in_*`, `filter_*` or `out_*`) depends on no other plugin,
//! and a shared library crate depends on no plugin. What plugins share is a
//! library crate, once.

use std::process::Command;

fn is_plugin_dir(manifest: &str) -> Option<String> {
    let dir = std::path::Path::new(manifest).parent()?;
    let name = dir.file_name()?.to_str()?;
    (name.starts_with("in_") || name.starts_with("filter_") || name.starts_with("out_"))
        .then(|| name.to_string())
}

/// `cargo metadata` of the workspace (no dependencies resolved).
fn cargo_metadata() -> std::process::Output {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    Command::new(cargo)
        .args([
            "metadata",
            "--format-version",
            "1",
            "--no-deps",
            "--offline",
        ])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("run cargo metadata")
}

#[test]
fn plugins_never_import_each_other_and_libraries_never_import_plugins() {
    let out = cargo_metadata();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let meta: serde_json::Value = serde_json::from_slice(&out.stdout).expect("metadata JSON");
    let packages = meta["packages"].as_array().expect("packages");
    // package name -> plugin folder, for the workspace's plugin crates
    let plugins: std::collections::HashMap<String, String> = packages
        .iter()
        .filter_map(|p| {
            let dir = is_plugin_dir(p["manifest_path"].as_str()?)?;
            Some((p["name"].as_str()?.to_string(), dir))
        })
        .collect();
    assert!(plugins.len() >= 10, "plugin crates found: {plugins:?}");
    let root = env!("CARGO_MANIFEST_DIR");
    let mut wrong = Vec::new();
    for p in packages {
        let name = p["name"].as_str().unwrap_or("?");
        let manifest = p["manifest_path"].as_str().unwrap_or("");
        // the engine (the root package) and the benchmarks may use plugins
        if manifest == format!("{root}/Cargo.toml") || manifest.contains("/bench/") {
            continue;
        }
        for d in p["dependencies"].as_array().into_iter().flatten() {
            let dep = d["name"].as_str().unwrap_or("");
            if plugins.contains_key(dep) && dep != name {
                wrong.push(format!("{name} depends on the plugin {dep}"));
            }
        }
    }
    assert!(wrong.is_empty(), "{wrong:#?}");
}

/// Every normal dependency a crate declares is used by its code (its name,
/// as a Rust path, appears in one of its sources): a dependency nobody uses
/// costs build time and binary size for nothing.
#[test]
fn no_crate_declares_a_dependency_it_does_not_use() {
    let out = cargo_metadata();
    let meta: serde_json::Value = serde_json::from_slice(&out.stdout).expect("metadata JSON");
    let mut unused = Vec::new();
    for p in meta["packages"].as_array().expect("packages") {
        let name = p["name"].as_str().unwrap_or("?");
        let manifest = std::path::PathBuf::from(p["manifest_path"].as_str().unwrap_or(""));
        let Some(dir) = manifest.parent() else {
            continue;
        };
        let mut text = String::new();
        let mut stack = vec![dir.join("src"), dir.join("examples"), dir.join("benches")];
        while let Some(d) = stack.pop() {
            let Ok(rd) = std::fs::read_dir(&d) else {
                continue;
            };
            for e in rd.flatten() {
                let path = e.path();
                if path.is_dir() {
                    stack.push(path);
                } else if path.extension().is_some_and(|x| x == "rs") {
                    text.push_str(&std::fs::read_to_string(&path).unwrap_or_default());
                }
            }
        }
        for d in p["dependencies"].as_array().into_iter().flatten() {
            if !d["kind"].is_null() {
                continue; // dev and build dependencies are for tests and build scripts
            }
            let dep = d["rename"]
                .as_str()
                .or(d["name"].as_str())
                .unwrap_or("")
                .replace('-', "_");
            let used = [format!("{dep}::"), format!("use {dep}"), format!("{dep}!")]
                .iter()
                .any(|needle| text.contains(needle.as_str()));
            if !used {
                unused.push(format!("{name}: {dep}"));
            }
        }
    }
    assert!(unused.is_empty(), "declared but unused: {unused:#?}");
}
