//! The client's configuration, and its two entry points: `subscribe` and `publish`.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rt_core::{Channel, Start};
use tokio::sync::{mpsc, oneshot};

use crate::backoff::Backoff;
use crate::driver::Driver;
use crate::error::{BoxError, Error};
use crate::event::{Message, PublishAck, Transport};
use crate::http::HttpClient;
use crate::publish::{self, Link};
use crate::subscription::{Publisher, Subscription};

/// What a token function is asked for.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct TokenRequest {
    /// `true` after the server refused the previous token: do not hand back a cached one.
    pub refresh: bool,
    /// The refusal (`token_expired`, `invalid_token`, `token_required`, `unauthorized`)
    /// when `refresh`.
    pub reason: Option<String>,
}

type TokenFuture = Pin<Box<dyn Future<Output = Result<String, BoxError>> + Send>>;
type TokenFn = dyn Fn(TokenRequest) -> TokenFuture + Send + Sync;

#[derive(Clone)]
pub(crate) enum TokenSource {
    Fixed(String),
    Function(Arc<TokenFn>),
}

impl TokenSource {
    pub(crate) fn refreshes(&self) -> bool {
        matches!(self, TokenSource::Function(_))
    }

    pub(crate) async fn get(&self, request: TokenRequest) -> Result<String, Error> {
        match self {
            TokenSource::Fixed(t) => Ok(t.clone()),
            TokenSource::Function(f) => f(request).await.map_err(Error::Token),
        }
    }
}

/// The server's endpoints, derived from its base URL (empty for a URL that is not valid:
/// [`Client::checked`] refuses it before any request).
#[derive(Clone, Debug, Default)]
pub(crate) struct Endpoints {
    pub(crate) ws: String,
    pub(crate) sse: String,
    pub(crate) poll: String,
    pub(crate) client_publish: String,
    pub(crate) api_publish: String,
}

impl Endpoints {
    fn new(url: &str) -> Result<Endpoints, String> {
        let uri: http::Uri = url.parse().map_err(|e| format!("{e}"))?;
        let (http, ws) = match uri.scheme_str() {
            Some("http" | "ws") => ("http", "ws"),
            Some("https" | "wss") => ("https", "wss"),
            _ => return Err("use an http:// or https:// URL (or ws://, wss://)".into()),
        };
        let authority = uri.authority().ok_or("the URL names no host")?;
        if uri.query().is_some() {
            return Err("the URL may not have a query".into());
        }
        // A path is a prefix under which the server's routes are mounted (behind a proxy).
        let prefix = uri.path().trim_end_matches('/');
        let http = format!("{http}://{authority}{prefix}");
        Ok(Endpoints {
            ws: format!("{ws}://{authority}{prefix}/ws"),
            sse: format!("{http}/sse"),
            poll: format!("{http}/poll"),
            client_publish: format!("{http}/poll/publish"),
            api_publish: format!("{http}/api/publish"),
        })
    }
}

/// Everything a subscription or publish reads, shared by its tasks.
#[derive(Clone)]
pub(crate) struct Config {
    pub(crate) endpoints: Endpoints,
    pub(crate) http: HttpClient,
    /// TLS for `https://` requests and `wss://` WebSockets.
    pub(crate) tls: Arc<rustls::ClientConfig>,
    pub(crate) transports: Vec<Transport>,
    pub(crate) token: Option<TokenSource>,
    pub(crate) api_key: Option<String>,
    pub(crate) backoff: Backoff,
    pub(crate) stable_after: Duration,
    pub(crate) heartbeat: Duration,
    pub(crate) connect_timeout: Duration,
    pub(crate) poll_timeout: Duration,
    pub(crate) poll_interval: Duration,
    pub(crate) publish_timeout: Duration,
    pub(crate) ack_timeout: Duration,
    pub(crate) acks: bool,
    /// The transport that worked last, tried first by the next round of this client.
    pub(crate) preferred: Arc<Mutex<Option<Transport>>>,
}

impl Config {
    /// The token for a request: `Ok(None)` without a token source.
    pub(crate) async fn token(&self, request: TokenRequest) -> Result<Option<String>, Error> {
        match &self.token {
            None => Ok(None),
            Some(source) => source.get(request).await.map(Some),
        }
    }
}

/// An rt server, and how to talk to it. Building one does no I/O.
///
/// # Examples
///
/// ```no_run
/// use futures_util::StreamExt;
/// use rt_client::{Client, Message, Update};
///
/// # async fn run() -> Result<(), rt_client::Error> {
/// let client = Client::connect("http://127.0.0.1:8080").earliest();
/// let mut sub = client.subscribe(["prices", "trades"]).await?;
/// sub.publish(Message::text("trades", "1 @ 42")).await?;
/// while let Some(update) = sub.next().await {
///     match update {
///         Update::Event(e) => println!("{} #{}: {:?}", e.channel, e.offset, e.data),
///         Update::Resync { channels, .. } => println!("reload {channels:?}"),
///         other => println!("{other:?}"),
///     }
/// }
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Client {
    url: String,
    endpoints: Result<Endpoints, String>,
    /// Why the certificates given to `tls_root_certificates` cannot be used.
    tls_error: Option<String>,
    config: Config,
    start: String,
    queue: usize,
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("url", &self.url)
            .field("transports", &self.config.transports)
            .field("token", &self.config.token.is_some())
            .field("acks", &self.config.acks)
            .finish_non_exhaustive()
    }
}

impl Client {
    /// A client of the rt server at `url` (`http://host:port`, optionally with a path prefix
    /// under which the server's routes are mounted). Nothing is sent until
    /// [`Client::subscribe`] or [`Client::publish`]; an invalid URL is reported there.
    pub fn connect(url: impl Into<String>) -> Client {
        let url = url.into();
        let endpoints = Endpoints::new(&url);
        let tls = crate::http::tls(&[]).expect("no extra roots: nothing to parse");
        Client {
            config: Config {
                endpoints: endpoints.clone().unwrap_or_default(),
                http: crate::http::client(&tls),
                tls,
                transports: Transport::ALL.to_vec(),
                token: None,
                api_key: None,
                backoff: Backoff::default(),
                stable_after: Duration::from_secs(5),
                heartbeat: Duration::from_secs(35),
                connect_timeout: Duration::from_secs(10),
                poll_timeout: Duration::from_secs(25),
                poll_interval: Duration::from_secs(2),
                publish_timeout: Duration::from_secs(30),
                ack_timeout: Duration::from_secs(5),
                acks: false,
                preferred: Arc::default(),
            },
            url,
            endpoints,
            tls_error: None,
            start: String::new(),
            queue: 256,
        }
    }

    /// The transports to try, best first (default: WebSocket, SSE, long polling). A transport
    /// that cannot connect is skipped at once for the next; the one that worked is tried
    /// first on the next reconnect.
    pub fn transports(mut self, transports: impl IntoIterator<Item = Transport>) -> Self {
        let mut list: Vec<Transport> = Vec::new();
        for t in transports {
            if !list.contains(&t) {
                list.push(t);
            }
        }
        self.config.transports = list;
        self
    }

    /// A fixed token, sent as `Authorization: Bearer` on every connection and publish.
    pub fn token(mut self, token: impl Into<String>) -> Self {
        self.config.token = Some(TokenSource::Fixed(token.into()));
        self
    }

    /// A token function, called before each connection and HTTP publish so an expired token
    /// is replaced. After the server refuses a token it is called with
    /// [`TokenRequest::refresh`] set, and the same transport is retried at once instead of
    /// backing off.
    pub fn token_fn<F, Fut, E>(mut self, f: F) -> Self
    where
        F: Fn(TokenRequest) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<String, E>> + Send + 'static,
        E: Into<BoxError>,
    {
        let f = Arc::new(move |request: TokenRequest| -> TokenFuture {
            let fut = f(request);
            Box::pin(async move { fut.await.map_err(Into::into) })
        });
        self.config.token = Some(TokenSource::Function(f));
        self
    }

    /// Publish over HTTP with the server's API key (`POST /api/publish`, `X-Api-Key`), as a
    /// backend does, instead of as a client (`POST /poll/publish`, within the token's rights).
    /// WebSocket publishes of a subscription are not affected.
    pub fn api_key(mut self, key: impl Into<String>) -> Self {
        self.config.api_key = Some(key.into());
        self
    }

    /// Start every channel with everything the server still holds, then live (default: live,
    /// only events published from now on).
    pub fn earliest(mut self) -> Self {
        self.start = Start::EARLIEST.to_owned();
        self
    }

    /// Resume from a cursor saved earlier ([`Subscription::cursor`]): exactly the events
    /// after it, then live. Checked when subscribing.
    pub fn cursor(mut self, cursor: impl Into<String>) -> Self {
        self.start = cursor.into();
        self
    }

    /// Reconnect delays (default 1 s base, 30 s cap, full jitter).
    pub fn backoff(mut self, backoff: Backoff) -> Self {
        self.config.backoff = backoff;
        self
    }

    /// How long a connection must have lasted for the backoff to start over (default 5 s):
    /// one that opens and drops at once keeps backing off.
    pub fn stable_after(mut self, after: Duration) -> Self {
        self.config.stable_after = after;
        self
    }

    /// How long a connection may stay silent before it is presumed dead and replaced (default
    /// 35 s: the server's 25 s WebSocket heartbeat plus slack; SSE pings every 15 s). A held
    /// long poll may stay silent for its whole hold time on top of this.
    pub fn heartbeat(mut self, silence: Duration) -> Self {
        self.config.heartbeat = silence;
        self
    }

    /// How long one connection attempt may take before the next transport is tried
    /// (default 10 s).
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.config.connect_timeout = timeout;
        self
    }

    /// How long the server may hold a long poll (default 25 s; whole seconds).
    pub fn poll_timeout(mut self, timeout: Duration) -> Self {
        self.config.poll_timeout = timeout;
        self
    }

    /// How often a short poll ([`Transport::ShortPoll`]) asks when the last answer had no
    /// event (default 2 s).
    pub fn poll_interval(mut self, interval: Duration) -> Self {
        self.config.poll_interval = interval;
        self
    }

    /// How long a publish keeps retrying before it fails (default 30 s).
    pub fn publish_timeout(mut self, timeout: Duration) -> Self {
        self.config.publish_timeout = timeout;
        self
    }

    /// How long to wait for a WebSocket publish's acknowledgement before sending it again
    /// (default 5 s).
    pub fn ack_timeout(mut self, timeout: Duration) -> Self {
        self.config.ack_timeout = timeout;
        self
    }

    /// Whether WebSocket connections opt into acknowledgements (default `false`). With
    /// them, the client acknowledges what it has handed to the subscription's queue
    /// (cumulative `ack`s, one message per channel, at most every 200 ms or 128 events) and
    /// the server never has more than its ack window (`--ws-ack-window`) unacknowledged in
    /// flight: flow control instead of the server's lag and stall limits. Each ack is an
    /// inbound message under the server's rate limit (`--ws-rate-limit`, 100/s): with many
    /// busy channels, raise it or leave acks off.
    pub fn acks(mut self, on: bool) -> Self {
        self.config.acks = on;
        self
    }

    /// How many updates wait for the application before the client stops reading the
    /// connection (default 256).
    pub fn queue(mut self, capacity: usize) -> Self {
        self.queue = capacity.max(1);
        self
    }

    /// Also trusts the CA certificates of `pem` (one or more PEM blocks) for `https://` and
    /// `wss://`, besides the public web's roots: for a server whose certificate a private CA
    /// signed. Invalid PEM is reported by [`Client::subscribe`] and [`Client::publish`].
    pub fn tls_root_certificates(mut self, pem: &[u8]) -> Self {
        match crate::http::tls(pem) {
            Ok(tls) => {
                self.config.http = crate::http::client(&tls);
                self.config.tls = tls;
            }
            Err(reason) => self.tls_error = Some(reason),
        }
        self
    }

    fn checked(&self) -> Result<(), Error> {
        if let Some(reason) = &self.tls_error {
            return Err(Error::Tls(reason.clone()));
        }
        self.endpoints
            .as_ref()
            .map(|_| ())
            .map_err(|reason| Error::InvalidUrl {
                url: self.url.clone(),
                reason: reason.clone(),
            })
    }

    /// Subscribes to `channels` and returns once a transport is open (or fails with
    /// [`Error::Unreachable`] when every transport failed once). From then on the
    /// subscription reconnects by itself, resuming from its cursor, until dropped.
    pub async fn subscribe<I, S>(&self, channels: I) -> Result<Subscription, Error>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        self.checked()?;
        if self.config.transports.is_empty() {
            return Err(Error::Unreachable(Vec::new()));
        }
        let mut list: Vec<Channel> = Vec::new();
        for name in channels {
            let channel = Channel::new(name.as_ref())?;
            if !list.contains(&channel) {
                list.push(channel);
            }
        }
        if list.is_empty() {
            return Err(Error::NoChannels);
        }
        let start = Start::parse(Some(&self.start))?;
        let link = Arc::new(Link::default());
        let (updates, rx) = mpsc::channel(self.queue);
        let (ready, is_ready) = oneshot::channel();
        let joined = Arc::new(std::sync::Mutex::new(Vec::new()));
        let driver = Driver::new(
            self.config.clone(),
            link.clone(),
            list.clone(),
            joined.clone(),
            start.clone(),
            updates,
        );
        let task = tokio::spawn(driver.run(ready));
        match is_ready.await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(e),
            Err(_) => return Err(Error::SubscriptionClosed),
        }
        let publisher = Publisher::new(Arc::new(self.config.clone()), Some(link));
        Ok(Subscription::new(rx, task, list, joined, start, publisher))
    }

    /// Publishes over HTTP and returns once the server stored the event, retrying with the
    /// same client message id until acknowledged (so the effect is exactly once within the
    /// server's idempotency window) or the publish timeout passes. Errors that retrying
    /// cannot fix (a bad channel, 401, 403, 413, ...) return at once.
    pub async fn publish(&self, message: Message) -> Result<PublishAck, Error> {
        self.checked()?;
        publish::publish(&self.config, None, message).await
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn endpoints_follow_the_base_url() {
        let e = Endpoints::new("http://127.0.0.1:8080").unwrap();
        assert_eq!(e.ws, "ws://127.0.0.1:8080/ws");
        assert_eq!(e.sse, "http://127.0.0.1:8080/sse");
        assert_eq!(e.client_publish, "http://127.0.0.1:8080/poll/publish");
        let e = Endpoints::new("ws://h:1/rt/").unwrap();
        assert_eq!(e.poll, "http://h:1/rt/poll");
        assert_eq!(e.api_publish, "http://h:1/rt/api/publish");
        let tls = Endpoints::new("https://h/rt").unwrap();
        assert_eq!(
            (tls.ws.as_str(), tls.sse.as_str()),
            ("wss://h/rt/ws", "https://h/rt/sse")
        );
        assert!(Endpoints::new("ftp://h").is_err());
        assert!(Endpoints::new("http://h/?a=b").is_err());
    }

    #[tokio::test]
    async fn bad_input_is_refused_before_any_io() {
        let c = Client::connect("http://127.0.0.1:9");
        assert!(matches!(
            c.subscribe(Vec::<String>::new()).await,
            Err(Error::NoChannels)
        ));
        assert!(matches!(
            c.subscribe(["a b"]).await,
            Err(Error::Invalid(rt_core::Error::InvalidChannel { .. }))
        ));
        let c = c.cursor("not a cursor");
        assert!(matches!(
            c.subscribe(["a"]).await,
            Err(Error::Invalid(rt_core::Error::InvalidCursor(_)))
        ));
        let c = Client::connect("nonsense");
        assert!(matches!(
            c.subscribe(["a"]).await,
            Err(Error::InvalidUrl { .. })
        ));
    }
}
