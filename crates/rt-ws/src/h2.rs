//! WebSockets over HTTP/2 (RFC 8441): an extended CONNECT stream carries the WebSocket
//! instead of an upgraded connection, so a page that already speaks h2 to the server (SSE,
//! API calls) opens no new TCP and TLS connection for it.
//!
//! The server must announce `SETTINGS_ENABLE_CONNECT_PROTOCOL` (rt-http's `Listener` does;
//! with plain hyper, `http2().enable_connect_protocol()` on the builder). hyper then hands
//! the request over with the `:protocol` pseudo-header as a [`hyper::ext::Protocol`]
//! extension, and the stream as the same `OnUpgrade` an HTTP/1.1 upgrade gives, once the
//! `200` is sent. Everything after the handshake (the edge's origin and token checks, frames,
//! limits, close codes) is the HTTP/1.1 path's.

use http::{Method, Request};
use hyper::ext::Protocol;

use crate::error::Error;

/// Checks what is particular to an HTTP/2 handshake (RFC 8441, section 5): the method and the
/// `:protocol`. `Sec-WebSocket-Key` and the `Upgrade`/`Connection` headers have no place on
/// h2 and are ignored; the version, subprotocols, origin and token are checked as over
/// HTTP/1.1 by the caller.
pub(crate) fn check<B>(req: &mut Request<B>) -> Result<(), Error> {
    if req.method() != Method::CONNECT {
        return Err(Error::Handshake(
            "over HTTP/2 a WebSocket is opened with an extended CONNECT \
             (method CONNECT, `:protocol websocket`, RFC 8441)",
        ));
    }
    match req.extensions().get::<Protocol>() {
        Some(p) if p.as_str().eq_ignore_ascii_case("websocket") => {
            rt_http::host_from_authority(req);
            Ok(())
        }
        Some(_) => Err(Error::Handshake(
            "the `:protocol` of an extended CONNECT must be `websocket`",
        )),
        None => Err(Error::Handshake(
            "a CONNECT without `:protocol websocket` cannot open a WebSocket (RFC 8441)",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn connect(protocol: Option<&'static str>) -> Request<()> {
        let mut req = Request::connect("https://localhost/ws").body(()).unwrap();
        *req.version_mut() = http::Version::HTTP_2;
        if let Some(p) = protocol {
            req.extensions_mut().insert(Protocol::from_static(p));
        }
        req
    }

    #[test]
    fn only_an_extended_connect_for_websocket_passes() {
        let mut ok = connect(Some("websocket"));
        assert_eq!(check(&mut ok), Ok(()));
        assert_eq!(ok.headers()[http::header::HOST], "localhost");
        for mut bad in [connect(Some("webtransport")), connect(None)] {
            assert!(matches!(check(&mut bad), Err(Error::Handshake(_))));
        }
        let mut get = connect(Some("websocket"));
        *get.method_mut() = Method::GET;
        assert!(matches!(check(&mut get), Err(Error::Handshake(_))));
    }
}
