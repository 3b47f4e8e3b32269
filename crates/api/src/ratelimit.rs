//! At most one of something (a warning) per interval, shared by threads.
//! What is held back is counted: per limiter (`take_suppressed`, to say
//! "N more like this" in the next warning) and process-wide
//! (`suppressed_total`, on the metrics endpoint).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

static SUPPRESSED_TOTAL: AtomicU64 = AtomicU64::new(0);

/// Every warning held back by any `RateLimit` since the process started.
pub fn suppressed_total() -> u64 {
    SUPPRESSED_TOTAL.load(Ordering::Relaxed)
}

#[derive(Debug)]
pub struct RateLimit {
    start: Instant,
    next_ms: AtomicU64,
    every_ms: u64,
    suppressed: AtomicU64,
}

impl RateLimit {
    pub fn new(every_ms: u64) -> Self {
        RateLimit {
            start: Instant::now(),
            next_ms: AtomicU64::new(0),
            every_ms,
            suppressed: AtomicU64::new(0),
        }
    }

    /// True at most once per interval (the first call is always true); a
    /// false answer counts as one suppressed warning.
    pub fn ready(&self) -> bool {
        let now = self.start.elapsed().as_millis() as u64;
        let next = self.next_ms.load(Ordering::Relaxed);
        let ok = now >= next
            && self
                .next_ms
                .compare_exchange(
                    next,
                    now + self.every_ms,
                    Ordering::Relaxed,
                    Ordering::Relaxed,
                )
                .is_ok();
        if !ok {
            self.suppressed.fetch_add(1, Ordering::Relaxed);
            SUPPRESSED_TOTAL.fetch_add(1, Ordering::Relaxed);
        }
        ok
    }

    /// `Some(suppressed since the last time)` when a warning may be logged
    /// now, `None` (and counted) otherwise.
    pub fn check(&self) -> Option<u64> {
        self.ready()
            .then(|| self.suppressed.swap(0, Ordering::Relaxed))
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn once_per_interval() {
        let r = super::RateLimit::new(60_000);
        assert!(r.ready());
        assert!(!r.ready());
    }

    #[test]
    fn counts_what_it_holds_back() {
        let r = super::RateLimit::new(0);
        assert_eq!(r.check(), Some(0));
        let r = super::RateLimit::new(60_000);
        let before = super::suppressed_total();
        assert_eq!(r.check(), Some(0));
        assert_eq!(r.check(), None);
        assert_eq!(r.check(), None);
        assert!(super::suppressed_total() >= before + 2);
        assert_eq!(r.suppressed.load(std::sync::atomic::Ordering::Relaxed), 2);
    }
}
