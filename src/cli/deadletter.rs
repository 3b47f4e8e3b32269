//! `fuwa dead-letter list|replay`: what the buffers gave up on, and sending
//! it again through the output that failed (whether or not the agent runs).
//! A thin command over `crate::buffer::deadletter`, which writes, reads and
//! delivers the letters; this file selects them and prints.

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use anyhow::{bail, Result};

use crate::buffer::deadletter::{self, Letter};
use crate::config::Config;

/// Every dead letter under `data_dir/dead-letter/*/`, saying which `.json`
/// files are not notes.
fn scan(data_dir: &Path) -> Vec<Letter> {
    let found = deadletter::scan(data_dir);
    for p in &found.not_notes {
        eprintln!("{}: not a dead-letter note, skipped", p.display());
    }
    found.letters
}

fn age(ms: u64) -> String {
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0);
    let s = now.saturating_sub(ms) / 1000;
    match s {
        0..=59 => format!("{s}s"),
        60..=3599 => format!("{}m", s / 60),
        3600..=86399 => format!("{}h", s / 3600),
        _ => format!("{}d", s / 86400),
    }
}

pub fn list(cfg: &Config) -> Result<()> {
    let entries = scan(&cfg.agent.data_dir);
    if entries.is_empty() {
        println!(
            "no dead letters in {}",
            cfg.agent.data_dir.join("dead-letter").display()
        );
        return Ok(());
    }
    println!(
        "{:<16} {:<34} {:>8} {:<18} {:>6}  ERROR",
        "OUTPUT", "CHUNK", "RECORDS", "REASON", "AGE"
    );
    for e in &entries {
        println!(
            "{:<16} {:<34} {:>8} {:<18} {:>6}  {}",
            e.note.output,
            e.note.chunk_id,
            e.note.records,
            e.note.reason,
            age(e.note.last_attempt_ms),
            e.note.error.replace('\n', " ")
        );
    }
    Ok(())
}

/// Sends dead letters again through their output, with the output's retry
/// schedule; a delivered one is removed, a failed one stays where it is.
pub async fn replay(cfg: &Config, only_output: Option<&str>, files: &[PathBuf]) -> Result<()> {
    let data_dir = cfg.agent.data_dir.clone();
    let mut entries = tokio::task::spawn_blocking(move || scan(&data_dir)).await?;
    if let Some(o) = only_output {
        if !cfg.outputs.iter().any(|x| x.id == o) {
            bail!("no output with id `{o}` in the config");
        }
        entries.retain(|e| e.note.output == o);
    }
    if !files.is_empty() {
        let files = files.to_vec();
        entries = tokio::task::spawn_blocking(move || {
            let canon = |f: &Path| f.canonicalize().unwrap_or_else(|_| f.to_path_buf());
            let wanted: Vec<PathBuf> = files
                .iter()
                .map(|f| canon(&f.with_extension("chunk")))
                .collect();
            entries.retain(|e| wanted.contains(&canon(&e.chunk)));
            entries
        })
        .await?;
        if entries.is_empty() {
            bail!(
                "none of the given files is a dead letter under {}",
                cfg.agent.data_dir.join("dead-letter").display()
            );
        }
    }
    let (mut ok, mut failed) = (0usize, 0usize);
    for e in entries {
        let Some(out) = cfg.outputs.iter().find(|o| o.id == e.note.output) else {
            eprintln!(
                "{}: output `{}` is not in the config; left as it is",
                e.chunk.display(),
                e.note.output
            );
            failed += 1;
            continue;
        };
        let chunk = match e.load().await {
            Ok(c) => c,
            Err(why) => {
                eprintln!("{}: {why}; left as it is", e.chunk.display());
                failed += 1;
                continue;
            }
        };
        match deadletter::deliver(out.plugin.as_ref(), &out.buffer, &chunk).await {
            Ok(()) => {
                if let Err(err) = e.remove().await {
                    eprintln!(
                        "{}: delivered but not removed ({err}): a replay would send it again",
                        e.chunk.display()
                    );
                }
                println!(
                    "replayed {} ({} records) to {}",
                    e.note.chunk_id, chunk.records, out.id
                );
                ok += 1;
            }
            Err(last) => {
                eprintln!(
                    "{}: still failing: {last}; left as it is",
                    e.chunk.display()
                );
                failed += 1;
            }
        }
    }
    for o in &cfg.outputs {
        o.plugin.close().await;
    }
    println!("{ok} replayed, {failed} failed");
    if failed > 0 {
        bail!("{failed} dead letter(s) could not be replayed");
    }
    Ok(())
}
