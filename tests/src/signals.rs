//! A [`Sink`] that records the [`Signal`]s a backplane hands it, for backplane tests that
//! look at signals without a hub.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use rt_core::{Channel, Event, Signal, Sink};

/// Records every signal; ignores events.
#[derive(Debug, Default)]
pub struct SignalLog {
    signals: Mutex<Vec<Signal>>,
}

impl SignalLog {
    /// An empty log, ready to be attached to a backplane.
    pub fn new() -> Arc<Self> {
        Arc::default()
    }

    /// The signals received so far, once there are at least `n` (panics after `within`).
    pub async fn wait_for(&self, n: usize, within: Duration) -> Vec<Signal> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let seen = self.signals.lock().unwrap().clone();
            if seen.len() >= n {
                return seen;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{} signal(s) received within {within:?}, expected {n}: {seen:?}",
                seen.len()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Sink for SignalLog {
    fn deliver(&self, _: Arc<Event>) {}

    fn catch_up(&self, _: &Channel) {}

    fn signal(&self, signal: Signal) {
        self.signals.lock().unwrap().push(signal);
    }
}
