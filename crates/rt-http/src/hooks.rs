//! [`Hooks`]: decisions an application makes while a request waits, on connect, subscribe and
//! client publish (e.g. by asking its own backend over HTTP, as rt-proxy does).

use std::any::Any;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use http::HeaderMap;
use rt_core::{Channel, NewEvent, Payload, Permissions};

use crate::error::Error;

/// The future a hook answers with.
pub type HookFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, Error>> + Send + 'a>>;

/// Asynchronous decisions at the edge, next to the (synchronous) [`Authenticator`]:
/// an [`Edge`](crate::Edge) built with [`Edge::hooks`](crate::Edge::hooks) awaits them.
///
/// - [`connect`](Hooks::connect) decides every request (a WebSocket, an SSE stream, each poll
///   or poll publish) and every token a WebSocket sends later in an `auth` message: it gets
///   the request's headers and token and the authenticator's verdict, and answers the client's
///   [`Permissions`] plus an [`Attachment`] that later hooks of the same connection get back,
///   channels to join and data to show the client ([`Connected`]). The default keeps the
///   verdict.
/// - [`subscribe`](Hooks::subscribe) may refuse a channel the permissions allow.
/// - [`publish`](Hooks::publish) may refuse or rewrite a client's publish.
///
/// Refuse with [`rt_core::Error::Forbidden`] (`403`; WebSocket close `1008` on connect, an
/// `error` message on subscribe and publish), and say that the hook could not decide with
/// [`Error::HookFailed`] (`503`; WebSocket close `1013` on connect).
///
/// [`Authenticator`]: crate::Authenticator
///
/// # Examples
///
/// ```
/// use rt_core::{Channel, Error, NewEvent, Payload};
/// use rt_http::{Client, HookFuture, Hooks};
///
/// /// Nobody subscribes to `admin:*`, and every published payload is upper-cased.
/// #[derive(Debug)]
/// struct Shout;
///
/// impl Hooks for Shout {
///     fn subscribe<'a>(&'a self, _: Client<'a>, channel: &'a Channel) -> Option<HookFuture<'a, ()>> {
///         let refused = channel.as_str().starts_with("admin:");
///         Some(Box::pin(async move {
///             match refused {
///                 true => Err(Error::Forbidden("admins only".into()).into()),
///                 false => Ok(()),
///             }
///         }))
///     }
///
///     fn publish<'a>(&'a self, _: Client<'a>, event: &'a NewEvent) -> Option<HookFuture<'a, Option<Payload>>> {
///         let text = String::from_utf8_lossy(event.payload.bytes()).to_uppercase();
///         Some(Box::pin(async move { Ok(Some(Payload::text(text))) }))
///     }
/// }
/// ```
pub trait Hooks: Send + Sync + fmt::Debug + 'static {
    /// The permissions of a new request and what to attach to it; by default the
    /// authenticator's verdict, with nothing attached.
    fn connect<'a>(&'a self, request: ConnectRequest<'a>) -> HookFuture<'a, Connected> {
        Box::pin(std::future::ready(request.verdict.map(Connected::new)))
    }

    /// Whether `client` may subscribe to `channel`, which its permissions allow; `None` (the
    /// default): no hook, it may.
    fn subscribe<'a>(
        &'a self,
        client: Client<'a>,
        channel: &'a Channel,
    ) -> Option<HookFuture<'a, ()>> {
        let _ = (client, channel);
        None
    }

    /// Whether `client` may publish `event`, which its permissions allow, and with which
    /// payload: `Ok(Some(payload))` replaces it, `Ok(None)` keeps it. `None` (the default): no
    /// hook, it may.
    fn publish<'a>(
        &'a self,
        client: Client<'a>,
        event: &'a NewEvent,
    ) -> Option<HookFuture<'a, Option<Payload>>> {
        let _ = (client, event);
        None
    }
}

/// A request as [`Hooks::connect`] sees it.
#[derive(Debug)]
#[non_exhaustive]
pub struct ConnectRequest<'a> {
    /// The endpoint's name in telemetry (`ws`, `sse`, `poll`, `poll_publish`).
    pub transport: &'static str,
    /// The request's headers (cookies included).
    pub headers: &'a HeaderMap,
    /// The token it presents, if any: for a WebSocket `auth` message, the new token (the
    /// headers are still the handshake's).
    pub token: Option<&'a str>,
    /// What the edge's authenticator made of the token.
    pub verdict: Result<Permissions, Error>,
}

/// What [`Hooks::connect`] admits a request with.
///
/// # Examples
///
/// ```
/// use rt_core::{Channel, Permissions};
/// use rt_http::Connected;
///
/// // Alice's own channel is joined for her, and her client is told her plan.
/// let connected = Connected::new(Permissions::open())
///     .join(vec![Channel::new("user:alice").unwrap()])
///     .data(serde_json::json!({"plan": "pro"}));
/// assert_eq!(connected.channels.len(), 1);
/// ```
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Connected {
    /// What the client may do.
    pub permissions: Permissions,
    /// Handed back to the connection's later hooks.
    pub attachment: Attachment,
    /// Channels the server subscribes the connection to, as if the client had named them: a
    /// WebSocket joins them right after connecting (live, with the usual `subscribed`
    /// message), an SSE stream and a poll add them to the channels of their URL (resumed by
    /// their cursor like those). They must pass the permissions and [`Hooks::subscribe`] like
    /// any channel, refused as a client's subscribe would be (SSE and polls: `403`;
    /// WebSocket: an `error` message, or close `1008` outside the permissions).
    pub channels: Vec<Channel>,
    /// Shown to the client when it connects (the WebSocket's `connected` message, SSE's
    /// `rt.connected` event, a poll answer's `data`), e.g. the application's view of the
    /// user. Never sent back to the hooks: that is what the [`Attachment`] is for.
    pub data: Option<serde_json::Value>,
}

impl Connected {
    /// `permissions`, with nothing attached, joined or shown.
    pub fn new(permissions: Permissions) -> Self {
        Connected {
            permissions,
            attachment: Attachment::default(),
            channels: Vec::new(),
            data: None,
        }
    }

    /// Sets [`Connected::attachment`].
    pub fn attach(mut self, attachment: Attachment) -> Self {
        self.attachment = attachment;
        self
    }

    /// Sets [`Connected::channels`].
    pub fn join(mut self, channels: Vec<Channel>) -> Self {
        self.channels = channels;
        self
    }

    /// Sets [`Connected::data`].
    pub fn data(mut self, data: serde_json::Value) -> Self {
        self.data = Some(data);
        self
    }
}

/// A connection as [`Hooks::subscribe`] and [`Hooks::publish`] see it.
#[derive(Debug, Clone, Copy)]
pub struct Client<'a> {
    /// The endpoint's name in telemetry.
    pub transport: &'static str,
    /// What the client may do.
    pub permissions: &'a Permissions,
    /// What [`Hooks::connect`] attached.
    pub attachment: &'a Attachment,
}

/// Whatever [`Hooks::connect`] attaches to a connection (e.g. the headers to forward later,
/// or data from the application), handed back to its later hooks. Cheap to clone.
#[derive(Clone, Default)]
pub struct Attachment(Option<Arc<dyn Any + Send + Sync>>);

impl Attachment {
    /// Attaches `value`.
    pub fn new<T: Any + Send + Sync>(value: T) -> Self {
        Attachment(Some(Arc::new(value)))
    }

    /// The attached value, if it is a `T`.
    pub fn get<T: Any>(&self) -> Option<&T> {
        self.0.as_deref().and_then(|v| v.downcast_ref())
    }
}

impl fmt::Debug for Attachment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self.0 {
            Some(_) => "Attachment(..)",
            None => "Attachment(none)",
        })
    }
}
