//! `fuwa dead-letter list|replay`: what the buffers gave up on, and sending
//! it again through the output that failed (whether or not the agent runs).

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use anyhow::{bail, Context, Result};
use bytes::Bytes;
use fuwa_api::{Chunk, OutputError};

use crate::buffer::{backoff, chunkfile, DeadLetterNote};
use crate::config::Config;

pub struct Entry {
    pub chunk: PathBuf,
    pub note: DeadLetterNote,
}

/// Every dead letter under `data_dir/dead-letter/*/`.
pub fn scan(data_dir: &Path) -> Vec<Entry> {
    let mut out = Vec::new();
    let root = data_dir.join("dead-letter");
    let Ok(outputs) = std::fs::read_dir(&root) else {
        return out;
    };
    for o in outputs.flatten() {
        let Ok(files) = std::fs::read_dir(o.path()) else {
            continue;
        };
        for f in files.flatten() {
            let p = f.path();
            if p.extension().map(|e| e == "json").unwrap_or(false) {
                match std::fs::read(&p)
                    .ok()
                    .and_then(|b| serde_json::from_slice::<DeadLetterNote>(&b).ok())
                {
                    Some(note) => out.push(Entry {
                        chunk: p.with_extension("chunk"),
                        note,
                    }),
                    None => eprintln!("{}: not a dead-letter note, skipped", p.display()),
                }
            }
        }
    }
    out.sort_by_key(|e| e.note.last_attempt_ms);
    out
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
    let mut entries = scan(&cfg.agent.data_dir);
    if let Some(o) = only_output {
        if !cfg.outputs.iter().any(|x| x.id == o) {
            bail!("no output with id `{o}` in the config");
        }
        entries.retain(|e| e.note.output == o);
    }
    if !files.is_empty() {
        let wanted: Vec<PathBuf> = files
            .iter()
            .map(|f| f.with_extension("chunk"))
            .map(|f| f.canonicalize().unwrap_or(f))
            .collect();
        entries.retain(|e| {
            let c = e.chunk.canonicalize().unwrap_or_else(|_| e.chunk.clone());
            wanted.contains(&c)
        });
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
        let data = std::fs::read(&e.chunk)
            .with_context(|| format!("cannot read {}", e.chunk.display()))?;
        let scanned = match chunkfile::scan(&data) {
            Ok(s) => s,
            Err(why) => {
                eprintln!("{}: {why}; left as it is", e.chunk.display());
                failed += 1;
                continue;
            }
        };
        let data = Bytes::from(data);
        let chunk = Chunk {
            id: scanned.meta.id.clone(),
            tag: scanned.meta.tag.as_str().into(),
            key: scanned.meta.key.as_str().into(),
            segments: scanned.segments(&data),
            records: scanned.records,
            bytes: scanned.payload_bytes(),
            created: SystemTime::UNIX_EPOCH + Duration::from_millis(scanned.meta.created_ms),
        };
        let tries = out.buffer.retry_max_times.unwrap_or(3) + 1;
        let mut last = String::new();
        let mut delivered = false;
        for attempt in 1..=tries {
            match out.plugin.write(&chunk).await {
                Ok(()) => {
                    delivered = true;
                    break;
                }
                Err(OutputError::Fatal(m)) => {
                    last = m;
                    break;
                }
                Err(OutputError::Retryable(m)) => {
                    last = m;
                    if attempt < tries {
                        tokio::time::sleep(backoff(&out.buffer, attempt)).await;
                    }
                }
            }
        }
        if delivered {
            let _ = std::fs::remove_file(&e.chunk);
            let _ = std::fs::remove_file(e.chunk.with_extension("json"));
            println!(
                "replayed {} ({} records) to {}",
                e.note.chunk_id, chunk.records, out.id
            );
            ok += 1;
        } else {
            eprintln!(
                "{}: still failing: {last}; left as it is",
                e.chunk.display()
            );
            failed += 1;
        }
    }
    out_close(cfg).await;
    println!("{ok} replayed, {failed} failed");
    if failed > 0 {
        bail!("{failed} dead letter(s) could not be replayed");
    }
    Ok(())
}

async fn out_close(cfg: &Config) {
    for o in &cfg.outputs {
        o.plugin.close().await;
    }
}
