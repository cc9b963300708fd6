//! The HTTP requests of SSE, polling and publishing, on hyper-util's pooled client.

use bytes::Bytes;
use http::Request;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde::de::DeserializeOwned;
use serde::Deserialize;

use crate::error::Error;
use crate::event::Transport;

/// The HTTP client every request of a [`Client`](crate::Client) shares (one pool), over TCP
/// for `http://` and TLS for `https://`.
pub(crate) type HttpClient =
    hyper_util::client::legacy::Client<HttpsConnector<HttpConnector>, Full<Bytes>>;

/// The most of an error answer read for its message.
const ERROR_BODY_LIMIT: usize = 64 * 1024;

pub(crate) fn client(tls: &rustls::ClientConfig) -> HttpClient {
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls.clone())
        .https_or_http()
        .enable_http1()
        .build();
    hyper_util::client::legacy::Client::builder(TokioExecutor::new()).build(https)
}

/// TLS trusting the public web's roots (webpki-roots, so no platform store is needed) and
/// `extra` (PEM), for HTTPS and `wss://` alike.
pub(crate) fn tls(extra: &[u8]) -> Result<std::sync::Arc<rustls::ClientConfig>, String> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::CertificateDer;
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    for cert in CertificateDer::pem_slice_iter(extra) {
        let cert = cert.map_err(|e| format!("the root certificates are not valid PEM: {e}"))?;
        roots
            .add(cert)
            .map_err(|e| format!("a root certificate cannot be used: {e}"))?;
    }
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("ring supports TLS 1.2 and 1.3")
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(std::sync::Arc::new(config))
}

/// `{base}?channel=a&channel=b` plus `extra` pairs. Channel names and cursors need no
/// percent-encoding (docs/protocol.md, "Cursor size"): their characters are all valid in a
/// query, and encoding them can triple a long cursor.
pub(crate) fn query_url<'a>(
    base: &str,
    channels: impl IntoIterator<Item = &'a str>,
    extra: &[(&str, &str)],
) -> String {
    let mut url = base.to_owned();
    let mut sep = '?';
    let pairs = channels
        .into_iter()
        .map(|c| ("channel", c))
        .chain(extra.iter().copied());
    for (k, v) in pairs {
        url.push(sep);
        url.push_str(k);
        url.push('=');
        url.push_str(v);
        sep = '&';
    }
    url
}

/// Sends `req`; an error status becomes [`Error::Http`] (or [`Error::TokenRefused`] for a
/// 401 token refusal when `transport` is given) with the server's code and message.
pub(crate) async fn send(
    http: &HttpClient,
    req: Request<Full<Bytes>>,
    what: &'static str,
    transport: Option<Transport>,
) -> Result<http::Response<Incoming>, Error> {
    let url = req.uri().to_string();
    let res = http.request(req).await.map_err(|e| Error::Request {
        url,
        source: Box::new(e),
    })?;
    if res.status().is_success() {
        return Ok(res);
    }
    let status = res.status().as_u16();
    let body = Limited::new(res.into_body(), ERROR_BODY_LIMIT)
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let (code, message) = error_body(&body);
    Err(Error::http(what, transport, status, code, message))
}

/// The code and message of rt's JSON error body, or the start of another body.
pub(crate) fn error_body(body: &[u8]) -> (Option<String>, String) {
    #[derive(Deserialize)]
    struct Body {
        error: Detail,
    }
    #[derive(Deserialize)]
    struct Detail {
        code: String,
        #[serde(default)]
        message: String,
    }
    match serde_json::from_slice::<Body>(body) {
        Ok(b) => (Some(b.error.code), b.error.message),
        Err(_) => (
            None,
            String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned(),
        ),
    }
}

/// Reads a JSON answer of at most `limit` bytes.
pub(crate) async fn json<T: DeserializeOwned>(
    res: http::Response<Incoming>,
    url: &str,
    limit: usize,
) -> Result<T, Error> {
    let bytes = Limited::new(res.into_body(), limit)
        .collect()
        .await
        .map_err(|source| Error::Request {
            url: url.to_owned(),
            source,
        })?
        .to_bytes();
    serde_json::from_slice(&bytes)
        .map_err(|e| Error::Protocol(format!("{url} answered JSON this client cannot read: {e}")))
}

/// A request with `Authorization: Bearer <token>` when there is a token.
pub(crate) fn request(
    method: http::Method,
    url: &str,
    token: Option<&str>,
) -> http::request::Builder {
    let mut req = Request::builder().method(method).uri(url);
    if let Some(token) = token {
        req = req.header(http::header::AUTHORIZATION, format!("Bearer {token}"));
    }
    req
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_urls_keep_channels_and_cursors_raw() {
        assert_eq!(
            query_url("http://h/poll", ["a:b", "c/d"], &[("cursor", "9f,a:b=3")]),
            "http://h/poll?channel=a:b&channel=c/d&cursor=9f,a:b=3"
        );
        assert_eq!(query_url("http://h/x", [], &[]), "http://h/x");
    }

    #[test]
    fn error_bodies_give_their_code() {
        let (code, message) =
            error_body(br#"{"error":{"code":"forbidden","message":"not yours"}}"#);
        assert_eq!(
            (code.as_deref(), message.as_str()),
            (Some("forbidden"), "not yours")
        );
        let (code, message) = error_body(b"<html>bad gateway</html>");
        assert_eq!((code, message.as_str()), (None, "<html>bad gateway</html>"));
    }
}
