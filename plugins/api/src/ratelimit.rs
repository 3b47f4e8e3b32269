//! At most one of something (a warning) per interval, shared by threads.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

#[derive(Debug)]
pub struct RateLimit {
    start: Instant,
    next_ms: AtomicU64,
    every_ms: u64,
}

impl RateLimit {
    pub fn new(every_ms: u64) -> Self {
        RateLimit {
            start: Instant::now(),
            next_ms: AtomicU64::new(0),
            every_ms,
        }
    }

    /// True at most once per interval (the first call is always true).
    pub fn ready(&self) -> bool {
        let now = self.start.elapsed().as_millis() as u64;
        let next = self.next_ms.load(Ordering::Relaxed);
        now >= next
            && self
                .next_ms
                .compare_exchange(
                    next,
                    now + self.every_ms,
                    Ordering::Relaxed,
                    Ordering::Relaxed,
                )
                .is_ok()
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
}
