//! Redis seen from the bench: `INFO` over a plain TCP connection, the process behind a local
//! Redis, and the Redis Clusters the backplane scenario starts (rt_tests::RedisCluster, the
//! clusters rt's tests run on).

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::run::Watched;

/// `host:port` of a `redis://[user:password@]host:port[/db]` URL.
fn host(url: &str) -> &str {
    url.split_once("://")
        .map_or(url, |(_, rest)| rest)
        .split(['/', '?'])
        .next()
        .unwrap_or_default()
        .rsplit('@')
        .next()
        .unwrap_or_default()
}

/// `INFO <section>` (inline command, bulk reply), as text.
pub(crate) async fn info(url: &str, section: &str) -> Result<String, String> {
    let host = host(url);
    let mut s = tokio::net::TcpStream::connect(host)
        .await
        .map_err(|e| format!("Redis at {host}: {e}"))?;
    s.write_all(format!("INFO {section}\r\n").as_bytes())
        .await
        .map_err(|e| e.to_string())?;
    let mut buf = Vec::new();
    loop {
        let mut chunk = [0u8; 16 * 1024];
        let n = s.read(&mut chunk).await.map_err(|e| e.to_string())?;
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
        let text = String::from_utf8_lossy(&buf);
        let complete = text.split_once("\r\n").is_some_and(|(len, rest)| {
            len.trim_start_matches('$')
                .parse::<usize>()
                .is_ok_and(|len| rest.len() >= len)
        });
        if complete {
            break;
        }
    }
    Ok(String::from_utf8_lossy(&buf).into_owned())
}

/// The `redis-server` process behind `url` when it runs on this machine (its `INFO`
/// `process_id`), named `redis-server :<port> <role>`; `None` for a remote Redis or one that
/// does not answer `INFO` (e.g. it needs a password).
pub(crate) async fn process(url: &str) -> Option<Watched> {
    let host = host(url);
    let (ip, port) = host.rsplit_once(':')?;
    if !matches!(ip, "127.0.0.1" | "localhost" | "[::1]") {
        return None;
    }
    let text = info(url, "all").await.ok()?;
    let field = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
            .map(str::trim)
    };
    Some(Watched {
        name: format!("redis-server :{port} {}", field("role")?),
        pid: field("process_id")?.parse().ok()?,
    })
}

/// A Redis Cluster of `masters` masters with `replicas` replicas each, started on free
/// loopback ports (every process killed when it is dropped); an error if it does not form.
pub(crate) async fn cluster(
    masters: usize,
    replicas: usize,
) -> Result<rt_tests::RedisCluster, String> {
    // rt_tests panics, saying why, when a node does not start or the cluster does not form.
    tokio::task::spawn_blocking(move || rt_tests::RedisCluster::launch(masters, replicas))
        .await
        .map_err(|e| {
            let why = e.try_into_panic().ok().and_then(|p| {
                p.downcast_ref::<String>()
                    .cloned()
                    .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
            });
            format!(
                "cannot start a Redis Cluster of {masters} master(s) with {replicas} replica(s) \
                 each: {}",
                why.unwrap_or_else(|| "its start was cancelled".into())
            )
        })
}
