//! The presence scenario: 10,000 WebSocket members join one channel and leave it, and the
//! server API reads its counts meanwhile, on rt-server with presence off and on, on the
//! memory backplane, on a Redis of the bench's own (so that Redis's command counts and
//! CPU are the bench's alone) and, given `--redis-cluster`, on that Redis Cluster (its
//! masters' counts summed). The cost of presence is read as ratios to the same run without
//! it.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::{stream, StreamExt};
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use serde::Serialize;

use crate::fleet::source;
use crate::servers::{Programs, Server, Target};
use crate::wsclient::{tcp, Frame, WsConn};

const CHANNEL: &str = "bench:presence";
const KEY: &str = "bench-key";

/// One configuration measured.
#[derive(Debug, Serialize)]
pub(crate) struct Outcome {
    variant: String,
    members: usize,
    /// Seconds from the first connection to the registry counting every member.
    join_s: f64,
    /// Seconds from closing every connection to the registry counting none.
    leave_s: f64,
    /// rt-server CPU milliseconds per member, joining and leaving.
    server_cpu_ms_per_join: f64,
    server_cpu_ms_per_leave: f64,
    /// Redis commands (scripts count once) and Redis CPU microseconds per member.
    redis_commands_per_join: Option<f64>,
    redis_cpu_us_per_join: Option<f64>,
    redis_commands_per_leave: Option<f64>,
    redis_cpu_us_per_leave: Option<f64>,
    /// The count route read back to back by `READERS` clients while every member is present.
    reads_per_s: f64,
    read_p50_ms: f64,
    read_p99_ms: f64,
}

const READERS: usize = 4;

/// Runs the scenario against `redis` (a URL of a Redis the bench started for it alone) and,
/// if given, the Redis Cluster at `cluster` (`redis-cluster://host:port,...`).
pub(crate) async fn run(
    programs: &Programs,
    cpus: Option<&str>,
    redis: &str,
    cluster: Option<&str>,
    members: usize,
    read_secs: f64,
) -> Result<Vec<Outcome>, String> {
    let prefix = format!("rtbench-presence-{}", std::process::id());
    let presence = ["--presence".to_string(), "bench:*".into()];
    let mut backplanes = vec![("memory", None)];
    backplanes.push(("redis", Some(redis)));
    if let Some(cluster) = cluster {
        backplanes.push(("redis-cluster", Some(cluster)));
    }
    let mut outcomes = Vec::new();
    for (backplane, url) in backplanes {
        let on = match url {
            Some(url) => vec![
                "--backplane".to_string(),
                url.into(),
                "--redis-prefix".into(),
                prefix.clone(),
            ],
            None => vec![],
        };
        // The Redis processes whose work is counted: a cluster's nodes (replicas are
        // skipped when read).
        let nodes: Option<Vec<String>> =
            url.map(|url| match url.strip_prefix("redis-cluster://") {
                Some(hosts) => hosts
                    .split('?')
                    .next()
                    .unwrap_or_default()
                    .split(',')
                    .map(|h| format!("redis://{h}"))
                    .collect(),
                None => vec![url.to_owned()],
            });
        for with_presence in [false, true] {
            let name = format!(
                "{backplane}, presence {}",
                if with_presence { "on" } else { "off" }
            );
            eprintln!("rt-bench: presence / {name} × {members} ...");
            let mut extra = vec!["--api-key".to_string(), KEY.into()];
            extra.extend(on.iter().cloned());
            if with_presence {
                extra.extend(presence.iter().cloned());
            }
            let server = Server::start(Target::Rt, programs, cpus, &extra).await?;
            let outcome = measure(
                &server,
                &name,
                members,
                read_secs,
                nodes.as_deref(),
                with_presence,
            )
            .await;
            server.stop().await;
            let outcome = outcome?;
            eprintln!("  {}", line(&outcome));
            outcomes.push(outcome);
        }
    }
    Ok(outcomes)
}

async fn measure(
    server: &Server,
    name: &str,
    members: usize,
    read_secs: f64,
    redis: Option<&[String]>,
    with_presence: bool,
) -> Result<Outcome, String> {
    let addr = server.addr;
    let count_path = format!("/api/channels?pattern={CHANNEL}");
    let redis_before = match redis {
        Some(url) => Some(redis_stats(url).await?),
        None => None,
    };
    let cpu_before = server.usage().cpu_s;
    let started = Instant::now();
    let conns: Vec<WsConn> = stream::iter(0..members)
        .map(|i| member(addr, i))
        .buffer_unordered(200)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect::<Result<_, _>>()?;
    let mut http = Http::connect(addr).await?;
    settle(&mut http, &count_path, members).await?;
    let join_s = started.elapsed().as_secs_f64();
    let cpu_joined = server.usage().cpu_s;
    let redis_joined = match redis {
        Some(url) => Some(redis_stats(url).await?),
        None => None,
    };

    // The count a backend or client would poll: presence's when it is on, the registry's
    // otherwise.
    let read_path = if with_presence {
        format!("/api/presence-stats?channel={CHANNEL}")
    } else {
        count_path.clone()
    };
    let mut readers = Vec::new();
    for _ in 0..READERS {
        let path = read_path.clone();
        readers.push(tokio::spawn(async move {
            let mut http = Http::connect(addr).await?;
            let mut latencies = Vec::new();
            let end = Instant::now() + Duration::from_secs_f64(read_secs);
            while Instant::now() < end {
                let t = Instant::now();
                http.get(&path).await?;
                latencies.push(t.elapsed().as_secs_f64() * 1e3);
            }
            Ok::<_, String>(latencies)
        }));
    }
    let mut latencies = Vec::new();
    for r in readers {
        latencies.extend(r.await.map_err(|e| e.to_string())??);
    }
    latencies.sort_by(f64::total_cmp);
    let quantile = |q: f64| {
        let i = ((latencies.len() as f64 * q) as usize).min(latencies.len().saturating_sub(1));
        latencies.get(i).copied().unwrap_or(0.0)
    };
    let (read_p50_ms, read_p99_ms) = (quantile(0.5), quantile(0.99));
    let reads_per_s = latencies.len() as f64 / read_secs;

    let redis_read = match redis {
        Some(url) => Some(redis_stats(url).await?),
        None => None,
    };
    let cpu_read = server.usage().cpu_s;
    let left = Instant::now();
    drop(conns);
    settle(&mut http, &count_path, 0).await?;
    let leave_s = left.elapsed().as_secs_f64();
    let cpu_left = server.usage().cpu_s;
    let redis_left = match redis {
        Some(url) => Some(redis_stats(url).await?),
        None => None,
    };
    let n = members as f64;
    let per = |a: Option<RedisStats>, b: Option<RedisStats>, f: fn(&RedisStats) -> f64| {
        a.zip(b).map(|(a, b)| (f(&b) - f(&a)) / n)
    };
    Ok(Outcome {
        variant: name.into(),
        members,
        join_s,
        leave_s,
        server_cpu_ms_per_join: (cpu_joined - cpu_before) * 1e3 / n,
        server_cpu_ms_per_leave: (cpu_left - cpu_read) * 1e3 / n,
        redis_commands_per_join: per(redis_before, redis_joined, |s| s.calls),
        redis_cpu_us_per_join: per(redis_before, redis_joined, |s| s.cpu_s * 1e6),
        redis_commands_per_leave: per(redis_read, redis_left, |s| s.calls),
        redis_cpu_us_per_leave: per(redis_read, redis_left, |s| s.cpu_s * 1e6),
        reads_per_s,
        read_p50_ms,
        read_p99_ms,
    })
}

/// Member `i`: a WebSocket subscribed to the channel (waits for `subscribed`).
async fn member(addr: SocketAddr, i: usize) -> Result<WsConn, String> {
    let mut conn = WsConn::connect(addr, Some(source(i)), "/ws")
        .await
        .map_err(|e| format!("member {i}: {e}"))?;
    let subscribe = format!(r#"{{"type":"subscribe","channels":["{CHANNEL}"]}}"#);
    conn.send_text(subscribe.as_bytes())
        .await
        .map_err(|e| e.to_string())?;
    match tokio::time::timeout(Duration::from_secs(30), conn.next()).await {
        Ok(Ok(Some(Frame::Data(d)))) if d.windows(10).any(|w| w == b"subscribed") => Ok(conn),
        other => Err(format!("member {i} not subscribed: {other:?}")),
    }
}

/// Waits until the registry counts `n` subscribers of the channel (none: absent).
async fn settle(http: &mut Http, path: &str, n: usize) -> Result<(), String> {
    let want = if n == 0 {
        r#""channels":[]"#.to_string()
    } else {
        format!(r#""subscribers":{n}}}"#)
    };
    let end = Instant::now() + Duration::from_secs(60);
    loop {
        // A 503 (Redis slow to answer under the join storm) is retried like a short count.
        let body = match http.get(path).await {
            Ok(body) if body.contains(&want) => return Ok(()),
            Ok(body) => body,
            Err(e) if e.contains("503") => e,
            Err(e) => return Err(e),
        };
        if Instant::now() > end {
            return Err(format!("the channel registry never reached {n}: {body}"));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A keep-alive HTTP/1.1 connection to the server API.
struct Http(hyper::client::conn::http1::SendRequest<Empty<Bytes>>);

impl Http {
    async fn connect(addr: SocketAddr) -> Result<Http, String> {
        let stream = tcp(addr, None).await.map_err(|e| e.to_string())?;
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| e.to_string())?;
        tokio::spawn(conn);
        Ok(Http(sender))
    }

    /// `GET path` with the API key: the body of a `200`.
    async fn get(&mut self, path: &str) -> Result<String, String> {
        let req = http::Request::get(path)
            .header("host", "bench")
            .header("x-api-key", KEY)
            .body(Empty::<Bytes>::new())
            .map_err(|e| e.to_string())?;
        let res = self.0.send_request(req).await.map_err(|e| e.to_string())?;
        let status = res.status();
        let body = res.into_body().collect().await.map_err(|e| e.to_string())?;
        let body = String::from_utf8_lossy(&body.to_bytes()).into_owned();
        if status != http::StatusCode::OK {
            return Err(format!("GET {path}: {status} {body}"));
        }
        Ok(body)
    }
}

/// What Redis says of itself: commands run and CPU seconds used.
#[derive(Clone, Copy, Debug)]
struct RedisStats {
    calls: f64,
    cpu_s: f64,
}

/// The sum of [`master_stats`] over `urls` (one Redis, or a cluster's nodes).
async fn redis_stats(urls: &[String]) -> Result<RedisStats, String> {
    let mut sum = RedisStats {
        calls: 0.0,
        cpu_s: 0.0,
    };
    for url in urls {
        if let Some(stats) = master_stats(url).await? {
            sum.calls += stats.calls;
            sum.cpu_s += stats.cpu_s;
        }
    }
    Ok(sum)
}

/// Commands run and CPU seconds used, from `INFO all`; `None` from a replica (it repeats its
/// master's writes, which are counted on the master).
async fn master_stats(url: &str) -> Result<Option<RedisStats>, String> {
    let text = crate::redis::info(url, "all").await?;
    if text.lines().any(|l| l.trim() == "role:slave") {
        return Ok(None);
    }
    let mut stats = RedisStats {
        calls: 0.0,
        cpu_s: 0.0,
    };
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("cmdstat_") {
            // The bench's own INFO calls are not the server's doing.
            if rest.starts_with("info:") {
                continue;
            }
            let calls = rest
                .split([':', ','])
                .find_map(|f| f.strip_prefix("calls="))
                .and_then(|c| c.parse::<f64>().ok());
            stats.calls += calls.unwrap_or(0.0);
        } else if let Some((name, value)) = line.split_once(':') {
            if matches!(name, "used_cpu_sys" | "used_cpu_user") {
                stats.cpu_s += value.trim().parse::<f64>().unwrap_or(0.0);
            }
        }
    }
    Ok(Some(stats))
}

fn opt(v: Option<f64>, digits: usize) -> String {
    v.map_or("-".into(), |v| format!("{v:.digits$}"))
}

fn line(o: &Outcome) -> String {
    format!(
        "join {:.2} s, leave {:.2} s, server {:.3} ms CPU per join, Redis {} commands and {} us CPU per join; {:.0} count reads/s (p50 {:.2} ms, p99 {:.2} ms)",
        o.join_s,
        o.leave_s,
        o.server_cpu_ms_per_join,
        opt(o.redis_commands_per_join, 3),
        opt(o.redis_cpu_us_per_join, 1),
        o.reads_per_s,
        o.read_p50_ms,
        o.read_p99_ms
    )
}

/// The results as a markdown table, with each variant's cost as a ratio to the same
/// backplane without presence.
pub(crate) fn markdown(outcomes: &[Outcome]) -> String {
    let mut md = String::from(
        "| variant | members | join s | leave s | server CPU ms/join | vs off | server CPU ms/leave | Redis cmds/join | Redis CPU µs/join | Redis cmds/leave | Redis CPU µs/leave | count reads/s | vs off | read p50 ms | read p99 ms |\n\
         |---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n",
    );
    for o in outcomes {
        let base = o.variant.split(',').next().unwrap_or_default();
        let off = outcomes
            .iter()
            .find(|b| b.variant == format!("{base}, presence off"));
        let ratio = |f: fn(&Outcome) -> f64| {
            off.map_or("-".into(), |b| {
                format!("{:.2}x", f(o) / f(b).max(f64::MIN_POSITIVE))
            })
        };
        let _ = writeln!(
            md,
            "| {} | {} | {:.2} | {:.2} | {:.3} | {} | {:.3} | {} | {} | {} | {} | {:.0} | {} | {:.2} | {:.2} |",
            o.variant,
            o.members,
            o.join_s,
            o.leave_s,
            o.server_cpu_ms_per_join,
            ratio(|o| o.server_cpu_ms_per_join),
            o.server_cpu_ms_per_leave,
            opt(o.redis_commands_per_join, 3),
            opt(o.redis_cpu_us_per_join, 1),
            opt(o.redis_commands_per_leave, 3),
            opt(o.redis_cpu_us_per_leave, 1),
            o.reads_per_s,
            ratio(|o| o.reads_per_s),
            o.read_p50_ms,
            o.read_p99_ms,
        );
    }
    md
}
