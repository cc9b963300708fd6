//! This node's view of how many events Redis retains, for rt-core's history gauge
//! ([`rt_core::telemetry::names::HISTORY_EVENTS`]).
//!
//! Counting keys in Redis per publish or per scrape would cost a scan; instead every script
//! call that already prunes a channel reports how many events the channel retains (a publish
//! returns it, a read returns the head and the oldest retained offset), and the gauge is the
//! sum of the last count seen per channel. A channel not seen for longer than the history age
//! has nothing left (every event it retained was older than that), so it is forgotten: the
//! map only holds channels with recent activity on this node.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use rt_core::telemetry::names::HISTORY_EVENTS;
use rt_core::Channel;

/// Retained events per channel, as last reported by Redis to this node.
#[derive(Debug)]
pub(crate) struct Retained {
    max_age: Duration,
    channels: Mutex<HashMap<Channel, Seen>>,
}

#[derive(Debug, Clone, Copy)]
struct Seen {
    events: u64,
    at: Instant,
}

impl Retained {
    /// Forgets channels not seen for `max_age` (the history age: their events are gone).
    pub(crate) fn new(max_age: Duration) -> Self {
        Retained {
            max_age,
            channels: Mutex::new(HashMap::new()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Channel, Seen>> {
        // Counts only: a panic elsewhere cannot leave them worse than slightly off.
        self.channels.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Redis reported that `channel` retains `events` events.
    pub(crate) fn record(&self, channel: &Channel, events: u64) {
        let seen = Seen {
            events,
            at: Instant::now(),
        };
        let mut channels = self.lock();
        // Channels retaining nothing are not kept (a subscribe reads the head of every
        // channel it joins, most of which may have no history), and the channel name is
        // cloned only for a channel new to the map.
        let before = match channels.get_mut(channel) {
            Some(_) if events == 0 => channels.remove(channel).map_or(0, |s| s.events),
            Some(old) => std::mem::replace(old, seen).events,
            None if events == 0 => 0,
            None => {
                channels.insert(channel.clone(), seen);
                0
            }
        };
        // Moved under the lock, so concurrent records of one channel cannot cross.
        changed(before, events);
    }

    /// Forgets channels whose retained events have all aged out since they were last seen.
    /// Called periodically by the link task, so a quiet node's gauge goes back to 0.
    pub(crate) fn sweep(&self) {
        let now = Instant::now();
        let mut gone = 0;
        self.lock().retain(|_, seen| {
            let keep = now.saturating_duration_since(seen.at) <= self.max_age;
            if !keep {
                gone += seen.events;
            }
            keep
        });
        changed(gone, 0);
    }

    /// Takes this backplane's share out of the gauge (it is being dropped).
    pub(crate) fn clear(&self) {
        let total = self.lock().drain().map(|(_, s)| s.events).sum();
        changed(total, 0);
    }
}

/// Moves the process-wide gauge by `after - before`: increments and decrements, not `set`,
/// so that several backplanes in one process (or the memory backplane) add up.
fn changed(before: u64, after: u64) {
    let gauge = metrics::gauge!(HISTORY_EVENTS);
    if after > before {
        gauge.increment((after - before) as f64);
    } else if before > after {
        gauge.decrement((before - after) as f64);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn total(r: &Retained) -> u64 {
        r.lock().values().map(|s| s.events).sum()
    }

    #[test]
    fn keeps_the_last_count_per_channel_and_forgets_aged_out_channels() {
        let r = Retained::new(Duration::from_millis(50));
        let a = Channel::new("a").unwrap();
        let b = Channel::new("b").unwrap();
        r.record(&a, 3);
        r.record(&a, 5);
        r.record(&b, 2);
        assert_eq!(total(&r), 7);
        r.sweep();
        assert_eq!(total(&r), 7, "seen within the history age");
        std::thread::sleep(Duration::from_millis(80));
        r.record(&b, 1);
        r.sweep();
        assert_eq!(total(&r), 1, "a aged out, b was seen again");
        r.record(&a, 0);
        r.record(&b, 0);
        assert!(
            r.lock().is_empty(),
            "channels retaining nothing are not kept"
        );
        r.record(&b, 4);
        assert_eq!(total(&r), 4);
        r.clear();
        assert_eq!(total(&r), 0);
    }
}
