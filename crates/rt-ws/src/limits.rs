//! Per-connection bookkeeping of inbound rate and unacknowledged events.

use std::collections::{HashMap, VecDeque};

use rt_core::Channel;
use tokio::time::Instant;

/// A token bucket: `rate` messages per second sustained, `burst` at once.
#[derive(Debug)]
pub(crate) struct RateLimit {
    rate: f64,
    burst: f64,
    tokens: f64,
    last: Instant,
}

impl RateLimit {
    pub(crate) fn new(rate: u32, burst: u32) -> Self {
        let burst = f64::from(burst.max(1));
        RateLimit {
            rate: f64::from(rate),
            burst,
            tokens: burst,
            last: Instant::now(),
        }
    }

    /// Takes one token if there is one.
    pub(crate) fn allow(&mut self) -> bool {
        let now = Instant::now();
        let refill = now.duration_since(self.last).as_secs_f64() * self.rate;
        self.tokens = (self.tokens + refill).min(self.burst);
        self.last = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// The events sent to a client that opted into acks and not acknowledged yet, per channel in
/// offset order. Acks are cumulative: acknowledging offset `n` of a channel acknowledges
/// everything up to `n` there.
#[derive(Debug, Default)]
pub(crate) struct Unacked {
    offsets: HashMap<Channel, VecDeque<u64>>,
    len: usize,
}

impl Unacked {
    pub(crate) fn sent(&mut self, channel: &Channel, offset: u64) {
        self.offsets
            .entry(channel.clone())
            .or_default()
            .push_back(offset);
        self.len += 1;
    }

    pub(crate) fn ack(&mut self, channel: &Channel, offset: u64) {
        if let Some(q) = self.offsets.get_mut(channel) {
            while q.front().is_some_and(|&o| o <= offset) {
                q.pop_front();
                self.len -= 1;
            }
        }
    }

    /// Forgets `channel` (unsubscribed, or its offsets restarted after a resync).
    pub(crate) fn forget(&mut self, channel: &Channel) {
        if let Some(q) = self.offsets.remove(channel) {
            self.len -= q.len();
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.len
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn acks_are_cumulative_per_channel() {
        let (a, b) = (Channel::new("a").unwrap(), Channel::new("b").unwrap());
        let mut u = Unacked::default();
        for o in 1..=5 {
            u.sent(&a, o);
        }
        u.sent(&b, 9);
        assert_eq!(u.len(), 6);
        u.ack(&a, 3);
        assert_eq!(u.len(), 3);
        u.ack(&a, 2);
        assert_eq!(u.len(), 3);
        u.forget(&b);
        assert_eq!(u.len(), 2);
        u.ack(&a, 100);
        assert_eq!(u.len(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn rate_limit_refills() {
        let mut r = RateLimit::new(10, 3);
        assert!((0..3).all(|_| r.allow()));
        assert!(!r.allow());
        tokio::time::advance(std::time::Duration::from_millis(250)).await;
        assert!(r.allow() && r.allow());
        assert!(!r.allow());
    }
}
