//! Tail input: follows log files the way kinesis-agent and Fluentd's in_tail
//! do, without their lost lines at rotation, duplicates after restarts or
//! memory blow-ups.
//!
//! - `config.rs`: settings; `build.rs`: checking them into the input
//! - `reader.rs`: one file: reading, lines, rotation/truncation checks
//! - `batch.rs`: lines → events → batches, one per tag
//! - `position.rs`: the positions file in data_dir
//! - `discover.rs`: which files (globs, excludes, watched directories, tags)
//! - this file: opening and recovering files, and the loop that reads them
//!   and hands batches to the buffers
//!
//! A file is identified by device + inode + a fingerprint of its first
//! bytes. Positions advance only after the lines before them were accepted
//! (durably, with the file buffer) by every matching output.

mod batch;
mod build;
pub mod config;
mod discover;
pub mod position;
pub mod reader;

use batch::Builder;
pub use build::build;

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use fuwa_api::memory::{grown, size};
use fuwa_api::{Input, InputContext, MemoryBound, MemoryEnv, PluginError};
use fuwa_parsers::Parser;
use regex::Regex;
use tokio::sync::Notify;
use tracing::{debug, info, warn};

use config::{LongLines, TailConfig};
use position::{fingerprint, Position, PositionFile};
use reader::{identify, Change, Tailed};

/// While lines keep coming, positions are saved at most this often (and at
/// once when the input caught up with its files, at a rotation, a release
/// and at stop). A position only ever names an offset whose lines the
/// buffers accepted, so a crash re-reads at most the lines accepted in the
/// last interval (duplicates, never a loss). With the linger below, a
/// steady writer costs one save per round anyway; at full speed this keeps
/// saves to 5 a second instead of one per batch.
const POSITION_SAVE_EVERY: Duration = Duration::from_millis(200);

/// After a round that read lines, the next round starts this much later
/// (a linger, like Kafka's linger.ms): a writer appending every few
/// milliseconds is read in one batch per linger instead of one per write,
/// which makes the per-batch costs (the buffer's fsync, hand-offs between
/// threads, wake-ups) that many times rarer. A round that filled a batch
/// reads on at once, so the peak rate is not limited.
/// At 2,000 lines/s this took the input's CPU from 1.14 s to 0.17 s for
/// 40,000 lines (bench/steady.sh); lines wait at most this much longer before
/// they reach the buffer, far less than an output's flush_interval.
const LINGER: Duration = Duration::from_millis(250);

pub struct TailInput {
    cfg: TailConfig,
    parser: Parser,
    kinesis_agent: Option<fuwa_parsers::kinesis_agent::Chain>,
    multiline: Option<Regex>,
    footer: Option<Regex>,
    includes: Vec<String>,
    excludes: Vec<glob::Pattern>,
    positions_path: PathBuf,
    /// files not tailed because their derived tag was refused (warned once)
    refused_tags: std::sync::Mutex<HashSet<PathBuf>>,
}

/// Where a file rotated away keeps its position while it is drained: its
/// old path plus its inode, so a crash mid-drain can find it again.
fn draining_key(path_key: &str, ino: u64) -> String {
    format!("{path_key}#rotated-{ino}")
}

/// A file just opened: its key names it (and where reading starts) at once.
fn record_opened(positions: &mut PositionFile, f: &FileState) {
    let pos = Position {
        id: f.t.id.clone(),
        offset: f.emitted_to,
    };
    positions.set(&f.t.key, pos);
}

/// The path a positions key is about (a draining key names its old path).
fn key_path(key: &str) -> &str {
    key.split_once("#rotated-").map(|(p, _)| p).unwrap_or(key)
}

/// A multiline event being gathered.
struct Pending {
    text: Vec<u8>,
    /// file offset where its first line starts (positions stop there)
    start: u64,
    end: u64,
    last: Instant,
}

/// Everything one file contributes to the batches of one round.
struct FileState {
    t: Tailed,
    pending: Option<Pending>,
    /// lines whose events are in the current batches end here
    emitted_to: u64,
    /// header lines still to skip (skip_header_lines, files read from 0)
    header_left: usize,
    /// a line matched file_footer_pattern: the rest is not read
    footer_seen: bool,
}

impl TailInput {
    fn open_file(&self, path: &Path, positions: &PositionFile, initial: bool) -> Option<FileState> {
        let key = path.display().to_string();
        let (dev, ino, len) = identify(path).ok()?;
        let mut start = None;
        if let Some(pos) = positions.entries.get(&key) {
            if pos.id.dev == dev && pos.id.ino == ino {
                match fingerprint(path, pos.id.fp_len as usize) {
                    Ok((l, fp)) if l == pos.id.fp_len && fp == pos.id.fp => {
                        start = Some(if pos.offset > len { 0 } else { pos.offset });
                    }
                    _ => {
                        info!(path = %key, "same inode but different content (inode reused): reading the new file from its start")
                    }
                }
            }
        }
        let start = start.or(if initial && !self.cfg.read_from_head {
            None
        } else {
            Some(0)
        });
        let tag = self.checked_tag(path)?;
        match Tailed::open(path, tag, start) {
            Ok((mut t, _)) => {
                t.keep_cr = self.cfg.keep_carriage_return;
                debug!(path = %key, offset = t.offset, "tailing");
                let emitted_to = t.offset;
                let header_left = if t.offset == 0 {
                    self.cfg.skip_header_lines
                } else {
                    0
                };
                Some(FileState {
                    t,
                    pending: None,
                    emitted_to,
                    header_left,
                    footer_seen: false,
                })
            }
            Err(e) => {
                warn!(path = %key, error = %e, "cannot open file");
                None
            }
        }
    }

    /// A file rotated while the agent was not running (renamed in its
    /// directory) still has lines after its saved offset: find it by device,
    /// inode and fingerprint and read it to its end before letting it go.
    fn recover_rotated(&self, positions: &PositionFile) -> Vec<FileState> {
        let mut out = Vec::new();
        for (key, pos) in &positions.entries {
            let path = Path::new(key_path(key));
            if let Ok((dev, ino, _)) = identify(path) {
                if dev == pos.id.dev && ino == pos.id.ino {
                    continue; // still where it was
                }
            }
            let Some(dir) = path.parent() else { continue };
            let Ok(rd) = std::fs::read_dir(dir) else {
                continue;
            };
            for e in rd.flatten() {
                let cand = e.path();
                let Ok((dev, ino, len)) = identify(&cand) else {
                    continue;
                };
                if dev != pos.id.dev || ino != pos.id.ino || len < pos.offset {
                    continue;
                }
                match fingerprint(&cand, pos.id.fp_len as usize) {
                    Ok((l, fp)) if l == pos.id.fp_len && fp == pos.id.fp => {}
                    _ => continue,
                }
                if len == pos.offset {
                    break; // nothing left in it
                }
                let Some(tag) = self.checked_tag(path) else {
                    break;
                };
                if let Ok((mut t, _)) = Tailed::open(&cand, tag, Some(pos.offset)) {
                    t.keep_cr = self.cfg.keep_carriage_return;
                    info!(path = %key, rotated_to = %cand.display(), offset = pos.offset, "reading the rest of a file rotated while fuwa was stopped");
                    t.draining = true;
                    let emitted_to = t.offset;
                    out.push(FileState {
                        t,
                        pending: None,
                        emitted_to,
                        header_left: 0,
                        footer_seen: false,
                    });
                }
                break;
            }
        }
        out
    }

    /// Reads what one file has, up to a batch, feeding `b`. Returns bytes read.
    fn pump(
        &self,
        f: &mut FileState,
        b: &mut Builder<'_>,
        buf: &mut Vec<u8>,
        budget: usize,
    ) -> usize {
        let max_line = self.cfg.max_line_size.0 as usize;
        let long = self.cfg.max_line_action;
        let mut total = 0;
        while !b.full() && total < budget {
            let tag = f.t.tag.clone();
            let key = f.t.key.clone();
            let multiline = &self.multiline;
            let header_left = &mut f.header_left;
            let footer_seen = &mut f.footer_seen;
            let footer = &self.footer;
            let pending = &mut f.pending;
            let emitted_to = &mut f.emitted_to;
            let res = f.t.read_lines(
                budget - total,
                max_line,
                long,
                buf,
                &mut |line, start, end, was_long| {
                    if was_long {
                        if long == LongLines::Truncate {
                            b.truncated += 1;
                        } else {
                            b.skipped_long += 1;
                            *emitted_to = end;
                            return;
                        }
                    }
                    if *header_left > 0 {
                        *header_left -= 1;
                        *emitted_to = end;
                        return;
                    }
                    if let Some(re) = footer {
                        // kinesis-agent's fileFooterPattern: the footer and
                        // what follows it are not sent
                        if *footer_seen
                            || re.is_match(
                                String::from_utf8_lossy(line).trim_matches(|c: char| c <= ' '),
                            )
                        {
                            *footer_seen = true;
                            *emitted_to = end;
                            return;
                        }
                    }
                    match multiline {
                        None => {
                            b.event(&tag, &key, line, start);
                            *emitted_to = end;
                        }
                        Some(re) => {
                            let starts = re.is_match(&String::from_utf8_lossy(line));
                            match pending {
                                Some(p) if !starts => {
                                    if p.text.len() + 1 + line.len() <= max_line {
                                        p.text.push(b'\n');
                                        p.text.extend_from_slice(line);
                                    } else {
                                        b.truncated += 1;
                                    }
                                    p.end = end;
                                    p.last = Instant::now();
                                }
                                _ => {
                                    if let Some(p) = pending.take() {
                                        b.event(&tag, &key, &p.text, p.start);
                                        *emitted_to = p.end;
                                    }
                                    *pending = Some(Pending {
                                        text: line.to_vec(),
                                        start,
                                        end,
                                        last: Instant::now(),
                                    });
                                }
                            }
                        }
                    }
                },
            );
            match res {
                Ok(0) => break,
                Ok(n) => total += n,
                Err(e) => {
                    warn!(path = %f.t.key, error = %e, "read failed");
                    break;
                }
            }
        }
        total
    }

    /// Flushes what waits on a timer: a multiline event with no follower, an
    /// unfinished last line. `force` does it now (rotation, deletion, stop).
    fn flush_timed(&self, f: &mut FileState, b: &mut Builder<'_>, force: bool) {
        let tag = f.t.tag.clone();
        let key = f.t.key.clone();
        if let Some(p) = &f.pending {
            if force || p.last.elapsed() >= self.cfg.multiline_flush_interval.0 {
                if let Some(p) = f.pending.take() {
                    b.event(&tag, &key, &p.text, p.start);
                    f.emitted_to = p.end;
                }
            }
        }
        let partial_due = force || f.t.last_growth.elapsed() >= self.cfg.flush_partial_after.0;
        if partial_due && f.t.line_boundary() < f.t.offset && f.pending.is_none() {
            let mut got = Vec::new();
            f.t.flush_partial(&mut |line, start, end, _| got.push((line.to_vec(), start, end)));
            for (line, start, end) in got {
                if !line.is_empty() {
                    b.event(&tag, &key, &line, start);
                }
                f.emitted_to = end;
            }
        }
    }

    /// Where the position of a file may advance to: before any multiline
    /// event still being gathered and any unfinished line.
    fn safe_offset(f: &FileState) -> u64 {
        let mut o = f.emitted_to;
        if let Some(p) = &f.pending {
            o = o.min(p.start);
        }
        o
    }
}

#[async_trait]
impl Input for TailInput {
    /// The number of files is known only while running: the bound counts
    /// the files the globs match when it is computed (at least one); each
    /// file more adds its unfinished line (docs/limits.md).
    fn memory_bound(&self, env: &MemoryEnv) -> MemoryBound {
        let _ = env;
        let line = self.cfg.max_line_size.0;
        // a parsed line's record: at most about twice the line (field names)
        let batch = grown(batch::BATCH_BYTES as u64 + 2 * line);
        let files = self.expand().len().max(1) as u64;
        let per_file = if self.multiline.is_some() {
            2 * grown(line)
        } else {
            grown(line)
        };
        MemoryBound::new()
            .with(
                format!(
                    "a batch being built (1 MiB + a record of 2 × max_line_size {}, grown ×2)",
                    size(line)
                ),
                batch,
            )
            .with("a batch in flight to the buffers", batch)
            .with(
                format!("read buffer {}", size(reader::READ_PIECE as u64)),
                reader::READ_PIECE as u64,
            )
            .with(
                format!(
                    "{files} file(s) matched now × an unfinished line{} (max_line_size, grown ×2)",
                    if self.multiline.is_some() {
                        " and a multiline event"
                    } else {
                        ""
                    }
                ),
                files.saturating_mul(per_file),
            )
    }

    async fn run(self: Box<Self>, ctx: InputContext) -> Result<(), PluginError> {
        let me = *self;
        let mut positions = PositionFile::load(me.positions_path.clone())
            .map_err(|e| PluginError::Other(format!("cannot read tail positions: {e}")))?;
        let wake = Arc::new(Notify::new());
        // set by every inotify event, read each round even while files are
        // being read, so a new file is found within ~100ms whatever else is going on
        let changed = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let _watcher = {
            use notify::Watcher;
            let w = wake.clone();
            let c = changed.clone();
            match notify::recommended_watcher(move |_res: notify::Result<notify::Event>| {
                c.store(true, std::sync::atomic::Ordering::Relaxed);
                w.notify_one()
            }) {
                Ok(mut watcher) => {
                    for (dir, rec) in me.watch_dirs() {
                        let mode = if rec {
                            notify::RecursiveMode::Recursive
                        } else {
                            notify::RecursiveMode::NonRecursive
                        };
                        if let Err(e) = watcher.watch(&dir, mode) {
                            debug!(input = %ctx.id, dir = %dir.display(), error = %e, "cannot watch directory; rescans will find new files");
                        }
                    }
                    Some(watcher)
                }
                Err(e) => {
                    warn!(input = %ctx.id, error = %e, "inotify unavailable; relying on periodic rescans");
                    None
                }
            }
        };
        let mut files: Vec<FileState> = me.recover_rotated(&positions);
        for p in me.expand() {
            if let Some(f) = me.open_file(&p, &positions, true) {
                files.push(f);
            }
        }
        info!(input = %ctx.id, files = files.len(), "tail input started");
        let mut shutdown = ctx.shutdown.clone();
        let mut last_scan = Instant::now();
        // an inotify event asks for a rescan (new files), at most every 100ms
        let mut rescan_asked = false;
        let mut buf = Vec::new();
        let rate = me.cfg.read_bytes_limit_per_second.map(|s| s.0 as usize);
        let mut window = (Instant::now(), 0usize);
        let mut saved_at: Option<Instant> = None;
        // saves the positions if they changed and `now` or the interval is up
        let mut save = |positions: &mut PositionFile, now: bool| {
            let due = saved_at.is_none_or(|t| t.elapsed() >= POSITION_SAVE_EVERY);
            if positions.is_dirty() && (now || due) {
                saved_at = Some(Instant::now());
                if let Err(e) = positions.save() {
                    warn!(input = %ctx.id, error = %e, "cannot save tail positions");
                }
            }
        };
        loop {
            if shutdown.is_set() {
                break;
            }
            // new files
            rescan_asked |= changed.swap(false, std::sync::atomic::Ordering::Relaxed);
            let asked = rescan_asked && last_scan.elapsed() >= Duration::from_millis(100);
            if asked || last_scan.elapsed() >= me.cfg.refresh_interval.0 {
                last_scan = Instant::now();
                rescan_asked = false;
                let known: HashSet<String> = files
                    .iter()
                    .filter(|f| !f.t.draining)
                    .map(|f| f.t.key.clone())
                    .collect();
                for p in me.expand() {
                    if !known.contains(&p.display().to_string()) {
                        if let Some(f) = me.open_file(&p, &positions, false) {
                            info!(input = %ctx.id, path = %f.t.key, "new file");
                            record_opened(&mut positions, &f);
                            save(&mut positions, true);
                            files.push(f);
                        }
                    }
                }
            }
            // rotation, truncation, deletion
            let mut replaced = Vec::new();
            let mut moved = false;
            for f in files.iter_mut().filter(|f| !f.t.draining) {
                match f.t.check() {
                    Change::Same => {}
                    Change::Truncated => {
                        info!(input = %ctx.id, path = %f.t.key, "file truncated (copytruncate): reading from its start");
                        if f.t.reset().is_ok() {
                            f.pending = None;
                            f.emitted_to = 0;
                            f.footer_seen = false;
                        }
                    }
                    Change::Replaced => {
                        info!(input = %ctx.id, path = %f.t.key, "file rotated: reading the old one to its end, then the new one from its start");
                        f.t.draining = true;
                        replaced.push(f.t.path.clone());
                    }
                    Change::Gone => {
                        debug!(input = %ctx.id, path = %f.t.key, "file renamed away or deleted: reading it to its end");
                        f.t.draining = true;
                    }
                }
                if f.t.draining {
                    // its position moves to a key of its own at once, so a
                    // crash while it is drained can still find it
                    moved = true;
                    f.t.last_growth = Instant::now();
                    let pos = Position {
                        id: f.t.id.clone(),
                        offset: TailInput::safe_offset(f),
                    };
                    positions.set(&draining_key(&f.t.key, f.t.id.ino), pos);
                }
            }
            for p in replaced {
                if let Some(mut nf) = me.open_file(&p, &positions, false) {
                    if nf.t.offset != 0 {
                        let _ = nf.t.reset();
                        nf.emitted_to = 0;
                        nf.header_left = me.cfg.skip_header_lines;
                    }
                    // the path's key names the new file at once (saved with
                    // the rotation below): after a crash it is read from
                    // where it was, not taken for the old one
                    record_opened(&mut positions, &nf);
                    moved = true;
                    files.push(nf);
                }
            }
            if moved {
                save(&mut positions, true);
            }
            // read a round: every file until it has nothing or the batch is full
            let mut read_any = false;
            let mut idx = 0;
            while idx < files.len() {
                let mut budget = usize::MAX;
                if let Some(r) = rate {
                    if window.0.elapsed() >= Duration::from_secs(1) {
                        window = (Instant::now(), 0);
                    }
                    budget = r.saturating_sub(window.1);
                    if budget == 0 {
                        break;
                    }
                }
                let mut b = Builder::new(&me);
                let n = me.pump(&mut files[idx], &mut b, &mut buf, budget);
                window.1 += n;
                read_any |= n > 0;
                let eof = n == 0 || !b.full();
                // a drained file is let go only once it stopped growing for
                // rotate_wait: writers append a little more before reopening
                let draining_done = files[idx].t.draining
                    && eof
                    && n == 0
                    && files[idx].t.last_growth.elapsed() >= me.cfg.rotate_wait.0;
                me.flush_timed(&mut files[idx], &mut b, draining_done);
                if b.truncated + b.skipped_long + b.parse_errors > 0 {
                    warn!(input = %ctx.id, path = %files[idx].t.key, truncated_long_lines = b.truncated, skipped_long_lines = b.skipped_long,
                        parse_errors = b.parse_errors, last_error = ?b.last_error, "lines needing attention");
                }
                let batches = b.take();
                let mut ok = true;
                for batch in batches {
                    if let Err(e) = ctx.emitter.emit(batch).await {
                        debug!(input = %ctx.id, error = %e, "batch not accepted; position not advanced");
                        ok = false;
                        break;
                    }
                }
                if !ok {
                    // shutting down (or refused): stop without moving positions
                    let _ = positions.save();
                    return Ok(());
                }
                // let the tasks this batch woke (the buffer's workers, queued on
                // this thread) run before reading on: keeps memory bounded
                tokio::task::yield_now().await;
                let f = &mut files[idx];
                f.t.refresh_fingerprint();
                let safe = TailInput::safe_offset(f);
                let pos = Position {
                    id: f.t.id.clone(),
                    offset: safe,
                };
                if f.t.draining {
                    positions.set(&draining_key(&f.t.key, f.t.id.ino), pos);
                } else {
                    positions.set(&f.t.key, pos);
                }
                if draining_done {
                    debug!(input = %ctx.id, path = %f.t.key, "released");
                    let key = f.t.key.clone();
                    positions.remove(&draining_key(&key, f.t.id.ino));
                    let still_there = files.iter().any(|o| !o.t.draining && o.t.key == key);
                    if !still_there {
                        positions.remove(&key);
                    }
                    files.remove(idx);
                    save(&mut positions, true);
                    continue;
                }
                save(&mut positions, false);
                if !eof {
                    continue; // more to read from this file
                }
                idx += 1;
            }
            if !read_any {
                // caught up: the positions name everything accepted
                save(&mut positions, true);
                tokio::select! {
                    _ = wake.notified() => { rescan_asked = true; }
                    _ = tokio::time::sleep(Duration::from_millis(250)) => {}
                    _ = shutdown.wait() => {}
                }
            } else if rate.is_some() && window.1 >= rate.unwrap_or(usize::MAX) {
                let left = Duration::from_secs(1).saturating_sub(window.0.elapsed());
                tokio::select! {
                    _ = tokio::time::sleep(left) => {}
                    _ = shutdown.wait() => {}
                }
            } else {
                // this round ended at the end of every file: caught up
                save(&mut positions, true);
                tokio::select! {
                    _ = tokio::time::sleep(LINGER) => {}
                    _ = shutdown.wait() => {}
                }
            }
        }
        let _ = positions.save();
        Ok(())
    }
}
