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

/// `fuwa check -c path` with `env` set (e.g. `TOKIO_WORKER_THREADS`), which
/// must pass: what it printed, and the memory bound's parts as (who: what,
/// exact bytes), the lines after its `memory bound:` line.
pub fn bound_parts(bin: &str, path: &Path, env: &[(&str, &str)]) -> (String, Vec<(String, u64)>) {
    let o = Command::new(bin)
        .args(["check", "-c"])
        .arg(path)
        .envs(env.iter().copied())
        .output()
        .expect("run fuwa check");
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(
        o.status.success(),
        "{out}{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let parts = out
        .lines()
        .skip_while(|l| !l.starts_with("memory bound: "))
        .skip(1)
        .map(|l| {
            let l = l.trim_start();
            let (n, what) = l
                .split_once("  ")
                .unwrap_or_else(|| panic!("`{l}` in\n{out}"));
            let n = n
                .parse::<u64>()
                .unwrap_or_else(|_| panic!("`{l}` in\n{out}"));
            (what.trim().to_string(), n)
        })
        .collect();
    (out, parts)
}

/// The memory bound `fuwa check` prints for a config held in memory, in
/// bytes (the sum of its parts), with `env` set for the check.
pub fn bound_bytes(bin: &str, text: &str, env: &[(&str, &str)]) -> u64 {
    let dir = tempfile::tempdir().expect("tempdir");
    let copy = dir.path().join("config.toml");
    std::fs::write(&copy, text).expect("write copy");
    let (out, parts) = bound_parts(bin, &copy, env);
    let sum: u64 = parts.iter().map(|(_, n)| n).sum();
    assert!(sum > 0, "no memory bound in\n{out}");
    sum
}
