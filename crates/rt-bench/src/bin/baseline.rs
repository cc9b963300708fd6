//! The practical-limit baseline for WebSocket fan-out: a minimal raw tokio-tungstenite
//! broadcast server.
//!
//! A client that connects to `/pub` publishes: each of its text messages goes to every
//! other client. The payload is shared by all subscribers (one `Utf8Bytes` clone each, no
//! copy, no JSON envelope); each subscriber feeds whatever is queued and flushes once per
//! batch. A subscriber that falls `--queue` messages behind is closed (1008), as rt does.

use std::net::SocketAddr;

use clap::Parser;
use futures_util::{SinkExt, StreamExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::broadcast::{self, error::RecvError, error::TryRecvError};
use tokio_tungstenite::tungstenite::handshake::server::{Request, Response};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, WebSocketConfig};
use tokio_tungstenite::tungstenite::{Message, Utf8Bytes};

#[derive(Debug, Parser)]
#[command(about = "Raw tokio-tungstenite broadcast server (rt-bench baseline)")]
struct Args {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:9001")]
    listen: SocketAddr,
    /// Messages a subscriber may fall behind before it is closed.
    #[arg(long, default_value_t = 1024)]
    queue: usize,
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    // Many sockets: lift the soft open-files limit to the hard one.
    let _ = rlimit::increase_nofile_limit(u64::MAX);
    let args = Args::parse();
    let listener = TcpListener::bind(args.listen).await?;
    let (tx, _) = broadcast::channel::<Utf8Bytes>(args.queue);
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                tokio::spawn(serve(stream, tx.clone()));
            }
            // Out of file descriptors or similar: back off instead of spinning.
            Err(_) => tokio::time::sleep(std::time::Duration::from_millis(10)).await,
        }
    }
}

async fn serve(stream: TcpStream, tx: broadcast::Sender<Utf8Bytes>) {
    let _ = stream.set_nodelay(true);
    let mut publisher = false;
    // Small read buffers, like rt, so idle memory compares like for like.
    let config = WebSocketConfig::default().read_buffer_size(4096);
    // The callback signature is tungstenite's; its error type is not ours to shrink.
    #[allow(clippy::result_large_err)]
    let callback = |req: &Request, res: Response| {
        publisher = req.uri().path() == "/pub";
        Ok(res)
    };
    let Ok(ws) =
        tokio_tungstenite::accept_hdr_async_with_config(stream, callback, Some(config)).await
    else {
        return;
    };
    let (mut sink, mut stream) = ws.split();
    if publisher {
        while let Some(Ok(msg)) = stream.next().await {
            if let Message::Text(text) = msg {
                let _ = tx.send(text);
            }
        }
        return;
    }
    let mut rx = tx.subscribe();
    loop {
        tokio::select! {
            first = rx.recv() => {
                let text = match first {
                    Ok(text) => text,
                    Err(RecvError::Lagged(_)) => return lagging(sink).await,
                    Err(RecvError::Closed) => return,
                };
                if sink.feed(Message::Text(text)).await.is_err() {
                    return;
                }
                loop {
                    match rx.try_recv() {
                        Ok(text) => {
                            if sink.feed(Message::Text(text)).await.is_err() {
                                return;
                            }
                        }
                        Err(TryRecvError::Lagged(_)) => return lagging(sink).await,
                        Err(_) => break,
                    }
                }
                if sink.flush().await.is_err() {
                    return;
                }
            }
            msg = stream.next() => match msg {
                None | Some(Err(_)) | Some(Ok(Message::Close(_))) => return,
                Some(Ok(_)) => {}
            },
        }
    }
}

async fn lagging<S>(mut sink: S)
where
    S: futures_util::Sink<Message> + Unpin,
{
    let frame = CloseFrame {
        code: CloseCode::Policy,
        reason: "lagging".into(),
    };
    let _ = sink.send(Message::Close(Some(frame))).await;
}
