//! A channel's retained events, bounded by count and by age.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use crate::backplane::{ChannelHead, ReadFrom};
use crate::event::{Epoch, Event};

/// How much history each channel keeps.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Retention {
    /// At most this many events per channel (0 keeps none: resume never recovers).
    pub max_len: usize,
    /// Events older than this are dropped.
    pub max_age: Duration,
}

impl Default for Retention {
    fn default() -> Self {
        Retention {
            max_len: 1000,
            max_age: Duration::from_secs(300),
        }
    }
}

/// The answer to "what came after offset `n`?".
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Since {
    /// Every event after the offset, oldest first, up to the limit asked for. `more` says
    /// whether further retained events follow the last one returned.
    Events {
        /// The events, in offset order.
        events: Vec<Arc<Event>>,
        /// Whether more retained events follow.
        more: bool,
    },
    /// History cannot tell: the offset is older than what is retained, or ahead of the head
    /// (history was lost). The caller continues from `head`.
    Gap {
        /// The channel's latest offset.
        head: u64,
        /// The oldest retained offset (`head + 1` when nothing is retained).
        oldest: u64,
    },
}

/// One channel's retained events. Offsets are assigned by [`History::next_offset`] and pushed
/// in order; the head offset survives even when every event has expired, so offsets are never
/// reused within an epoch.
#[derive(Clone, Debug, Default)]
pub struct History {
    events: VecDeque<Arc<Event>>,
    head: u64,
}

impl History {
    /// An empty history whose first event will get offset 1.
    pub fn new() -> Self {
        Self::default()
    }

    /// The latest assigned offset (0 before the first event).
    pub fn head(&self) -> u64 {
        self.head
    }

    /// The offset the next pushed event must carry.
    pub fn next_offset(&self) -> u64 {
        self.head + 1
    }

    /// Number of retained events.
    pub fn len(&self) -> usize {
        self.events.len()
    }

    /// Whether no event is retained.
    pub fn is_empty(&self) -> bool {
        self.events.is_empty()
    }

    /// Appends `event` (whose offset must be [`History::next_offset`]) and applies `retention`.
    pub fn push(&mut self, event: Arc<Event>, retention: Retention, now_ms: u64) {
        debug_assert_eq!(event.offset(), self.next_offset());
        self.head = event.offset();
        if retention.max_len > 0 {
            self.events.push_back(event);
        }
        self.prune(retention, now_ms);
    }

    /// Drops what the retention no longer allows.
    pub fn prune(&mut self, retention: Retention, now_ms: u64) {
        while self.events.len() > retention.max_len {
            self.events.pop_front();
        }
        let max_age = u64::try_from(retention.max_age.as_millis()).unwrap_or(u64::MAX);
        let oldest_allowed = now_ms.saturating_sub(max_age);
        while self
            .events
            .front()
            .is_some_and(|e| e.time_ms() < oldest_allowed)
        {
            self.events.pop_front();
        }
    }

    fn gap(&self) -> Since {
        Since::Gap {
            head: self.head,
            oldest: self.events.front().map_or(self.head + 1, |e| e.offset()),
        }
    }

    /// This history's answer to [`Backplane::join`](crate::Backplane::join) in `epoch`: its
    /// head, and the first page from where asked.
    pub(crate) fn join(&self, epoch: Epoch, from: ReadFrom, limit: usize) -> ChannelHead {
        let head = self.head;
        let (after, page) = match from {
            ReadFrom::Nothing => (head, None),
            ReadFrom::After(after) => (after, Some(self.since(after, limit))),
            ReadFrom::Earliest => match self.since(0, limit) {
                Since::Gap { oldest, .. } => {
                    let after = oldest.saturating_sub(1);
                    (after, Some(self.since(after, limit)))
                }
                page => (0, Some(page)),
            },
        };
        ChannelHead {
            epoch,
            head,
            after,
            page,
        }
    }

    /// The events after offset `after`, at most `limit` of them, or a gap when history cannot
    /// cover `after` exactly.
    pub fn since(&self, after: u64, limit: usize) -> Since {
        if after > self.head {
            return self.gap();
        }
        if after == self.head {
            return Since::Events {
                events: Vec::new(),
                more: false,
            };
        }
        let Some(first) = self.events.front().map(|e| e.offset()) else {
            return self.gap();
        };
        if after + 1 < first {
            return self.gap();
        }
        // Offsets are contiguous, so the event after `after` sits at a computable index.
        let start = usize::try_from(after + 1 - first).unwrap_or(usize::MAX);
        let events: Vec<_> = self
            .events
            .iter()
            .skip(start)
            .take(limit)
            .cloned()
            .collect();
        let more = start.saturating_add(events.len()) < self.events.len();
        Since::Events { events, more }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Channel, Epoch, EventName, Payload, Position};

    fn ev(offset: u64, time_ms: u64) -> Arc<Event> {
        Arc::new(Event::new(
            Channel::new("c").unwrap(),
            Position {
                epoch: Epoch(1),
                offset,
            },
            EventName::message(),
            Payload::text(offset.to_string()),
            time_ms,
        ))
    }

    fn offsets(s: &Since) -> Vec<u64> {
        match s {
            Since::Events { events, .. } => events.iter().map(|e| e.offset()).collect(),
            Since::Gap { .. } => panic!("unexpected gap"),
        }
    }

    #[test]
    fn bounded_by_count() {
        let r = Retention {
            max_len: 3,
            max_age: Duration::from_secs(60),
        };
        let mut h = History::new();
        for o in 1..=5 {
            h.push(ev(o, 1000), r, 1000);
        }
        assert_eq!(h.len(), 3);
        assert_eq!(h.head(), 5);
        assert_eq!(offsets(&h.since(2, 10)), vec![3, 4, 5]);
        assert_eq!(offsets(&h.since(4, 10)), vec![5]);
        assert_eq!(offsets(&h.since(5, 10)), Vec::<u64>::new());
        assert_eq!(h.since(1, 10), Since::Gap { head: 5, oldest: 3 });
        assert_eq!(h.since(0, 10), Since::Gap { head: 5, oldest: 3 });
        assert_eq!(h.since(6, 10), Since::Gap { head: 5, oldest: 3 });
    }

    #[test]
    fn bounded_by_age() {
        let r = Retention {
            max_len: 100,
            max_age: Duration::from_millis(50),
        };
        let mut h = History::new();
        h.push(ev(1, 1000), r, 1000);
        h.push(ev(2, 1040), r, 1040);
        h.push(ev(3, 1060), r, 1060);
        assert_eq!(
            offsets(&h.since(1, 10)),
            vec![2, 3],
            "event 1 is older than 50 ms"
        );
        h.prune(r, 2000);
        assert!(h.is_empty());
        assert_eq!(h.head(), 3, "the head survives expiry");
        assert_eq!(h.since(2, 10), Since::Gap { head: 3, oldest: 4 });
        assert_eq!(offsets(&h.since(3, 10)), Vec::<u64>::new());
    }

    #[test]
    fn limit_and_more() {
        let r = Retention::default();
        let mut h = History::new();
        for o in 1..=10 {
            h.push(ev(o, 1), r, 1);
        }
        match h.since(0, 4) {
            Since::Events { events, more } => {
                assert_eq!(events.len(), 4);
                assert!(more);
            }
            Since::Gap { .. } => panic!(),
        }
        match h.since(6, 4) {
            Since::Events { events, more } => {
                assert_eq!(events.len(), 4);
                assert!(!more);
            }
            Since::Gap { .. } => panic!(),
        }
    }

    #[test]
    fn zero_retention_keeps_nothing() {
        let r = Retention {
            max_len: 0,
            max_age: Duration::from_secs(1),
        };
        let mut h = History::new();
        h.push(ev(1, 1), r, 1);
        assert!(h.is_empty());
        assert_eq!(h.since(0, 10), Since::Gap { head: 1, oldest: 2 });
        assert_eq!(offsets(&h.since(1, 10)), Vec::<u64>::new());
    }
}
