//! [`Proxy`]: the [`Hooks`] that ask the application's backend over HTTP.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http::header::{HeaderMap, HeaderValue, CONTENT_TYPE};
use http::{Request, Uri};
use http_body_util::{BodyExt, Full, Limited};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use rt_core::{Channel, ChannelPattern, NewEvent, Payload, Permissions, PublishRequest};
use rt_http::{Attachment, Client, ConnectRequest, Connected, HookFuture, Hooks};
use serde::Serialize;
use tokio::sync::Semaphore;
use tokio::time::Instant;

use crate::config::ProxyConfig;
use crate::error::Error;
use crate::metrics;
use crate::wire::{Answer, ConnectCall, PublishCall, SubscribeCall};

/// The most of an answer that is read: a hook answers a small JSON object.
const ANSWER_LIMIT: usize = 64 * 1024;

type HttpClient = hyper_util::client::legacy::Client<HttpsConnector<HttpConnector>, Full<Bytes>>;

/// [`Hooks`] that `POST` JSON to the application's backend on connect, subscribe and client
/// publish, as [`ProxyConfig`] says, and act on its `{"allow": ...}` answers
/// (docs/protocol.md, "Backend hooks"). Mount it on any transport's edge with
/// [`Edge::hooks`](rt_http::Edge::hooks).
///
/// Every call forwards the configured headers, takes one of `max_in_flight` slots (none free:
/// it fails at once), waits for the answer within `timeout`, and is measured ([`metrics`](crate::metrics)). A call that
/// fails refuses the request with `503 hook_failed` (fail-closed) unless `fail_open` is set; a
/// denial refuses it with `403 forbidden` and the backend's reason.
///
/// # Examples
///
/// ```
/// use std::sync::Arc;
/// use rt_http::Edge;
/// use rt_proxy::{Proxy, ProxyConfig};
///
/// let config = ProxyConfig::default()
///     .connect("http://127.0.0.1:3000/rt/connect")?
///     .forward_headers("cookie")?;
/// let edge = Edge::default().hooks(Arc::new(Proxy::new(config)?));
/// # let _ = edge;
/// # Ok::<_, rt_proxy::Error>(())
/// ```
pub struct Proxy {
    config: ProxyConfig,
    client: HttpClient,
    permits: Semaphore,
}

/// What a connection keeps for its later hook calls.
#[derive(Debug)]
struct Session {
    /// The forwarded headers of the request that opened it.
    headers: HeaderMap,
    /// What the connect hook answered as `meta`.
    meta: Option<serde_json::Value>,
}

impl Proxy {
    /// Hooks as `config` says. Fails only on `max_in_flight == 0`.
    pub fn new(config: ProxyConfig) -> Result<Self, Error> {
        if config.max_in_flight == 0 {
            return Err(Error::NoConcurrency);
        }
        let mut roots = rustls::RootCertStore::empty();
        roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let tls = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("ring supports TLS 1.2 and 1.3")
            .with_root_certificates(roots)
            .with_no_client_auth();
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .build();
        Ok(Proxy {
            permits: Semaphore::new(config.max_in_flight),
            client: hyper_util::client::legacy::Client::builder(TokioExecutor::new()).build(https),
            config,
        })
    }

    /// The configuration.
    pub fn config(&self) -> &ProxyConfig {
        &self.config
    }

    /// The headers of `headers` that are forwarded.
    fn forwarded(&self, headers: &HeaderMap) -> HeaderMap {
        let mut kept = HeaderMap::new();
        for name in &self.config.forward_headers {
            for value in headers.get_all(name) {
                kept.append(name.clone(), value.clone());
            }
        }
        kept
    }

    /// One call: a free slot, then the answer within the timeout; measured.
    async fn call<T: Serialize>(
        &self,
        hook: &'static str,
        url: &Uri,
        headers: &HeaderMap,
        body: &T,
    ) -> Result<Answer, Error> {
        let started = Instant::now();
        let timeout = self.config.timeout;
        let deadline = started + timeout;
        let result = async {
            // Over the bound, a call fails at once rather than queueing: a queued call could
            // only start once an earlier one ended, near its own deadline, and time out anyway.
            let _permit = self.permits.try_acquire().map_err(|_| Error::Overloaded {
                max: self.config.max_in_flight,
            })?;
            let answer = tokio::time::timeout_at(deadline, self.post(url, headers, body));
            answer.await.map_err(|_| Error::Timeout {
                url: url.to_string(),
                timeout,
            })?
        }
        .await;
        ::metrics::histogram!(metrics::DURATION, "hook" => hook)
            .record(started.elapsed().as_secs_f64());
        let outcome = match &result {
            Ok(a) if a.allow => "allow",
            Ok(_) => "deny",
            Err(e) => {
                ::metrics::counter!(metrics::ERRORS, "hook" => hook, "kind" => e.kind())
                    .increment(1);
                tracing::warn!(hook, error = %e, "backend hook failed");
                "error"
            }
        };
        ::metrics::counter!(metrics::CALLS, "hook" => hook, "result" => outcome).increment(1);
        result
    }

    async fn post<T: Serialize>(
        &self,
        url: &Uri,
        headers: &HeaderMap,
        body: &T,
    ) -> Result<Answer, Error> {
        let invalid = |reason: String| Error::InvalidAnswer {
            url: url.to_string(),
            reason,
        };
        let unreachable = |reason: String| Error::Unreachable {
            url: url.to_string(),
            reason,
        };
        let json = serde_json::to_vec(body).map_err(|e| unreachable(e.to_string()))?;
        let mut req = Request::post(url.clone())
            .body(Full::new(Bytes::from(json)))
            .map_err(|e| unreachable(e.to_string()))?;
        req.headers_mut().extend(headers.clone());
        req.headers_mut()
            .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        let res = self
            .client
            .request(req)
            .await
            .map_err(|e| unreachable(chain(&e)))?;
        if !res.status().is_success() {
            return Err(Error::Status {
                url: url.to_string(),
                status: res.status().as_u16(),
            });
        }
        let body = Limited::new(res.into_body(), ANSWER_LIMIT)
            .collect()
            .await
            .map_err(|e| invalid(format!("could not read it: {e}")))?
            .to_bytes();
        serde_json::from_slice(&body).map_err(|e| invalid(e.to_string()))
    }

    /// A failed call as the edge answers it: refused (fail-closed), or `fallback` when the
    /// configuration fails open.
    fn failed<T>(&self, hook: &'static str, e: Error, fallback: T) -> Result<T, rt_http::Error> {
        if self.config.fail_open {
            return Ok(fallback);
        }
        Err(rt_http::Error::HookFailed {
            hook,
            reason: e.to_string(),
        })
    }
}

/// An error and its sources, which name the real cause (hyper-util's top error is generic).
fn chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

/// The refusal of a denied call, with the backend's reason.
fn denied(answer: Answer, what: impl FnOnce(&str) -> String) -> rt_http::Error {
    let reason = answer
        .reason
        .unwrap_or_else(|| "refused by the application".into());
    rt_core::Error::Forbidden(what(&reason)).into()
}

/// The session a connection's attachment holds, if this proxy attached one.
fn session<'a>(client: &Client<'a>) -> (Option<&'a HeaderMap>, Option<&'a serde_json::Value>) {
    match client.attachment.get::<Session>() {
        Some(s) => (Some(&s.headers), s.meta.as_ref()),
        None => (None, None),
    }
}

/// What a connect answer admits: the permissions it grants, the channels it joins and the
/// data it shows the client.
fn connected(url: &Uri, answer: Answer) -> Result<Connected, Error> {
    let invalid = |e: rt_core::Error| Error::InvalidAnswer {
        url: url.to_string(),
        reason: e.to_string(),
    };
    let patterns = |list: &[String]| {
        list.iter()
            .map(|p| ChannelPattern::new(p))
            .collect::<Result<Vec<_>, _>>()
            .map_err(invalid)
    };
    let expires = answer
        .expires_at
        .map(|s| SystemTime::UNIX_EPOCH + Duration::from_secs(s));
    let permissions = Permissions::new(answer.subject.clone(), expires)
        .allow_subscribe(patterns(&answer.subscribe)?)
        .allow_publish(patterns(&answer.publish)?);
    let channels = answer
        .channels
        .iter()
        .map(|c| Channel::new(c))
        .collect::<Result<Vec<_>, _>>()
        .map_err(invalid)?;
    let connected = Connected::new(permissions).join(channels);
    Ok(match answer.data {
        Some(data) => connected.data(data),
        None => connected,
    })
}

impl Hooks for Proxy {
    fn connect<'a>(&'a self, request: ConnectRequest<'a>) -> HookFuture<'a, Connected> {
        Box::pin(async move {
            let headers = self.forwarded(request.headers);
            let attach = |connected: Connected, meta| {
                connected.attach(Attachment::new(Session {
                    headers: headers.clone(),
                    meta,
                }))
            };
            let Some(url) = &self.config.connect else {
                return request.verdict.map(|p| attach(Connected::new(p), None));
            };
            let call = ConnectCall {
                transport: request.transport,
                token: request.token,
            };
            let answer = match self.call("connect", url, &headers, &call).await {
                Ok(answer) if !answer.allow => return Err(denied(answer, str::to_owned)),
                Ok(answer) => answer,
                Err(e) => {
                    let fallback = request.verdict.map(|p| attach(Connected::new(p), None));
                    return self.failed("connect", e, fallback)?;
                }
            };
            let meta = answer.meta.clone();
            match connected(url, answer) {
                Ok(c) => Ok(attach(c, meta)),
                Err(e) => {
                    let fallback = request.verdict.map(|p| attach(Connected::new(p), None));
                    self.failed("connect", e, fallback)?
                }
            }
        })
    }

    fn subscribe<'a>(
        &'a self,
        client: Client<'a>,
        channel: &'a Channel,
    ) -> Option<HookFuture<'a, ()>> {
        let url = self.config.subscribe.as_ref()?;
        Some(Box::pin(async move {
            let (headers, meta) = session(&client);
            let call = SubscribeCall {
                transport: client.transport,
                subject: client.permissions.subject(),
                meta,
                channel: channel.as_str(),
            };
            let empty = HeaderMap::new();
            let headers = headers.unwrap_or(&empty);
            match self.call("subscribe", url, headers, &call).await {
                Ok(answer) if answer.allow => Ok(()),
                Ok(answer) => Err(denied(answer, |r| format!("channel {channel}: {r}"))),
                Err(e) => self.failed("subscribe", e, ()),
            }
        }))
    }

    fn publish<'a>(
        &'a self,
        client: Client<'a>,
        event: &'a NewEvent,
    ) -> Option<HookFuture<'a, Option<Payload>>> {
        let url = self.config.publish.as_ref()?;
        Some(Box::pin(async move {
            let (headers, meta) = session(&client);
            let data = event.payload.to_json_string();
            let call = PublishCall {
                transport: client.transport,
                subject: client.permissions.subject(),
                meta,
                channel: event.channel.as_str(),
                event: event.name.as_str(),
                data: &data,
                encoding: event.payload.is_binary().then_some("base64"),
            };
            let empty = HeaderMap::new();
            let headers = headers.unwrap_or(&empty);
            let channel = &event.channel;
            let answer = match self.call("publish", url, headers, &call).await {
                Ok(answer) if answer.allow => answer,
                Ok(answer) => return Err(denied(answer, |r| format!("publish on {channel}: {r}"))),
                Err(e) => return self.failed("publish", e, None),
            };
            let Some(data) = answer.data else {
                return Ok(None);
            };
            // The replacement is read as a client's publish is: text, JSON, or base64.
            let replacement = PublishRequest {
                channel: channel.to_string(),
                event: None,
                data,
                encoding: answer.encoding,
                id: None,
            };
            match replacement.into_new_event() {
                Ok(e) => Ok(Some(e.payload)),
                Err(e) => {
                    let e = Error::InvalidAnswer {
                        url: url.to_string(),
                        reason: e.to_string(),
                    };
                    self.failed("publish", e, None)
                }
            }
        }))
    }
}

impl fmt::Debug for Proxy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Proxy")
            .field("config", &self.config)
            .field(
                "in_flight",
                &(self.config.max_in_flight - self.permits.available_permits()),
            )
            .finish_non_exhaustive()
    }
}
