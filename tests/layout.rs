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

#[test]
fn plugins_never_import_each_other_and_libraries_never_import_plugins() {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = Command::new(cargo)
        .args([
            "metadata",
            "--format-version",
            "1",
            "--no-deps",
            "--offline",
        ])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("run cargo metadata");
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
