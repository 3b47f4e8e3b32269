use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use async_trait::async_trait;
use fuwa_api::{Chunk, Output, OutputError};

use super::super::config::BufferConfig;
use super::super::test_support::{batch, tagged, wait_for, Down, FailsBad};
use super::super::{dead_letter_dir, new_chunk_id, DeadLetterNote, RetryState};
use super::*;

#[tokio::test]
async fn a_chunk_backing_off_does_not_hold_up_the_others() {
    let cfg = BufferConfig {
        retry_wait: fuwa_api::HumanDuration(Duration::from_millis(300)),
        retry_randomize: false,
        retry_max_times: Some(2),
        ..BufferConfig::memory()
    };
    let out = Arc::new(FailsBad::default());
    let dir = tempfile::tempdir().unwrap();
    let b = OutputBuffer::new("o", out.clone(), cfg, dir.path()).unwrap();
    b.append(&tagged("bad", 3)).await.unwrap();
    b.seal_due(true);
    let w = tokio::spawn(b.clone().worker());
    for i in 0..5 {
        b.append(&tagged(&format!("good{i}"), 2)).await.unwrap();
        b.seal_due(true);
    }
    // one worker: every good chunk is written while "bad" backs off
    wait_for("good chunks written", || {
        out.written.lock().unwrap().len() == 5
    })
    .await;
    assert!(out.bad_attempts.load(Ordering::Relaxed) <= 2);
    // then "bad" runs out of its 2 retries (3 attempts) and is dead-lettered
    wait_for("bad dead-lettered", || {
        b.counters.chunks_dead.load(Ordering::Relaxed) == 1
    })
    .await;
    assert_eq!(out.bad_attempts.load(Ordering::Relaxed), 3);
    let note: DeadLetterNote = serde_json::from_slice(
        &std::fs::read(
            std::fs::read_dir(dead_letter_dir(dir.path(), "o"))
                .unwrap()
                .flatten()
                .map(|e| e.path())
                .find(|p| p.extension().map(|x| x == "json").unwrap_or(false))
                .unwrap(),
        )
        .unwrap(),
    )
    .unwrap();
    assert_eq!(
        (note.attempts, note.records, note.tag.as_str()),
        (3, 3, "bad")
    );
    assert!(note.first_attempt_ms < note.last_attempt_ms);
    assert_eq!(b.counters.records_out.load(Ordering::Relaxed), 10);
    assert_eq!(b.counters.records_dead.load(Ordering::Relaxed), 3);
    b.close();
    tokio::time::timeout(Duration::from_secs(5), w)
        .await
        .expect("the worker stopped")
        .unwrap();
}

/// counts its attempts, fails every one
#[derive(Default)]
struct CountingDown(AtomicU64);
#[async_trait]
impl Output for CountingDown {
    fn memory_bound(&self, _: &fuwa_api::MemoryEnv) -> fuwa_api::MemoryBound {
        fuwa_api::MemoryBound::new()
    }
    async fn write(&self, _chunk: &Chunk) -> Result<(), OutputError> {
        self.0.fetch_add(1, Ordering::Relaxed);
        Err(OutputError::Retryable("down".into()))
    }
}

#[tokio::test]
async fn a_down_output_sees_one_backoff_not_one_attempt_per_chunk() {
    let cfg = BufferConfig {
        retry_wait: fuwa_api::HumanDuration(Duration::from_millis(100)),
        retry_randomize: false,
        retry_forever: true,
        flush_thread_count: 4,
        ..BufferConfig::memory()
    };
    let out = Arc::new(CountingDown::default());
    let b = OutputBuffer::new("o", out.clone(), cfg, Path::new("/nonexistent")).unwrap();
    for i in 0..20 {
        b.append(&tagged(&format!("t{i}"), 1)).await.unwrap();
    }
    b.seal_due(true);
    let workers: Vec<_> = (0..4).map(|_| tokio::spawn(b.clone().worker())).collect();
    // attempts at about 0, 100ms, 300ms (the output's backoff doubles)
    tokio::time::sleep(Duration::from_millis(500)).await;
    let n = out.0.load(Ordering::Relaxed);
    assert!((1..=5).contains(&n), "{n} attempts in 500ms");
    b.halt();
    for w in workers {
        tokio::time::timeout(Duration::from_secs(5), w)
            .await
            .expect("stopped")
            .unwrap();
    }
    assert_eq!(b.take_queue().len(), 20);
}

fn queued_file(path: PathBuf) -> Queued {
    Queued {
        id: new_chunk_id(),
        tag: Arc::from("t"),
        key: Arc::from(""),
        records: 7,
        bytes: 70,
        created: SystemTime::now(),
        data: QueuedData::File(path),
        retry: RetryState::default(),
    }
}

#[tokio::test]
async fn a_chunk_that_cannot_be_read_now_is_retried_not_set_aside() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = BufferConfig {
        retry_wait: fuwa_api::HumanDuration(Duration::from_secs(3600)),
        ..BufferConfig::default()
    };
    let out = Arc::new(FailsBad::default());
    let b = OutputBuffer::new("o", out.clone(), cfg, dir.path()).unwrap();
    // reading a directory fails with an I/O error (like EMFILE or EIO
    // would), not with a corrupt chunk
    let unreadable = dir.path().join("unreadable.chunk");
    std::fs::create_dir(&unreadable).unwrap();
    b.shared.enqueue(vec![
        queued_file(dir.path().join("gone.chunk")),
        queued_file(unreadable.clone()),
    ]);
    let w = tokio::spawn(b.clone().worker());
    wait_for("both tried", || {
        b.counters.retries.load(Ordering::Relaxed) == 1
            && b.counters.records_dropped.load(Ordering::Relaxed) == 7
    })
    .await;
    // the unreadable one waits for its retry; the gone one is counted lost
    assert!(!dir.path().join("corrupt").exists());
    assert!(unreadable.exists());
    assert_eq!(b.snapshot().queued_chunks, 1);
    b.halt();
    tokio::time::timeout(Duration::from_secs(5), w)
        .await
        .expect("stopped")
        .unwrap();
}

#[tokio::test]
async fn halt_cuts_a_retry_wait_short_and_hands_the_chunks_back() {
    let cfg = BufferConfig {
        retry_wait: fuwa_api::HumanDuration(Duration::from_secs(3600)),
        retry_forever: true,
        ..BufferConfig::memory()
    };
    let b = OutputBuffer::new("o", Arc::new(Down), cfg, Path::new("/nonexistent")).unwrap();
    b.append(&batch(3)).await.unwrap();
    b.seal_due(true);
    b.append(&batch(2)).await.unwrap();
    b.seal_due(true);
    let w = tokio::spawn(b.clone().worker());
    // the worker tries the first chunk, fails, and the output waits an
    // hour (its backoff) before trying any chunk
    let t0 = Instant::now();
    while b.counters.retries.load(Ordering::Relaxed) < 1 || b.snapshot().queued_chunks < 2 {
        assert!(t0.elapsed() < Duration::from_secs(5));
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let s = b.snapshot();
    assert_eq!((s.in_flight_chunks, s.queued_chunks, s.chunks), (0, 2, 2));
    assert!(s.oldest.is_some());
    b.halt();
    tokio::time::timeout(Duration::from_secs(5), w)
        .await
        .expect("the worker stopped")
        .unwrap();
    let left = b.take_queue();
    assert_eq!(
        left.iter().map(|q| q.records).collect::<Vec<_>>(),
        vec![3, 2]
    );
    assert_eq!(b.snapshot().bytes, 0);
    assert_eq!(b.counters.failing_streak.load(Ordering::Relaxed), 1);
    assert_eq!(
        left.iter().map(|q| q.retry.attempts).collect::<Vec<_>>(),
        vec![1, 0]
    );
    assert!(b.counters.last_error.lock().unwrap().is_some());

    // another buffer adopts them ahead of its own
    let c =
        OutputBuffer::new("o", Arc::new(Down), BufferConfig::memory(), Path::new("/x")).unwrap();
    c.append(&batch(1)).await.unwrap();
    c.seal_due(true);
    let bytes: usize = left.iter().map(|q| q.bytes).sum();
    c.adopt(left);
    let s = c.snapshot();
    assert_eq!(s.queued_chunks, 3);
    assert_eq!(s.records, 6);
    assert!(s.bytes > bytes);
    // no partitioner: nothing to re-key
    assert_eq!(c.repartition().await, (0, 0));
    assert_eq!(c.snapshot().queued_chunks, 3);
}
