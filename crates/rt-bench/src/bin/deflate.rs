//! The cost and gain of permessage-deflate per delivery: bytes on the wire and the server's
//! CPU time, without compression, with events compressed once per publish (`shared`) and with
//! a compressor per connection (`context-takeover`). See docs/benchmarks.md.
//!
//! ```text
//! cargo run --release -p rt-bench --bin deflate -- [--clients 200] [--events 2000] [--trades 2]
//! ```
//!
//! rt-ws runs in this process on a thread of its own (a current-thread runtime), so that
//! thread's CPU time (`/proc/self/task/<tid>/schedstat`) is the server's work: encoding,
//! compressing and writing every delivery. The clients (raw sockets on the other threads)
//! offer the extension, count the bytes of every event frame, and one of them inflates and
//! checks every event. Publishes go in batches of 20, each batch delivered everywhere before
//! the next, so no client lags.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Parser;
use flate2::{Decompress, FlushDecompress};
use rt_core::{Channel, Hub, HubConfig, MemoryBackplane, NewEvent, Payload, Retention};
use rt_ws::Compression;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

#[derive(Debug, Parser)]
#[command(about = "permessage-deflate: bytes on the wire and server CPU per delivery")]
struct Args {
    /// Subscribers, all on one channel.
    #[arg(long, default_value_t = 200)]
    clients: usize,
    /// Events published.
    #[arg(long, default_value_t = 2000)]
    events: usize,
    /// Trades in each event: its size (2: about 190 bytes of payload, each more about 45).
    #[arg(long, default_value_t = 2)]
    trades: usize,
}

/// What one mode cost.
#[derive(Debug)]
struct Outcome {
    mode: &'static str,
    wire_bytes: f64,
    cpu_us: f64,
    rss_kib_per_conn: f64,
}

fn main() -> Result<(), String> {
    let args = Args::parse();
    rlimit::increase_nofile_limit(u64::MAX).map_err(|e| e.to_string())?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    let modes = [
        ("off", Compression::off()),
        ("shared", Compression::shared()),
        ("context-takeover", Compression::context_takeover()),
    ];
    let mut outcomes = Vec::new();
    for (mode, compression) in modes {
        let o = runtime.block_on(measure(mode, compression, &args))?;
        eprintln!("{o:?}");
        outcomes.push(o);
    }
    let plain = outcomes[0].wire_bytes;
    println!(
        "{} clients, {} events of about {} bytes of JSON each\n",
        args.clients,
        args.events,
        event(0, args.trades).len()
    );
    println!("| mode | bytes on the wire per delivery | vs off | server CPU per delivery | process RSS growth per connection |");
    println!("| --- | --- | --- | --- | --- |");
    for o in &outcomes {
        println!(
            "| {} | {:.0} | {:.2} | {:.2} µs | {:.1} KiB |",
            o.mode,
            o.wire_bytes,
            o.wire_bytes / plain,
            o.cpu_us,
            o.rss_kib_per_conn
        );
    }
    Ok(())
}

/// A market-data-like event with `trades` trades: similar from one to the next, as real
/// events are.
fn event(i: usize, trades: usize) -> String {
    let price = 100.0 + (i % 97) as f64 * 0.37;
    let trades: Vec<String> = (0..trades)
        .map(|t| {
            let side = if t % 2 == 0 { "buy" } else { "sell" };
            format!(
                r#"{{"id":{},"size":{},"side":"{side}"}}"#,
                i * trades + t,
                (i * 7 + t * 11) % 500
            )
        })
        .collect();
    format!(
        r#"{{"symbol":"ACME","venue":"XNAS","price":{price:.2},"bid":{:.2},"ask":{:.2},"volume":{},"trades":[{}],"status":"open","currency":"USD"}}"#,
        price - 0.01,
        price + 0.01,
        1000 + i * 13,
        trades.join(",")
    )
}

async fn measure(
    mode: &'static str,
    compression: Compression,
    args: &Args,
) -> Result<Outcome, String> {
    let hub = Hub::new(
        Arc::new(MemoryBackplane::new(Retention::default())),
        HubConfig::default(),
    );
    // No heartbeats: every text frame a client reads is an event.
    let config = rt_ws::Config::default()
        .ping_interval(Duration::from_secs(3600))
        .app_heartbeat(false)
        .compression(compression)
        .edge(rt_http::Edge::default().allow_anonymous());
    let ws = rt_ws::WebSocket::new(hub.clone(), config);
    let listener = std::net::TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    listener.set_nonblocking(true).map_err(|e| e.to_string())?;
    let (tid_tx, tid_rx) = std::sync::mpsc::channel();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = std::thread::spawn(move || {
        // The link reads `<pid>/task/<tid>`, relative to /proc.
        let task = std::fs::read_link("/proc/thread-self").ok();
        let _ = tid_tx.send(task.map(|t| std::path::Path::new("/proc").join(t)));
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| e.to_string())?;
        rt.block_on(async move {
            let listener =
                tokio::net::TcpListener::from_std(listener).map_err(|e| e.to_string())?;
            let accept = async {
                loop {
                    let Ok((stream, _)) = listener.accept().await else {
                        continue;
                    };
                    let service = hyper_util::service::TowerToHyperService::new(ws.clone());
                    tokio::spawn(async move {
                        let _ = hyper::server::conn::http1::Builder::new()
                            .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                            .with_upgrades()
                            .await;
                    });
                }
            };
            tokio::select! {
                () = accept => {}
                _ = stop_rx => {}
            }
            Ok::<(), String>(())
        })
    });
    let task = tid_rx
        .recv()
        .ok()
        .flatten()
        .ok_or("no /proc/thread-self: this benchmark reads Linux's per-thread CPU time")?;
    let rss_before = rss_kib();

    let delivered = Arc::new(AtomicU64::new(0));
    let wire = Arc::new(AtomicU64::new(0));
    let mut clients = Vec::new();
    for i in 0..args.clients {
        let mut tcp = connect(addr).await?;
        subscribe(&mut tcp).await?;
        let (delivered, wire) = (delivered.clone(), wire.clone());
        let (events, trades) = (args.events, args.trades);
        // The first client checks every event.
        let check = i == 0;
        clients.push(tokio::spawn(async move {
            read_events(tcp, events, trades, check, &delivered, &wire).await
        }));
    }

    let cpu_before = cpu_ns(&task)?;
    let channel = Channel::new("bench").map_err(|e| e.to_string())?;
    let started = Instant::now();
    for batch in (0..args.events).collect::<Vec<_>>().chunks(20) {
        for &i in batch {
            hub.publish(NewEvent::new(
                channel.clone(),
                Payload::text(event(i, args.trades)),
            ))
            .await
            .map_err(|e| e.to_string())?;
        }
        let want = ((batch[batch.len() - 1] + 1) * args.clients) as u64;
        while delivered.load(Ordering::Relaxed) < want {
            if started.elapsed() > Duration::from_secs(300) {
                return Err(format!("{mode}: deliveries stalled"));
            }
            tokio::time::sleep(Duration::from_micros(200)).await;
        }
    }
    let cpu = cpu_ns(&task)? - cpu_before;
    let rss_after = rss_kib();
    for c in clients {
        c.await.map_err(|e| e.to_string())??;
    }
    let _ = stop_tx.send(());
    let _ = server.join();
    let deliveries = (args.events * args.clients) as f64;
    Ok(Outcome {
        mode,
        wire_bytes: wire.load(Ordering::Relaxed) as f64 / deliveries,
        cpu_us: cpu as f64 / 1000.0 / deliveries,
        rss_kib_per_conn: (rss_after - rss_before) / args.clients as f64,
    })
}

/// The thread's time on a CPU in nanoseconds (first field of its schedstat).
fn cpu_ns(task: &std::path::Path) -> Result<u64, String> {
    let stat = std::fs::read_to_string(task.join("schedstat")).map_err(|e| e.to_string())?;
    stat.split_whitespace()
        .next()
        .and_then(|n| n.parse().ok())
        .ok_or_else(|| format!("unreadable schedstat {stat:?}"))
}

fn rss_kib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0.0)
}

async fn connect(addr: std::net::SocketAddr) -> Result<TcpStream, String> {
    let mut tcp = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
    let request = format!(
        "GET /ws HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\
         Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n\r\n"
    );
    tcp.write_all(request.as_bytes())
        .await
        .map_err(|e| e.to_string())?;
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        head.push(tcp.read_u8().await.map_err(|e| e.to_string())?);
    }
    if !head.starts_with(b"HTTP/1.1 101") {
        return Err(format!(
            "upgrade refused: {}",
            String::from_utf8_lossy(&head)
        ));
    }
    Ok(tcp)
}

/// Subscribes (an uncompressed frame, which the extension allows) and waits for the answer.
async fn subscribe(tcp: &mut TcpStream) -> Result<(), String> {
    let msg = br#"{"type":"subscribe","channels":["bench"]}"#;
    let mut frame = vec![0x81, 0x80 | msg.len() as u8, 0, 0, 0, 0];
    frame.extend_from_slice(msg);
    tcp.write_all(&frame).await.map_err(|e| e.to_string())?;
    read_frame(tcp).await.map(drop)
}

/// One frame: (first byte, payload, bytes on the wire).
async fn read_frame(tcp: &mut (impl AsyncRead + Unpin)) -> Result<(u8, Vec<u8>, usize), String> {
    let e = |e: std::io::Error| e.to_string();
    let b0 = tcp.read_u8().await.map_err(e)?;
    let (len, header) = match tcp.read_u8().await.map_err(e)? & 0x7f {
        126 => (u64::from(tcp.read_u16().await.map_err(e)?), 4),
        127 => (tcp.read_u64().await.map_err(e)?, 10),
        n => (u64::from(n), 2),
    };
    let mut payload = vec![0; len as usize];
    tcp.read_exact(&mut payload).await.map_err(e)?;
    Ok((b0, payload, header + len as usize))
}

async fn read_events(
    tcp: TcpStream,
    events: usize,
    trades: usize,
    check: bool,
    delivered: &AtomicU64,
    wire: &AtomicU64,
) -> Result<(), String> {
    // Kept across messages: with context takeover the server's window spans them.
    let mut inflater = Decompress::new(false);
    let mut tcp = BufReader::new(tcp);
    let mut seen = 0;
    while seen < events {
        let (b0, payload, size) = read_frame(&mut tcp).await?;
        if b0 & 0x0f != 1 {
            continue;
        }
        if check {
            let text = if b0 & 0x40 != 0 {
                let mut input = payload;
                input.extend_from_slice(&[0, 0, 0xff, 0xff]);
                let mut out = Vec::with_capacity(64 * 1024);
                inflater
                    .decompress_vec(&input, &mut out, FlushDecompress::Sync)
                    .map_err(|e| e.to_string())?;
                out
            } else {
                payload
            };
            let v: serde_json::Value = serde_json::from_slice(&text).map_err(|e| e.to_string())?;
            if v["data"].as_str() != Some(event(seen, trades).as_str()) {
                return Err(format!("event {seen} arrived as {v}"));
            }
        }
        seen += 1;
        wire.fetch_add(size as u64, Ordering::Relaxed);
        delivered.fetch_add(1, Ordering::Relaxed);
    }
    Ok(())
}
