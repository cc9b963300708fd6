//! A [`Sink`] that records the [`Signal`]s a backplane hands it, and the check every
//! distributed backplane's signals must pass, for backplane tests without a hub.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use rt_core::{Backplane, Channel, Event, Signal, Sink};

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

/// Two nodes `a` and `b` of one backplane, not attached to anything yet (and connected): a
/// signal sent by either reaches both, and none is stored as an event. `within` bounds each
/// wait.
pub async fn signals_reach_every_node(a: &dyn Backplane, b: &dyn Backplane, within: Duration) {
    let (log_a, log_b) = (SignalLog::new(), SignalLog::new());
    a.attach(log_a.clone());
    b.attach(log_b.clone());
    let room = Channel::new("room").unwrap();
    let bye = Signal::Disconnect {
        subject: "user-1".into(),
        reconnect: false,
        reason: "banned".into(),
    };
    let off = Signal::Unsubscribe {
        subject: "user-2".into(),
        channel: room.clone(),
    };
    a.signal(bye.clone()).await.unwrap();
    b.signal(off.clone()).await.unwrap();
    // Order across two senders is not promised: compare as sets.
    for log in [&log_a, &log_b] {
        let seen = log.wait_for(2, within).await;
        assert!(seen.contains(&bye) && seen.contains(&off), "{seen:?}");
    }
    // Signals are not events: nothing of them is stored.
    assert_eq!(b.head(&room).await.unwrap().1, 0);
}
