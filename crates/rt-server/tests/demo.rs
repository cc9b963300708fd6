//! The demo page and the browser client, served by a running server: every module of
//! `client/src` (the page imports them by relative paths) and nothing else.
#![allow(clippy::unwrap_used)] // tests fail loudly by design

use std::path::Path;

use clap::Parser;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The status line and headers of `GET path`, over a fresh HTTP/1.1 connection.
async fn get(addr: std::net::SocketAddr, path: &str) -> String {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let request = format!("GET {path} HTTP/1.1\r\nhost: rt\r\nconnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).await.unwrap();
    let answer = String::from_utf8_lossy(&answer);
    answer.split("\r\n\r\n").next().unwrap().to_owned()
}

/// Every `.js` file under `dir`, as paths relative to `root`.
fn modules(root: &Path, dir: &Path, out: &mut Vec<String>) {
    for entry in std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{dir:?}: {e}")) {
        let path = entry.unwrap().path();
        if path.is_dir() {
            modules(root, &path, out);
        } else if path.extension().is_some_and(|x| x == "js") {
            out.push(
                path.strip_prefix(root)
                    .unwrap()
                    .to_string_lossy()
                    .into_owned(),
            );
        }
    }
}

#[tokio::test]
async fn the_page_and_every_client_module_are_served() {
    let config = rt_server::Config::parse_from(["rt-server", "--listen", "127.0.0.1:0"]);
    let server = rt_server::Server::bind(config).await.unwrap();
    let addr = server.local_addr();
    tokio::spawn(server.run(std::future::pending()));

    let page = get(addr, "/").await;
    assert!(page.starts_with("HTTP/1.1 200"), "{page}");
    assert!(page.contains("text/html"), "{page}");
    assert!(get(addr, "/demo.js").await.starts_with("HTTP/1.1 200"));

    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("client/src");
    let mut on_disk = Vec::new();
    modules(&src, &src, &mut on_disk);
    assert!(on_disk.len() >= 10, "{on_disk:?}");
    for module in on_disk {
        let head = get(addr, &format!("/client/{module}")).await;
        assert!(head.starts_with("HTTP/1.1 200"), "/client/{module}: {head}");
        assert!(head.contains("text/javascript"), "/client/{module}: {head}");
    }
    for path in [
        "/client/",
        "/client/transports",
        "/client/../Cargo.toml",
        "/client/transports//ws.js",
        "/client/./index.js",
        "/index.html",
    ] {
        let head = get(addr, path).await;
        assert!(head.starts_with("HTTP/1.1 404"), "{path}: {head}");
    }
}
