//! The query string, decoded once per request.

use rt_core::{Channel, Error};

/// A decoded query string. Repeated keys are kept in order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Query(Vec<(String, String)>);

impl Query {
    /// Decodes `query` (the part after `?`, percent- and `+`-decoded).
    pub fn parse(query: Option<&str>) -> Self {
        Query(
            form_urlencoded::parse(query.unwrap_or_default().as_bytes())
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect(),
        )
    }

    /// The first value of `key`.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// Every value of `key`, in order.
    pub fn all<'a>(&'a self, key: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.0
            .iter()
            .filter(move |(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// The channels of a request: every `channel` parameter, each of which may also be a
    /// comma-separated list. Duplicates are removed; none at all or more than `max` is an
    /// error.
    pub fn channels(&self, max: usize) -> Result<Vec<Channel>, Error> {
        let mut out: Vec<Channel> = Vec::new();
        for name in self.all("channel").flat_map(|v| v.split(',')) {
            let channel = Channel::new(name)?;
            if !out.contains(&channel) {
                out.push(channel);
            }
            if out.len() > max {
                return Err(Error::TooManyChannels {
                    given: self.all("channel").flat_map(|v| v.split(',')).count(),
                    max,
                });
            }
        }
        if out.is_empty() {
            return Err(Error::NoChannels);
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn query_channels() {
        let q = Query::parse(Some("channel=a&channel=b,c&channel=a&x=%2C"));
        let names: Vec<_> = q
            .channels(10)
            .unwrap()
            .iter()
            .map(|c| c.to_string())
            .collect();
        assert_eq!(names, ["a", "b", "c"]);
        assert_eq!(q.get("x"), Some(","));
        assert_eq!(q.channels(2).unwrap_err().code(), "too_many_channels");
        assert_eq!(
            Query::parse(None).channels(2).unwrap_err().code(),
            "no_channels"
        );
        assert_eq!(
            Query::parse(Some("channel=a%20b"))
                .channels(2)
                .unwrap_err()
                .code(),
            "invalid_channel"
        );
    }
}
