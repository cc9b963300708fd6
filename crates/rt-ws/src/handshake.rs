//! The RFC 6455 opening handshake over hyper's upgrade mechanism (HTTP/1.1), and its RFC 8441
//! form over HTTP/2 (see `h2`).

use std::borrow::Cow;

use base64::Engine as _;
use http::header::{self, HeaderMap, HeaderValue};
use http::{Method, Request, Response, StatusCode, Version};
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;

use rt_core::Start;
use rt_http::{Body, Edge, Query};
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{Role, WebSocketConfig};
use tokio_tungstenite::WebSocketStream;

use crate::config::Config;
use crate::connection::Admitted;
use crate::deflate::{self, Agreed, Deflater, Inflate};
use crate::error::Error;
use crate::socket::Socket;

/// A validated handshake whose answer (`101 Switching Protocols`, or `200` to an HTTP/2
/// extended CONNECT) has not been sent yet.
///
/// Return [`Upgrade::response`] from the request handler, and await [`Upgrade::socket`] in a
/// spawned task: hyper hands the connection (or the h2 stream) over once the response is
/// written.
#[derive(Debug)]
pub struct Upgrade {
    on_upgrade: OnUpgrade,
    ws_config: WebSocketConfig,
    protocol: Option<HeaderValue>,
    /// `Sec-WebSocket-Accept` over HTTP/1.1; none over HTTP/2.
    accept: Option<HeaderValue>,
    /// permessage-deflate, when offered and enabled: what was agreed and the answer.
    deflate: Option<(Agreed, HeaderValue)>,
    query: Query,
    admitted: Admitted,
}

/// Why a connection is closed right after opening: `1008` and a reason, or `1013` when a hook
/// could not decide.
#[derive(Debug, Clone)]
pub(crate) struct Refusal {
    pub(crate) code: CloseCode,
    pub(crate) reason: Cow<'static, str>,
}

/// True when the comma-separated header `name` holds `token` (case-insensitive).
fn has_token(headers: &HeaderMap, name: header::HeaderName, token: &str) -> bool {
    headers
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case(token))
}

impl Upgrade {
    /// Validates `req` as a WebSocket handshake under `config`: an HTTP/1.1 upgrade (RFC 6455)
    /// or an HTTP/2 extended CONNECT with `:protocol websocket` (RFC 8441).
    ///
    /// A refused origin or a token that does not verify does not fail the handshake: browsers cannot
    /// read the status of a failed upgrade, so the connection is opened and then closed with
    /// 1008 and a reason ([`Upgrade::refusal`]). Works with any request body: the upgrade is
    /// taken from the request's extensions, where hyper (and so axum) puts it.
    ///
    /// Awaits the edge's connect hook, if it has [`Hooks`](rt_http::Hooks).
    pub async fn new<B>(mut req: Request<B>, config: &Config) -> Result<Self, Error> {
        let accept = match req.version() {
            Version::HTTP_2 => {
                crate::h2::check(&mut req)?;
                None
            }
            _ => Some(accept(&req)?),
        };
        let headers = req.headers();
        match headers.get(header::SEC_WEBSOCKET_VERSION) {
            None => {
                return Err(Error::Handshake(
                    "the Sec-WebSocket-Version header is missing (send 13)",
                ))
            }
            Some(v) if v.as_bytes() == b"13" => {}
            Some(v) => {
                return Err(Error::Version(
                    String::from_utf8_lossy(v.as_bytes())
                        .chars()
                        .take(32)
                        .collect(),
                ))
            }
        }
        let protocol = headers
            .get_all(header::SEC_WEBSOCKET_PROTOCOL)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(str::trim)
            .find(|offered| config.subprotocols.iter().any(|p| p == offered))
            .and_then(|p| HeaderValue::from_str(p).ok());
        let deflate = deflate::negotiate(headers, &config.compression);
        let query = Query::parse(req.uri().query());
        // Checked before the connect hook runs: a malformed cursor is the client's bug, which
        // no hook answer changes.
        let start = Start::parse(query.get("cursor")).map_err(|e| Error::Cursor(e.to_string()))?;
        let on_upgrade = hyper::upgrade::on(&mut req);
        // Only the headers are held while the connect hook runs, not the request body.
        let (parts, body) = req.into_parts();
        drop(body);
        let mut admitted = admit(&config.edge, parts.headers, &query).await;
        admitted.start = start;
        Ok(Upgrade {
            on_upgrade,
            ws_config: config.websocket_config(),
            protocol,
            accept,
            deflate,
            query,
            admitted,
        })
    }

    /// The answer to send: `101 Switching Protocols` over HTTP/1.1, `200` over HTTP/2 (RFC
    /// 8441 has no `Sec-WebSocket-Accept`: the stream is the proof).
    pub fn response(&self) -> Response<Body> {
        let mut res = Response::new(rt_http::empty());
        let h = res.headers_mut();
        if let Some(accept) = &self.accept {
            h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
            h.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
            h.insert(header::SEC_WEBSOCKET_ACCEPT, accept.clone());
            *res.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
        }
        let h = res.headers_mut();
        if let Some(p) = &self.protocol {
            h.insert(header::SEC_WEBSOCKET_PROTOCOL, p.clone());
        }
        if let Some((_, answer)) = &self.deflate {
            h.insert(header::SEC_WEBSOCKET_EXTENSIONS, answer.clone());
        }
        res
    }

    /// The HTTP version the WebSocket runs over: `1.1` (an upgraded connection) or `2` (an
    /// extended CONNECT stream, RFC 8441), as the observer reports it.
    pub fn http(&self) -> &'static str {
        if self.accept.is_some() {
            "1.1"
        } else {
            "2"
        }
    }

    /// The subprotocol agreed on, if any.
    pub fn protocol(&self) -> Option<&str> {
        self.protocol.as_ref().and_then(|p| p.to_str().ok())
    }

    /// Why the connection must be closed (with 1008, or 1013 when a hook failed) right after
    /// opening: a bad origin or token, or a refusal by the connect hook.
    pub fn refusal(&self) -> Option<&str> {
        self.admitted.refusal.as_ref().map(|r| &*r.reason)
    }

    /// What the edge made of the handshake, for the connection; the upgrade keeps nothing.
    pub(crate) fn take_admitted(&mut self) -> Admitted {
        std::mem::take(&mut self.admitted)
    }

    /// The request's query string.
    pub fn query(&self) -> &Query {
        &self.query
    }

    /// Whether permessage-deflate (RFC 7692) was agreed on.
    pub fn compressed(&self) -> bool {
        self.deflate.is_some()
    }

    /// Waits until hyper hands over the connection, then wraps it as a WebSocket with the
    /// configured buffers and limits (and permessage-deflate, when agreed).
    pub async fn socket(self) -> Result<Socket, hyper::Error> {
        let upgraded = self.on_upgrade.await?;
        let max_frame = self.ws_config.max_frame_size.unwrap_or(usize::MAX);
        let io = Inflate::new(TokioIo::new(upgraded), self.deflate.is_some(), max_frame);
        let ws = WebSocketStream::from_raw_socket(io, Role::Server, Some(self.ws_config)).await;
        Ok(Socket::new(ws, self.deflate.map(|(a, _)| Deflater::new(a))))
    }
}

/// Checks an HTTP/1.1 upgrade (RFC 6455, 4.2.1) and derives its `Sec-WebSocket-Accept`.
fn accept<B>(req: &Request<B>) -> Result<HeaderValue, Error> {
    if req.method() != Method::GET {
        return Err(Error::Method(req.method().to_string()));
    }
    if req.version() != Version::HTTP_11 {
        return Err(Error::Handshake(
            "a WebSocket is opened over HTTP/1.1 or HTTP/2 (HTTP/1.0 cannot upgrade)",
        ));
    }
    let headers = req.headers();
    if !has_token(headers, header::UPGRADE, "websocket") {
        return Err(Error::Handshake("the Upgrade header must be `websocket`"));
    }
    if !has_token(headers, header::CONNECTION, "upgrade") {
        return Err(Error::Handshake(
            "the Connection header must include `Upgrade`",
        ));
    }
    let key = headers
        .get(header::SEC_WEBSOCKET_KEY)
        .ok_or(Error::Handshake("the Sec-WebSocket-Key header is missing"))?;
    let decoded = base64::engine::general_purpose::STANDARD.decode(key.as_bytes());
    if !matches!(decoded, Ok(ref k) if k.len() == 16) {
        return Err(Error::Handshake(
            "Sec-WebSocket-Key must be 16 random bytes in base64",
        ));
    }
    HeaderValue::from_str(&derive_accept_key(key.as_bytes()))
        .map_err(|_| Error::Handshake("Sec-WebSocket-Key could not be answered"))
}

/// What the edge (origin, token, connect hook) admits the connection with, or why it must be
/// closed right after opening. The handshake's headers are kept only when the edge has hooks,
/// whose connect hook gets them again for a later `auth` message.
async fn admit(edge: &Edge, headers: HeaderMap, query: &Query) -> Admitted {
    match edge.admit(crate::TRANSPORT, &headers, query).await {
        Ok(admitted) => Admitted {
            refusal: None,
            permissions: admitted.permissions,
            attachment: admitted.attachment,
            channels: admitted.channels,
            start: Start::Live,
            data: admitted.data,
            headers: edge.has_hooks().then(|| Box::new(headers)),
        },
        Err(e) => {
            let presented = rt_http::token(&headers, query).is_some();
            Admitted {
                refusal: Some(refusal_of(&e, presented)),
                ..Admitted::default()
            }
        }
    }
}

/// How a refused connection (or `auth` token) is closed: `1013` when a hook could not decide,
/// `1008` otherwise, with the application's reason when it refused, else a machine-readable
/// one.
pub(crate) fn refusal_of(e: &rt_http::Error, presented: bool) -> Refusal {
    match e {
        rt_http::Error::HookFailed { reason, .. } => Refusal {
            code: CloseCode::Again,
            reason: close_reason(format!("{}: {reason}", e.code())),
        },
        // The application's own words, after the code (`forbidden: ...`).
        rt_http::Error::Core(rt_core::Error::Forbidden(_)) => Refusal {
            code: CloseCode::Policy,
            reason: close_reason(e.to_string()),
        },
        _ => Refusal {
            code: CloseCode::Policy,
            reason: refusal(e, presented).into(),
        },
    }
}

/// `reason` cut to what a close frame can carry (123 bytes), on a character boundary.
fn close_reason(mut reason: String) -> Cow<'static, str> {
    let mut end = reason.len().min(123);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    reason.truncate(end);
    reason.into()
}

/// The machine-readable reasons of a 1008 close (`docs/protocol.md`, "Close codes"), so that
/// a client can tell "refresh the token" from "give up" without parsing prose.
pub mod reason {
    /// The `Origin` is neither the server's own nor an allowed one.
    pub const ORIGIN_NOT_ALLOWED: &str = "origin_not_allowed";
    /// The endpoint has no authenticator (and does not allow anonymous clients).
    pub const NO_AUTHENTICATOR: &str = "no_authenticator";
    /// The token does not verify (malformed, wrongly signed, wrong claims): get a new one.
    pub const INVALID_TOKEN: &str = "invalid_token";
    /// The token has expired: get a new one and reconnect (or send it in an `auth` message).
    pub const TOKEN_EXPIRED: &str = "token_expired";
    /// A channel needs a token and the client has none.
    pub const TOKEN_REQUIRED: &str = "token_required";
    /// The token does not allow the channel: a new token will not help unless it grants it.
    pub const FORBIDDEN: &str = "forbidden";
    /// Too many invalid messages in a row.
    pub const TOO_MANY_INVALID_MESSAGES: &str = "too_many_invalid_messages";
    /// The inbound rate limit was exceeded repeatedly.
    pub const RATE_LIMITED: &str = "rate_limited";
}

/// The close reason of a refused connection or token; `presented`: the client sent a token.
pub(crate) fn refusal(e: &rt_http::Error, presented: bool) -> &'static str {
    use rt_core::Error as Core;
    match e {
        rt_http::Error::OriginNotAllowed(_) => reason::ORIGIN_NOT_ALLOWED,
        rt_http::Error::NoAuthenticator => reason::NO_AUTHENTICATOR,
        rt_http::Error::Core(Core::TokenExpired) => reason::TOKEN_EXPIRED,
        rt_http::Error::Core(Core::Forbidden(_)) => reason::FORBIDDEN,
        _ if !presented => reason::TOKEN_REQUIRED,
        _ => reason::INVALID_TOKEN,
    }
}
