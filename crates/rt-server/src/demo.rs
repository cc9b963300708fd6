//! The demo page at `/`: one channel's events arriving over every transport side by side,
//! using the browser client, which is served under `/client/`. Both are embedded at compile
//! time from `client/`, a symlink to the npm package in `clients/js` (cargo package copies
//! the files it points to into the crate), so the page always runs the client this server
//! was built with and there is a single copy of it.

use http::header::{self, HeaderValue};
use http::{Response, StatusCode};
use rt_http::{self as h, Body};

const HTML: &str = "text/html; charset=utf-8";
const JS: &str = "text/javascript; charset=utf-8";

/// Path, content type and content of every file served.
const FILES: &[(&str, &str, &str)] = &[
    ("/", HTML, include_str!("../client/demo/index.html")),
    ("/demo.js", JS, include_str!("../client/demo/demo.js")),
    (
        "/client/index.js",
        JS,
        include_str!("../client/src/index.js"),
    ),
    (
        "/client/client.js",
        JS,
        include_str!("../client/src/client.js"),
    ),
    (
        "/client/backoff.js",
        JS,
        include_str!("../client/src/backoff.js"),
    ),
    (
        "/client/cursor.js",
        JS,
        include_str!("../client/src/cursor.js"),
    ),
    (
        "/client/dedupe.js",
        JS,
        include_str!("../client/src/dedupe.js"),
    ),
    (
        "/client/sse-parser.js",
        JS,
        include_str!("../client/src/sse-parser.js"),
    ),
    ("/client/url.js", JS, include_str!("../client/src/url.js")),
    (
        "/client/transports/http.js",
        JS,
        include_str!("../client/src/transports/http.js"),
    ),
    (
        "/client/transports/poll.js",
        JS,
        include_str!("../client/src/transports/poll.js"),
    ),
    (
        "/client/transports/sse.js",
        JS,
        include_str!("../client/src/transports/sse.js"),
    ),
    (
        "/client/transports/ws.js",
        JS,
        include_str!("../client/src/transports/ws.js"),
    ),
];

/// Whether `path` is one of the demo's files.
pub(crate) fn serves(path: &str) -> bool {
    FILES.iter().any(|(p, _, _)| *p == path)
}

/// The demo file at `path`.
pub(crate) fn get(path: &str) -> Response<Body> {
    let Some((_, content_type, content)) = FILES.iter().find(|(p, _, _)| *p == path) else {
        return h::error(StatusCode::NOT_FOUND, "not_found", "no such demo file");
    };
    let mut res = Response::new(h::full(*content));
    let headers = res.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    // Small, and replaced by every new build: revalidate instead of caching stale modules.
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    // The page talks to this server only.
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'self'; connect-src 'self' ws: wss:; style-src 'self' 'unsafe-inline'",
        ),
    );
    res
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_client_module_is_served() {
        // The page imports the client by relative paths: a module missing here would break
        // it. Every file in client/src (clients/js/src) must be in FILES.
        let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("client/src");
        let mut on_disk = Vec::new();
        for dir in [src.clone(), src.join("transports")] {
            for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{dir:?}: {e}")) {
                let path = entry.map(|e| e.path()).unwrap_or_default();
                if path.extension().is_some_and(|x| x == "js") {
                    let rel = path
                        .strip_prefix(&src)
                        .map(|p| p.to_string_lossy().into_owned());
                    on_disk.push(format!("/client/{}", rel.unwrap_or_default()));
                }
            }
        }
        assert!(on_disk.len() >= 10, "{on_disk:?}");
        for file in on_disk {
            assert!(serves(&file), "{file} is not served: add it to demo::FILES");
        }
        assert!(serves("/") && !serves("/client/") && !serves("/client/../Cargo.toml"));
        assert_eq!(get("/").status(), StatusCode::OK);
    }
}
