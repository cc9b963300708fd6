//! Reconnect delays: capped exponential backoff with full jitter.
//!
//! Full jitter (a uniformly random delay between 0 and the capped exponential) spreads the
//! reconnects of many clients that lost the same server at the same instant, instead of
//! bringing them back in synchronised waves (the thundering herd after a restart).

use std::time::Duration;

/// Reconnect delays: before retry `n` (0 for the first) a uniformly random delay in
/// `[0, min(cap, base · 2ⁿ))`.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use rt_client::Backoff;
///
/// let b = Backoff::new(Duration::from_millis(100), Duration::from_secs(2));
/// assert!(b.delay(0) < Duration::from_millis(100));
/// assert!(b.delay(30) < Duration::from_secs(2));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Backoff {
    base: Duration,
    cap: Duration,
}

impl Default for Backoff {
    /// 1 s base, 30 s cap, as the JavaScript client.
    fn default() -> Self {
        Backoff::new(Duration::from_secs(1), Duration::from_secs(30))
    }
}

impl Backoff {
    /// Delays from `base` (the ceiling of the first retry) up to `cap`; a zero `base` or
    /// `cap` is taken as one millisecond.
    pub fn new(base: Duration, cap: Duration) -> Self {
        let ms = Duration::from_millis(1);
        Backoff {
            base: base.max(ms),
            cap: cap.max(ms),
        }
    }

    /// The delay before retry number `attempt` (0 for the first retry).
    pub fn delay(&self, attempt: u32) -> Duration {
        let ceiling = self
            .base
            .checked_mul(1 << attempt.min(31))
            .map_or(self.cap, |d| d.min(self.cap));
        let nanos = u64::try_from(ceiling.as_nanos()).unwrap_or(u64::MAX);
        Duration::from_nanos(fastrand::u64(0..nanos))
    }
}

/// Counts failed attempts and hands out the next delay.
#[derive(Debug)]
pub(crate) struct Attempts {
    backoff: Backoff,
    attempt: u32,
}

impl Attempts {
    pub(crate) fn new(backoff: Backoff) -> Self {
        Attempts {
            backoff,
            attempt: 0,
        }
    }

    /// The delay before the next retry; each call counts one more failure.
    pub(crate) fn next_delay(&mut self) -> Duration {
        let d = self.backoff.delay(self.attempt);
        self.attempt = self.attempt.saturating_add(1);
        d
    }

    /// Forgets past failures, after a connection that worked.
    pub(crate) fn reset(&mut self) {
        self.attempt = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_stay_under_the_growing_ceiling_and_the_cap() {
        let b = Backoff::new(Duration::from_millis(100), Duration::from_millis(1000));
        for attempt in 0..64 {
            let ceiling = Duration::from_millis(100 << attempt.min(4)).min(b.cap);
            let mut max = Duration::ZERO;
            for _ in 0..200 {
                let d = b.delay(attempt);
                assert!(d < ceiling, "attempt {attempt}: {d:?} >= {ceiling:?}");
                max = max.max(d);
            }
            // Jitter spreads the delays over the whole range, not just its bottom.
            assert!(max > ceiling / 2, "attempt {attempt}: at most {max:?}");
        }
    }

    #[test]
    fn attempts_grow_and_start_over() {
        let mut a = Attempts::new(Backoff::new(
            Duration::from_millis(1),
            Duration::from_secs(60),
        ));
        for _ in 0..10 {
            a.next_delay();
        }
        assert_eq!(a.attempt, 10);
        a.reset();
        assert!(a.next_delay() < Duration::from_millis(1));
    }
}
