//! Cursors: the position of a (multi-channel) subscription as one compact string.
//!
//! Format: the epoch in lowercase hex, then for each channel in name order `,channel=offset`,
//! e.g. `9f2c41d0a1b2c3d4,prices=42,trades=7`. An offset is the last event seen on that
//! channel (0: none yet). The string contains no whitespace, quotes or line breaks, so it is a
//! valid SSE `id:` field and `Last-Event-ID` header as it is, and a URL query value once
//! percent-encoded (only `,` and `=` need it, and plain query parsers accept them raw).

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use crate::error::{excerpt, Error};
use crate::event::{Epoch, Position};
use crate::name::Channel;

/// Where a subscription is, per channel, within one epoch.
///
/// # Examples
///
/// ```
/// use rt_core::{Channel, Cursor, Epoch};
///
/// let mut c = Cursor::new(Epoch(0x9f2c));
/// c.set(Channel::new("prices").unwrap(), 42);
/// c.set(Channel::new("trades").unwrap(), 7);
/// let s = c.to_string();
/// assert_eq!(s, "9f2c,prices=42,trades=7");
/// assert_eq!(s.parse::<Cursor>().unwrap(), c);
/// ```
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Cursor {
    epoch: Epoch,
    offsets: BTreeMap<Channel, u64>,
}

impl Cursor {
    /// The longest cursor string accepted from a client.
    pub const MAX_LEN: usize = 8192;

    /// The longest cursor a subscription may come to hold, in bytes: channel sets whose
    /// cursor could grow longer ([`Cursor::worst_case_len`]) are refused when subscribing, on
    /// every transport ([`Cursor::check_fits`]). It is below [`Cursor::MAX_LEN`], so every
    /// cursor the server hands out parses back; and small enough that a cursor together with
    /// the channel list (a poll URL, or an SSE URL and its `Last-Event-ID`) stays under 12.5
    /// KiB, leaving room in a 16 KiB request head for the other headers.
    pub const MAX_ISSUED: usize = 6144;

    /// The longest cursor a subscription to `channels` can come to hold: the epoch (16 hex
    /// digits), then `,name=offset` for each channel with offsets of up to 20 digits.
    pub fn worst_case_len<'a>(channels: impl IntoIterator<Item = &'a Channel>) -> usize {
        16 + channels
            .into_iter()
            .map(|c| c.as_str().len() + 22)
            .sum::<usize>()
    }

    /// `Ok` when a subscription to `channels` can never hold a cursor longer than
    /// [`Cursor::MAX_ISSUED`]; [`Error::ChannelSetTooLarge`] otherwise.
    pub fn check_fits<'a>(channels: impl IntoIterator<Item = &'a Channel>) -> Result<(), Error> {
        let needed = Self::worst_case_len(channels);
        if needed > Self::MAX_ISSUED {
            return Err(Error::ChannelSetTooLarge {
                needed,
                max: Self::MAX_ISSUED,
            });
        }
        Ok(())
    }

    /// An empty cursor in `epoch`.
    pub fn new(epoch: Epoch) -> Self {
        Cursor {
            epoch,
            offsets: BTreeMap::new(),
        }
    }

    /// The epoch the offsets belong to.
    pub fn epoch(&self) -> Epoch {
        self.epoch
    }

    /// The last offset seen on `channel`, if the cursor tracks it.
    pub fn offset(&self, channel: &Channel) -> Option<u64> {
        self.offsets.get(channel).copied()
    }

    /// Records that `channel` has been seen up to `offset`.
    pub fn set(&mut self, channel: Channel, offset: u64) {
        self.offsets.insert(channel, offset);
    }

    /// Stops tracking `channel`.
    pub fn remove(&mut self, channel: &Channel) {
        self.offsets.remove(channel);
    }

    /// Moves to another epoch; offsets are kept and must be reset by the caller.
    pub fn set_epoch(&mut self, epoch: Epoch) {
        self.epoch = epoch;
    }

    /// Records a delivered event's position; a new epoch replaces the old one.
    pub fn advance(&mut self, channel: &Channel, position: Position) {
        self.epoch = position.epoch;
        match self.offsets.get_mut(channel) {
            Some(o) => *o = position.offset,
            None => {
                self.offsets.insert(channel.clone(), position.offset);
            }
        }
    }

    /// The tracked channels and their offsets, in name order.
    pub fn iter(&self) -> impl Iterator<Item = (&Channel, u64)> {
        self.offsets.iter().map(|(c, o)| (c, *o))
    }

    /// How many channels the cursor tracks.
    pub fn len(&self) -> usize {
        self.offsets.len()
    }

    /// Whether the cursor tracks no channel.
    pub fn is_empty(&self) -> bool {
        self.offsets.is_empty()
    }
}

impl fmt::Display for Cursor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.epoch)?;
        for (c, o) in &self.offsets {
            write!(f, ",{c}={o}")?;
        }
        Ok(())
    }
}

impl FromStr for Cursor {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Error> {
        if s.len() > Self::MAX_LEN {
            return Err(Error::InvalidCursor(format!(
                "it is {} bytes long, at most {} are accepted",
                s.len(),
                Self::MAX_LEN
            )));
        }
        let mut parts = s.split(',');
        let epoch: Epoch = parts.next().unwrap_or_default().parse()?;
        let mut cursor = Cursor::new(epoch);
        for part in parts {
            let (name, offset) = part.split_once('=').ok_or_else(|| {
                Error::InvalidCursor(format!("{:?} is not channel=offset", excerpt(part)))
            })?;
            let channel = Channel::new(name)
                .map_err(|e| Error::InvalidCursor(format!("bad channel in cursor: {e}")))?;
            let valid_digits = !offset.is_empty()
                && offset.bytes().all(|b| b.is_ascii_digit())
                && (offset == "0" || !offset.starts_with('0'));
            let offset: u64 = valid_digits
                .then(|| offset.parse().ok())
                .flatten()
                .ok_or_else(|| {
                    Error::InvalidCursor(format!(
                        "offset {:?} of channel {channel} is not a decimal u64 without leading zeros",
                        excerpt(offset)
                    ))
                })?;
            if cursor.offsets.insert(channel.clone(), offset).is_some() {
                return Err(Error::InvalidCursor(format!(
                    "channel {channel} appears twice"
                )));
            }
        }
        Ok(cursor)
    }
}

/// Where a new subscription starts.
#[derive(Clone, PartialEq, Eq, Debug, Default)]
pub enum Start {
    /// From now on: only events published after subscribing.
    #[default]
    Live,
    /// Everything still in history, then live. Spelled `earliest` (as in Mercure).
    Earliest,
    /// Right after the cursor's positions: replays what was missed, then live.
    Cursor(Cursor),
}

impl Start {
    /// The spelling of [`Start::Earliest`] in cursor fields, headers and query parameters.
    pub const EARLIEST: &'static str = "earliest";

    /// Parses a client-supplied resume point: absent or empty means live, `earliest` means all
    /// history, anything else must be a cursor.
    pub fn parse(value: Option<&str>) -> Result<Self, Error> {
        match value.map(str::trim) {
            None | Some("") => Ok(Start::Live),
            Some(Self::EARLIEST) => Ok(Start::Earliest),
            Some(s) => s.parse().map(Start::Cursor),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn parses_and_rejects() {
        let c: Cursor = "ff".parse().unwrap();
        assert!(c.is_empty());
        assert_eq!(c.epoch(), Epoch(255));
        let c: Cursor = "1,a=0,b:c=18446744073709551615".parse().unwrap();
        assert_eq!(c.offset(&Channel::new("b:c").unwrap()), Some(u64::MAX));
        for bad in [
            "",
            ",a=1",
            "zz",
            "1,a",
            "1,a=",
            "1,a=01",
            "1,a=-1",
            "1,a=18446744073709551616",
            "1,a=1,a=2",
            "1,a b=1",
            "1,,a=1",
            "1,a=1\n",
        ] {
            let e = bad.parse::<Cursor>().unwrap_err();
            assert_eq!(e.code(), "invalid_cursor", "{bad:?}");
        }
        assert!("1".repeat(Cursor::MAX_LEN + 1).parse::<Cursor>().is_err());
    }

    #[test]
    fn every_cursor_a_subscription_can_hold_parses_back() {
        // As many channels of the longest name as fit, with the largest epoch and offsets.
        let per = Channel::MAX_LEN + 22;
        let n = (Cursor::MAX_ISSUED - 16) / per;
        let channels: Vec<Channel> = (0..n)
            .map(|i| Channel::new(&format!("{i:03}{}", "x".repeat(Channel::MAX_LEN - 3))).unwrap())
            .collect();
        Cursor::check_fits(&channels).unwrap();
        let mut c = Cursor::new(Epoch(u64::MAX));
        for ch in &channels {
            c.set(ch.clone(), u64::MAX);
        }
        let s = c.to_string();
        assert_eq!(s.len(), Cursor::worst_case_len(&channels));
        assert!(s.len() <= Cursor::MAX_ISSUED && Cursor::MAX_ISSUED <= Cursor::MAX_LEN);
        assert_eq!(s.parse::<Cursor>().unwrap(), c);
        // The issue's channel set: 100 names of 79 bytes.
        let many: Vec<Channel> = (0..100)
            .map(|i| Channel::new(&format!("c{i:03}{}", "x".repeat(75))).unwrap())
            .collect();
        let e = Cursor::check_fits(&many).unwrap_err();
        assert_eq!(e.code(), "too_many_channels");
        assert!(e.to_string().contains("6144"), "{e}");
    }

    #[test]
    fn start_values() {
        assert_eq!(Start::parse(None).unwrap(), Start::Live);
        assert_eq!(Start::parse(Some("")).unwrap(), Start::Live);
        assert_eq!(Start::parse(Some("earliest")).unwrap(), Start::Earliest);
        assert!(matches!(Start::parse(Some("a,x=1")), Ok(Start::Cursor(_))));
        assert!(Start::parse(Some("nope")).is_err());
    }

    fn channel() -> impl Strategy<Value = Channel> {
        "[A-Za-z0-9_.:@/-]{1,20}".prop_map(|s| Channel::new(&s).unwrap())
    }

    proptest! {
        #[test]
        fn round_trips(epoch in any::<u64>(), entries in proptest::collection::btree_map(channel(), any::<u64>(), 0..8)) {
            let mut c = Cursor::new(Epoch(epoch));
            for (ch, o) in entries { c.set(ch, o); }
            let s = c.to_string();
            prop_assert!(!s.contains(['\n', '\r', '\0', ' ', '"']));
            prop_assert_eq!(s.parse::<Cursor>().unwrap(), c);
        }

        #[test]
        fn untrusted_input_never_panics(s in "\\PC{0,64}") {
            let _ = s.parse::<Cursor>();
        }

        #[test]
        fn cursor_like_input_never_panics(s in "[0-9a-f]{0,18}(,[a-z=:0-9]{0,10}){0,4}") {
            if let Ok(c) = s.parse::<Cursor>() {
                // Anything accepted prints back to an equivalent cursor.
                prop_assert_eq!(c.to_string().parse::<Cursor>().unwrap(), c);
            }
        }
    }
}
