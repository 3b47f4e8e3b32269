use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use super::*;

#[derive(Default)]
struct Counts {
    failed_records: AtomicU64,
    throttled_records: AtomicU64,
    failed_calls: AtomicU64,
}

impl Observe for Counts {
    fn failed_records(&self, chunk: &str, failed: u64, throttled: u64) {
        assert!(chunk.starts_with('c'), "{chunk}");
        self.failed_records.fetch_add(failed, Ordering::Relaxed);
        self.throttled_records
            .fetch_add(throttled, Ordering::Relaxed);
    }
    fn failed_call(&self, _chunk: &str, _throttled: bool, _retry: Option<&str>) {
        self.failed_calls.fetch_add(1, Ordering::Relaxed);
    }
}

fn size(r: &u32) -> usize {
    *r as usize
}

/// Records 0..n, named by index (the batches count them 10 bytes each).
fn records(n: usize) -> Vec<u32> {
    (0..n as u32).collect()
}

struct Env {
    aimd: Aimd,
    memory: Delivered,
    counts: Counts,
}

impl Env {
    fn new(in_flight: usize) -> Self {
        Env {
            aimd: Aimd::new(in_flight),
            memory: Delivered::default(),
            counts: Counts::default(),
        }
    }

    fn batch<'a>(&'a self, recs: &'a [u32], max_records: usize, attempts: u32) -> Batch<'a, u32> {
        Batch {
            what: "Put s",
            chunk: "c1",
            records: recs,
            size: |_| 10,
            max_records,
            max_bytes: 1 << 20,
            attempts,
            timeout: Duration::from_secs(60),
            aimd: &self.aimd,
            memory: &self.memory,
            observe: &self.counts,
        }
    }
}

/// Every call made, with the records it carried.
type Log = Arc<Mutex<Vec<Vec<u32>>>>;

#[test]
fn pack_keeps_order_and_limits() {
    let recs: Vec<u32> = vec![3, 3, 3, 9, 1, 1, 1];
    let pending: Vec<usize> = (0..recs.len()).collect();
    let calls = pack(&recs, &pending, size, 3, 6);
    assert_eq!(calls, vec![vec![0, 1], vec![2], vec![3], vec![4, 5, 6]]);
    // only the pending ones, by record count
    let calls = pack(&recs, &[1, 4, 5, 6], size, 2, 100);
    assert_eq!(calls, vec![vec![1, 4], vec![5, 6]]);
}

#[test]
fn key_checks() {
    assert!(check_keys(4, None, None, 8).is_empty());
    let keys: Vec<&str> = check_keys(0, Some(0), Some(0), 0)
        .into_iter()
        .map(|e| e.0)
        .collect();
    assert_eq!(
        keys,
        [
            "max_in_flight",
            "records_per_second",
            "bytes_per_second",
            "retry_attempts"
        ]
    );
    assert_eq!(check_keys(65, None, None, 1).len(), 1);
}

#[test]
fn call_limits_follow_the_rates() {
    let p = Pace::new(None, None, None);
    assert_eq!(p.call_limits(500, 4 << 20, 1000), (500, 4 << 20));
    let p = Pace::new(None, Some(100), Some(2000));
    assert_eq!(p.call_limits(500, 4 << 20, 1000), (25, 1000));
    let p = Pace::new(None, Some(1), Some(80_000));
    assert_eq!(p.call_limits(500, 4 << 20, 1000), (1, 20_000));
}

#[test]
fn names_and_oversize_events() {
    assert!(is_stream_name("a-b_c.9", 64));
    assert!(!is_stream_name("", 64));
    assert!(!is_stream_name(&"a".repeat(65), 64));
    assert!(is_stream_name(&"a".repeat(128), 128));
    assert!(!is_stream_name("arn:aws:kinesis:x", 128));

    assert_eq!(oversize(&[], "too big", 3), None);
    let big = vec![(2_000_000, Bytes::from("a")), (3_000_000, Bytes::from("b"))];
    match oversize(&big, "exceeds the 1 MiB limit", 7) {
        Some(OutputError::Rejected { events, reason }) => {
            assert_eq!(events, vec![Bytes::from("a"), Bytes::from("b")]);
            assert_eq!(
                reason,
                "event of 2000000 bytes exceeds the 1 MiB limit (2 such events in this chunk); the 7 other records of the chunk were delivered"
            );
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn partial_failure_resends_only_the_failed_records() {
    let env = Env::new(4);
    let recs = records(10);
    let log: Log = Arc::default();
    let first = Arc::new(AtomicUsize::new(0));
    let l = log.clone();
    let sent = send(env.batch(&recs, 4, 8), move |rs: Vec<u32>| {
        let (l, first) = (l.clone(), first.clone());
        async move {
            l.lock().unwrap().push(rs.clone());
            let answers = rs
                .iter()
                .map(|&r| {
                    // 3 and 7 fail once each
                    if (r == 3 || r == 7) && first.fetch_add(1, Ordering::SeqCst) < 2 {
                        Answer::Retry {
                            error: format!("record rejected: X{r}"),
                            throttled: false,
                        }
                    } else {
                        Answer::Ok
                    }
                })
                .collect();
            CallOutcome::Answered(answers)
        }
    })
    .await;
    assert!(sent.result.is_ok(), "{:?}", sent.result);
    assert_eq!(sent.attempts, 2);
    let mut d = sent.delivered.clone();
    d.sort();
    assert_eq!(d, (0..10).collect::<Vec<_>>());
    let log = log.lock().unwrap();
    let mut resent: Vec<u32> = log[3..].iter().flatten().copied().collect();
    resent.sort();
    assert_eq!(resent, vec![3, 7], "{log:?}");
    assert_eq!(sent.calls as usize, log.len());
    assert_eq!(env.counts.failed_records.load(Ordering::Relaxed), 2);
    assert!(env.memory.is_empty());
}

#[tokio::test]
async fn throttle_halves_the_calls_in_flight_once_per_round() {
    let env = Env::new(8);
    let recs = records(16);
    let now = Arc::new(AtomicUsize::new(0));
    let peak = Arc::new(AtomicUsize::new(0));
    let (n, p) = (now.clone(), peak.clone());
    let sent = send(env.batch(&recs, 1, 1), move |rs: Vec<u32>| {
        let (n, p) = (n.clone(), p.clone());
        async move {
            let c = n.fetch_add(1, Ordering::SeqCst) + 1;
            p.fetch_max(c, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(20)).await;
            n.fetch_sub(1, Ordering::SeqCst);
            CallOutcome::Answered(
                rs.iter()
                    .map(|_| Answer::Retry {
                        error: "record rejected: ProvisionedThroughputExceededException".into(),
                        throttled: true,
                    })
                    .collect(),
            )
        }
    })
    .await;
    assert!(peak.load(Ordering::SeqCst) <= 8);
    assert_eq!(env.aimd.current().0, 4, "halved once in the round");
    assert_eq!(env.counts.throttled_records.load(Ordering::Relaxed), 16);
    assert!(matches!(sent.result, Err(OutputError::Retryable(_))));

    // the next round keeps to the lowered limit
    peak.store(0, Ordering::SeqCst);
    let (n, p) = (now.clone(), peak.clone());
    let env2 = Env::new(8);
    env2.aimd.decrease();
    let sent = send(env2.batch(&recs, 1, 1), move |_rs: Vec<u32>| {
        let (n, p) = (n.clone(), p.clone());
        async move {
            let c = n.fetch_add(1, Ordering::SeqCst) + 1;
            p.fetch_max(c, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(20)).await;
            n.fetch_sub(1, Ordering::SeqCst);
            CallOutcome::Failed {
                error: OutputError::Retryable("Put s: ThrottlingException".into()),
                throttled: true,
            }
        }
    })
    .await;
    assert!(peak.load(Ordering::SeqCst) <= 4, "{peak:?}");
    assert_eq!(env2.aimd.current().0, 2);
    assert_eq!(env2.counts.failed_calls.load(Ordering::Relaxed), 16);
    match sent.result {
        Err(OutputError::Retryable(m)) => assert!(m.ends_with("ThrottlingException"), "{m}"),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn unthrottled_answers_raise_the_limit() {
    let env = Env::new(8);
    env.aimd.decrease();
    env.aimd.decrease();
    let recs = records(40);
    let sent = send(env.batch(&recs, 1, 1), |rs: Vec<u32>| async move {
        CallOutcome::Answered(rs.iter().map(|_| Answer::Ok).collect())
    })
    .await;
    assert!(sent.result.is_ok());
    assert_eq!(env.aimd.current(), (8, 1.0));
}

#[tokio::test]
async fn fatal_stops_and_forgets() {
    let env = Env::new(2);
    let recs = records(6);
    env.memory.remember("c1", &HashSet::from([0]));
    let log: Log = Arc::default();
    let l = log.clone();
    let sent = send(env.batch(&recs, 1, 8), move |rs: Vec<u32>| {
        let l = l.clone();
        async move {
            l.lock().unwrap().push(rs.clone());
            let a = rs
                .iter()
                .map(|&r| match r {
                    4 => Answer::Fatal("Put s: record rejected: KMSDisabledException".into()),
                    _ => Answer::Retry {
                        error: "record rejected: InternalFailure".into(),
                        throttled: false,
                    },
                })
                .collect();
            CallOutcome::Answered(a)
        }
    })
    .await;
    match sent.result {
        Err(OutputError::Fatal(m)) => assert!(m.contains("KMSDisabledException"), "{m}"),
        other => panic!("{other:?}"),
    }
    assert_eq!(sent.attempts, 1, "no round after a fatal answer");
    assert_eq!(sent.skipped, 1);
    assert_eq!(log.lock().unwrap().len(), 5, "record 0 was skipped");
    assert!(env.memory.is_empty());

    // a whole call that fails for good stops too
    let env = Env::new(2);
    let sent = send(env.batch(&recs, 3, 8), |_rs: Vec<u32>| async move {
        CallOutcome::Failed {
            error: OutputError::Fatal("Put s: AccessDeniedException".into()),
            throttled: false,
        }
    })
    .await;
    assert!(matches!(sent.result, Err(OutputError::Fatal(_))));
    assert_eq!((sent.attempts, sent.calls), (1, 2));
    assert_eq!(env.aimd.current().0, 2, "fatal is not throttling");
}

#[tokio::test]
async fn attempts_exhausted_remembers_what_was_delivered() {
    let env = Env::new(4);
    let recs = records(5);
    let failing = |rs: Vec<u32>| async move {
        CallOutcome::Answered(
            rs.iter()
                .map(|&r| match r {
                    2 => Answer::Retry {
                        error: "record rejected: ServiceUnavailableException".into(),
                        throttled: false,
                    },
                    _ => Answer::Ok,
                })
                .collect(),
        )
    };
    let sent = send(env.batch(&recs, 2, 2), failing).await;
    match &sent.result {
        Err(OutputError::Retryable(m)) => assert_eq!(
            m,
            "Put s: 1 of 5 records still failing after 2 attempts (4 delivered, kept so a retry skips them): record rejected: ServiceUnavailableException"
        ),
        other => panic!("{other:?}"),
    }
    assert_eq!(env.memory.get("c1"), HashSet::from([0, 1, 3, 4]));
    assert_eq!(env.memory.get("other"), HashSet::new());

    // the engine's retry of the chunk sends only record 2
    let log: Log = Arc::default();
    let l = log.clone();
    let sent = send(env.batch(&recs, 2, 2), move |rs: Vec<u32>| {
        let l = l.clone();
        async move {
            l.lock().unwrap().push(rs.clone());
            CallOutcome::Answered(rs.iter().map(|_| Answer::Ok).collect())
        }
    })
    .await;
    assert!(sent.result.is_ok());
    assert_eq!(sent.skipped, 4);
    assert_eq!(sent.delivered, vec![2]);
    assert_eq!(*log.lock().unwrap(), vec![vec![2]]);
    assert!(env.memory.is_empty(), "forgotten once delivered");
}

#[tokio::test]
async fn a_short_answer_is_a_retryable_call_failure() {
    let env = Env::new(1);
    let recs = records(3);
    let sent = send(env.batch(&recs, 3, 1), |_rs: Vec<u32>| async move {
        CallOutcome::Answered(vec![Answer::Ok])
    })
    .await;
    match sent.result {
        Err(OutputError::Retryable(m)) => {
            assert!(m.ends_with("Put s: 1 answers for 3 records"), "{m}")
        }
        other => panic!("{other:?}"),
    }
    assert!(sent.delivered.is_empty());
    assert_eq!(env.counts.failed_calls.load(Ordering::Relaxed), 1);
}

#[test]
fn memory_keeps_only_non_empty_sets() {
    let m = Delivered::default();
    m.remember("a", &HashSet::new());
    assert!(m.is_empty());
    m.remember("a", &HashSet::from([1, 2]));
    m.remember("b", &HashSet::from([0]));
    assert_eq!(m.len(), 2);
    m.forget("a");
    assert_eq!(m.get("a"), HashSet::new());
    assert_eq!(m.get("b"), HashSet::from([0]));
}

#[tokio::test]
async fn a_sender_packs_by_its_limits_and_keeps_its_attempts() {
    let limits = Limits {
        call_records: 500,
        call_bytes: 1000,
        record: 100,
    };
    let sender = Sender::new(
        limits,
        Pace::new(None, Some(40), None),
        2,
        1,
        Duration::from_secs(60),
    );
    assert_eq!(sender.call_limits(), (10, 1000));
    let recs = records(25);
    let counts = Counts::default();
    let log: Log = Arc::default();
    let l = log.clone();
    let job = Job {
        what: "Put s",
        chunk: "c9",
        records: &recs,
        size: |_| 10,
        observe: &counts,
    };
    let sent = sender
        .send(job, move |rs: Vec<u32>| {
            let l = l.clone();
            async move {
                l.lock().unwrap().push(rs.clone());
                let a = rs
                    .iter()
                    .map(|&r| match r {
                        0 => Answer::Retry {
                            error: "record rejected: InternalFailure".into(),
                            throttled: false,
                        },
                        _ => Answer::Ok,
                    })
                    .collect();
                CallOutcome::Answered(a)
            }
        })
        .await;
    let sizes: Vec<usize> = log.lock().unwrap().iter().map(Vec::len).collect();
    assert_eq!(sizes.iter().sum::<usize>(), 25);
    assert!(sizes.iter().all(|&n| n <= 10), "{sizes:?}");
    assert_eq!(sent.attempts, 1, "retry_attempts = 1: no second round");
    assert!(matches!(sent.result, Err(OutputError::Retryable(_))));
    assert_eq!(sender.delivered.get("c9").len(), 24);
}
