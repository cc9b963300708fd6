//! What every endpoint decides at its edge, configured once: who may connect (the
//! authenticator and the hooks), from which pages (the origins), and who hears about it (the
//! observer).

use std::sync::Arc;

use http::HeaderMap;
use http::Response;
use rt_core::{Channel, NewEvent, Permissions};

use crate::auth::{token, Authenticator};
use crate::body::Body;
use crate::error::Error;
use crate::hooks::{Attachment, Client, ConnectRequest, Connected, Hooks};
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
    hooks: Option<Arc<dyn Hooks>>,
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
            hooks: None,
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
    /// What the [`Hooks`] attached, handed back to the connection's later hooks.
    pub attachment: Attachment,
    /// Channels the connect hook joins the connection to ([`Connected::channels`]).
    pub channels: Vec<Channel>,
    /// What the connect hook shows the client ([`Connected::data`]).
    pub data: Option<serde_json::Value>,
}

impl Admitted {
    /// The client as the hooks see it, on the endpoint named `transport`.
    pub fn client(&self, transport: &'static str) -> Client<'_> {
        Client {
            transport,
            permissions: &self.permissions,
            attachment: &self.attachment,
        }
    }

    /// The channels a request subscribes to: those it `named` (as [`Query::channels`] read
    /// them), then those of the connect hook it did not name. Naming none is fine when the
    /// hook joins some.
    ///
    /// ```
    /// use rt_core::{Channel, Permissions};
    /// use rt_http::{Admitted, Attachment};
    ///
    /// let ch = |n| Channel::new(n).unwrap();
    /// let admitted = Admitted {
    ///     permissions: Permissions::open(),
    ///     presented: false,
    ///     attachment: Attachment::default(),
    ///     channels: vec![ch("user:alice"), ch("news")],
    ///     data: None,
    /// };
    /// let all = admitted.with_joined(Ok(vec![ch("news")])).unwrap();
    /// assert_eq!(all, [ch("news"), ch("user:alice")]);
    /// let only = admitted.with_joined(Err(rt_core::Error::NoChannels)).unwrap();
    /// assert_eq!(only.len(), 2);
    /// ```
    pub fn with_joined(
        &self,
        named: Result<Vec<Channel>, rt_core::Error>,
    ) -> Result<Vec<Channel>, rt_core::Error> {
        let mut channels = match named {
            Ok(named) => named,
            Err(rt_core::Error::NoChannels) if !self.channels.is_empty() => Vec::new(),
            Err(e) => return Err(e),
        };
        for c in &self.channels {
            if !channels.contains(c) {
                channels.push(c.clone());
            }
        }
        Ok(channels)
    }
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

    /// Awaits `hooks` on every connect, subscribe and client publish (after the
    /// authenticator, whose verdict the connect hook gets).
    pub fn hooks(mut self, hooks: Arc<dyn Hooks>) -> Self {
        self.hooks = Some(hooks);
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
    /// or `?token=`), then the connect hook. A refused credential is reported to the observer.
    pub async fn admit(
        &self,
        transport: &'static str,
        headers: &HeaderMap,
        query: &Query,
    ) -> Result<Admitted, Error> {
        self.origins.check(headers)?;
        let token = token(headers, query);
        self.connect(transport, headers, token).await
    }

    /// Whether the edge has [`Hooks`] (whose connect hook then wants the handshake's headers
    /// again for a WebSocket's later `auth` message).
    pub fn has_hooks(&self) -> bool {
        self.hooks.is_some()
    }

    /// Admits a token sent later over an open connection (a WebSocket `auth` message), with
    /// the `headers` of the request that opened it: the authenticator's verdict, then the
    /// connect hook, as for a new request (without the origin check, which the connection
    /// passed). A refused token is reported to the observer.
    pub async fn reauthenticate(
        &self,
        transport: &'static str,
        headers: &HeaderMap,
        token: &str,
    ) -> Result<Admitted, Error> {
        self.connect(transport, headers, Some(token)).await
    }

    /// The authenticator's verdict on `token`, then the connect hook's.
    async fn connect(
        &self,
        transport: &'static str,
        headers: &HeaderMap,
        token: Option<&str>,
    ) -> Result<Admitted, Error> {
        let presented = token.is_some();
        let verdict = self.authenticate(token);
        let connected = match &self.hooks {
            None => verdict.map(Connected::new),
            Some(hooks) => {
                let request = ConnectRequest {
                    transport,
                    headers,
                    token,
                    verdict,
                };
                hooks.connect(request).await
            }
        };
        match connected {
            Ok(c) => Ok(Admitted {
                permissions: c.permissions,
                presented,
                attachment: c.attachment,
                channels: c.channels,
                data: c.data,
            }),
            Err(e) => {
                self.count_refusal(transport, e.code(), presented);
                Err(e)
            }
        }
    }

    /// Asks the subscribe hook about each of `channels` that `client`'s permissions allow (the
    /// others are refused by the subscription itself), all at once; the first refusal wins.
    pub async fn check_subscribe(
        &self,
        client: Client<'_>,
        channels: &[Channel],
    ) -> Result<(), Error> {
        let Some(hooks) = &self.hooks else {
            return Ok(());
        };
        let calls = channels
            .iter()
            .filter(|c| client.permissions.can_subscribe(c))
            .filter_map(|c| hooks.subscribe(client, c));
        futures_util::future::try_join_all(calls).await?;
        Ok(())
    }

    /// `event` as the publish hook lets `client` publish it (possibly with another payload),
    /// or why not. A channel the permissions do not allow is left for the hub to refuse.
    pub async fn check_publish(
        &self,
        client: Client<'_>,
        mut event: NewEvent,
    ) -> Result<NewEvent, Error> {
        let Some(hooks) = &self.hooks else {
            return Ok(event);
        };
        if !client.permissions.can_publish(&event.channel) {
            return Ok(event);
        }
        let replacement = match hooks.publish(client, &event) {
            Some(call) => call.await?,
            None => None,
        };
        if let Some(payload) = replacement {
            event.payload = payload;
        }
        Ok(event)
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

    #[tokio::test]
    async fn refuses_unless_configured() {
        let q = Query::default();
        let h = HeaderMap::new();
        let e = Edge::default().admit("sse", &h, &q).await.unwrap_err();
        assert_eq!(e, Error::NoAuthenticator);
        assert_eq!(e.status(), http::StatusCode::UNAUTHORIZED);
        assert!(e.to_string().contains("allow_anonymous"), "{e}");
        let open = Edge::default()
            .allow_anonymous()
            .admit("sse", &h, &q)
            .await
            .unwrap();
        assert_eq!(open.permissions, Permissions::open());
    }
}
