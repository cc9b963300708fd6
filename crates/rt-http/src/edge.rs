//! What every endpoint decides at its edge, configured once: who may connect (the
//! authenticator), from which pages (the origins), and who hears about it (the observer).

use std::sync::Arc;

use http::HeaderMap;
use http::Response;
use rt_core::Permissions;

use crate::auth::{token, Authenticator};
use crate::body::Body;
use crate::error::Error;
use crate::observer::{AuthFailure, Log, Observer};
use crate::origin::Origins;
use crate::query::Query;

/// The edge policy of an endpoint, shared by every transport's configuration.
///
/// Safe by construction: the default has no authenticator and refuses every request (`401`,
/// or WebSocket close `1008`) with a message saying how to configure one. Build it with
/// [`Edge::authenticator`], or say explicitly that anyone may use every channel with
/// [`Edge::allow_anonymous`].
///
/// # Examples
///
/// ```
/// use rt_http::{Edge, Origins};
///
/// // Development: everyone may use every channel, from pages of two origins.
/// let edge = Edge::default()
///     .allow_anonymous()
///     .origins(Origins::parse("https://app.example.com, http://localhost:3000"));
/// # let _ = edge;
/// ```
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Edge {
    /// Which browser origins may use the endpoint (default: same-origin only).
    pub origins: Origins,
    /// Who hears about connections (default: [`Log`]).
    pub observer: Arc<dyn Observer>,
    access: Access,
}

#[derive(Debug, Clone, Default)]
enum Access {
    /// Nothing was configured: refuse, rather than open everything by accident.
    #[default]
    Refuse,
    /// Explicitly open to everyone.
    Anonymous,
    Tokens(Arc<dyn Authenticator>),
}

impl Default for Edge {
    fn default() -> Self {
        Edge {
            origins: Origins::default(),
            observer: Arc::new(Log),
            access: Access::default(),
        }
    }
}

/// A request the edge let in.
#[derive(Debug, Clone)]
pub struct Admitted {
    /// What the client may do.
    pub permissions: Permissions,
    /// Whether it presented a token (to tell a missing credential from an invalid one).
    pub presented: bool,
}

impl Edge {
    /// Verifies each client's token with `authenticator` (e.g. a `TokenVerifier`).
    pub fn authenticator(mut self, authenticator: Arc<dyn Authenticator>) -> Self {
        self.access = Access::Tokens(authenticator);
        self
    }

    /// Lets every client subscribe and publish on every channel without a token. Only for
    /// development, or endpoints behind an application that already checked its users.
    pub fn allow_anonymous(mut self) -> Self {
        self.access = Access::Anonymous;
        self
    }

    /// Sets [`Edge::origins`].
    pub fn origins(mut self, origins: Origins) -> Self {
        self.origins = origins;
        self
    }

    /// Sets [`Edge::observer`].
    pub fn observer(mut self, observer: Arc<dyn Observer>) -> Self {
        self.observer = observer;
        self
    }

    /// Whether tokens sent later (a WebSocket `auth` message) can be verified.
    pub fn verifies_tokens(&self) -> bool {
        matches!(self.access, Access::Tokens(_))
    }

    /// The permissions of a client presenting `token`.
    pub fn authenticate(&self, token: Option<&str>) -> Result<Permissions, Error> {
        match &self.access {
            Access::Refuse => Err(Error::NoAuthenticator),
            Access::Anonymous => Ok(Permissions::open()),
            Access::Tokens(authenticator) => Ok(authenticator.authenticate(token)?),
        }
    }

    /// Lets a request in or says why not: its origin, then its token (`Authorization: Bearer`
    /// or `?token=`). A refused credential is reported to the observer.
    pub fn admit(
        &self,
        transport: &'static str,
        headers: &HeaderMap,
        query: &Query,
    ) -> Result<Admitted, Error> {
        self.origins.check(headers)?;
        let token = token(headers, query);
        let presented = token.is_some();
        match self.authenticate(token) {
            Ok(permissions) => Ok(Admitted {
                permissions,
                presented,
            }),
            Err(e) => {
                self.count_refusal(transport, e.code(), presented);
                Err(e)
            }
        }
    }

    /// Reports a refusal with the stable error `code` to the observer if it refuses a
    /// credential or channel.
    pub fn count_refusal(&self, transport: &'static str, code: &str, presented: bool) {
        if let Some(failure) = AuthFailure::of(code, presented) {
            self.observer.auth_failed(transport, failure);
        }
    }

    /// The JSON answer to a refused request, reported to the observer when it refuses a
    /// credential or channel.
    pub fn refuse(&self, transport: &'static str, e: &Error, presented: bool) -> Response<Body> {
        self.count_refusal(transport, e.code(), presented);
        e.to_response()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn refuses_unless_configured() {
        let q = Query::default();
        let h = HeaderMap::new();
        let e = Edge::default().admit("sse", &h, &q).unwrap_err();
        assert_eq!(e, Error::NoAuthenticator);
        assert_eq!(e.status(), http::StatusCode::UNAUTHORIZED);
        assert!(e.to_string().contains("allow_anonymous"), "{e}");
        let open = Edge::default()
            .allow_anonymous()
            .admit("sse", &h, &q)
            .unwrap();
        assert_eq!(open.permissions, Permissions::open());
    }
}
