//! Who a client is: the token it presents and the [`Authenticator`] that turns it into
//! [`Permissions`].

use std::fmt;

use http::header::{self, HeaderMap};
use rt_core::{ChannelPattern, Error, Permissions};

use crate::query::Query;

/// Turns the token a client presents (or `None`) into its [`Permissions`].
///
/// An endpoint's [`Edge`](crate::Edge) holds one and asks it once per request (and again for
/// each token a WebSocket client sends later in an `auth` message). `TokenVerifier` (feature
/// `jwt`) is the one rt ships; an application with its own sessions implements this trait.
///
/// # Examples
///
/// ```
/// use rt_core::{ChannelPattern, Error, Permissions};
/// use rt_http::Authenticator;
///
/// /// Subscribing to `public:*` for everyone; a fixed secret lets a backend publish anywhere.
/// #[derive(Debug)]
/// struct Static(String);
///
/// impl Authenticator for Static {
///     fn authenticate(&self, token: Option<&str>) -> Result<Permissions, Error> {
///         let public = ChannelPattern::parse_list("public:*")?;
///         match token {
///             None => Ok(Permissions::anonymous().allow_subscribe(public)),
///             Some(t) if t == self.0 => Ok(Permissions::new(Some("backend".into()), None)
///                 .allow_subscribe([ChannelPattern::any()])
///                 .allow_publish([ChannelPattern::any()])),
///             Some(_) => Err(Error::Unauthorized("unknown token".into())),
///         }
///     }
/// }
/// ```
pub trait Authenticator: Send + Sync + fmt::Debug + 'static {
    /// The permissions of a client presenting `token`; [`Error::Unauthorized`] (or
    /// [`Error::TokenExpired`]) when it is invalid.
    fn authenticate(&self, token: Option<&str>) -> Result<Permissions, Error>;
}

/// An [`Authenticator`] for servers without tokens: every client gets the same anonymous
/// grants, whatever it presents. Channels outside them are refused with `401`
/// (`unauthorized`), since a token would be needed for them.
///
/// ```
/// use rt_core::{Channel, ChannelPattern};
/// use rt_http::{AnonymousGrants, Authenticator};
///
/// let public = ChannelPattern::parse_list("public:*").unwrap();
/// let grants = AnonymousGrants::new(public, Vec::new());
/// let p = grants.authenticate(None).unwrap();
/// assert!(p.check_subscribe(&Channel::new("public:news").unwrap()).is_ok());
/// assert!(p.check_publish(&Channel::new("public:news").unwrap()).is_err());
/// ```
#[derive(Debug, Clone)]
pub struct AnonymousGrants(Permissions);

impl AnonymousGrants {
    /// Anyone may subscribe to channels matching `subscribe` and publish on those matching
    /// `publish`.
    pub fn new(subscribe: Vec<ChannelPattern>, publish: Vec<ChannelPattern>) -> Self {
        AnonymousGrants(
            Permissions::anonymous()
                .allow_subscribe(subscribe)
                .allow_publish(publish),
        )
    }
}

impl Authenticator for AnonymousGrants {
    fn authenticate(&self, _token: Option<&str>) -> Result<Permissions, Error> {
        Ok(self.0.clone())
    }
}

/// The token a request presents: `Authorization: Bearer <token>` (the scheme in any case,
/// the token trimmed), else the `token` query parameter, which browser APIs that cannot set
/// headers (`EventSource`, `WebSocket`) use. Empty is none.
///
/// ```
/// use http::{HeaderMap, HeaderValue};
/// use rt_http::{token, Query};
///
/// let mut headers = HeaderMap::new();
/// let query = Query::parse(Some("token=from-query"));
/// assert_eq!(token(&headers, &query), Some("from-query"));
/// headers.insert("authorization", HeaderValue::from_static("bearer  abc "));
/// assert_eq!(token(&headers, &query), Some("abc"));
/// ```
pub fn token<'a>(headers: &'a HeaderMap, query: &'a Query) -> Option<&'a str> {
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            let (scheme, token) = v.trim().split_once(' ')?;
            scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
        });
    bearer
        .or_else(|| query.get("token"))
        .filter(|t| !t.is_empty())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn token_sources() {
        let mut h = HeaderMap::new();
        let q = Query::parse(Some("token=from-query"));
        assert_eq!(token(&h, &q), Some("from-query"));
        h.insert(header::AUTHORIZATION, "BEARER xyz".parse().unwrap());
        assert_eq!(token(&h, &q), Some("xyz"));
        h.insert(header::AUTHORIZATION, "Basic xyz".parse().unwrap());
        assert_eq!(token(&h, &Query::default()), None);
        assert_eq!(
            token(&HeaderMap::new(), &Query::parse(Some("token="))),
            None
        );
    }
}
