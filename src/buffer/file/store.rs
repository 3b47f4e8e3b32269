//! The file buffer's storage: one writer thread per output owns the open
//! chunk files. Appends from every input are queued to it; it writes them
//! all, fsyncs each touched file once (group commit), and only then answers
//! the inputs, which only then acknowledge their clients.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use tokio::sync::oneshot;
use tracing::{error, warn};

use super::super::{
    create_private_dir, new_chunk_id, write_private, Queued, QueuedData, RetryState, Shared,
};
use super::chunkfile::{self, block_header, encode_header, ChunkMeta};
use crate::metrics::Counters;

pub enum Cmd {
    Append {
        tag: Arc<str>,
        runs: Vec<(Arc<str>, Bytes, u32)>,
        reply: oneshot::Sender<io::Result<()>>,
    },
    /// seal chunks older than flush_interval (all of them when `all`)
    Seal { all: bool },
}

pub struct Limits {
    pub chunk_limit_size: usize,
    pub chunk_limit_records: Option<u32>,
    pub flush_interval: Duration,
    /// open chunk files at most (each holds a file descriptor)
    pub max_open_chunks: usize,
    /// fsync at most once per this long (`commit_window`; zero: at once)
    pub commit_window: Duration,
}

struct OpenFile {
    meta: ChunkMeta,
    path: PathBuf,
    file: File,
    bytes: usize,
    records: u32,
    created: Instant,
    created_sys: SystemTime,
    dirty: bool,
    /// bytes on disk, header included
    file_len: u64,
    /// when it was last appended to (the writer's append counter)
    last_used: u64,
}

pub struct Writer {
    dir: PathBuf,
    limits: Limits,
    shared: Arc<Shared>,
    counters: Arc<Counters>,
    open: HashMap<(Arc<str>, Arc<str>), OpenFile>,
    dir_dirty: bool,
    /// counts appends, for least-recently-used sealing
    clock: u64,
    /// an fsync of a chunk sealed in this round failed: the round's appends
    /// are refused (their clients send them again) instead of acknowledged
    seal_error: Option<io::Error>,
}

impl Writer {
    pub fn spawn(
        dir: PathBuf,
        limits: Limits,
        shared: Arc<Shared>,
        counters: Arc<Counters>,
        id: &str,
    ) -> io::Result<mpsc::Sender<Cmd>> {
        let (tx, rx) = mpsc::channel::<Cmd>();
        let mut w = Writer {
            dir,
            limits,
            shared,
            counters,
            open: HashMap::new(),
            dir_dirty: false,
            clock: 0,
            seal_error: None,
        };
        std::thread::Builder::new()
            .name(format!("fuwa-buf-{id}"))
            .spawn(move || w.run(rx))?;
        Ok(tx)
    }

    fn run(&mut self, rx: mpsc::Receiver<Cmd>) {
        // when the last round's fsyncs began
        let mut last_commit: Option<Instant> = None;
        while let Ok(first) = rx.recv() {
            // group commit: take everything that is waiting, and with a
            // commit window whatever comes until it has passed since the
            // last round (a round after a quiet spell starts at once)
            let mut cmds = vec![first];
            while let Ok(c) = rx.try_recv() {
                cmds.push(c);
            }
            if let Some(until) = last_commit.map(|t| t + self.limits.commit_window) {
                gather_until(&rx, until, &mut cmds);
            }
            if !self.limits.commit_window.is_zero() {
                last_commit = Some(Instant::now());
            }
            let mut replies = Vec::new();
            let mut sealed = Vec::new();
            for c in cmds {
                match c {
                    Cmd::Append { tag, runs, reply } => {
                        let r = self.append(&tag, runs, &mut sealed);
                        replies.push((reply, r));
                    }
                    Cmd::Seal { all } => self.seal_due(all, &mut sealed),
                }
            }
            let synced = self.sync(&mut sealed);
            if !replies.is_empty() {
                self.counters.buffer_commits.fetch_add(1, Ordering::Relaxed);
            }
            for (reply, r) in replies {
                let r = match (&r, &synced) {
                    (Ok(()), Err(e)) => Err(io::Error::new(e.kind(), e.to_string())),
                    _ => r,
                };
                let _ = reply.send(r);
            }
            if !sealed.is_empty() {
                self.shared.enqueue(sealed);
            }
            self.shared.set_open(self.open.len());
        }
        // the sender is gone: the buffer is being dropped; open files stay
        // on disk and are queued again at the next start
    }

    fn append(
        &mut self,
        tag: &Arc<str>,
        runs: Vec<(Arc<str>, Bytes, u32)>,
        sealed: &mut Vec<Queued>,
    ) -> io::Result<()> {
        for (key, seg, count) in runs {
            let k = (tag.clone(), key.clone());
            let full = self
                .open
                .get(&k)
                .map(|f| f.records > 0 && f.bytes + seg.len() > self.limits.chunk_limit_size)
                .unwrap_or(false);
            if full {
                self.seal(&k, sealed);
            }
            if !self.open.contains_key(&k) {
                // one file descriptor per open chunk: at the cap, seal the
                // least recently written one (it is queued like any other)
                while self.open.len() >= self.limits.max_open_chunks {
                    let lru = self
                        .open
                        .iter()
                        .min_by_key(|(_, f)| f.last_used)
                        .map(|(k, _)| k.clone());
                    match lru {
                        Some(old) => self.seal(&old, sealed),
                        None => break,
                    }
                }
                let f = self.create(tag, &key)?;
                self.open.insert(k.clone(), f);
            }
            self.clock += 1;
            let now = self.clock;
            let f = self
                .open
                .get_mut(&k)
                .ok_or_else(|| io::Error::other("chunk vanished"))?;
            let res = write_block(&mut f.file, &block_header(&seg, count), &seg);
            if let Err(e) = res {
                // cut the partial block off so the chunk stays whole
                let _ = f.file.set_len(f.file_len);
                return Err(e);
            }
            f.file_len += (chunkfile::BLOCK_HEADER + seg.len()) as u64;
            f.bytes += seg.len();
            f.records += count;
            f.dirty = true;
            f.last_used = now;
            let seal_now = f.bytes >= self.limits.chunk_limit_size
                || self
                    .limits
                    .chunk_limit_records
                    .map(|n| f.records >= n)
                    .unwrap_or(false);
            if seal_now {
                self.seal(&k, sealed);
            }
        }
        Ok(())
    }

    fn create(&mut self, tag: &Arc<str>, key: &Arc<str>) -> io::Result<OpenFile> {
        let id = new_chunk_id();
        let created_sys = SystemTime::now();
        let meta = ChunkMeta {
            id: id.clone(),
            tag: tag.to_string(),
            key: key.to_string(),
            created_ms: created_sys
                .duration_since(SystemTime::UNIX_EPOCH)
                .map(|d| d.as_millis() as u64)
                .unwrap_or(0),
        };
        let path = self.dir.join(format!("{id}.chunk"));
        // user data: readable by the agent's user only, whatever the umask
        let mut file = {
            use std::os::unix::fs::OpenOptionsExt;
            OpenOptions::new()
                .create_new(true)
                .append(true)
                .mode(0o600)
                .open(&path)?
        };
        let header = encode_header(&meta);
        file.write_all(&header)?;
        self.dir_dirty = true;
        Ok(OpenFile {
            meta,
            path,
            file,
            bytes: 0,
            records: 0,
            created: Instant::now(),
            created_sys,
            dirty: true,
            file_len: header.len() as u64,
            last_used: 0,
        })
    }

    fn seal(&mut self, k: &(Arc<str>, Arc<str>), sealed: &mut Vec<Queued>) {
        if let Some(f) = self.open.remove(k) {
            if f.records == 0 {
                let _ = std::fs::remove_file(&f.path);
                return;
            }
            if f.dirty {
                if let Err(e) = f.file.sync_data() {
                    error!(path = %f.path.display(), error = %e, "cannot fsync a chunk being sealed");
                    self.seal_error = Some(e);
                }
            }
            sealed.push(Queued {
                id: f.meta.id.clone(),
                tag: k.0.clone(),
                key: k.1.clone(),
                records: f.records,
                bytes: f.bytes,
                created: f.created_sys,
                data: QueuedData::File(f.path),
                retry: RetryState::default(),
            });
        }
    }

    fn seal_due(&mut self, all: bool, sealed: &mut Vec<Queued>) {
        let due: Vec<_> = self
            .open
            .iter()
            .filter(|(_, f)| all || f.created.elapsed() >= self.limits.flush_interval)
            .map(|(k, _)| k.clone())
            .collect();
        for k in due {
            self.seal(&k, sealed);
        }
    }

    /// fsync every file written in this round, and the directory when files
    /// were created, before anyone is told their data is safe.
    fn sync(&mut self, _sealed: &mut [Queued]) -> io::Result<()> {
        let mut result = match self.seal_error.take() {
            Some(e) => Err(e),
            None => Ok(()),
        };
        for f in self.open.values_mut() {
            if f.dirty {
                if let Err(e) = f.file.sync_data() {
                    error!(path = %f.path.display(), error = %e, "fsync failed");
                    result = Err(e);
                }
                f.dirty = false;
            }
        }
        if self.dir_dirty {
            if let Err(e) = File::open(&self.dir).and_then(|d| d.sync_all()) {
                warn!(dir = %self.dir.display(), error = %e, "cannot fsync the buffer directory");
            }
            self.dir_dirty = false;
        }
        result
    }
}

/// Takes the commands that arrive until `until` (or the channel closes).
fn gather_until(rx: &mpsc::Receiver<Cmd>, until: Instant, cmds: &mut Vec<Cmd>) {
    loop {
        let now = Instant::now();
        if now >= until {
            return;
        }
        match rx.recv_timeout(until - now) {
            Ok(c) => cmds.push(c),
            Err(_) => return,
        }
    }
}

/// A block's header and payload in one write(2) when the kernel takes it all.
fn write_block(file: &mut File, header: &[u8], payload: &[u8]) -> io::Result<()> {
    let n = loop {
        match file.write_vectored(&[io::IoSlice::new(header), io::IoSlice::new(payload)]) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            r => break r?,
        }
    };
    if n < header.len() {
        file.write_all(&header[n..])?;
        file.write_all(payload)
    } else {
        file.write_all(&payload[n - header.len()..])
    }
}

/// Scans a buffer directory at start: every whole chunk is queued again; a
/// torn tail is cut off and reported; a corrupt chunk is moved aside to
/// `corrupt_dir` with the reason beside it.
pub fn recover(dir: &Path, corrupt_dir: &Path, output: &str) -> io::Result<Vec<Queued>> {
    let mut found = Vec::new();
    for e in std::fs::read_dir(dir)? {
        let path = e?.path();
        if path.extension().map(|x| x == "chunk").unwrap_or(false) {
            found.push(path);
        }
    }
    let mut queued = Vec::new();
    for path in found {
        make_private(&path, output);
        let data = match std::fs::read(&path) {
            Ok(d) => d,
            Err(e) => {
                error!(output, path = %path.display(), error = %e, "cannot read a buffered chunk; left in place");
                continue;
            }
        };
        match chunkfile::scan(&data) {
            Err(reason) => set_aside(&path, corrupt_dir, output, &reason),
            Ok(s) => {
                if s.torn_bytes > 0 {
                    warn!(output, path = %path.display(), dropped_bytes = s.torn_bytes, dropped_records = ?s.torn_records,
                        "torn write at the end of a chunk (crash mid-append, never acknowledged): truncated to the last whole block");
                    if let Err(e) = OpenOptions::new().write(true).open(&path).and_then(|f| {
                        f.set_len(s.valid_len as u64)?;
                        f.sync_all()
                    }) {
                        error!(output, path = %path.display(), error = %e, "cannot truncate a torn chunk");
                    }
                }
                if s.records == 0 {
                    let _ = std::fs::remove_file(&path);
                    continue;
                }
                queued.push(Queued {
                    id: s.meta.id.clone(),
                    tag: Arc::from(s.meta.tag.as_str()),
                    key: Arc::from(s.meta.key.as_str()),
                    records: s.records,
                    bytes: s.payload_bytes(),
                    created: SystemTime::UNIX_EPOCH + Duration::from_millis(s.meta.created_ms),
                    data: QueuedData::File(path),
                    retry: RetryState::default(),
                });
            }
        }
    }
    queued.sort_by_key(|q| q.created);
    Ok(queued)
}

/// A chunk left by an older fuwa (created under the umask) is made 0600.
fn make_private(path: &Path, output: &str) {
    use std::os::unix::fs::PermissionsExt;
    if let Ok(m) = std::fs::metadata(path) {
        let mode = m.permissions().mode();
        if mode & 0o077 != 0 {
            if let Err(e) =
                std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode & 0o700))
            {
                warn!(output, path = %path.display(), error = %e, "cannot make a buffered chunk private (0600)");
            }
        }
    }
}

/// Moves a corrupt chunk, intact, to `corrupt_dir` with a `.reason.json`.
pub fn set_aside(path: &Path, corrupt_dir: &Path, output: &str, reason: &str) {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "chunk".into());
    let dest = corrupt_dir.join(format!("{output}-{name}"));
    let moved = create_private_dir(corrupt_dir).and_then(|_| std::fs::rename(path, &dest));
    match moved {
        Ok(()) => {
            let note = serde_json::json!({
                "output": output,
                "original_path": path.display().to_string(),
                "reason": reason,
                "moved_at_ms": SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0),
            });
            let _ = write_private(
                &dest.with_extension("reason.json"),
                note.to_string().as_bytes(),
            );
            error!(output, path = %path.display(), moved_to = %dest.display(), reason, "corrupt chunk set aside (kept intact, not delivered)");
        }
        Err(e) => {
            error!(output, path = %path.display(), reason, error = %e, "corrupt chunk could not be moved aside; left in place")
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use super::super::super::config::BufferConfig;
    use super::super::super::test_support::{tagged, Down};
    use super::super::super::{buffer_dir, OutputBuffer};

    /// With a commit window, appends that come within it of the last round
    /// share one fsync round, and none is acknowledged before the window
    /// has passed; after a quiet spell the next append is committed at once.
    #[tokio::test]
    async fn a_commit_window_gathers_appends_into_one_fsync_round() {
        use std::sync::atomic::Ordering;
        use std::time::Instant;
        let dir = tempfile::tempdir().unwrap();
        let window = Duration::from_millis(400);
        let cfg = BufferConfig {
            commit_window: fuwa_api::HumanDuration(window),
            flush_interval: Some(fuwa_api::HumanDuration(Duration::from_secs(3600))),
            ..BufferConfig::default()
        };
        let b = OutputBuffer::new("o", Arc::new(Down), cfg, dir.path()).unwrap();
        let commits = || b.counters.buffer_commits.load(Ordering::Relaxed);
        let t0 = Instant::now();
        b.append(&tagged("a", 1)).await.unwrap();
        assert_eq!(commits(), 1, "the first append is committed at once");
        // five appends at the same time, from five "connections"
        let batches: Vec<_> = ["a", "b", "a", "c", "a"]
            .into_iter()
            .map(|t| tagged(t, 1))
            .collect();
        let (r1, r2, r3, r4, r5) = tokio::join!(
            b.append(&batches[0]),
            b.append(&batches[1]),
            b.append(&batches[2]),
            b.append(&batches[3]),
            b.append(&batches[4]),
        );
        for r in [r1, r2, r3, r4, r5] {
            r.unwrap();
        }
        assert!(
            t0.elapsed() >= window,
            "acknowledged {:?} after the first round, before the window",
            t0.elapsed()
        );
        assert_eq!(commits(), 2, "the five appends shared one round");
        assert_eq!(b.lock().open_files, 3, "tags a, b, c");
        // a quiet spell longer than the window: the next append goes at once
        tokio::time::sleep(window + Duration::from_millis(50)).await;
        let t1 = Instant::now();
        b.append(&tagged("a", 1)).await.unwrap();
        assert_eq!(commits(), 3);
        assert!(t1.elapsed() < window, "waited {:?}", t1.elapsed());
    }

    #[tokio::test]
    async fn open_chunk_files_are_capped_least_recently_written_sealed_first() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = BufferConfig {
            max_open_chunks: Some(4),
            flush_interval: Some(fuwa_api::HumanDuration(Duration::from_secs(3600))),
            ..BufferConfig::default()
        };
        let b = OutputBuffer::new("o", Arc::new(Down), cfg, dir.path()).unwrap();
        // "keep" is written between every other tag: never the least recent
        for i in 0..40 {
            b.append(&tagged(&format!("tag{i}"), 1)).await.unwrap();
            b.append(&tagged("keep", 1)).await.unwrap();
            assert!(b.lock().open_files <= 4, "{} open", b.lock().open_files);
        }
        let s = b.snapshot();
        assert_eq!(s.queued_chunks, 37, "40 tags + keep, 4 still open");
        assert!(b.lock().queue.iter().all(|q| &*q.tag != "keep"));
        let chunk_files = std::fs::read_dir(buffer_dir(dir.path(), "o"))
            .unwrap()
            .count();
        assert_eq!(chunk_files, 41);
        let (_, records) = b.pending();
        assert_eq!(
            records, 37,
            "queued records (the open ones are not counted)"
        );
        // private files and directories whatever the umask
        use std::os::unix::fs::PermissionsExt;
        for e in std::fs::read_dir(buffer_dir(dir.path(), "o"))
            .unwrap()
            .flatten()
        {
            let mode = e.metadata().unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600, "{}", e.path().display());
        }
        let mode = std::fs::metadata(buffer_dir(dir.path(), "o"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o700);
    }
}
