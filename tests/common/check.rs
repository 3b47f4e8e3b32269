//! `fuwa check` on a config file, for the tests of the example configs
//! (tests/cli.rs) and of the packaging (tests/packaging.rs).
#![allow(dead_code)]

use std::path::Path;
use std::process::Command;

fn run_check(bin: &str, path: &Path) -> (bool, String) {
    let o = Command::new(bin)
        .args(["check", "-c"])
        .arg(path)
        .output()
        .expect("run fuwa check");
    (
        o.status.success(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

/// `Ok(())` when the file passes `fuwa check`, `Err(what it printed)`.
pub fn check(bin: &str, path: &Path) -> Result<(), String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read: {e}"))?;
    check_text(bin, path, &text)
}

/// The same for a config held in memory (`path` names it in messages).
pub fn check_text(bin: &str, path: &Path, text: &str) -> Result<(), String> {
    let dir = tempfile::tempdir().expect("tempdir");
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "config.toml".into());
    let copy = dir.path().join(name);
    std::fs::write(&copy, text).expect("write copy");
    match run_check(bin, &copy) {
        (true, _) => Ok(()),
        (false, err) => Err(err.replace(&copy.display().to_string(), &path.display().to_string())),
    }
}
