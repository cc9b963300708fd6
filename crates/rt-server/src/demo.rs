//! The demo page at `/`: one channel's events arriving over every transport side by side,
//! using the browser client, which is served under `/client/`. Both are embedded at compile
//! time from `client/`, a symlink to the npm package in `clients/js` (cargo package copies
//! the files it points to into the crate), so the page always runs the client this server
//! was built with and there is a single copy of it. Every module in `client/src` is served,
//! so the page's relative imports cannot miss one.

use http::header::{self, HeaderValue};
use http::Response;
use include_dir::{include_dir, Dir};
use rt_http::{self as h, Body};

static DEMO: Dir<'_> = include_dir!("$CARGO_MANIFEST_DIR/client/demo");
static CLIENT: Dir<'_> = include_dir!("$CARGO_MANIFEST_DIR/client/src");

/// Content type and content of the demo file at `path`, if there is one.
fn file(path: &str) -> Option<(&'static str, &'static [u8])> {
    let (dir, name) = match path {
        "/" => (&DEMO, "index.html"),
        "/demo.js" => (&DEMO, "demo.js"),
        _ => (&CLIENT, path.strip_prefix("/client/")?),
    };
    // Exactly the file's path: `Path` equality would also take `a//b.js` or `a/./b.js`.
    let file = dir.get_file(name).filter(|f| {
        f.path()
            .iter()
            .eq(name.split('/').map(std::ffi::OsStr::new))
    })?;
    let content_type = match file.path().extension()?.to_str()? {
        "html" => "text/html; charset=utf-8",
        "js" => "text/javascript; charset=utf-8",
        _ => return None,
    };
    Some((content_type, file.contents()))
}

/// Whether `path` is one of the demo's files.
pub(crate) fn serves(path: &str) -> bool {
    file(path).is_some()
}

/// The demo file at `path` (one that [`serves`]), or `404`.
pub(crate) fn get(path: &str) -> Response<Body> {
    let Some((content_type, content)) = file(path) else {
        return h::error(
            http::StatusCode::NOT_FOUND,
            "not_found",
            "no such demo file",
        );
    };
    let mut res = Response::new(h::full(content));
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
