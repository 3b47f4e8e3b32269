//! Dead letters: a chunk the output gave up on (a fatal error, or its
//! retries exhausted) is moved intact to `data_dir/dead-letter/<output>/`
//! as `<chunk id>.chunk` (the buffer's chunk file format) with a
//! `<chunk id>.json` note saying why, both 0600 in a 0700 directory.
//! This module writes them (from the workers, off the reactor) and reads
//! them back: `scan` lists them, `Letter::load` reads one as a chunk,
//! `Letter::deliver` sends it again through an output with that output's
//! retry schedule, `Letter::remove` deletes it (the `fuwa dead-letter`
//! command is a thin layer over these).

use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use fuwa_api::{Chunk, Output, OutputError};
use tracing::error;

use super::config::BufferConfig;
use super::delivery::backoff;
use super::file::chunkfile::{self, ChunkMeta};
use super::{create_private_dir, millis, write_private, OutputBuffer, Queued, QueuedData};

pub fn dead_letter_dir(data_dir: &Path, id: &str) -> PathBuf {
    data_dir.join("dead-letter").join(id)
}

/// The JSON file beside a dead-lettered chunk.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct DeadLetterNote {
    pub output: String,
    pub chunk_id: String,
    pub tag: String,
    pub key: String,
    pub records: u32,
    pub bytes: usize,
    pub reason: String,
    pub error: String,
    pub attempts: u32,
    pub created_ms: u64,
    pub first_attempt_ms: u64,
    pub last_attempt_ms: u64,
}

impl OutputBuffer {
    /// Moves a chunk, intact, to `data_dir/dead-letter/<output>/` with a JSON
    /// file saying why (both 0600, the directory 0700), off the reactor.
    pub(super) async fn dead_letter(
        &self,
        q: &Queued,
        reason: &str,
        err: &str,
        attempts: u32,
        first: SystemTime,
    ) {
        let dir = dead_letter_dir(&self.data_dir, &self.id);
        let dest = dir.join(format!("{}.chunk", q.id));
        let note = DeadLetterNote {
            output: self.id.to_string(),
            chunk_id: q.id.clone(),
            tag: q.tag.to_string(),
            key: q.key.to_string(),
            records: q.records,
            bytes: q.bytes,
            reason: reason.to_string(),
            error: err.to_string(),
            attempts,
            created_ms: millis(q.created),
            first_attempt_ms: millis(first),
            last_attempt_ms: millis(SystemTime::now()),
        };
        let source = match &q.data {
            QueuedData::File(p) => Ok(p.clone()),
            QueuedData::Memory(segs) => {
                let meta = ChunkMeta {
                    id: q.id.clone(),
                    tag: q.tag.to_string(),
                    key: q.key.to_string(),
                    created_ms: millis(q.created),
                };
                Err(chunkfile::encode_chunk(&meta, segs))
            }
        };
        let dest2 = dest.clone();
        let written = tokio::task::spawn_blocking(move || {
            create_private_dir(&dir)?;
            match source {
                Ok(p) => std::fs::rename(&p, &dest2)?,
                Err(bytes) => write_private(&dest2, &bytes)?,
            }
            write_private(
                &dest2.with_extension("json"),
                &serde_json::to_vec_pretty(&note).unwrap_or_default(),
            )
        })
        .await
        .unwrap_or_else(|e| Err(std::io::Error::other(e)));
        self.counters.dead(q.records);
        match written {
            Ok(()) => {
                error!(output = %self.id, chunk = %q.id, tag = %q.tag, records = q.records, attempts, reason, error = err, path = %dest.display(), "chunk moved to the dead-letter directory")
            }
            Err(e) => {
                self.counters
                    .records_dropped
                    .fetch_add(q.records as u64, Ordering::Relaxed);
                error!(output = %self.id, chunk = %q.id, records = q.records, reason, error = err, io_error = %e, "chunk could not be written to the dead-letter directory: dropped")
            }
        }
    }
}

/// A note larger than this is not one fuwa wrote.
const MAX_NOTE_BYTES: u64 = 1 << 20;

/// One dead letter on disk: its chunk file and the note beside it.
#[derive(Debug, Clone)]
pub struct Letter {
    pub chunk: PathBuf,
    pub note: DeadLetterNote,
}

/// What `scan` found under `data_dir/dead-letter/*/`: the letters (oldest
/// last attempt first) and the `.json` files that are not notes.
#[derive(Debug, Default)]
pub struct Found {
    pub letters: Vec<Letter>,
    pub not_notes: Vec<PathBuf>,
}

fn read_note(p: &Path) -> Option<DeadLetterNote> {
    use std::io::Read;
    let mut b = Vec::new();
    std::fs::File::open(p)
        .ok()?
        .take(MAX_NOTE_BYTES + 1)
        .read_to_end(&mut b)
        .ok()?;
    if b.len() as u64 > MAX_NOTE_BYTES {
        return None;
    }
    serde_json::from_slice(&b).ok()
}

/// Every dead letter under `data_dir/dead-letter/*/` (blocking: a command
/// or `spawn_blocking` calls it).
pub fn scan(data_dir: &Path) -> Found {
    let mut found = Found::default();
    let Ok(outputs) = std::fs::read_dir(data_dir.join("dead-letter")) else {
        return found;
    };
    for o in outputs.flatten() {
        let Ok(files) = std::fs::read_dir(o.path()) else {
            continue;
        };
        for f in files.flatten() {
            let p = f.path();
            if p.extension().map(|e| e == "json").unwrap_or(false) {
                match read_note(&p) {
                    Some(note) => found.letters.push(Letter {
                        chunk: p.with_extension("chunk"),
                        note,
                    }),
                    None => found.not_notes.push(p),
                }
            }
        }
    }
    found.letters.sort_by_key(|e| e.note.last_attempt_ms);
    found
}

impl Letter {
    /// Reads the letter's chunk file back into a chunk (off the reactor).
    pub async fn load(&self) -> Result<Chunk, String> {
        let path = self.chunk.clone();
        let data = tokio::task::spawn_blocking(move || std::fs::read(&path))
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| format!("cannot read {}: {e}", self.chunk.display()))?;
        let scanned = chunkfile::scan(&data)?;
        let data = Bytes::from(data);
        Ok(Chunk {
            id: scanned.meta.id.clone(),
            tag: scanned.meta.tag.as_str().into(),
            key: scanned.meta.key.as_str().into(),
            segments: scanned.segments(&data),
            records: scanned.records,
            bytes: scanned.payload_bytes(),
            created: SystemTime::UNIX_EPOCH + Duration::from_millis(scanned.meta.created_ms),
        })
    }

    /// Removes the chunk file and its note (after a replay delivered it).
    pub async fn remove(&self) -> std::io::Result<()> {
        let chunk = self.chunk.clone();
        tokio::task::spawn_blocking(move || {
            std::fs::remove_file(&chunk)?;
            std::fs::remove_file(chunk.with_extension("json"))
        })
        .await
        .unwrap_or_else(|e| Err(std::io::Error::other(e)))
    }
}

/// What a replay delivered.
#[derive(Debug, PartialEq, Eq)]
pub enum Replayed {
    /// the whole chunk
    All,
    /// all but these events, which the output rejected for good
    AllBut { events: Vec<Bytes>, reason: String },
}

/// Sends a dead letter's chunk again through `output` with the output's
/// retry schedule (`retry_max_times` retries, 3 when unset, waiting its
/// backoff between them; a fatal error is not retried). The error of the
/// last attempt when none succeeded.
pub async fn deliver(
    output: &dyn Output,
    cfg: &BufferConfig,
    chunk: &Chunk,
) -> Result<Replayed, String> {
    let tries = cfg.retry_max_times.unwrap_or(3) + 1;
    let mut last = String::new();
    for attempt in 1..=tries {
        match output.write(chunk).await {
            Ok(()) => return Ok(Replayed::All),
            Err(OutputError::Rejected { events, reason }) => {
                return Ok(Replayed::AllBut { events, reason })
            }
            Err(OutputError::Fatal(m)) => return Err(m),
            Err(OutputError::Retryable(m)) => {
                last = m;
                if attempt < tries {
                    tokio::time::sleep(backoff(cfg, attempt)).await;
                }
            }
        }
    }
    Err(last)
}

impl Letter {
    /// After a replay delivered all but `events`: the letter keeps only
    /// them (its chunk file rewritten, its note saying why), so a later
    /// replay does not send the delivered ones again.
    pub async fn narrow(
        &self,
        chunk: &Chunk,
        events: &[Bytes],
        reason: &str,
    ) -> std::io::Result<()> {
        let meta = ChunkMeta {
            id: chunk.id.clone(),
            tag: chunk.tag.to_string(),
            key: chunk.key.to_string(),
            created_ms: millis(chunk.created),
        };
        let n = events.len() as u32;
        let joined = Bytes::from(events.concat());
        let mut note = self.note.clone();
        note.records = n;
        note.bytes = joined.len();
        note.reason = "events rejected".into();
        note.error = reason.to_string();
        note.attempts += 1;
        note.last_attempt_ms = millis(SystemTime::now());
        let bytes = chunkfile::encode_chunk(&meta, &[(joined, n)]);
        let path = self.chunk.clone();
        // each file replaced whole (written aside, renamed over), so a crash
        // leaves the old letter or the new one, never a torn one
        tokio::task::spawn_blocking(move || {
            let tmp = path.with_extension("chunk.tmp");
            write_private(&tmp, &bytes)?;
            std::fs::rename(&tmp, &path)?;
            let note_path = path.with_extension("json");
            let tmp = path.with_extension("json.tmp");
            write_private(&tmp, &serde_json::to_vec_pretty(&note).unwrap_or_default())?;
            std::fs::rename(&tmp, &note_path)
        })
        .await
        .unwrap_or_else(|e| Err(std::io::Error::other(e)))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicU32;
    use std::sync::Arc;

    use async_trait::async_trait;

    use super::super::test_support::{tagged, wait_for};
    use super::*;

    /// fails fatally until `heal` is set, then writes
    #[derive(Default)]
    struct Refuses {
        heal: std::sync::atomic::AtomicBool,
        written: AtomicU32,
    }
    #[async_trait]
    impl Output for Refuses {
        fn memory_bound(&self, _: &fuwa_api::MemoryEnv) -> fuwa_api::MemoryBound {
            fuwa_api::MemoryBound::new()
        }
        async fn write(&self, chunk: &Chunk) -> Result<(), OutputError> {
            if !self.heal.load(Ordering::Relaxed) {
                return Err(OutputError::Fatal("no such table".into()));
            }
            self.written.fetch_add(chunk.records, Ordering::Relaxed);
            Ok(())
        }
    }

    /// delivers every event but those whose record (an integer) is in
    /// `reject`, which it rejects for good
    struct RejectsSome {
        reject: std::sync::Mutex<Vec<u64>>,
        written: AtomicU32,
    }
    #[async_trait]
    impl Output for RejectsSome {
        fn memory_bound(&self, _: &fuwa_api::MemoryEnv) -> fuwa_api::MemoryBound {
            fuwa_api::MemoryBound::new()
        }
        async fn write(&self, chunk: &Chunk) -> Result<(), OutputError> {
            let reject = self.reject.lock().unwrap().clone();
            let mut events = Vec::new();
            for e in chunk.entries() {
                let e = e.unwrap();
                if reject.contains(&n_of(e.record)) {
                    events.push(Bytes::copy_from_slice(e.raw));
                } else {
                    self.written.fetch_add(1, Ordering::Relaxed);
                }
            }
            if events.is_empty() {
                return Ok(());
            }
            Err(OutputError::Rejected {
                events,
                reason: "too big".into(),
            })
        }
    }

    /// `{"n": i}` records
    fn numbered(n: u64) -> fuwa_api::Batch {
        let mut out = Vec::new();
        for i in 0..n {
            let v = rmpv::Value::Map(vec![("n".into(), i.into())]);
            let mut b = Vec::new();
            rmpv::encode::write_value(&mut b, &v).unwrap();
            fuwa_api::event::write_entry(&mut out, fuwa_api::EventTime::new(1, 0), &b);
        }
        fuwa_api::Batch::new(Arc::from("t"), Bytes::from(out), n as u32)
    }

    fn n_of(record: &[u8]) -> u64 {
        let v = rmpv::decode::read_value(&mut &record[..]).unwrap();
        v.as_map().unwrap()[0].1.as_u64().unwrap()
    }

    fn values(chunk: &Chunk) -> Vec<u64> {
        chunk.entries().map(|e| n_of(e.unwrap().record)).collect()
    }

    #[tokio::test]
    async fn rejected_events_alone_are_dead_lettered_and_a_replay_keeps_only_what_is_still_rejected(
    ) {
        let dir = tempfile::tempdir().unwrap();
        let out = Arc::new(RejectsSome {
            reject: std::sync::Mutex::new(vec![1, 3, 5]),
            written: AtomicU32::new(0),
        });
        let b = OutputBuffer::new("o", out.clone(), BufferConfig::memory(), dir.path()).unwrap();
        b.append(&numbered(6)).await.unwrap();
        b.seal_due(true);
        let w = tokio::spawn(b.clone().worker());
        wait_for("dead-lettered", || {
            b.counters.chunks_dead.load(Ordering::Relaxed) == 1
        })
        .await;
        b.close();
        w.await.unwrap();
        assert_eq!(out.written.load(Ordering::Relaxed), 3);
        assert_eq!(b.counters.records_out.load(Ordering::Relaxed), 3);

        let found = scan(dir.path());
        assert_eq!(found.letters.len(), 1);
        let letter = &found.letters[0];
        assert_eq!(
            (
                letter.note.reason.as_str(),
                letter.note.records,
                letter.note.error.as_str()
            ),
            ("events rejected", 3, "too big")
        );
        let chunk = letter.load().await.unwrap();
        assert_eq!(values(&chunk), vec![1, 3, 5]);

        // a replay that delivers 1 and 3 leaves a letter of 5 alone
        *out.reject.lock().unwrap() = vec![5];
        let cfg = BufferConfig::memory();
        let Replayed::AllBut { events, reason } =
            deliver(out.as_ref(), &cfg, &chunk).await.unwrap()
        else {
            panic!("expected a partial replay");
        };
        letter.narrow(&chunk, &events, &reason).await.unwrap();
        assert_eq!(out.written.load(Ordering::Relaxed), 5);
        let found = scan(dir.path());
        assert_eq!(found.letters.len(), 1);
        assert_eq!(found.letters[0].note.records, 1);
        assert_eq!(values(&found.letters[0].load().await.unwrap()), vec![5]);
        // nothing left aside by the rewrite
        let names: Vec<_> = std::fs::read_dir(dead_letter_dir(dir.path(), "o"))
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(names.len(), 2, "{names:?}");
    }

    #[tokio::test]
    async fn a_letter_written_by_a_worker_is_listed_read_back_and_replayed() {
        let dir = tempfile::tempdir().unwrap();
        let out = Arc::new(Refuses::default());
        let b = OutputBuffer::new("o", out.clone(), BufferConfig::memory(), dir.path()).unwrap();
        b.append(&tagged("t", 5)).await.unwrap();
        b.seal_due(true);
        let w = tokio::spawn(b.clone().worker());
        wait_for("dead-lettered", || {
            b.counters.chunks_dead.load(Ordering::Relaxed) == 1
        })
        .await;
        b.close();
        w.await.unwrap();

        // a stray file and a note too big to be one are skipped, not fatal
        let letters = dead_letter_dir(dir.path(), "o");
        std::fs::write(letters.join("stray.json"), b"{not json").unwrap();
        let big = std::fs::File::create(letters.join("big.json")).unwrap();
        big.set_len(MAX_NOTE_BYTES + 1).unwrap();
        let found = scan(dir.path());
        assert_eq!(found.not_notes.len(), 2);
        assert_eq!(found.letters.len(), 1);
        let letter = &found.letters[0];
        assert_eq!(
            (letter.note.reason.as_str(), letter.note.records),
            ("fatal error", 5)
        );
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&letter.chunk)
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);

        let chunk = letter.load().await.unwrap();
        assert_eq!((chunk.records, &*chunk.tag), (5, "t"));
        let cfg = BufferConfig::memory();
        // fatal: one attempt, no retry
        assert_eq!(
            deliver(out.as_ref(), &cfg, &chunk).await,
            Err("no such table".to_string())
        );
        out.heal.store(true, Ordering::Relaxed);
        assert_eq!(deliver(out.as_ref(), &cfg, &chunk).await, Ok(Replayed::All));
        assert_eq!(out.written.load(Ordering::Relaxed), 5);
        letter.remove().await.unwrap();
        assert!(scan(dir.path()).letters.is_empty());
    }

    #[tokio::test]
    async fn a_torn_letter_is_an_error_not_a_panic() {
        let dir = tempfile::tempdir().unwrap();
        let chunk = dir.path().join("x.chunk");
        std::fs::write(&chunk, b"FUWACHK1\x00\x00").unwrap();
        let note = DeadLetterNote {
            output: "o".into(),
            chunk_id: "x".into(),
            tag: "t".into(),
            key: String::new(),
            records: 1,
            bytes: 1,
            reason: "fatal error".into(),
            error: "e".into(),
            attempts: 1,
            created_ms: 0,
            first_attempt_ms: 0,
            last_attempt_ms: 0,
        };
        let letter = Letter { chunk, note };
        assert!(letter.load().await.is_err());
        let gone = Letter {
            chunk: dir.path().join("gone.chunk"),
            ..letter.clone()
        };
        assert!(gone.load().await.is_err());
    }
}
