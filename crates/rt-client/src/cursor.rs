//! The client's position: one cursor across transports, and the exactly-once filter.
//!
//! Every transport delivers at least once (a replay after a reconnect may repeat what the
//! previous connection delivered), so events are deduplicated by `(channel, offset)` within
//! an epoch; the server keeps per-channel order, so "offset ≤ last seen" is a duplicate
//! (docs/protocol.md, "The event object"). The JavaScript client does the same
//! (`clients/js/src/cursor.js`, `dedupe.js`).

use rt_core::{Channel, Cursor, Epoch};

/// The last offset seen per channel, within the epoch they belong to (none before the first
/// position is known).
#[derive(Clone, Debug, Default)]
pub(crate) struct Tracker {
    cursor: Option<Cursor>,
}

impl Tracker {
    pub(crate) fn new(cursor: Option<Cursor>) -> Self {
        Tracker { cursor }
    }

    pub(crate) fn cursor(&self) -> Option<&Cursor> {
        self.cursor.as_ref()
    }

    /// Takes in a position the server reported (after a subscribe, a poll, an SSE event).
    /// Within the same epoch each channel keeps the further of the two offsets, unless
    /// `replace` (the server could not recover: its position wins). Another epoch replaces
    /// everything: offsets of different epochs cannot be compared.
    pub(crate) fn adopt(&mut self, server: &Cursor, replace: bool) {
        match &mut self.cursor {
            Some(mine) if mine.epoch() == server.epoch() => {
                for (channel, offset) in server.iter() {
                    if replace || mine.offset(channel).is_none_or(|m| offset > m) {
                        mine.set(channel.clone(), offset);
                    }
                }
            }
            _ => self.cursor = Some(server.clone()),
        }
    }

    /// Whether the event at `offset` of `channel` in `epoch` is new; a new one advances the
    /// cursor. An event of another epoch starts that epoch: history was lost and offsets
    /// restart, so every channel's last offset is forgotten.
    pub(crate) fn accept(&mut self, channel: &Channel, epoch: Epoch, offset: u64) -> bool {
        match &mut self.cursor {
            Some(c) if c.epoch() == epoch => {
                if c.offset(channel).is_some_and(|last| offset <= last) {
                    return false;
                }
                c.set(channel.clone(), offset);
            }
            other => {
                let mut fresh = Cursor::new(epoch);
                for (known, _) in other.iter().flat_map(|c| c.iter()) {
                    fresh.set(known.clone(), 0);
                }
                fresh.set(channel.clone(), offset);
                *other = Some(fresh);
            }
        }
        true
    }

    /// The cursor of `channels` to resume from, or `None` when it names none of them (a
    /// cursor with an epoch but no channel tells the server nothing).
    pub(crate) fn resume(&self, channels: &[Channel]) -> Option<Cursor> {
        let known = self.cursor.as_ref()?;
        let mut out = Cursor::new(known.epoch());
        for channel in channels {
            if let Some(offset) = known.offset(channel) {
                out.set(channel.clone(), offset);
            }
        }
        (!out.is_empty()).then_some(out)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn ch(name: &str) -> Channel {
        Channel::new(name).unwrap()
    }

    #[test]
    fn drops_what_it_has_seen_and_starts_over_in_a_new_epoch() {
        let mut t = Tracker::default();
        assert!(t.accept(&ch("a"), Epoch(1), 5));
        assert!(!t.accept(&ch("a"), Epoch(1), 5));
        assert!(!t.accept(&ch("a"), Epoch(1), 4));
        assert!(t.accept(&ch("b"), Epoch(1), 1));
        assert!(t.accept(&ch("a"), Epoch(1), 6));
        // History was lost: offsets restart, and b's old offset means nothing any more.
        assert!(t.accept(&ch("a"), Epoch(2), 1));
        assert_eq!(t.cursor().unwrap().to_string(), "2,a=1,b=0");
    }

    #[test]
    fn adopts_the_further_position_unless_told_to_replace() {
        let mut t = Tracker::new(Some("1,a=5,b=2".parse().unwrap()));
        t.adopt(&"1,a=3,b=4,c=9".parse().unwrap(), false);
        assert_eq!(t.cursor().unwrap().to_string(), "1,a=5,b=4,c=9");
        t.adopt(&"1,a=1".parse().unwrap(), true);
        assert_eq!(t.cursor().unwrap().to_string(), "1,a=1,b=4,c=9");
        t.adopt(&"7,a=2".parse().unwrap(), false);
        assert_eq!(t.cursor().unwrap().to_string(), "7,a=2");
    }

    #[test]
    fn resumes_only_the_subscribed_channels() {
        let t = Tracker::new(Some("1,a=5,z=2".parse().unwrap()));
        assert_eq!(t.resume(&[ch("a"), ch("b")]).unwrap().to_string(), "1,a=5");
        assert!(t.resume(&[ch("b")]).is_none());
        assert!(Tracker::default().resume(&[ch("a")]).is_none());
    }
}
