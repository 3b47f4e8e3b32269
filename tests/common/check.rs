//! `fuwa check` on a config file, for the tests of the example configs
//! (tests/cli.rs) and of the packaging (tests/packaging.rs).
//!
//! Issue #7 adds the `http` input, the `forward` output and `[agent.api]` on
//! other branches. Configs written for them are refused by a build that does
//! not have them yet, with exactly one known message each. `check` probes the
//! binary for each of them: a feature this binary has is checked strictly
//! like everything else (so once they are merged nothing is tolerated); a
//! feature it lacks is the only thing tolerated — `[agent.api]` is commented
//! out (keeping line numbers) and the rest of the file checked strictly, and
//! an unknown `http`/`forward` type is accepted only as that exact message.
//! Lead: once the three are merged, `PENDING` can be emptied.
#![allow(dead_code)]

use std::path::Path;
use std::process::Command;
use std::sync::OnceLock;

struct Pending {
    what: &'static str,
    /// a minimal config using the feature
    probe: &'static str,
    /// what `fuwa check` says when the feature is missing (after `FILE:LINE: `)
    refusal: &'static str,
}

const PENDING: &[Pending] = &[
    Pending {
        what: "the http input",
        probe: "[[input]]\ntype = \"http\"\n\n[[output]]\ntype = \"null\"\n",
        refusal: "].type: unknown input type `http`",
    },
    Pending {
        what: "the forward output",
        probe:
            "[[output]]\ntype = \"forward\"\nservers = [{ host = \"127.0.0.1\", port = 24224 }]\n",
        refusal: "].type: unknown output type `forward`",
    },
    Pending {
        what: "[agent.api]",
        probe: "[agent.api]\nbind = \"127.0.0.1:24220\"\n\n[[output]]\ntype = \"null\"\n",
        refusal: "agent.api: unknown field `api`",
    },
];

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

/// The pending features this binary does not have.
fn missing(bin: &str) -> &'static Vec<&'static Pending> {
    static MISSING: OnceLock<Vec<&'static Pending>> = OnceLock::new();
    MISSING.get_or_init(|| {
        let dir = tempfile::tempdir().expect("tempdir");
        PENDING
            .iter()
            .filter(|p| {
                let f = dir.path().join("probe.toml");
                std::fs::write(&f, p.probe).expect("write probe");
                let (_, err) = run_check(bin, &f);
                err.contains(p.refusal)
            })
            .collect()
    })
}

/// `[agent.api]` and its keys commented out, line numbers unchanged.
fn without_agent_api(text: &str) -> String {
    let mut inside = false;
    let mut out = String::new();
    for line in text.lines() {
        let t = line.trim_start();
        if t.starts_with('[') {
            inside = t.starts_with("[agent.api]");
        }
        if inside {
            out.push_str("# (not in this build) ");
        }
        out.push_str(line);
        out.push('\n');
    }
    out
}

/// What `check` found: `Ok(notes)` when the file passes (notes name the
/// pending features it uses that this build lacks), `Err(stderr)` otherwise.
pub fn check(bin: &str, path: &Path) -> Result<Vec<&'static str>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read: {e}"))?;
    check_text(bin, path, &text)
}

pub fn check_text(bin: &str, path: &Path, text: &str) -> Result<Vec<&'static str>, String> {
    let missing = missing(bin);
    let mut notes = Vec::new();
    let dir = tempfile::tempdir().expect("tempdir");
    let mut text = text.to_string();
    let api_missing = missing.iter().any(|p| p.what == "[agent.api]");
    if api_missing
        && text
            .lines()
            .any(|l| l.trim_start().starts_with("[agent.api]"))
    {
        text = without_agent_api(&text);
        notes.push("[agent.api]");
    }
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "config.toml".into());
    let copy = dir.path().join(name);
    std::fs::write(&copy, &text).expect("write copy");
    let (ok, err) = run_check(bin, &copy);
    if ok {
        return Ok(notes);
    }
    let mut real = Vec::new();
    for line in err.lines() {
        if line.ends_with("problem(s) found") {
            continue;
        }
        match missing
            .iter()
            .find(|p| p.what != "[agent.api]" && line.contains(p.refusal))
        {
            Some(p) => {
                if !notes.contains(&p.what) {
                    notes.push(p.what)
                }
            }
            None => real.push(line),
        }
    }
    if real.is_empty() && !notes.is_empty() {
        Ok(notes)
    } else {
        Err(err.replace(&copy.display().to_string(), &path.display().to_string()))
    }
}
