//! Quota guards shared by the Firehose and Kinesis Data Streams outputs:
//! token buckets (records/s, bytes/s, requests/s) and an AIMD controller
//! that lowers the send rate and the number of calls in flight when the
//! service throttles, and raises them again on success.

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// A token bucket that may go into debt: `acquire(n)` takes `n` tokens at
/// once and then sleeps until the balance is back to zero, so a request
/// larger than the burst still passes, at the configured average rate.
#[derive(Debug)]
pub struct TokenBucket {
    rate: f64,
    burst: f64,
    state: Mutex<(f64, Instant)>,
}

impl TokenBucket {
    /// `rate` units per second; the burst is a quarter of a second's worth
    /// (at least one unit).
    pub fn new(rate: f64) -> Self {
        let burst = (rate / 4.0).max(1.0);
        TokenBucket {
            rate,
            burst,
            state: Mutex::new((burst, Instant::now())),
        }
    }

    pub fn rate(&self) -> f64 {
        self.rate
    }

    /// How long to wait before `n` units may be sent at `scale` × the rate
    /// (the tokens are taken now).
    fn take(&self, n: f64, scale: f64) -> Duration {
        let rate = (self.rate * scale).max(self.rate / 64.0);
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        let elapsed = now.duration_since(s.1).as_secs_f64();
        s.0 = (s.0 + elapsed * rate).min(self.burst);
        s.1 = now;
        s.0 -= n;
        if s.0 >= 0.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64(-s.0 / rate)
        }
    }

    pub async fn acquire(&self, n: f64, scale: f64) {
        let wait = self.take(n, scale);
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
    }
}

/// Additive increase, multiplicative decrease of the calls in flight and of
/// a factor applied to the token bucket rates.
#[derive(Debug)]
pub struct Aimd {
    max_in_flight: f64,
    state: Mutex<(f64, f64)>,
}

impl Aimd {
    /// The most calls it ever lets run at once.
    pub fn max(&self) -> usize {
        self.max_in_flight as usize
    }

    pub fn new(max_in_flight: usize) -> Self {
        Aimd {
            max_in_flight: max_in_flight as f64,
            state: Mutex::new((max_in_flight as f64, 1.0)),
        }
    }

    /// (calls in flight allowed now, rate factor in (0, 1])
    pub fn current(&self) -> (usize, f64) {
        let s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        ((s.0.floor() as usize).max(1), s.1)
    }

    /// Throttled: halve both.
    pub fn decrease(&self) {
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        s.0 = (s.0 / 2.0).max(1.0);
        s.1 = (s.1 / 2.0).max(1.0 / 16.0);
    }

    /// A call went through: one more call in flight per window, 10% more rate.
    pub fn increase(&self) {
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        s.0 = (s.0 + 1.0 / s.0).min(self.max_in_flight);
        s.1 = (s.1 + 0.1).min(1.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debt_bucket_paces_to_the_rate() {
        let b = TokenBucket::new(100.0);
        assert_eq!(b.take(25.0, 1.0), Duration::ZERO);
        let w = b.take(50.0, 1.0);
        assert!(
            w >= Duration::from_millis(450) && w <= Duration::from_millis(510),
            "{w:?}"
        );
        // half the rate: twice the wait
        let b = TokenBucket::new(100.0);
        b.take(25.0, 1.0);
        let w = b.take(50.0, 0.5);
        assert!(w >= Duration::from_millis(900), "{w:?}");
    }

    #[test]
    fn aimd_halves_and_recovers() {
        let a = Aimd::new(8);
        assert_eq!(a.current(), (8, 1.0));
        a.decrease();
        a.decrease();
        assert_eq!(a.current().0, 2);
        assert!((a.current().1 - 0.25).abs() < 1e-9);
        for _ in 0..100 {
            a.increase();
        }
        assert_eq!(a.current(), (8, 1.0));
        for _ in 0..10 {
            a.decrease();
        }
        assert_eq!(a.current().0, 1);
    }
}
