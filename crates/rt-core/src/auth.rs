//! Who may subscribe to and publish on which channels.
//!
//! The HTTP edge (`rt-http`) turns whatever a client presents (a token, or nothing) into
//! [`Permissions`] once; the transports then only ask the permissions, through
//! [`Subscription::add`](crate::Subscription::add) (after
//! [`Subscription::set_permissions`](crate::Subscription::set_permissions)),
//! [`Hub::publish_as`](crate::Hub::publish_as) and [`Permissions::expired`].

use std::fmt;
use std::str::FromStr;
use std::sync::{Arc, LazyLock};
use std::time::{Duration, SystemTime};

use crate::error::{excerpt, Error};
use crate::name::Channel;

/// A channel pattern: an exact channel name (`chat:room-1`), a prefix ending in `*`
/// (`chat:*` matches every channel starting with `chat:`), or `*` alone for every channel.
///
/// # Examples
///
/// ```
/// use rt_core::{Channel, ChannelPattern};
///
/// let p: ChannelPattern = "chat:*".parse().unwrap();
/// assert!(p.matches(&Channel::new("chat:room-1").unwrap()));
/// assert!(!p.matches(&Channel::new("chatter").unwrap()));
/// assert!("chat:*:x".parse::<ChannelPattern>().is_err());
/// ```
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct ChannelPattern {
    prefix: Arc<str>,
    wildcard: bool,
}

impl ChannelPattern {
    /// Validates `pattern`: channel-name characters, optionally ending in one `*`.
    pub fn new(pattern: &str) -> Result<Self, Error> {
        let invalid = |reason: &'static str| Error::InvalidPattern {
            pattern: excerpt(pattern),
            reason,
        };
        let (prefix, wildcard) = match pattern.strip_suffix('*') {
            Some(prefix) => (prefix, true),
            None => (pattern, false),
        };
        if prefix.contains('*') {
            return Err(invalid("`*` may only end a pattern (as in `chat:*`)"));
        }
        if !wildcard || !prefix.is_empty() {
            // A prefix must itself be a possible (start of a) channel name.
            Channel::new(prefix).map_err(|e| match e {
                Error::InvalidChannel { reason, .. } => invalid(reason),
                _ => invalid("it is not a channel name"),
            })?;
        }
        Ok(ChannelPattern {
            prefix: prefix.into(),
            wildcard,
        })
    }

    /// Every channel (`*`).
    pub fn any() -> Self {
        ChannelPattern {
            prefix: "".into(),
            wildcard: true,
        }
    }

    /// The part before the `*` (the whole name for an exact pattern, empty for `*`).
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// Whether the pattern ends in `*` (matches every channel starting with its prefix).
    pub fn is_prefix(&self) -> bool {
        self.wildcard
    }

    /// Whether `channel` matches.
    pub fn matches(&self, channel: &Channel) -> bool {
        if self.wildcard {
            channel.as_str().starts_with(&*self.prefix)
        } else {
            channel.as_str() == &*self.prefix
        }
    }

    /// Parses a comma-separated list of patterns (empty items are skipped).
    pub fn parse_list(list: &str) -> Result<Vec<Self>, Error> {
        list.split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(Self::new)
            .collect()
    }
}

impl FromStr for ChannelPattern {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        Self::new(s)
    }
}

impl fmt::Display for ChannelPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.prefix)?;
        if self.wildcard {
            f.write_str("*")?;
        }
        Ok(())
    }
}

impl fmt::Debug for ChannelPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.to_string(), f)
    }
}

/// The channels a connection may use, and until when.
///
/// Built by an authenticator at the HTTP edge from a verified token (or from the anonymous
/// grants when no token was presented). [`Permissions::open`] allows everything: it is what an
/// endpoint explicitly opened to anonymous clients grants.
///
/// # Examples
///
/// ```
/// use rt_core::{Channel, ChannelPattern, Permissions};
///
/// let p = Permissions::new(Some("alice".into()), None)
///     .allow_subscribe(ChannelPattern::parse_list("chat:*, news").unwrap())
///     .allow_publish(ChannelPattern::parse_list("chat:alice").unwrap());
/// let room = Channel::new("chat:room-1").unwrap();
/// assert!(p.check_subscribe(&room).is_ok());
/// assert_eq!(p.check_publish(&room).unwrap_err().code(), "forbidden");
/// ```
///
/// Cloning is cheap (reference counts, no allocation): every connection holds a copy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Permissions {
    subject: Option<Arc<str>>,
    /// False for anonymous clients: a channel outside their grant needs a token (401), while
    /// for an authenticated client it is forbidden (403).
    authenticated: bool,
    subscribe: Arc<[ChannelPattern]>,
    publish: Arc<[ChannelPattern]>,
    /// Channels whose presence may be read.
    presence: Arc<[ChannelPattern]>,
    /// What the token says about the client (its `info` claim), shown in presence.
    info: Option<Arc<serde_json::Value>>,
    expires_at: Option<SystemTime>,
}

impl Permissions {
    /// Everything allowed, forever: a server with no authentication configured.
    pub fn open() -> Self {
        static OPEN: LazyLock<Permissions> = LazyLock::new(|| Permissions {
            subject: None,
            authenticated: true,
            subscribe: Arc::new([ChannelPattern::any()]),
            publish: Arc::new([ChannelPattern::any()]),
            presence: Arc::new([ChannelPattern::any()]),
            info: None,
            expires_at: None,
        });
        OPEN.clone()
    }

    /// Nothing allowed yet, for an anonymous client; add its grants with
    /// [`allow_subscribe`](Self::allow_subscribe) and [`allow_publish`](Self::allow_publish).
    pub fn anonymous() -> Self {
        Permissions {
            subject: None,
            authenticated: false,
            subscribe: Arc::new([]),
            publish: Arc::new([]),
            presence: Arc::new([]),
            info: None,
            expires_at: None,
        }
    }

    /// Nothing allowed yet, for the authenticated `subject`, valid until `expires_at`.
    pub fn new(subject: Option<String>, expires_at: Option<SystemTime>) -> Self {
        Permissions {
            subject: subject.map(Arc::from),
            authenticated: true,
            subscribe: Arc::new([]),
            publish: Arc::new([]),
            presence: Arc::new([]),
            info: None,
            expires_at,
        }
    }

    /// Also allows subscribing to channels matching `patterns`.
    pub fn allow_subscribe(mut self, patterns: impl IntoIterator<Item = ChannelPattern>) -> Self {
        self.subscribe = self.subscribe.iter().cloned().chain(patterns).collect();
        self
    }

    /// Also allows publishing on channels matching `patterns`.
    pub fn allow_publish(mut self, patterns: impl IntoIterator<Item = ChannelPattern>) -> Self {
        self.publish = self.publish.iter().cloned().chain(patterns).collect();
        self
    }

    /// Also allows reading the presence of channels matching `patterns`.
    pub fn allow_presence(mut self, patterns: impl IntoIterator<Item = ChannelPattern>) -> Self {
        self.presence = self.presence.iter().cloned().chain(patterns).collect();
        self
    }

    /// Attaches what the token says about the client (its `info` claim); presence shows it.
    pub fn with_info(mut self, info: Option<serde_json::Value>) -> Self {
        self.info = info.map(Arc::new);
        self
    }

    /// What the token says about the client, if anything.
    pub fn info(&self) -> Option<&serde_json::Value> {
        self.info.as_deref()
    }

    /// Who the token was issued to (its `sub` claim), if anyone.
    pub fn subject(&self) -> Option<&str> {
        self.subject.as_deref()
    }

    /// Whether these permissions come from a verified token (or an open server).
    pub fn is_authenticated(&self) -> bool {
        self.authenticated
    }

    /// When the token expires; a connection must not outlive it.
    pub fn expires_at(&self) -> Option<SystemTime> {
        self.expires_at
    }

    /// Whether the token has expired by now.
    pub fn is_expired(&self) -> bool {
        self.expires_at.is_some_and(|t| t <= SystemTime::now())
    }

    /// A timer that fires when the token expires, or `None` for permissions without expiry
    /// (for connections that hold their timer only when there is one).
    pub fn expiry(&self) -> Option<tokio::time::Sleep> {
        self.expires_at.map(|t| {
            tokio::time::sleep(
                t.duration_since(SystemTime::now())
                    .unwrap_or(Duration::ZERO),
            )
        })
    }

    /// Resolves when the token expires (never for permissions without expiry). Long-lived
    /// connections `select!` on it to end themselves with [`Error::TokenExpired`]'s reason.
    /// Cancel-safe.
    pub fn expired(&self) -> impl std::future::Future<Output = ()> + Send + 'static {
        // Boxed: a connection without expiry then holds a pointer, not a whole timer.
        let timer = self.expiry().map(Box::pin);
        async move {
            match timer {
                Some(timer) => timer.await,
                None => std::future::pending().await,
            }
        }
    }

    /// The patterns of channels that may be subscribed to.
    pub fn subscribe_patterns(&self) -> &[ChannelPattern] {
        &self.subscribe
    }

    /// The patterns of channels that may be published on.
    pub fn publish_patterns(&self) -> &[ChannelPattern] {
        &self.publish
    }

    /// The patterns of channels whose presence may be read.
    pub fn presence_patterns(&self) -> &[ChannelPattern] {
        &self.presence
    }

    /// Whether `channel` may be subscribed to.
    pub fn can_subscribe(&self, channel: &Channel) -> bool {
        self.subscribe.iter().any(|p| p.matches(channel))
    }

    /// Whether `channel` may be published on.
    pub fn can_publish(&self, channel: &Channel) -> bool {
        self.publish.iter().any(|p| p.matches(channel))
    }

    /// `Ok` if `channel` may be subscribed to; otherwise [`Error::Unauthorized`] for an
    /// anonymous client or [`Error::Forbidden`] for an authenticated one, or
    /// [`Error::TokenExpired`] once the token has expired.
    pub fn check_subscribe(&self, channel: &Channel) -> Result<(), Error> {
        self.check(channel, self.can_subscribe(channel), "subscribe to")
    }

    /// `Ok` if `channel` may be published on; the errors are those of
    /// [`check_subscribe`](Self::check_subscribe).
    pub fn check_publish(&self, channel: &Channel) -> Result<(), Error> {
        self.check(channel, self.can_publish(channel), "publish on")
    }

    /// `Ok` if `channel`'s presence may be read; the errors are those of
    /// [`check_subscribe`](Self::check_subscribe).
    pub fn check_presence(&self, channel: &Channel) -> Result<(), Error> {
        let allowed = self.presence.iter().any(|p| p.matches(channel));
        self.check(channel, allowed, "read the presence of")
    }

    fn check(&self, channel: &Channel, allowed: bool, what: &str) -> Result<(), Error> {
        if self.is_expired() {
            return Err(Error::TokenExpired);
        }
        match (allowed, self.authenticated) {
            (true, _) => Ok(()),
            (false, false) => Err(Error::Unauthorized(format!(
                "a token is needed to {what} channel {channel:?}; send one as `Authorization: Bearer <token>` or `?token=`"
            ))),
            (false, true) => Err(Error::Forbidden(format!(
                "the token does not allow you to {what} channel {channel:?}"
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn ch(s: &str) -> Channel {
        Channel::new(s).unwrap()
    }

    #[test]
    fn patterns() {
        let p = ChannelPattern::new("chat:*").unwrap();
        assert!(p.matches(&ch("chat:")));
        assert!(p.matches(&ch("chat:a")));
        assert!(!p.matches(&ch("chat")));
        assert!(ChannelPattern::new("*").unwrap().matches(&ch("x")));
        let exact = ChannelPattern::new("news").unwrap();
        assert!(exact.matches(&ch("news")));
        assert!(!exact.matches(&ch("news2")));
        for bad in ["", "a*b", "**", "a b*", "*a"] {
            assert_eq!(
                ChannelPattern::new(bad).unwrap_err().code(),
                "invalid_pattern",
                "{bad}"
            );
        }
        assert_eq!(
            ChannelPattern::parse_list(" a:* , b,")
                .unwrap()
                .iter()
                .map(|p| p.to_string())
                .collect::<Vec<_>>(),
            ["a:*", "b"]
        );
    }

    #[test]
    fn anonymous_needs_a_token_authenticated_is_forbidden() {
        let anon =
            Permissions::anonymous().allow_subscribe([ChannelPattern::new("pub:*").unwrap()]);
        assert!(anon.check_subscribe(&ch("pub:x")).is_ok());
        assert_eq!(
            anon.check_subscribe(&ch("priv")).unwrap_err().code(),
            "unauthorized"
        );
        assert_eq!(
            anon.check_publish(&ch("pub:x")).unwrap_err().code(),
            "unauthorized"
        );
        let user = Permissions::new(Some("u".into()), None).allow_publish([ChannelPattern::any()]);
        assert_eq!(
            user.check_subscribe(&ch("a")).unwrap_err().code(),
            "forbidden"
        );
        assert!(user.check_publish(&ch("a")).is_ok());
        assert!(Permissions::open().check_publish(&ch("a")).is_ok());
    }

    #[tokio::test]
    async fn expiry() {
        let past = SystemTime::now() - Duration::from_secs(1);
        let p = Permissions::new(None, Some(past)).allow_subscribe([ChannelPattern::any()]);
        assert!(p.is_expired());
        assert_eq!(
            p.check_subscribe(&ch("a")).unwrap_err().code(),
            "token_expired"
        );
        tokio::time::timeout(Duration::from_secs(1), p.expired())
            .await
            .unwrap();
        let soon = Permissions::new(None, Some(SystemTime::now() + Duration::from_millis(50)));
        assert!(!soon.is_expired());
        tokio::time::timeout(Duration::from_secs(2), soon.expired())
            .await
            .unwrap();
        let never = Permissions::open();
        assert!(
            tokio::time::timeout(Duration::from_millis(20), never.expired())
                .await
                .is_err()
        );
    }

    #[tokio::test]
    async fn hub_and_subscription_enforce_permissions() {
        use crate::{Hub, HubConfig, MemoryBackplane, NewEvent, Payload, Retention, Start};
        let hub = Hub::new(
            Arc::new(MemoryBackplane::new(Retention::default())),
            HubConfig::default(),
        );
        let user = Permissions::new(Some("u".into()), None)
            .allow_subscribe([ChannelPattern::new("chat:*").unwrap()])
            .allow_publish([ChannelPattern::new("chat:u").unwrap()]);
        // A refused subscribe joins nothing, not even the allowed channels of the same call.
        let err = hub
            .subscribe_as(&user, [ch("chat:a"), ch("news")], Start::Live)
            .await
            .unwrap_err();
        assert_eq!(err.code(), "forbidden");
        assert_eq!(hub.stats().channels, 0);
        let mut sub = hub
            .subscribe_as(&user, [ch("chat:a")], Start::Live)
            .await
            .unwrap();
        assert_eq!(
            sub.add([ch("news")], Start::Live).await.unwrap_err().code(),
            "forbidden"
        );
        let event = |c: &str| NewEvent::new(ch(c), Payload::text("x"));
        assert_eq!(
            hub.publish_as(&user, event("chat:a"))
                .await
                .unwrap_err()
                .code(),
            "forbidden"
        );
        hub.publish_as(&user, event("chat:u")).await.unwrap();
        // Nothing from the refused publish was stored.
        let mut all = hub
            .subscribe([ch("chat:a")], Start::Earliest)
            .await
            .unwrap();
        assert!(all.try_next().is_none());
        drop(sub);
    }

    proptest! {
        #[test]
        fn prefix_patterns_match_exactly_the_channels_with_that_prefix(
            prefix in "[a-z:]{0,6}",
            name in "[a-z:]{1,10}",
        ) {
            let p = ChannelPattern::new(&format!("{prefix}*")).unwrap();
            prop_assert_eq!(p.matches(&ch(&name)), name.starts_with(&prefix));
            if !prefix.is_empty() {
                let exact = ChannelPattern::new(&prefix).unwrap();
                prop_assert_eq!(exact.matches(&ch(&name)), name == prefix);
            }
            // Round trip through Display.
            prop_assert_eq!(ChannelPattern::new(&p.to_string()).unwrap(), p);
        }

        #[test]
        fn any_string_parses_or_errs_without_panicking(s in "\\PC{0,20}") {
            let _ = ChannelPattern::new(&s);
        }
    }
}
