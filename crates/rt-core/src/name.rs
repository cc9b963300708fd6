//! Validated names: [`Channel`] and [`EventName`].
//!
//! Both are cheap to clone (`Arc<str>`) because every event carries them to every subscriber.
//! Their character sets are chosen so that they never need escaping inside a cursor string,
//! an SSE field or a URL query, and never contain the cursor's separators `,` and `=`.

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::error::{excerpt, Error};

fn check(
    s: &str,
    max: usize,
    too_long: &'static str,
    allowed: fn(u8) -> bool,
) -> Result<(), &'static str> {
    if s.is_empty() {
        return Err("it is empty");
    }
    if s.len() > max {
        return Err(too_long);
    }
    if !s.bytes().all(allowed) {
        return Err("it contains a character outside A-Z a-z 0-9 and the allowed punctuation");
    }
    Ok(())
}

/// The name of a channel (a topic that events are published to and subscribed from).
///
/// 1 to 128 bytes of `A-Z a-z 0-9 _ - . : @ /`. Namespaces conventionally use `:`
/// (`chat:room-1`).
///
/// # Examples
///
/// ```
/// use rt_core::Channel;
///
/// let c: Channel = "chat:room-1".parse().unwrap();
/// assert_eq!(c.as_str(), "chat:room-1");
/// assert!("has space".parse::<Channel>().is_err());
/// ```
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Channel(Arc<str>);

impl Channel {
    /// The longest allowed channel name, in bytes.
    pub const MAX_LEN: usize = 128;

    fn allowed(b: u8) -> bool {
        b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.' | b':' | b'@' | b'/')
    }

    /// Validates `name` as a channel name.
    pub fn new(name: &str) -> Result<Self, Error> {
        check(
            name,
            Self::MAX_LEN,
            "it is longer than 128 bytes",
            Self::allowed,
        )
        .map_err(|reason| Error::InvalidChannel {
            name: excerpt(name),
            reason,
        })?;
        Ok(Channel(name.into()))
    }

    /// The name as a string slice.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// The name of an event within a channel, `message` unless the publisher names it.
///
/// 1 to 64 bytes of `A-Z a-z 0-9 _ - . :`, not starting with `rt.` (reserved for control
/// events). SSE sends it as the `event:` field, so a browser's
/// `EventSource.addEventListener(name, ...)` receives it.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct EventName(Arc<str>);

impl EventName {
    /// The longest allowed event name, in bytes.
    pub const MAX_LEN: usize = 64;

    fn allowed(b: u8) -> bool {
        b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.' | b':')
    }

    /// The prefix of the transports' own control events (`rt.open`, `rt.resync`, ...),
    /// reserved so that no published event can pass for one.
    pub const RESERVED_PREFIX: &'static str = "rt.";

    /// Validates `name` as an event name.
    pub fn new(name: &str) -> Result<Self, Error> {
        check(
            name,
            Self::MAX_LEN,
            "it is longer than 64 bytes",
            Self::allowed,
        )
        .and_then(|()| {
            if name.starts_with(Self::RESERVED_PREFIX) {
                Err("the rt. prefix is reserved for the server's control events")
            } else {
                Ok(())
            }
        })
        .map_err(|reason| Error::InvalidEventName {
            name: excerpt(name),
            reason,
        })?;
        Ok(EventName(name.into()))
    }

    /// The default event name, `message`.
    pub fn message() -> Self {
        EventName("message".into())
    }

    /// Whether this is the default name `message` (which SSE leaves implicit).
    pub fn is_message(&self) -> bool {
        &*self.0 == "message"
    }

    /// The name as a string slice.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Default for EventName {
    fn default() -> Self {
        Self::message()
    }
}

macro_rules! string_like {
    ($t:ty) => {
        impl FromStr for $t {
            type Err = Error;
            fn from_str(s: &str) -> Result<Self, Error> {
                Self::new(s)
            }
        }
        impl fmt::Display for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
        impl fmt::Debug for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Debug::fmt(&*self.0, f)
            }
        }
        impl AsRef<str> for $t {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }
        impl Serialize for $t {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(&self.0)
            }
        }
        impl<'de> Deserialize<'de> for $t {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
                Self::new(&s).map_err(serde::de::Error::custom)
            }
        }
    };
}

string_like!(Channel);
string_like!(EventName);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn channel_rules() {
        assert!(Channel::new("a").is_ok());
        assert!(Channel::new("chat:room_1/x@y.z-w").is_ok());
        assert!(Channel::new(&"x".repeat(128)).is_ok());
        let long = Channel::new(&"x".repeat(129)).unwrap_err();
        assert!(long.to_string().contains("longer than 128"), "{long}");
        assert!(Channel::new("").unwrap_err().to_string().contains("empty"));
        for bad in ["a,b", "a=b", "a b", "é", "a\nb", "a?b"] {
            assert_eq!(
                Channel::new(bad).unwrap_err().code(),
                "invalid_channel",
                "{bad}"
            );
        }
    }

    #[test]
    fn event_name_rules() {
        assert!(EventName::message().is_message());
        assert!(EventName::new("price.update").is_ok());
        assert!(EventName::new("a/b").is_err());
        assert!(EventName::new(&"e".repeat(65)).is_err());
        let reserved = EventName::new("rt.resync").unwrap_err();
        assert!(reserved.to_string().contains("reserved"), "{reserved}");
        assert!(EventName::new("rtx.ok").is_ok());
    }

    #[test]
    fn serde_validates() {
        let c: Channel = serde_json::from_str("\"ok\"").unwrap();
        assert_eq!(c.as_str(), "ok");
        assert!(serde_json::from_str::<Channel>("\"not ok\"").is_err());
    }
}
